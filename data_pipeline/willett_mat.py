"""Shared pieces of the human-BCI readers (Willett et al. handwriting and speech files): MATLAB v5 fields read with
errors that name the file and the field, and the binned session layout the synthetic handwriting/speech tasks use.

Layout of a binned session (see ``docs/data_human.md``): trials are laid end to end from time 0, bin ``k`` of the
session covering ``[k·w, (k+1)·w)``. Each feature column is a unit. Threshold-crossing counts are stored as spikes at
bin centres (as :mod:`data_pipeline.synth.binned` stores its counts), and the normalised features, the values a
binned model reads, as the regular series ``behaviour["binned"].values["normalised"]`` [t, c] at the bin centres.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.io
from scipy.io.matlab import MatReadError

from data_pipeline.binning import counts_to_spikes
from data_pipeline.errors import DataError
from data_pipeline.recording import Intervals, Recording, TimeSeries

MAT_FIX = "pass the file as published (MATLAB v5, readable by scipy.io.loadmat; re-save v7.3 files with -v7)"
SERIES = "binned"  # behaviour name of the normalised features
VALUES = "normalised"


def mat_names(path: Path) -> set[str]:
    """The variable names stored in a MATLAB v5 file (headers only; nothing is loaded)."""
    if not path.is_file():
        raise DataError(path, "<file>", "does not exist", "check the path")
    try:
        return {name for name, _, _ in scipy.io.whosmat(path)}
    except (OSError, ValueError, TypeError, NotImplementedError, MatReadError) as e:
        raise DataError(path, "<file>", f"is not a readable MATLAB v5 file ({type(e).__name__}: {e})", MAT_FIX) from e


def load_mat(path: Path, names: Sequence[str], available: set[str]) -> dict[str, np.ndarray]:
    """Load variables ``names`` of ``path``; a name not in ``available`` raises a DataError naming it."""
    for name in names:
        if name not in available:
            raise DataError(path, name, "is missing", f"{MAT_FIX}; the reader needs the field '{name}'")
    try:
        return scipy.io.loadmat(path, variable_names=list(names))
    except (OSError, ValueError, TypeError, NotImplementedError, MatReadError) as e:
        raise DataError(path, "<file>", f"cannot be read ({type(e).__name__}: {e})", MAT_FIX) from e


def text_list(path: Path, field: str, value: np.ndarray) -> list[str]:
    """A char matrix (rows of ``'<U'`` strings) or a cell of strings as a list of stripped strings."""
    value = np.asarray(value)
    if value.dtype.kind == "U":
        return [str(v).strip() for v in value.ravel()]
    if value.dtype.kind == "O":
        out = []
        for item in value.ravel():
            item = np.asarray(item)
            if item.dtype.kind != "U" or item.size > 1:
                raise DataError(path, field, f"holds a {item.dtype} cell of shape {item.shape}", MAT_FIX)
            out.append(str(item.item()).strip() if item.size else "")
        return out
    raise DataError(
        path, field, f"has dtype {value.dtype}, expected text (a char matrix or a cell of strings)", MAT_FIX
    )


def int_vector(path: Path, field: str, value: np.ndarray) -> np.ndarray:
    """An [n] or [n, 1] / [1, n] array of whole numbers as an i8 vector."""
    value = np.asarray(value)
    if value.ndim > 2 or (value.ndim == 2 and min(value.shape) > 1) or value.dtype.kind not in "fiub":
        raise DataError(
            path, field, f"has dtype {value.dtype}, shape {value.shape}, expected a numeric vector", MAT_FIX
        )
    value = value.ravel()
    if not np.all(np.isfinite(value)) or np.any(value != np.round(value)):
        raise DataError(path, field, "holds values that are not whole numbers", MAT_FIX)
    return value.astype(np.int64)


def float_matrix(path: Path, field: str, value: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A finite numeric matrix of exactly ``shape``, as f8."""
    value = np.asarray(value)
    if value.shape != shape or value.dtype.kind not in "fiu":
        raise DataError(path, field, f"has dtype {value.dtype}, shape {value.shape}, expected numbers {shape}", MAT_FIX)
    if not np.all(np.isfinite(value)):
        raise DataError(path, field, "holds NaN/inf values", MAT_FIX)
    return value.astype(np.float64)


def check_counts(path: Path, field: str, counts: np.ndarray) -> np.ndarray:
    """Require non-negative whole-number counts (any numeric dtype); returns them as i8."""
    if counts.dtype.kind not in "fiu":
        raise DataError(path, field, f"has dtype {counts.dtype}, expected threshold-crossing counts", MAT_FIX)
    bad = ~np.isfinite(counts) | (counts < 0) | (counts != np.round(counts))
    if np.any(bad):
        raise DataError(path, field, f"holds {int(bad.sum())} values that are not counts (whole numbers >= 0)", MAT_FIX)
    return counts.astype(np.int64)


def check_channels(path: Path, field: str, value: np.ndarray, ndim: int, channels: int) -> None:
    """Require a numeric array of ``ndim`` dimensions whose last axis has ``channels`` entries."""
    if value.ndim != ndim or value.dtype.kind not in "fiu" or value.shape[-1] != channels:
        raise DataError(
            path,
            field,
            f"has dtype {value.dtype}, shape {value.shape}, expected {ndim}-D numbers with {channels} channels last",
            f"{MAT_FIX}; every array of a session must have the same {channels} channels",
        )


def trial_bounds(lengths: Sequence[int], bin_width: float) -> tuple[np.ndarray, np.ndarray]:
    """(start [n], end [n]) seconds of trials of ``lengths`` bins laid end to end from time 0."""
    edges = np.concatenate([[0], np.cumsum(lengths)]).astype(np.float64) * bin_width
    return edges[:-1], edges[1:]


def trial_splits(trials: Intervals, which: np.ndarray) -> dict[str, Intervals]:
    """Train/valid/test domains: the union of each split's trials (``which`` [n]: 0, 1, 2); a split may be empty."""
    splits = {}
    for code, name in enumerate(("train", "valid", "test")):
        start, end = trials.start[which == code], trials.end[which == code]
        first = np.flatnonzero(np.r_[True, start[1:] > end[:-1]][: len(start)])  # trials not touching the previous
        last = np.r_[first[1:] - 1, len(start) - 1][: len(first)]
        splits[name] = Intervals(start[first], end[last])
    return splits


def block_intervals(trials: Intervals, block: np.ndarray, mean: np.ndarray, std: np.ndarray) -> Intervals:
    """One interval per block, from its first trial's start to its last trial's end, with its normalisation.

    Args:
        trials: the session's trials.
        block: [n] block id of each trial.
        mean, std: [b, c] per block (in ``np.unique(block)`` order) the values subtracted and divided by.
    """
    ids = np.unique(block)
    start = np.array([trials.start[block == b].min() for b in ids])
    end = np.array([trials.end[block == b].max() for b in ids])
    columns = {"block": ids, "mean": mean.astype(np.float32), "std": std.astype(np.float32)}
    return Intervals(start, end, columns)


def binned_recording(
    ids: tuple[str, str, str],
    unit_ids: Sequence[str],
    counts: Sequence[np.ndarray],
    features: Sequence[np.ndarray],
    bin_width: float,
    trials: Intervals,
    which: np.ndarray,
    intervals: dict[str, Intervals],
) -> Recording:
    """A session of binned trials laid end to end (module docstring).

    Args:
        ids: (brainset_id, session_id, subject_id).
        unit_ids: [c] one name per feature column.
        counts: per trial [t_i, c] i8 counts stored as spikes (zero columns for features that are not counts).
        features: per trial [t_i, c] normalised values.
        bin_width: seconds.
        trials: the trials, laid out by :func:`trial_bounds` on the same lengths.
        which: [n] split of each trial: 0 train, 1 valid, 2 test.
        intervals: extra interval sets (``blocks``, ``phonemes``); ``trials`` is added.
    """
    times, units = counts_to_spikes(np.concatenate(counts), 0.0, bin_width)
    values = np.concatenate(features).astype(np.float32)
    centres = (np.arange(len(values)) + 0.5) * bin_width
    return Recording(
        brainset_id=ids[0],
        session_id=ids[1],
        subject_id=ids[2],
        unit_ids=np.asarray(unit_ids),
        spike_times=times,
        spike_units=units,
        domain=Intervals(np.array([0.0]), np.array([len(values) * bin_width])),
        splits=trial_splits(trials, which),
        behaviour={SERIES: TimeSeries(centres, {VALUES: values}, sampling_rate=1.0 / bin_width)},
        intervals={"trials": trials, **intervals},
    )


def session_id_of(path: str | os.PathLike, generic: str) -> str:
    """The session id a file implies: its stem, or its folder's name when the stem is the ``generic`` file name."""
    path = Path(path)
    return path.parent.name if path.stem == generic and path.parent.name else path.stem
