"""Write a :class:`~data_pipeline.recording.Recording` in the brainsets/temporaldata HDF5 layout (docs/data.md).

The file is what ``temporaldata.Data.to_hdf5`` would write for the same session, so ``temporaldata`` (and the
brainsets tooling built on it) reads our synthetic and imported sessions, and :mod:`data_pipeline.store_reader`
reads theirs. Nested keys (``movement_phases/reach_period``, ``truth`` entries with ``/``) become nested ``Data``
groups. The recording is validated before anything is written, the file is written under a temporary name in the
destination directory and renamed into place, so readers never see half a file, and an existing file is only
replaced when ``overwrite=True``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import h5py
import numpy as np

from data_pipeline import errors
from data_pipeline.errors import DataError
from data_pipeline.recording import Intervals, Recording, TimeSeries
from data_pipeline.store_parser import is_checked_interval_set


def _validate(path: Path, rec: Recording) -> None:
    """Check ``rec`` before writing it to ``path``; fields are named as recording attributes."""
    ids = np.asarray(rec.unit_ids)
    if ids.ndim != 1 or len(np.unique(ids)) != len(ids):
        raise DataError(path, "recording.unit_ids", "must be 1-D and unique", "give every unit a unique name")
    fix = "spike_times must be sorted finite float64 seconds and spike_units rows of unit_ids"
    times, units = np.asarray(rec.spike_times), np.asarray(rec.spike_units)
    errors.check_float_vector(path, "recording.spike_times", times, fix=fix)
    if times.size == 0:
        raise DataError(path, "recording.spike_times", "is empty: the session has no spikes", "drop this session")
    errors.check_sorted(path, "recording.spike_times", times, fix=fix)
    errors.check_same_length(path, "recording.spike_units", units, len(times), "recording.spike_times")
    errors.check_index_range(path, "recording.spike_units", units, len(ids), fix=fix)
    sets = {"domain": rec.domain, **{f"splits[{k!r}]": v for k, v in rec.splits.items()}}
    checked = {*sets, *(f"intervals[{k!r}]" for k in rec.intervals if is_checked_interval_set(k))}
    for name, iv in {**sets, **{f"intervals[{k!r}]": v for k, v in rec.intervals.items()}}.items():
        field = f"recording.{name}"
        errors.check_intervals(path, field, np.asarray(iv.start), np.asarray(iv.end))
        for key, column in iv.columns.items():
            errors.check_same_length(path, f"{field}.columns[{key!r}]", np.asarray(column), len(iv), f"{field}.start")
        if name in checked:  # what a run uses must be sorted and disjoint, as the reader requires
            errors.check_rows_in_order(path, field, np.asarray(iv.start), np.asarray(iv.end))
    for name, series in rec.behaviour.items():
        field = f"recording.behaviour[{name!r}]"
        ts = np.asarray(series.timestamps)
        sort_fix = "timestamps must be sorted finite float64 seconds"
        errors.check_float_vector(path, f"{field}.timestamps", ts, fix=sort_fix)
        errors.check_sorted(path, f"{field}.timestamps", ts, fix=sort_fix)
        for key, value in series.values.items():
            value = np.asarray(value)
            if value.dtype.kind not in "fiub" or value.ndim == 0:
                raise DataError(path, f"{field}.values[{key!r}]", f"has dtype {value.dtype}", "store numeric samples")
            errors.check_same_length(path, f"{field}.values[{key!r}]", value, len(ts), f"{field}.timestamps")
        if series.sampling_rate is not None and len(ts):
            grid = ts[0] + np.arange(len(ts)) / series.sampling_rate
            if not np.allclose(ts, grid, rtol=0.0, atol=1e-6):
                raise DataError(
                    path,
                    f"{field}.timestamps",
                    f"are not regular at sampling_rate={series.sampling_rate}",
                    "set sampling_rate=None to store the series as irregular",
                )
    for key, value in rec.truth.items():
        if np.asarray(value).dtype.kind not in "fiub":
            raise DataError(path, f"recording.truth[{key!r}]", "is not numeric", "store ground truth as numbers")


def _mark(group: h5py.Group, kind: str) -> None:
    group.attrs["object"] = kind
    if kind == "Data":
        group.attrs["absolute_start"] = 0.0


def _write_columns(group: h5py.Group, columns: dict[str, np.ndarray]) -> None:
    """Datasets with strings as ASCII ``S`` listed in ``_unicode_keys``, as temporaldata stores them."""
    text = []
    for key, value in columns.items():
        value = np.asarray(value)
        if value.dtype.kind == "U":
            value = value.astype("S")
            text.append(key)
        group.create_dataset(key, data=value)
    group.attrs["_unicode_keys"] = np.array(text, dtype="S")


def _write_intervals(group: h5py.Group, iv: Intervals) -> None:
    start = np.asarray(iv.start, dtype=np.float64)
    end = np.asarray(iv.end, dtype=np.float64)
    _write_columns(group, {"start": start, "end": end, **iv.columns})
    group.attrs["timekeys"] = np.array(["start", "end"], dtype="S")
    _mark(group, "Interval")


def _write_irregular(group: h5py.Group, timestamps: np.ndarray, columns: dict, domain: Intervals) -> None:
    """An IrregularTimeSeries with temporaldata's 1 s coarse index over its domain."""
    _write_columns(group, {"timestamps": timestamps, **columns})
    grid = np.arange(domain.start[0], domain.end[-1] + 1.0, 1.0, dtype=np.float64)
    group.create_dataset("timestamp_indices_1s", data=np.searchsorted(timestamps, grid, side="left"))
    _write_intervals(group.create_group("domain"), domain)
    group.attrs["timekeys"] = np.array(["timestamps"], dtype="S")
    _mark(group, "IrregularTimeSeries")


def _write_series(group: h5py.Group, series: TimeSeries, domain: Intervals) -> None:
    timestamps = np.asarray(series.timestamps, dtype=np.float64)
    if series.sampling_rate is None:
        _write_irregular(group, timestamps, series.values, domain)
        return
    for key, value in series.values.items():
        group.create_dataset(key, data=np.asarray(value))
    start = float(timestamps[0]) if len(timestamps) else float(domain.start[0])
    span = Intervals(np.array([start]), np.array([start + len(timestamps) / series.sampling_rate]))
    _write_intervals(group.create_group("domain"), span)
    group.attrs["sampling_rate"] = float(series.sampling_rate)
    _mark(group, "RegularTimeSeries")


def _parent(root: h5py.Group, key: str, domain: Intervals | None) -> tuple[h5py.Group, str]:
    """The group that holds ``key`` (``a/b/c`` -> group ``a/b``, ``"c"``), creating missing parents as Data groups.

    temporaldata refuses a Data group holding time-based objects without a domain, so new parents get ``domain``.
    """
    *parents, name = key.split("/")
    group = root
    for part in parents:
        if part not in group:
            child = group.create_group(part)
            _mark(child, "Data")
            if domain is not None:
                _write_intervals(child.create_group("domain"), domain)
        group = group[part]
    return group, name


def _write_file(file: h5py.File, rec: Recording) -> None:
    _mark(file, "Data")
    for name, value in (("brainset", rec.brainset_id), ("session", rec.session_id), ("subject", rec.subject_id)):
        group = file.create_group(name)
        group.attrs["id"] = str(value)
        _mark(group, "Data")
    _write_intervals(file.create_group("domain"), rec.domain)
    units = file.create_group("units")
    _write_columns(units, {"id": np.asarray(rec.unit_ids).astype(str)})
    _mark(units, "ArrayDict")
    columns = {"unit_index": np.asarray(rec.spike_units, dtype=np.int64)}
    _write_irregular(file.create_group("spikes"), np.asarray(rec.spike_times, np.float64), columns, rec.domain)
    for split, iv in rec.splits.items():
        _write_intervals(file.create_group(f"{split}_domain"), iv)
    for key, iv in rec.intervals.items():
        parent, name = _parent(file, key, rec.domain)
        _write_intervals(parent.create_group(name), iv)
    for key, series in rec.behaviour.items():
        parent, name = _parent(file, key, rec.domain)
        _write_series(parent.create_group(name), series, rec.domain)
    if rec.truth:
        truth = file.create_group("truth")
        _mark(truth, "Data")
        for key, value in rec.truth.items():
            parent, name = _parent(truth, key, None)
            parent.create_dataset(name, data=np.asarray(value))


def write_recording(path: str | os.PathLike, recording: Recording, *, overwrite: bool = False) -> Path:
    """Write ``recording`` to ``path`` atomically in the brainsets/temporaldata layout.

    Args:
        path: destination ``.h5`` file; its directory must exist.
        recording: the session (a :class:`Recording`, or anything with its attributes, e.g. a StoredRecording).
        overwrite: replace an existing file; without it an existing ``path`` raises FileExistsError.

    Returns:
        The path written.

    Raises:
        DataError: the recording is inconsistent (nothing is written).
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    _validate(path, recording)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as file:
            _write_file(file, recording)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; session files are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
