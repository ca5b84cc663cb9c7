"""Human-BCI section of the benchmark suite: handwriting accuracy and speech phoneme error rate per model.

Every model is scored on the same test trials of the synthetic corpus (``docs/human_bci.md``):

* POSSM: trained by the task launchers' code path (:func:`possm_jax.train.loop.train_and_evaluate` with the
  ``experiments/configs/handwriting.py`` / ``speech.py`` config, on all sessions at once), the best-by-validation
  checkpoint scored on the test split;
* binned GRU, S4D and Mamba, each trained per session on that session's train trials, and PCA-KNN (handwriting),
  as ``experiments.calibrate`` runs them.

:data:`BUDGETS` holds each mode's training steps; the table reports the mean over sessions. The speech decoder's
streaming latency (256 channels, 20 ms chunks, 1 thread) is measured in the latency child process
(:func:`experiments.bench_streamer.speech_row`) and shown in this section's table.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

TASKS = ("handwriting", "speech")
METRIC = {"handwriting": "accuracy", "speech": "per"}


class HumanBudget(NamedTuple):
    """Training budget of one bench mode."""

    possm_steps: dict[str, int]  # task -> POSSM training steps (0: no POSSM row)
    binned_steps: dict[str, int]  # task -> steps of each binned model
    binned: tuple[str, ...]  # binned model kinds
    trials: dict[str, int]  # task -> trials per synthetic session (0: the generator's default)
    sessions: int  # synthetic sessions per task (0: the generator's default)


BUDGETS = {
    "full": HumanBudget(
        {"handwriting": 2000, "speech": 2000},
        {"handwriting": 1500, "speech": 1000},
        ("gru", "s4d", "mamba"),
        {"handwriting": 0, "speech": 0},
        0,
    ),
    "quick": HumanBudget(
        {"handwriting": 10, "speech": 10},
        {"handwriting": 50, "speech": 50},
        ("gru",),
        {"handwriting": 186, "speech": 40},
        1,
    ),
    "smoke": HumanBudget(
        {"handwriting": 2, "speech": 0},  # the speech launcher path has its own test (tests/test_task_launch.py)
        {"handwriting": 2, "speech": 2},
        ("gru",),
        {"handwriting": 186, "speech": 12},
        1,
    ),
}
"""``full`` (``make bench``): the launchers' default steps and the calibration's binned budget; ``quick`` and
``smoke``: a sanity check of every path on one small session (their scores are not meaningful)."""


def possm_scores(task: str, steps: int, data_dir: str, workdir: str) -> dict[str, Any]:
    """Trains POSSM on the sessions in ``data_dir`` with the ``task`` launcher's config; test scores per session."""
    import importlib

    from possm_jax.train.loop import train_and_evaluate

    config = importlib.import_module(f"experiments.configs.{task}").get_config("possm_small")
    config.data.dir = data_dir
    config.train.num_steps = steps
    config.eval.every = config.checkpoint.every = max(steps // 4, min(steps, 50))  # 4 evaluations, 1 if tiny
    if task == "speech":
        config.task.reconstruct_steps = steps // 4
    results = train_and_evaluate(config, workdir)
    scores = results["test"][METRIC[task]]
    return {"per_session": scores, "mean": float(np.mean(list(scores.values()))), "train_s": results["wall_seconds"]}


def baseline_scores(task: str, budget: HumanBudget, generated: list, seed: int = 0) -> dict[str, Any]:
    """PCA-KNN (handwriting) and the binned models per session of ``generated``, as ``experiments.calibrate``
    trains them."""
    from experiments.calibrate import calibrate_bci

    binned = {kind: budget.binned_steps[task] for kind in budget.binned}
    rows = calibrate_bci(task, seed, binned, generated=generated)
    prefix = "accuracy_test" if task == "handwriting" else "per_test"
    names = {"pca_knn": "accuracy_test"} if task == "handwriting" else {}
    names |= {f"binned_{kind}": f"{prefix}_{kind}" for kind in budget.binned}
    return {
        name: {
            "per_session": {r["session"]: r[key] for r in rows},
            "mean": float(np.mean([r[key] for r in rows])),
        }
        for name, key in names.items()
    }


def run(mode: str, log: Callable[[str], None] = print, workdir: str | None = None, seed: int = 0) -> dict[str, Any]:
    """Every model's test score on both tasks at ``mode``'s budget: ``{task: {model: {"per_session", "mean"}}}``.

    Each task's synthetic sessions are generated once; POSSM reads them from a directory they are written to."""
    from data_pipeline.synth.writer import write_sessions
    from experiments.calibrate import bci_sessions

    budget = BUDGETS[mode]
    out: dict[str, Any] = {"budget": budget._asdict()}
    with tempfile.TemporaryDirectory() as tmp:
        for task in TASKS:
            generated = bci_sessions(task, seed, budget.trials[task], budget.sessions)
            scores = baseline_scores(task, budget, generated, seed)
            if budget.possm_steps[task]:
                data = os.path.join(tmp, f"data_{task}")
                write_sessions(iter(generated), data, {"preset": task, "seed": seed}, len(generated))
                path = os.path.join(workdir or tmp, f"possm_{task}")
                scores["possm_small"] = possm_scores(task, budget.possm_steps[task], data, path)
            for name, s in scores.items():
                log(f"  {task:<12} {name:<14} {METRIC[task]} {s['mean']:.3f}")
            out[task] = scores
    return out


def readme_lines(human: dict[str, Any], speech_latency: dict[str, Any] | None) -> list[str]:
    """The markdown table of the section (and the speech step's latency when measured)."""
    lines = [
        "## Human-BCI tasks on synthetic data (test trials, mean over sessions)",
        "",
        f"Budget: {human['budget']}.",
        "",
        "| model | handwriting accuracy | speech PER |",
        "|---|---|---|",
    ]
    models = list(dict.fromkeys([*human["handwriting"], *human["speech"]]))
    for name in models:
        cells = [f"{human[t][name]['mean']:.3f}" if name in human[t] else "—" for t in TASKS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if speech_latency:
        lines += [
            "",
            f"Speech decoder streaming step ({speech_latency['channels']} channels, "
            f"{speech_latency['chunk_ms']:.0f} ms chunks, 1 thread): median {speech_latency['median_us']:.0f} µs, "
            f"p99 {speech_latency['p99_us']:.0f} µs.",
        ]
    return lines
