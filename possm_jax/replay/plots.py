"""Figures for the replay experiments (matplotlib, Agg backend, written to PNG).

Shapes: ``b`` runs, ``t`` steps, ``n`` points.
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _panels(count: int, size: float = 3.0):
    cols = min(count, 4)
    rows = -(-count // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.axis("off")
    return fig, axes.flat


def _save(fig, path: str) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def trajectories(runs: dict[str, np.ndarray], extent: float, path: str, num_runs: int = 3, num_steps: int = 300):
    """Decoded replay trajectories ``{condition: [b, t, 2]}`` drawn over the arena ``[-extent, extent]^2``."""
    fig, axes = _panels(len(runs))
    for ax, (name, decoded) in zip(axes, runs.items(), strict=False):
        for run in decoded[:num_runs, :num_steps]:
            ax.plot(run[:, 0], run[:, 1], lw=0.7, alpha=0.8)
            ax.plot(run[0, 0], run[0, 1], "k.", ms=4)
        ax.set(xlim=(-extent, extent), ylim=(-extent, extent), aspect="equal", title=name)
    _save(fig, path)


def occupancy(points: dict[str, np.ndarray], extent: float, path: str, bins: int = 30):
    """Occupancy heat maps of decoded positions ``{label: [n, 2]}``."""
    fig, axes = _panels(len(points))
    edges = np.linspace(-extent, extent, bins + 1)
    for ax, (name, xy) in zip(axes, points.items(), strict=False):
        hist, _, _ = np.histogram2d(xy[:, 0], xy[:, 1], bins=(edges, edges), density=True)
        ax.imshow(hist.T, origin="lower", extent=(-extent, extent, -extent, extent), cmap="magma")
        ax.set_title(name, fontsize=9)
    _save(fig, path)


def angle_histograms(angles: dict[str, np.ndarray], path: str, bins: int = 36):
    """Histograms of decoded head directions ``{label: [n]}``."""
    fig, axes = _panels(len(angles))
    for ax, (name, theta) in zip(axes, angles.items(), strict=False):
        ax.hist(theta, bins=bins, range=(-np.pi, np.pi), density=True)
        ax.set_title(name, fontsize=9)
    _save(fig, path)


def matrix(values: np.ndarray, rows: list[str], cols: list[str], path: str, title: str):
    """Annotated heat map, e.g. KL(quiescent_row || active_col)."""
    fig, ax = plt.subplots(figsize=(1.2 * len(cols) + 2.5, 0.8 * len(rows) + 1.5))
    im = ax.imshow(values, cmap="viridis")
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="w", fontsize=8)
    ax.set_title(title)
    fig.colorbar(im, ax=ax)
    _save(fig, path)


def bars(metrics: dict[str, dict[str, float]], keys: list[str], path: str):
    """One bar chart per metric ``key`` across conditions ``{condition: {key: value}}``."""
    fig, axes = _panels(len(keys))
    names = list(metrics)
    for ax, key in zip(axes, keys, strict=False):
        ax.bar(range(len(names)), [metrics[n][key] for n in names], color="tab:blue")
        ax.set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize=8)
        ax.set_title(key, fontsize=9)
    _save(fig, path)


def losses(histories: dict[str, dict], path: str):
    """Training-loss curves ``{condition: {"step": [...], "loss": [...]}}`` on a log scale."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, hist in histories.items():
        ax.semilogy(hist["step"], hist["loss"], label=name)
    ax.set(xlabel="step", ylabel="MSE")
    ax.legend(fontsize=7)
    _save(fig, path)
