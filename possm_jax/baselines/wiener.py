"""Wiener filter: ridge regression from binned spike counts with history taps to behaviour. Numpy only.

``y_t = b + Σ_{j=0}^{taps-1} W_jᵀ x_{t-j}``: the prediction at bin ``t`` reads the counts of bins ``t, t-1, ...,
t-taps+1`` of the same segment (zeros before the segment start), so it is causal when bin ``t`` ends at the target
time. The weights are the closed-form ridge solution with an unpenalised intercept; the ridge strength is chosen on
validation data, reusing one eigendecomposition of the Gram matrix for every candidate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np


def lagged_design(counts: np.ndarray, taps: int) -> np.ndarray:
    """History features of one segment.

    Args:
        counts: [t, u] binned counts.
        taps: history length (>= 1).

    Returns:
        [t, taps·u] with columns ``[x_t, x_{t-1}, ..., x_{t-taps+1}]`` (zeros before the segment start).
    """
    if taps < 1:
        raise ValueError(f"taps={taps}: need at least 1 history tap")
    t, u = counts.shape
    out = np.zeros((t, taps * u))
    for j in range(taps):
        out[j:, j * u : (j + 1) * u] = counts[: t - j]
    return out


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Uniform mean over output dims of ``1 − SSE/SST`` over all samples (docs/training.md).

    Args:
        y_true, y_pred: [t, y].
    """
    sse = np.sum((y_true - y_pred) ** 2, axis=0)
    sst = np.sum((y_true - y_true.mean(axis=0)) ** 2, axis=0)
    return float(np.mean(1.0 - sse / sst))


def _weighted_moments(x: np.ndarray, y: np.ndarray, w: np.ndarray):
    """Weighted means and centred Gram / cross-moment matrices (x: [t, f], y: [t, y], w: [t])."""
    w = w / w.sum()
    mx, my = w @ x, w @ y
    xc = x - mx
    return mx, my, (xc * w[:, None]).T @ xc, (xc * w[:, None]).T @ (y - my)


@dataclasses.dataclass
class WienerFilter:
    """A fitted filter: ``predict(counts) = lagged_design(counts, taps) @ weights + bias``.

    Attributes:
        weights: [taps·u, y].
        bias: [y].
        taps: history taps.
        alpha: ridge strength used (relative to the mean Gram diagonal, so it is unit-free).
    """

    weights: np.ndarray
    bias: np.ndarray
    taps: int
    alpha: float

    def predict(self, counts: np.ndarray) -> np.ndarray:
        """[t, u] counts of one segment -> [t, y] predictions."""
        return lagged_design(counts, self.taps) @ self.weights + self.bias


def ridge_solutions(
    x: np.ndarray, y: np.ndarray, alphas: Sequence[float], sample_weight: np.ndarray | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Closed-form weighted ridge for several strengths.

    Minimises ``Σ_t w_t ‖y_t − b − Wᵀx_t‖² / Σ w + α·s·‖W‖²`` where ``s`` is the mean diagonal of the centred
    Gram matrix (makes ``α`` scale-free). Solution: ``W = (G + α s I)⁻¹ C`` with ``G = X̃ᵀ diag(w) X̃``, ``C =
    X̃ᵀ diag(w) Ỹ`` (centred, normalised weights) and ``b = ȳ − Wᵀx̄``; computed for every α from one
    eigendecomposition ``G = V diag(e) Vᵀ``.

    Args:
        x: [t, f] features.
        y: [t, y] targets.
        alphas: ridge strengths (>= 0; 0 needs a full-rank Gram matrix).
        sample_weight: [t] non-negative weights (default 1).

    Returns:
        [(W [f, y], b [y]) per alpha].
    """
    w = np.ones(len(x)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (len(x),) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("sample_weight must be [t], non-negative and not all zero")
    mx, my, gram, cross = _weighted_moments(x, y, w)
    evals, evecs = np.linalg.eigh(gram)
    proj = evecs.T @ cross
    scale = np.mean(np.diag(gram))
    out = []
    for alpha in alphas:
        weights = evecs @ (proj / (evals + alpha * scale)[:, None])
        out.append((weights, my - mx @ weights))
    return out


def fit_wiener(
    train: Sequence[tuple[np.ndarray, np.ndarray]],
    valid: Sequence[tuple[np.ndarray, np.ndarray]],
    taps: int,
    alphas: Sequence[float] = (1e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0),
    train_weight: Sequence[np.ndarray] | None = None,
    valid_mask: Sequence[np.ndarray] | None = None,
) -> tuple[WienerFilter, dict[float, float]]:
    """Fits on ``train`` segments and picks the ridge strength with the lowest mean squared error on ``valid``.

    Selection uses MSE rather than R² because a small validation set can have almost no variance in one output
    dimension, which makes its R² explode while saying nothing about the filter.

    Args:
        train: segments of (counts [t, u], target [t, y]).
        valid: segments of the same form.
        taps: history taps.
        alphas: candidate ridge strengths.
        train_weight: per train segment, [t] sample weights (e.g. the interval weights of docs/training.md).
        valid_mask: per valid segment, [t] bool of the samples to score (e.g. reach period).

    Returns:
        (filter with the best alpha, {alpha: validation R²}).
    """
    if not train or not valid:
        raise ValueError("fit_wiener needs at least one train and one valid segment")
    x = np.concatenate([lagged_design(c, taps) for c, _ in train])
    y = np.concatenate([t for _, t in train])
    w = None if train_weight is None else np.concatenate(train_weight)
    xv = np.concatenate([lagged_design(c, taps) for c, _ in valid])
    yv = np.concatenate([t for _, t in valid])
    mask = np.ones(len(xv), dtype=bool) if valid_mask is None else np.concatenate(valid_mask)
    scores, errors, filters = {}, {}, {}
    for alpha, (weights, bias) in zip(alphas, ridge_solutions(x, y, alphas, w), strict=True):
        pred = (xv @ weights + bias)[mask]
        scores[alpha] = r2_score(yv[mask], pred)
        errors[alpha] = float(np.mean((yv[mask] - pred) ** 2))
        filters[alpha] = WienerFilter(weights, bias, taps, alpha)
    return filters[min(errors, key=errors.get)], scores
