r"""The benchmark suite (issue 6, docs/benchmarks.md): latency, training / data throughput, accuracy, tables and plots.

Usage::

  python -m experiments.bench --out=runs/bench [--quick | --smoke]

Writes ``results.json`` (with the machine, JAX version, date and command), ``README.md`` (markdown tables) and PNG
plots (``accuracy_latency.png``: R² against 1-thread median ms per chunk, like the paper's figure;
``latency.png``: median latency per model and rate) and the wall time of each section. ``make bench`` runs the
full suite (goal: 20 min on 2 cores; the README has the measured wall times) and ``make bench-quick`` a reduced one
(goal: 3 min; 1-thread latency at 20 Hz, one compile of the training step, POSSM / GRU / Wiener accuracy at a small
budget whose R² ordering is not meaningful); ``--smoke`` is the tiny variant the test runs. :data:`MODES` holds what
each mode measures.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from experiments import bench_accuracy, bench_human, bench_latency

ACCURACY_TO_LATENCY = {
    "possm_small": "possm_small",
    "poyo_d64": "poyo_d64",
    "binned_gru": "binned_gru",
    "binned_s4d": "binned_s4d",
    "binned_mamba": "binned_mamba",
    "wiener": "wiener",
}
"""Accuracy model -> latency row used for its x coordinate in the accuracy–latency plot."""


class BenchMode(NamedTuple):
    """What one mode of the suite measures: every per-mode setting, in one record."""

    latency_threads: tuple[str, ...]  # thread settings, each a child process compiling every model
    latency: tuple  # bench_latency.MODES entry: presets, rates, timed steps, re-run presets, POYO widths, batches
    streaming: tuple  # bench_latency.STREAMING_MODES entry: weight formats, profiled presets, stream counts
    training_batch: int  # training throughput: windows per batch
    training_steps: int  # and timed steps
    training_dtypes: tuple[str, ...]  # and compute dtypes, each timed (bfloat16: mixed precision)
    data_seconds: float  # data throughput: seconds of window building
    accuracy: bench_accuracy.Budget  # accuracy: which models train for how many steps


MODES = {
    name: BenchMode(
        threads,
        bench_latency.MODES[name],
        bench_latency.STREAMING_MODES[name],
        batch,
        steps,
        dtypes,
        data_s,
        bench_accuracy.BUDGETS[name],
    )  # fmt: skip
    for name, threads, batch, steps, dtypes, data_s in (
        ("full", ("1", "all"), 64, 30, ("float32", "bfloat16"), 5.0),
        ("quick", ("1",), 64, 8, ("float32", "bfloat16"), 2.0),
        ("smoke", ("1",), 8, 2, ("float32",), 0.5),  # one latency child: the test checks structure, not thread settings
    )
}
"""Bench modes: ``full`` (``make bench``), ``quick`` (``make bench-quick``) and ``smoke`` (the test's)."""


def machine_info() -> dict:
    """CPU model, core count, Python / JAX versions."""
    import jax

    cpu = "unknown"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jax_backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
    }


def _time_steps(step_fn: Callable, state: Any, batches: list, steps: int) -> tuple[float, list[float]]:
    """``(compile seconds, per-step seconds)`` of one compiling call and ``steps`` timed calls of ``step_fn``."""
    import jax

    rng = jax.random.key(0)
    t = time.perf_counter()
    state, metrics = step_fn(state, batches[0], rng)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - t
    times = []
    for i in range(steps):
        t = time.perf_counter()
        state, metrics = step_fn(state, batches[i % len(batches)], rng)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t)
    return compile_s, times


def training_batches(batch_size: int, count: int = 4) -> tuple[int, list[dict], list[dict]]:
    """``(units, raw, packed)``: ``count`` training batches of one centre-out session (host arrays).

    ``packed`` holds them packed as the training loop does, all at the widest packed size (one compilation, as in a
    run after warm-up); the model needs ``units + 1`` unit rows and 2 session rows.
    """
    from data_pipeline.packing import pack_spikes, packed_width
    from data_pipeline.pipeline import make_train_iterator
    from data_pipeline.tokenize import TokenizerConfig

    rec = bench_accuracy.centre_out_sessions(1)[0]
    u, cfg = len(rec.unit_ids), TokenizerConfig()
    iterator = make_train_iterator([rec], [(np.arange(1, u + 1, dtype=np.int32), 1)], cfg, batch_size, 0, prefetch=0)
    raw = [next(iterator) for _ in range(count)]
    width = max(packed_width(b, 1) for b in raw)
    return u, raw, [pack_spikes(b, width=width) for b in raw]


def training_throughput(
    batch_size: int, steps: int, log: Callable[[str], None], dtypes: tuple[str, ...] = ("float32",)
) -> dict:
    """possm_small train steps on packed batches of one centre-out session: compile time and steady windows/s.

    Args:
        batch_size: windows per batch.
        steps: timed steps per dtype (after one compiling step).
        log: progress printer.
        dtypes: compute dtypes to time (``bfloat16``: mixed precision, float32 master weights); the first one's
            numbers are also the result's top-level fields.

    Returns:
        The first dtype's compile time, step time and windows/s, and every dtype's under ``by_dtype``.
    """
    import jax.numpy as jnp
    from flax import nnx

    from possm_jax.config import get_preset
    from possm_jax.possm import POSSM
    from possm_jax.train.loss import multitask_loss
    from possm_jax.train.optim import reference_lamb
    from possm_jax.train.setup import init_training

    u, raw, packed = training_batches(batch_size)
    batches = [{k: jnp.asarray(v) for k, v in b.items()} for b in packed]
    by_dtype = {}
    for dtype in dtypes:
        model = POSSM(get_preset("possm_small"), u + 1, 2, rngs=nnx.Rngs(0))
        loss_fn = functools.partial(multitask_loss, task_names=model.config.task_names)
        tx = reference_lamb(batch_size, 1000)
        _, state, step_fn = init_training(model, tx, loss_fn, compute_dtype=jnp.dtype(dtype))
        compile_s, times = _time_steps(step_fn, state, batches, steps)
        by_dtype[dtype] = {
            "compile_s": compile_s,
            "step_ms_median": float(np.median(times) * 1e3),
            "windows_per_s": float(batch_size / np.median(times)),
        }
        rate = by_dtype[dtype]["windows_per_s"]
        log(f"  training possm_small batch {batch_size} {dtype}: {rate:.0f} windows/s, compile {compile_s:.1f} s")
    return {
        "preset": "possm_small",
        "batch_size": batch_size,
        "steps": steps,
        **by_dtype[dtypes[0]],
        "by_dtype": by_dtype,
        "spikes_padded_per_window": int(raw[0]["spike_mask"].shape[1]),
        "spikes_packed_per_window": float(np.mean([b["spike_mask"].shape[1] for b in batches])),
        "spikes_real_per_window": float(np.mean([b["spike_mask"].sum() / batch_size for b in raw])),
    }


def data_throughput(seconds: float, log: Callable[[str], None]) -> dict:
    """Slice + tokenize + batch windows/s of one process on the first demo session."""
    from data_pipeline.throughput import measure_windows_per_second
    from data_pipeline.tokenize import TokenizerConfig

    rec = bench_accuracy.centre_out_sessions(1)[0]
    result = measure_windows_per_second([rec], TokenizerConfig(), batch_size=64, seconds=seconds)
    log(f"  data pipeline: {result['windows_per_second']:.0f} windows/s")
    return result


def _latency_table(latency: dict) -> list[str]:
    rows = {}
    for threads, res in latency.items():
        for r in res["rows"]:
            rows.setdefault((r["model"], r["rate_hz"]), {})[threads] = r
    lines = [
        "| model | rate (Hz/unit) | spikes/chunk | median 1 thread (µs) | p99 1 thread (µs) | median all (µs) "
        "| p99 all (µs) |",
        "|---|---|---|---|---|---|---|",
    ]
    for (model, rate), by in rows.items():
        one, every = by.get("1", {}), by.get("all", {})
        cells = [f"{x.get(k, float('nan')):.1f}" for x in (one, every) for k in ("median_us", "p99_us")]
        spikes = next(iter(by.values()))["spikes_per_chunk"]
        lines.append(f"| {model} | {rate} | {spikes} | " + " | ".join(cells) + " |")
    return lines


def _poyo_ratios(latency: dict) -> dict:
    """POYO / POSSM median latency at the same width (d64: possm_small, d256: possm), per thread mode and rate."""
    out = {}
    for threads, res in latency.items():
        by = {(r["model"], r["rate_hz"]): r["median_us"] for r in res["rows"]}
        for (model, rate), poyo in by.items():
            possm = {"poyo_d64": "possm_small", "poyo_d256": "possm"}.get(model)
            if possm and (possm, rate) in by:
                out[f"{possm}_vs_{model}_{threads}thread_{rate}hz"] = poyo / by[(possm, rate)]
    return out


def write_readme(results: dict, path: str) -> None:
    """Markdown tables of every section of ``results``."""
    m = results["machine"]
    lines = [
        "# Benchmark results",
        "",
        f"Command: `{results['command']}` ({results['mode']} mode), {results['date']}.",
        f"Machine: {m['cpu']}, {m['cores']} cores, JAX {m['jax']} ({m['jax_backend']}).",
        f"Wall time: {results['wall_s']:.0f} s ("
        + ", ".join(f"{name} {sec:.0f} s" for name, sec in results["section_s"].items())
        + ").",
        "",
        "## Streaming latency per 50 ms chunk (batch 1, 5 queries per chunk)",
        "",
        *_latency_table(results["latency"]),
        "",
        "POYO / POSSM median latency ratio at the same width: "
        + ", ".join(f"{k} = {v:.1f}×" for k, v in results["poyo_ratio"].items()),
        "",
        "## Throughput",
        "",
        "| measure | value |",
        "|---|---|",
    ]
    for threads, res in results["latency"].items():
        for o in res["offline"]:
            lines.append(
                f"| offline forward {o['preset']} batch {o['batch']} ({threads} threads) | "
                f"{o['windows_per_s']:.0f} windows/s |"
            )
    t = results["training"]
    for dtype, d in t["by_dtype"].items():
        lines += [
            f"| training {t['preset']} batch {t['batch_size']}, {dtype} | {d['windows_per_s']:.0f} windows/s "
            f"({d['step_ms_median']:.0f} ms/step) |",
            f"| training compile time, {dtype} | {d['compile_s']:.1f} s |",
        ]
    lines += [
        f"| data pipeline (slice + tokenize + batch, 1 process) | "
        f"{results['data']['windows_per_second']:.0f} windows/s |",
        f"| peak memory (this process / children) | {results['peak_memory_mb']['self']:.0f} MB / "
        f"{results['peak_memory_mb']['children']:.0f} MB |",
        "",
        "## Accuracy on synthetic centre-out sessions (test R², reach period)",
        "",
        f"Budget: {results['accuracy']['budget']}.",
        "",
        "| model | R² mean | R² sd | median ms per chunk (1 thread, 20 Hz) |",
        "|---|---|---|---|",
    ]
    for name, s in results["accuracy"]["summary"].items():
        lat = results["accuracy_latency"].get(name, float("nan"))
        lines.append(f"| {name} | {s['r2_mean']:.3f} | {s['r2_sd']:.3f} | {lat:.3f} |")
    speech_latency = results["latency"].get("1", {}).get("streaming", {}).get("speech")
    lines += ["", *bench_human.readme_lines(results["human_bci"], speech_latency)]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def _median_ms(latency: dict, model: str, threads: str = "1", rate: float = 20) -> float:
    for r in latency.get(threads, {}).get("rows", []):
        if r["model"] == model and r["rate_hz"] == rate:
            return r["median_us"] / 1e3
    return float("nan")


def write_plots(results: dict, out: str) -> list[str]:
    """``accuracy_latency.png`` and ``latency.png``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, s in results["accuracy"]["summary"].items():
        x = results["accuracy_latency"].get(name, float("nan"))
        ax.errorbar(x, s["r2_mean"], yerr=s["r2_sd"], fmt="o", capsize=3)
        ax.annotate(name, (x, s["r2_mean"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("median latency per 50 ms chunk, 1 thread (ms)")
    ax.set_ylabel("test R² (reach period)")
    ax.set_title("Accuracy vs latency (synthetic centre-out)")
    fig.tight_layout()
    paths.append(os.path.join(out, "accuracy_latency.png"))
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    rows = results["latency"]["1"]["rows"]
    labels = [f"{r['model']} {r['rate_hz']}Hz" for r in rows]
    fig, ax = plt.subplots(figsize=(7, max(3, 0.25 * len(rows))))
    y = np.arange(len(rows))
    ax.barh(y, [r["median_us"] / 1e3 for r in rows], xerr=None, label="1 thread")
    all_rows = {(r["model"], r["rate_hz"]): r for r in results["latency"].get("all", {}).get("rows", [])}
    ax.scatter(
        [all_rows.get((r["model"], r["rate_hz"]), {}).get("median_us", np.nan) / 1e3 for r in rows],
        y,
        color="k",
        marker="|",
        s=80,
        label="all threads",
        zorder=3,
    )
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("median ms per 50 ms chunk")
    ax.legend()
    fig.tight_layout()
    paths.append(os.path.join(out, "latency.png"))
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


def run(out: str, mode: str, log: Callable[[str], None] = print) -> dict:
    """The whole suite into ``out``; returns the results dict (also written to ``out/results.json``)."""
    os.makedirs(out, exist_ok=True)
    start = time.perf_counter()
    results = {
        "mode": mode,
        "command": " ".join([os.path.basename(sys.executable), "-m", "experiments.bench", *sys.argv[1:]]),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
    }
    log(f"machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, jax {results['machine']['jax']}")
    seconds = results["section_s"] = {}

    def timed(name: str, fn: Callable[[], object]) -> object:
        """Runs one section of the suite, logging its start and recording its wall time under ``section_s``."""
        log(f"== {name} (at {time.perf_counter() - start:.0f} s)")
        t = time.perf_counter()
        value = fn()
        seconds[name] = time.perf_counter() - t
        return value

    results["latency"] = timed(
        "streaming latency",
        lambda: {
            threads: bench_latency.run_subprocess(mode, threads, os.path.join(out, f"latency_{threads}.json"), log)
            for threads in MODES[mode].latency_threads
        },
    )
    results["poyo_ratio"] = _poyo_ratios(results["latency"])
    settings = MODES[mode]
    results["training"] = timed(
        "training throughput",
        lambda: training_throughput(settings.training_batch, settings.training_steps, log, settings.training_dtypes),
    )
    results["data"] = timed("data throughput", lambda: data_throughput(settings.data_seconds, log))
    results["accuracy"] = timed("accuracy", lambda: bench_accuracy.run(mode, log))
    results["human_bci"] = timed("human-BCI tasks", lambda: bench_human.run(mode, log))
    results["accuracy_latency"] = {
        name: _median_ms(results["latency"], row) for name, row in ACCURACY_TO_LATENCY.items()
    }
    kb = 1024.0
    results["peak_memory_mb"] = {
        "self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / kb,
        "children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / kb,
    }
    results["wall_s"] = time.perf_counter() - start
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    write_readme(results, os.path.join(out, "README.md"))
    results["plots"] = write_plots(results, out)
    log(f"wrote {out}/results.json, README.md, plots in {results['wall_s']:.0f} s")
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="possm-jax benchmark suite")
    parser.add_argument("--out", default="runs/bench")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="reduced suite (< 3 min on 2 cores)")
    group.add_argument("--smoke", action="store_true", help="tiny suite for tests")
    args = parser.parse_args(argv)
    run(args.out, "quick" if args.quick else "smoke" if args.smoke else "full")


if __name__ == "__main__":
    main()
