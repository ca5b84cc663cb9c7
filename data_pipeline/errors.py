"""Data errors and the cheap vectorised checks that raise them.

Every problem with a user's file is reported as one :class:`DataError` that names the file, the field inside it and
what to do about it; a problem in a field the run can do without is a :class:`DataWarning` in the same words, and
the field is skipped (docs/data.md lists which is which). The checks here are O(n) numpy passes run once, when a
file is opened or a recording is written; slicing never re-checks.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

import h5py
import numpy as np

REWRITE = "re-create the file from its source data (e.g. data_pipeline.store_writer.write_recording)"


class DataError(ValueError):
    """A data file (or an in-memory recording headed for one) is unusable.

    Attributes:
        path: the file concerned.
        field: the field inside it, e.g. ``spikes/timestamps`` (``<file>`` for the file as a whole).
        problem: what is wrong.
        fix: how to fix it.
    """

    def __init__(self, path: str | os.PathLike, field: str, problem: str, fix: str):
        self.path = os.fspath(path)
        self.field = field
        self.problem = problem
        self.fix = fix
        super().__init__(f"{self.path}: field '{field}': {problem}. Fix: {fix}.")

    def __reduce__(self):
        # pickled with recordings sent to data-loader workers; the default would call __init__(message) alone
        return type(self), (self.path, self.field, self.problem, self.fix)


@contextlib.contextmanager
def reading(path: str | os.PathLike, field: str) -> Iterator[None]:
    """Report low-level h5py/numpy failures while reading ``field`` as a DataError naming it."""
    try:
        yield
    except DataError:
        raise
    except (OSError, KeyError, RuntimeError, TypeError, ValueError) as e:
        raise DataError(path, field, f"cannot be read ({type(e).__name__}: {e})", REWRITE) from e


def open_hdf5(path: str | os.PathLike, fix: str) -> h5py.File:
    """Open ``path`` read-only (mode ``"r"``: the file is never modified), or raise a DataError saying why not."""
    try:
        return h5py.File(path, "r")
    except (OSError, ValueError) as e:
        raise DataError(path, "<file>", f"is not a readable HDF5 file ({e})", fix) from e


def check_float_vector(path: str | os.PathLike, field: str, values: np.ndarray, *, fix: str) -> None:
    """Require a 1-D floating-point array of finite numbers.

    Args:
        path: the file being read or written (for the message).
        field: the field holding ``values``.
        values: [n] the array.
        fix: how to repair the file, appended to the message.
    """
    if values.dtype.kind != "f":
        raise DataError(path, field, f"has dtype {values.dtype}, expected floating point seconds", fix)
    if values.ndim != 1:
        raise DataError(path, field, f"has shape {values.shape}, expected a 1-D array", fix)
    bad = ~np.isfinite(values)
    if bad.any():
        first = int(np.argmax(bad))
        raise DataError(path, field, f"holds {int(bad.sum())} NaN/inf values (first at index {first})", fix)


def check_sorted(path: str | os.PathLike, field: str, times: np.ndarray, *, fix: str, offset: int = 0) -> None:
    """Require non-decreasing times ``[n]``; ``offset`` is added to reported indices (for blockwise checks)."""
    drops = np.flatnonzero(np.diff(times) < 0)
    if drops.size:
        i = int(drops[0]) + offset
        raise DataError(
            path,
            field,
            f"is not sorted: {len(drops)} decreasing steps, first at index {i + 1} "
            f"({float(times[drops[0] + 1])!r} < {float(times[drops[0]])!r})",
            fix,
        )


def check_index_range(path: str | os.PathLike, field: str, index: np.ndarray, size: int, *, fix: str) -> None:
    """Require integer indices ``[n]`` with ``0 <= index < size``."""
    if index.dtype.kind not in "iu":
        raise DataError(path, field, f"has dtype {index.dtype}, expected integer row indices", fix)
    if index.size and (index.min() < 0 or index.max() >= size):
        raise DataError(
            path, field, f"has values in [{index.min()}, {index.max()}], outside the {size} valid rows [0, {size})", fix
        )


def check_same_length(path: str | os.PathLike, field: str, values: np.ndarray, length: int, against: str) -> None:
    """Require ``len(values) == length`` where ``length`` is the length of field ``against``."""
    n = values.shape[0] if values.ndim else 0
    if n != length:
        raise DataError(
            path,
            field,
            f"has {n} rows but '{against}' has {length}",
            f"write one row per entry of '{against}' (they are parallel arrays)",
        )


def check_intervals(
    path: str | os.PathLike,
    field: str,
    start: np.ndarray,
    end: np.ndarray,
    *,
    names: tuple[str, str] = ("start", "end"),
) -> None:
    """Require matching finite float ``start``/``end`` vectors with ``end >= start``.

    Args:
        path: the file being read or written (for the message).
        field: the interval set; its columns are named ``field/<name>``.
        start, end: [i] the interval bounds.
        names: what the file calls the two columns (NWB: ``start_time``/``stop_time``).
    """
    lo, hi = names
    fix = f"store '{field}/{lo}' and '{field}/{hi}' as equal-length float64 seconds with {hi} >= {lo}"
    check_float_vector(path, f"{field}/{lo}", start, fix=fix)
    check_float_vector(path, f"{field}/{hi}", end, fix=fix)
    check_same_length(path, f"{field}/{hi}", end, len(start), f"{field}/{lo}")
    back = np.flatnonzero(end < start)
    if back.size:
        i = int(back[0])
        raise DataError(
            path,
            field,
            f"has {back.size} intervals with {hi} < {lo} (first: [{float(start[i])}, {float(end[i])}])",
            fix,
        )


def check_disjoint(path: str | os.PathLike, field: str, start: np.ndarray, end: np.ndarray) -> None:
    """Require sorted, non-overlapping intervals (interval sets are searched by bisection; touching is fine)."""
    overlap = np.flatnonzero(start[1:] < end[:-1])
    if overlap.size:
        i = int(overlap[0])
        raise DataError(
            path,
            field,
            f"has overlapping intervals ({overlap.size} in all), first [{float(start[i])}, {float(end[i])}) and "
            f"[{float(start[i + 1])}, {float(end[i + 1])})",
            "merge or trim the overlapping rows so that each interval ends at or before the next one starts",
        )


def check_rows_in_order(path: str | os.PathLike, field: str, start: np.ndarray, end: np.ndarray) -> None:
    """Require intervals stored sorted by start and non-overlapping, as every interval set a run uses must be."""
    back = np.flatnonzero(start[1:] < start[:-1])
    if back.size:
        i = int(back[0])
        raise DataError(
            path,
            field,
            f"is not sorted by start: row {i + 1} starts at {float(start[i + 1])}, before row {i} ({float(start[i])})",
            "store the rows sorted by start time (temporaldata: Interval.sort())",
        )
    check_disjoint(path, field, start, end)


class DataWarning(UserWarning):
    """A field of a data file is unusable but not needed, so it is skipped (see :func:`warn_skipped`)."""


def warn_skipped(error: DataError) -> None:
    """Warn that the field of ``error`` is skipped: the run goes on without it."""
    warnings.warn(
        f"{error.path}: field '{error.field}': {error.problem}; skipped (only a run that uses it stops on it). "
        f"Fix: {error.fix}.",
        DataWarning,
        stacklevel=3,
    )
