"""PCA-KNN character classifier for handwriting (numpy only), after the single-letter baseline of Willett et al. 2021.

Per trial, a go-aligned cube of 10 ms counts (201 bins, the go cue in bin 50) is smoothed in time with a Gaussian
(σ = 3 bins) and cropped to bins 21:181. Principal axes (15) are fitted on the per-character means of the training
trials (smoothed with σ = 5 bins, so the axes follow the character-specific dynamics rather than single-trial noise),
every trial is projected on them, and its 160 × 15 projection, flattened, is classified by its k nearest training
trials (Euclidean distance, majority vote). k is chosen on the validation trials.

Splits follow the recording's ``splits`` (the synthetic handwriting generator assigns them per character as the
single-letter datasets are split: the i-th trial of a character is valid if i % 9 == 2, test if i % 9 == 5).
"""

from __future__ import annotations

import numpy as np

from data_pipeline.binning import bin_spikes
from data_pipeline.recording import Intervals, Recording
from data_pipeline.synth.handwriting import CUBE_BINS, GO_BIN
from possm_jax.baselines.binned_rnn import trials_in

CROP = slice(21, 181)
K_CHOICES = (2, 4, 6, 8, 10, 12, 14)


def go_aligned_cubes(
    recording: Recording, trials: Intervals, bin_width: float = 0.01, go_bin: int = GO_BIN, num_bins: int = CUBE_BINS
) -> np.ndarray:
    """Counts around each trial's go cue: [n, num_bins, u] float32, bin ``go_bin`` starting at the go cue.

    Args:
        recording: the session (spikes of its channels).
        trials: trials with a ``go_cue_time`` column (s).
        bin_width: seconds per bin.
        go_bin: index of the bin that starts at the go cue.
        num_bins: bins per cube.

    Raises:
        ValueError: the trials have no ``go_cue_time`` column.
    """
    if "go_cue_time" not in trials.columns:
        raise ValueError(f"recording {recording.session_key}: trials need a 'go_cue_time' column for go-aligned cubes")
    u = len(recording.unit_ids)
    cubes = np.zeros((len(trials), num_bins, u), np.float32)
    for i, go in enumerate(trials.columns["go_cue_time"]):
        t0 = go - go_bin * bin_width
        times, units = recording.spikes_between(t0, t0 + num_bins * bin_width)
        cubes[i] = bin_spikes(times, units, u, t0, num_bins, bin_width)
    return cubes


def gaussian_smooth(cubes: np.ndarray, sigma: float) -> np.ndarray:
    """Convolves axis 1 of ``cubes`` [n, t, u] with a unit-sum Gaussian (±3σ, zeros beyond the edges), same length."""
    half = int(np.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(cubes, ((0, 0), (half, half), (0, 0)))
    out = np.zeros_like(cubes)
    for j, w in enumerate(kernel):  # a few dozen taps: a loop of vectorised adds beats an FFT at this size
        out += w * padded[:, j : j + cubes.shape[1]]
    return out


def fit_pca(x: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """Principal axes of ``x`` [m, u]: (mean [u], components [dims, u]) orthonormal rows, largest variance first."""
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    return mean, vt[:dims]


def knn_predict(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, k: int) -> np.ndarray:
    """Majority label of the ``k`` nearest training rows (Euclidean) for every test row.

    A tie between labels goes to the tied label whose nearest member among the k is closest.

    Args:
        train_x: [n, f] training features.
        train_y: [n] int labels.
        test_x: [m, f] features to classify.
        k: neighbours (1 <= k <= n).

    Returns:
        [m] predicted labels.
    """
    d2 = (test_x**2).sum(1)[:, None] - 2 * test_x @ train_x.T + (train_x**2).sum(1)[None]
    order = np.argsort(d2, axis=1, kind="stable")[:, :k]
    out = np.empty(len(test_x), train_y.dtype)
    for row, nearest in enumerate(order):
        labels = train_y[nearest]
        votes = {lab: int(np.sum(labels == lab)) for lab in labels}  # insertion order = order of first (nearest) hit
        best = max(votes.values())
        out[row] = next(lab for lab, n in votes.items() if n == best)
    return out


def pca_features(
    cubes: np.ndarray,
    labels: np.ndarray,
    train: np.ndarray,
    dims: int = 15,
    sigma: float = 3.0,
    mean_sigma: float = 5.0,
) -> np.ndarray:
    """Flattened projections [n, 160 · dims] of the cropped, smoothed cubes on axes fitted to the training
    trials' per-label means (module docstring). ``train`` [n] bool selects the trials that fit the axes."""
    smooth = gaussian_smooth(cubes, sigma)[:, CROP]
    slow = gaussian_smooth(cubes[train], mean_sigma)[:, CROP]
    means = np.stack([slow[labels[train] == lab].mean(0) for lab in np.unique(labels[train])])
    mean, axes = fit_pca(means.reshape(-1, cubes.shape[2]).astype(np.float64), dims)
    return ((smooth - mean) @ axes.T).reshape(len(cubes), -1)


def pca_knn_accuracy(recording: Recording, dims: int = 15, sigma: float = 3.0) -> dict:
    """Test accuracy of PCA-KNN on one handwriting session (k chosen on the valid split).

    Args:
        recording: a session with ``trials`` (columns ``label``, ``go_cue_time``) and train/valid/test splits.
        dims: principal axes kept.
        sigma: smoothing of single trials, in bins.

    Returns:
        ``{"k", "accuracy_valid", "accuracy_test", "trials": {split: count}}``.
    """
    parts = {s: trials_in(recording, s) for s in ("train", "valid", "test")}
    cubes = np.concatenate([go_aligned_cubes(recording, t) for t in parts.values()])
    labels = np.concatenate([t.columns["label"] for t in parts.values()])
    split = np.repeat(np.arange(3), [len(t) for t in parts.values()])
    x = pca_features(cubes, labels, split == 0, dims, sigma)
    train_x, train_y = x[split == 0], labels[split == 0]
    valid = {
        k: float(np.mean(knn_predict(train_x, train_y, x[split == 1], k) == labels[split == 1])) for k in K_CHOICES
    }
    k = max(K_CHOICES, key=lambda c: (valid[c], -c))  # best validation accuracy, smallest k on ties
    test = knn_predict(train_x, train_y, x[split == 2], k)
    return {
        "k": k,
        "accuracy_valid": valid[k],
        "accuracy_test": float(np.mean(test == labels[split == 2])),
        "trials": {s: len(t) for s, t in parts.items()},
    }
