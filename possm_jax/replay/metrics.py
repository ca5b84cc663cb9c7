"""Replay metrics over decoded states and hidden activity (numpy; evaluation is not a hot loop).

* :func:`kde_kl` -- KL(P || Q) between Gaussian KDEs (Scott bandwidth, full covariance), Monte Carlo with samples
  drawn from the KDE of P (2500 samples, as in Krishna et al.). Circular states use a wrapped kernel (``period``).
* :func:`pca_overlap` -- fraction of quiescent hidden variance inside the top principal subspace of active activity.
* :func:`exploration` -- steady-state variance of the decoded state along each run, and arena coverage.
* :func:`step_distance` -- mean decoded distance per step (divide by ``dt`` for replay speed in m/s).
* :func:`first_hit_time` -- steps until a run first comes within ``radius`` of each target (arm ends, vertices).
* :func:`wasserstein_exact` / :func:`sliced_wasserstein` -- W1 between two 2-D point clouds. The exact version
  solves the assignment problem on equal-size subsamples (W1 between the two empirical measures); the sliced version
  averages 1-D W1 over random directions (for a pure shift ``m`` in 2-D it equals ``2 |m| / pi``).

Shapes: ``n``/``m`` samples, ``d`` state dimensions, ``b`` runs, ``t`` steps, ``h`` hidden units.
"""

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.special import logsumexp


def _bandwidth(samples: np.ndarray) -> np.ndarray:
    """Kernel covariance ``[d, d]``: the sample covariance times Scott's factor ``n^(-2 / (d + 4))``."""
    n, d = samples.shape
    cov = np.atleast_2d(np.cov(samples, rowvar=False))
    return cov * n ** (-2.0 / (d + 4))


def kde_logpdf(points: np.ndarray, samples: np.ndarray, period: float | None = None) -> np.ndarray:
    """Log density of the Gaussian KDE of ``samples`` ``[n, d]`` at ``points`` ``[m, d]``; returns ``[m]``.

    With ``period`` the kernel is wrapped (sum over the images at -period, 0, +period), for angles.
    """
    cov = _bandwidth(samples)
    prec = np.linalg.inv(cov)
    _, logdet = np.linalg.slogdet(cov)
    n, d = samples.shape
    shifts = [0.0] if period is None else [-period, 0.0, period]
    terms = []
    for shift in shifts:
        diff = points[:, None, :] - samples[None, :, :] + shift
        terms.append(-0.5 * np.einsum("mnd,de,mne->mn", diff, prec, diff))
    log_kernel = np.concatenate(terms, axis=1)
    return logsumexp(log_kernel, axis=1) - np.log(n) - 0.5 * (logdet + d * np.log(2 * np.pi))


def kde_sample(rng: np.random.Generator, samples: np.ndarray, num: int, period: float | None = None) -> np.ndarray:
    """Draws ``num`` points ``[num, d]`` from the Gaussian KDE of ``samples`` ``[n, d]``."""
    cov = _bandwidth(samples)
    base = samples[rng.integers(0, samples.shape[0], num)]
    draws = base + rng.multivariate_normal(np.zeros(samples.shape[1]), cov, num)
    if period is not None:
        draws = (draws + period / 2) % period - period / 2
    return draws


def _subsample(samples: np.ndarray, max_points: int, seed: int) -> np.ndarray:
    """At most ``max_points`` rows of ``samples``, chosen by ``seed`` alone (equal inputs give equal outputs)."""
    if len(samples) <= max_points:
        return samples
    return samples[np.random.default_rng(seed).choice(len(samples), max_points, replace=False)]


def kde_kl(
    p: np.ndarray,
    q: np.ndarray,
    *,
    num_mc: int = 2500,
    max_points: int = 2000,
    seed: int = 0,
    period: float | None = None,
) -> float:
    """Monte Carlo ``KL(P || Q) = E_{x ~ P}[log p(x) - log q(x)]`` between the KDEs of ``p`` [n, d] and ``q`` [m, d].

    Each sample set is first subsampled to ``max_points`` (bounds the ``num_mc x n`` kernel matrix).

    Returns:
        The KL divergence in nats (identical sample sets give exactly 0).
    """
    p, q = (_subsample(np.asarray(s, np.float64), max_points, seed) for s in (p, q))
    x = kde_sample(np.random.default_rng(seed), p, num_mc, period)
    return float(np.mean(kde_logpdf(x, p, period) - kde_logpdf(x, q, period)))


def pca_overlap(active: np.ndarray, quiescent: np.ndarray, num_components: int = 10) -> float:
    """Fraction of quiescent variance captured by the top principal components of active activity.

    Args:
        active: Hidden states ``[n, h]`` during the task.
        quiescent: Hidden states ``[m, h]`` during quiescence.
        num_components: Size of the active subspace.

    Returns:
        ``tr(P C_q) / tr(C_q)`` in ``[0, 1]`` with ``P`` the projector on the active subspace (centred on the
        active mean, so an offset of quiescent activity lowers the overlap).
    """
    mean = active.mean(0)
    _, _, vt = np.linalg.svd(active - mean, full_matrices=False)
    basis = vt[:num_components]
    centred = quiescent - mean
    return float(np.sum((centred @ basis.T) ** 2) / np.sum(centred**2))


def exploration(decoded: np.ndarray, extent: float, burn_in: int = 0, bins: int = 20) -> dict[str, float]:
    """Exploration of quiescent runs ``[b, t, d]``.

    Returns:
        ``variance``: mean over runs of the total variance of the decoded state after ``burn_in`` (steady state);
        ``coverage``: mean over runs of the fraction of a ``bins``-per-axis grid over ``[-extent, extent]^d`` visited.
    """
    steady = decoded[:, burn_in:]
    variance = float(np.mean(np.sum(np.var(steady, axis=1), axis=-1)))
    cells = np.clip(((steady + extent) / (2 * extent) * bins).astype(int), 0, bins - 1)
    flat = np.ravel_multi_index(np.moveaxis(cells, -1, 0), (bins,) * decoded.shape[-1])
    coverage = float(np.mean([np.unique(run).size for run in flat]) / bins ** decoded.shape[-1])
    return {"variance": variance, "coverage": coverage}


def step_distance(decoded: np.ndarray, period: float | None = None) -> float:
    """Mean distance between consecutive decoded states of runs ``[b, t, d]`` (wrapped for circular states)."""
    diff = np.diff(decoded, axis=1)
    if period is not None:
        diff = (diff + period / 2) % period - period / 2
    return float(np.mean(np.linalg.norm(diff, axis=-1)))


def first_hit_time(decoded: np.ndarray, targets: np.ndarray, radius: float) -> float:
    """Mean over runs ``[b, t, 2]`` and targets ``[k, 2]`` of the first step within ``radius`` (``t`` if never)."""
    dist = np.linalg.norm(decoded[:, :, None, :] - targets, axis=-1)
    hit = dist < radius
    times = np.where(hit.any(axis=1), hit.argmax(axis=1), decoded.shape[1])
    return float(times.mean())


def wasserstein_exact(x: np.ndarray, y: np.ndarray, *, max_points: int = 1000, seed: int = 0) -> float:
    """W1 between point clouds ``[n, d]`` and ``[m, d]`` by optimal assignment of equal-size random subsamples."""
    rng = np.random.default_rng(seed)
    size = min(len(x), len(y), max_points)
    xs = x[rng.choice(len(x), size, replace=False)]
    ys = y[rng.choice(len(y), size, replace=False)]
    cost = np.linalg.norm(xs[:, None] - ys[None], axis=-1)
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())


def sliced_wasserstein(x: np.ndarray, y: np.ndarray, *, num_projections: int = 256, seed: int = 0) -> float:
    """Sliced W1: mean over random unit directions of the 1-D W1 between the projected clouds (quantile matching)."""
    rng = np.random.default_rng(seed)
    dirs = rng.normal(size=(num_projections, x.shape[1]))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    levels = (np.arange(512) + 0.5) / 512
    px = np.quantile(x @ dirs.T, levels, axis=0)
    py = np.quantile(y @ dirs.T, levels, axis=0)
    return float(np.mean(np.abs(px - py)))
