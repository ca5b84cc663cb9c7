"""The transfer study's outputs: ``study.json``, ``study.md`` and ``data_efficiency.png`` from its cells' rows."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from possm_jax.train.logging import write_metrics_json


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean, sd, min and max of the test score (R² or accuracy) over seeds per (case, method, fraction), with the
    trainable count and the wall time."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["case"], row["method"], row["fraction"]), []).append(row)
    out = []
    for (case, method, fraction), group in groups.items():
        score = np.array([g["test_score"] for g in group], np.float64)
        out.append(
            {
                "case": case,
                "method": method,
                "fraction": fraction,
                "seeds": len(group),
                "test_score_mean": float(np.mean(score)),
                "test_score_sd": float(np.std(score)),
                "test_score_min": float(np.min(score)),
                "test_score_max": float(np.max(score)),
                "trainable": int(group[0]["trainable"]),
                "wall_seconds": float(np.mean([g["wall_seconds"] for g in group])),
            }
        )
    return out


def markdown(summary: Sequence[dict[str, Any]]) -> str:
    """One table per case: a row per method, the test score (mean ± sd over seeds) per fraction, trainable, wall s."""
    lines = []
    for case in dict.fromkeys(s["case"] for s in summary):
        part = [s for s in summary if s["case"] == case]
        fractions = sorted({s["fraction"] for s in part})
        lines += [f"### {case}", ""]
        lines.append("| method | " + " | ".join(f"{f:.0%} data" for f in fractions) + " | trainable | wall s / run |")
        lines.append("|---" * (len(fractions) + 3) + "|")
        for method in dict.fromkeys(s["method"] for s in part):
            cells = {s["fraction"]: s for s in part if s["method"] == method}
            scores = [
                f"{cells[f]['test_score_mean']:.3f} ± {cells[f]['test_score_sd']:.3f}" if f in cells else "–"
                for f in fractions
            ]
            any_cell = next(iter(cells.values()))
            wall = np.mean([c["wall_seconds"] for c in cells.values()])
            lines.append(f"| {method} | " + " | ".join(scores) + f" | {any_cell['trainable']:,} | {wall:.0f} |")
        lines.append("")
    return "\n".join(lines)


def plot(summary: Sequence[dict[str, Any]], path: str, metric: str = "test R²") -> Figure:
    """The test score against the fraction of training data, one line per method, min–max band over seeds, per
    case; ``metric`` labels the y axis."""
    cases = list(dict.fromkeys(s["case"] for s in summary))
    fig = Figure(figsize=(5 * len(cases), 4))
    for i, case in enumerate(cases):
        ax = fig.add_subplot(1, len(cases), i + 1)
        part = [s for s in summary if s["case"] == case]
        for method in dict.fromkeys(s["method"] for s in part):
            pts = sorted((s for s in part if s["method"] == method), key=lambda s: s["fraction"])
            x = [100 * s["fraction"] for s in pts]
            ax.plot(x, [s["test_score_mean"] for s in pts], marker="o", label=method)
            ax.fill_between(x, [s["test_score_min"] for s in pts], [s["test_score_max"] for s in pts], alpha=0.2)
        ax.set_xscale("log")
        ax.set_xlabel("training data of the new session (%)")
        ax.set_ylabel(metric)
        ax.set_title(case)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def write_report(rows: Sequence[dict[str, Any]], workdir: str, base: str, metric: str = "test R²") -> dict[str, Any]:
    """Writes ``study.json``, ``study.md`` and ``data_efficiency.png`` into ``workdir``; returns the JSON's content
    plus ``markdown``. ``metric`` names the cells' ``test_score`` (test R², or test accuracy for a task study)."""
    summary = summarise(rows)
    table = markdown(summary)
    report = {"pretrained": base, "metric": metric, "cells": list(rows), "summary": summary}
    write_metrics_json(os.path.join(workdir, "study.json"), report)
    with open(os.path.join(workdir, "study.md"), "w", encoding="utf-8") as f:
        f.write(f"# Transfer study\n\nPretrained checkpoint: `{base}`. Score: {metric}.\n\n{table}")
    plot(summary, os.path.join(workdir, "data_efficiency.png"), metric)
    return {**report, "markdown": table}
