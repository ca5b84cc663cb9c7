"""PNG figures for a run: predicted vs true velocity traces, R² per session, training curves.

Built on ``matplotlib.figure.Figure`` (rendered by the Agg canvas on save), not ``pyplot``: no global backend is set,
so importing this in Colab leaves inline plotting alone. Each function returns the figure and, given ``path``, saves it.
"""

import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

TRUE_COLOR, PRED_COLOR = "0.2", "tab:orange"


def _save(fig: Figure, path: str | os.PathLike | None) -> Figure:
    if path is not None:
        os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def plot_traces(
    trials: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    path: str | os.PathLike | None = None,
    dim_names: Sequence[str] = ("v_x", "v_y"),
    titles: Sequence[str] | None = None,
) -> Figure:
    """Predicted vs true traces, one column per trial and one row per output dimension.

    Args:
        trials: ``(time [n], pred [n, y], target [n, y])`` per trial (a few: each gets a column).
        path: PNG to write, or None.
        dim_names: row labels (y of them).
        titles: column titles (e.g. session and trial ids).
    """
    if not trials:
        raise ValueError("plot_traces: no trials to plot")
    ydim = np.asarray(trials[0][1]).shape[-1]
    fig = Figure(figsize=(3.2 * len(trials), 1.8 * ydim), layout="constrained")
    axes = fig.subplots(ydim, len(trials), squeeze=False, sharex="col")
    for col, (time, pred, target) in enumerate(trials):
        for row in range(ydim):
            ax = axes[row, col]
            ax.plot(time, np.asarray(target)[:, row], color=TRUE_COLOR, lw=1.2, label="true")
            ax.plot(time, np.asarray(pred)[:, row], color=PRED_COLOR, lw=1.2, label="predicted")
            if col == 0:
                ax.set_ylabel(dim_names[row] if row < len(dim_names) else f"dim {row}")
        axes[-1, col].set_xlabel("time (s)")
        if titles is not None:
            axes[0, col].set_title(titles[col], fontsize=9)
    axes[0, 0].legend(fontsize=8, frameon=False)
    return _save(fig, path)


def plot_r2_per_session(r2: Mapping[str, float], path: str | os.PathLike | None = None, title: str = "") -> Figure:
    """Bar per session with the mean ± sd (ddof=0) across sessions as a line and band."""
    if not r2:
        raise ValueError("plot_r2_per_session: no sessions")
    names, values = list(r2), np.asarray(list(r2.values()), np.float64)
    fig = Figure(figsize=(max(3.0, 0.5 * len(names) + 1.5), 3.0), layout="constrained")
    ax = fig.subplots()
    ax.bar(range(len(names)), values, color="tab:blue")
    mean, sd = float(np.nanmean(values)), float(np.nanstd(values))
    ax.axhline(mean, color="k", lw=1)
    ax.axhspan(mean - sd, mean + sd, color="k", alpha=0.1, lw=0)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("R²")
    ax.set_ylim(min(0.0, float(np.nanmin(values))), 1.0)
    ax.set_title(title or f"R² per session: {mean:.3f} ± {sd:.3f}", fontsize=9)
    return _save(fig, path)


def plot_training_curves(
    scalars: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: str | os.PathLike | None = None,
    keys: Sequence[str] | None = None,
    log_y: Sequence[str] = ("loss", "train/loss", "lr", "train/lr"),
) -> Figure:
    """One panel per scalar (``{name: (steps, values)}``, e.g. from :func:`~possm_jax.train.logging.read_scalars`)."""
    keys = [k for k in (keys or sorted(scalars)) if k in scalars]
    if not keys:
        raise ValueError(f"plot_training_curves: none of the requested scalars were logged; logged: {sorted(scalars)}")
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig = Figure(figsize=(3.4 * cols, 2.4 * rows), layout="constrained")
    axes = np.asarray(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, name in zip(axes, keys, strict=False):
        steps, values = scalars[name]
        ax.plot(steps, values, lw=1)
        if name in log_y and np.all(np.asarray(values) > 0):
            ax.set_yscale("log")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step")
    for ax in axes[len(keys) :]:
        ax.set_visible(False)
    return _save(fig, path)
