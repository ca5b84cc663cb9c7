r"""Training query rate: a session whose behaviour is sampled at 1 kHz trains as fast as the same session at 100 Hz.

    python -m experiments.query_rate_check --steps=400 --out=runs/query_rate

Every behaviour sample inside a training window becomes a decoder query, so NLB-style files (hand velocity at 1 kHz)
used to train ~5x slower than 100 Hz data. ``tokenizer.query_rate`` (default 100 per second) thins a faster series to
every k-th sample for training; evaluation still scores every sample. This check writes the synthetic ``single``
session twice into ``--out`` (its 100 Hz behaviour, and the same behaviour linearly interpolated onto a 1 ms grid),
trains ``possm_small`` on each for ``--steps`` steps with the same seed (the 1 kHz copy once at the default
``query_rate`` and once with ``query_rate=0``, every sample), and writes ``query_rate.json`` and a markdown table:
windows/s and test R² per run. ``docs/training.md`` describes the field.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
from absl import app, flags

from data_pipeline.recording import Recording, TimeSeries
from data_pipeline.synth.writer import corpus, write_sessions
from experiments.configs import pretrain
from possm_jax.train.loop import train_and_evaluate

PRESET = "single"


def resampled(recording: Recording, rate: float) -> Recording:
    """``recording`` with every behaviour series linearly interpolated onto a regular grid of ``rate`` Hz."""
    behaviour = {}
    for name, series in recording.behaviour.items():
        t = series.timestamps
        grid = t[0] + np.arange(int(np.floor((t[-1] - t[0]) * rate)) + 1) / rate
        values = {}
        for key, v in series.values.items():
            flat = np.asarray(v, np.float64).reshape(len(t), -1)
            cols = [np.interp(grid, t, flat[:, j]) for j in range(flat.shape[1])]
            values[key] = np.stack(cols, axis=1).reshape(len(grid), *np.shape(v)[1:]).astype(np.asarray(v).dtype)
        behaviour[name] = TimeSeries(grid, values, sampling_rate=rate)
    return dataclasses.replace(recording, behaviour=behaviour)


def write_stores(out: str, seed: int) -> dict[str, str]:
    """The ``single`` session at its native 100 Hz and at 1 kHz: {label: store directory}."""
    _, sessions = corpus(PRESET, seed)
    spec, rec = next(iter(sessions))
    dirs = {"100 Hz": os.path.join(out, "data_100hz"), "1 kHz": os.path.join(out, "data_1khz")}
    write_sessions(iter([(spec, rec)]), dirs["100 Hz"], {"preset": PRESET, "seed": seed}, 1, overwrite=True)
    fast = resampled(rec, 1000.0)
    write_sessions(iter([(spec, fast)]), dirs["1 kHz"], {"preset": PRESET, "seed": seed, "rate": 1000.0}, 1, True)
    return dirs


def run_one(data_dir: str, workdir: str, steps: int, query_rate: float) -> dict:
    """Trains ``possm_small`` on ``data_dir`` and returns windows/s, test R² and the query rate used."""
    c = pretrain.get_config("possm_small")
    c.data.dir, c.data.sessions = data_dir, "all"
    c.tokenizer.query_rate = query_rate
    c.train.num_steps = steps
    c.eval.every = c.checkpoint.every = steps
    results = train_and_evaluate(c, workdir)
    r2 = results["test"]["r2"]
    return {
        "query_rate": query_rate,
        "windows_per_second": results["windows_per_second"],
        "test_r2": float(np.mean(list(r2.values()))),
        "wall_seconds": results["wall_seconds"],
    }


def markdown(rows: dict[str, dict]) -> str:
    """The result table."""
    lines = ["| behaviour | query_rate | windows/s | test R² |", "|---|---|---|---|"]
    for label, r in rows.items():
        limit = "every sample" if r["query_rate"] == 0 else f"{r['query_rate']:g}/s"
        lines.append(f"| {label} | {limit} | {r['windows_per_second']:.0f} | {r['test_r2']:.3f} |")
    return "\n".join(lines)


def main(argv):
    del argv
    out = flags.FLAGS.out
    dirs = write_stores(out, flags.FLAGS.seed)
    steps = flags.FLAGS.steps
    rows = {
        "100 Hz": run_one(dirs["100 Hz"], os.path.join(out, "run_100hz"), steps, 100.0),
        "1 kHz": run_one(dirs["1 kHz"], os.path.join(out, "run_1khz"), steps, 100.0),
        "1 kHz, unthinned": run_one(dirs["1 kHz"], os.path.join(out, "run_1khz_all"), steps, 0.0),
    }
    with open(os.path.join(out, "query_rate.json"), "w") as f:
        json.dump(rows, f, indent=1)
    table = markdown(rows)
    with open(os.path.join(out, "query_rate.md"), "w") as f:
        f.write(table + "\n")
    print(table)


if __name__ == "__main__":
    flags.DEFINE_string("out", "runs/query_rate", "output directory (stores, runs, query_rate.json / .md)")
    flags.DEFINE_integer("steps", 400, "training steps per run")
    flags.DEFINE_integer("seed", 0, "generator seed")
    app.run(main)
