"""PNG figures of the human-BCI tasks: a character confusion matrix and decoded-vs-true phoneme strings.

Built on ``matplotlib.figure.Figure`` (no pyplot, no global backend), like :mod:`possm_jax.train.plots`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from possm_jax.train.plots import _save


def plot_confusion(
    matrix: np.ndarray, class_names: Sequence[str], path: str | os.PathLike | None = None, title: str = ""
) -> Figure:
    """Row-normalised confusion matrix (rows: true class, columns: predicted).

    Args:
        matrix: [c, c] counts.
        class_names: tick labels; class indices are used when there are not exactly c names.
        path: PNG to write, or None.
        title: figure title.
    """
    matrix = np.asarray(matrix, np.float64)
    c = matrix.shape[0]
    names = list(class_names) if len(class_names) == c else [str(i) for i in range(c)]
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig = Figure(figsize=(0.25 * c + 2, 0.25 * c + 1.5))
    ax = fig.add_subplot()
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(c), names, fontsize=7)
    ax.set_yticks(range(c), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of the true class")
    return _save(fig, path)


def plot_phoneme_examples(examples: Sequence[Mapping[str, object]], path: str | os.PathLike | None = None) -> Figure:
    """Decoded and true phoneme strings of a few sentences, one text panel each.

    Args:
        examples: dicts with ``session``, ``true``, ``decoded`` (strings) and ``per`` (float).
        path: PNG to write, or None.
    """
    if not examples:
        raise ValueError("plot_phoneme_examples: no examples to plot")
    fig = Figure(figsize=(10, 1.1 * len(examples) + 0.4))
    for i, ex in enumerate(examples):
        ax = fig.add_subplot(len(examples), 1, i + 1)
        ax.axis("off")
        ax.text(0, 0.75, f"{ex['session']}  PER {float(ex['per']):.2f}", fontsize=8, weight="bold")
        ax.text(0, 0.4, f"true:    {ex['true']}", fontsize=8, family="monospace")
        ax.text(0, 0.05, f"decoded: {ex['decoded']}", fontsize=8, family="monospace", color="tab:orange")
    return _save(fig, path)
