"""Lazy, read-only access to brainsets/temporaldata HDF5 session files (SPEC 3.1), with plain h5py.

Layout (as ``temporaldata`` 0.1.6 writes it): every group carries ``attrs["object"]``, one of ``Data``,
``ArrayDict``, ``Interval``, ``IrregularTimeSeries``, ``RegularTimeSeries``; string columns are stored as
fixed-length ASCII ``S`` arrays and listed in the group's ``attrs["_unicode_keys"]``. The reader needs ``spikes``
(IrregularTimeSeries: ``timestamps``, ``unit_index``), ``units`` (``id``) and ``domain``; it maps the split domains,
every Interval (nested ones keyed ``parent/child``), every time series (behaviour) and ``truth/`` arrays, and ignores
anything else.

Opening validates the file once with O(n) vectorised checks, streaming the spikes in blocks so memory stays bounded;
afterwards :meth:`StoredRecording.spikes_between` reads only the spikes of the requested window: the 1 s coarse index
``spikes/timestamp_indices_1s`` bounds the rows, one small h5py read fetches their times, a ``searchsorted`` trims
them. Every problem is reported as one :class:`~data_pipeline.errors.DataError` naming file and field; files are
opened in mode ``"r"`` and never modified.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

import h5py
import numpy as np

from data_pipeline import errors
from data_pipeline.errors import DataError
from data_pipeline.recording import Intervals, Recording, SessionKeys, TimeSeries

_SPLITS = {"train": "train_domain", "valid": "valid_domain", "test": "test_domain"}
_ID_GROUPS = ("brainset", "session", "subject", "device")
_SPECIAL = {"spikes", "units", "domain", "truth", *_SPLITS.values(), *_ID_GROUPS}
_BLOCK = 1 << 20  # spikes per validation read: bounded memory for hour-long sessions
_MAX_GRID = 100_000_000  # seconds of coarse index; more means a corrupt domain, not a real session


def _text(value) -> str:
    """An HDF5 attribute or scalar (str, bytes, numpy scalar/0-d array) as ``str``."""
    if isinstance(value, np.ndarray):
        value = value.item() if value.size == 1 else value.tolist()
    if isinstance(value, bytes | np.bytes_):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _kind(node: h5py.Group | h5py.Dataset) -> str | None:
    """The temporaldata class a group was written from, or None for datasets and foreign groups."""
    if not isinstance(node, h5py.Group) or "object" not in node.attrs:
        return None
    return _text(node.attrs["object"])


def _unicode_keys(group: h5py.Group) -> set[str]:
    return {_text(k) for k in np.atleast_1d(group.attrs.get("_unicode_keys", np.array([], dtype="S")))}


def as_text_array(values: np.ndarray) -> np.ndarray:
    """Decode ``S``/object byte strings to ``U``; other dtypes are returned unchanged."""
    if values.dtype.kind in "SO":
        return np.array([_text(v) for v in values.ravel()], dtype=str).reshape(values.shape)
    return values


class _Parser:
    """Reads the groups of one open file into the in-memory contract, naming the field in every error."""

    def __init__(self, path: Path, file: h5py.File):
        self.path = path
        self.file = file

    def field(self, name: str) -> contextlib.AbstractContextManager:
        """Context in which low-level read failures become a DataError naming field ``name``."""
        return errors.reading(self.path, name)

    def group(self, parent: h5py.Group, name: str, field: str, kinds: tuple[str, ...]) -> h5py.Group:
        """The child group ``name`` of ``parent``; it must exist and be one of the temporaldata ``kinds``."""
        with self.field(field):
            node = parent.get(name)
            kind = _kind(node) if node is not None else None
        if node is None:
            raise DataError(self.path, field, "is missing", f"add a '{field}' group of type {kinds[0]} (SPEC 3.1)")
        if kind not in kinds:
            raise DataError(
                self.path,
                field,
                f"has attrs['object']={kind!r}, expected {' or '.join(kinds)}",
                f"store '{field}' as a temporaldata {kinds[0]}",
            )
        return node

    def array(self, group: h5py.Group, key: str, field: str) -> np.ndarray:
        """Read dataset ``group[key]`` whole."""
        with self.field(field):
            node = group.get(key)
            if node is None or not isinstance(node, h5py.Dataset):
                raise DataError(self.path, field, "is missing", f"write the '{field}' array (SPEC 3.1)")
            return node[()]

    def intervals(self, group: h5py.Group, field: str, *, disjoint: bool = False) -> Intervals:
        """An Interval group as :class:`Intervals`, sorted by start; ``disjoint`` for domains."""
        start = self.array(group, "start", f"{field}/start")
        end = self.array(group, "end", f"{field}/end")
        errors.check_intervals(self.path, field, start, end)
        text = _unicode_keys(group)
        columns = {}
        for key, node in group.items():
            if key in ("start", "end") or not isinstance(node, h5py.Dataset):
                continue
            values = self.array(group, key, f"{field}/{key}")
            errors.check_same_length(self.path, f"{field}/{key}", values, len(start), f"{field}/start")
            columns[key] = as_text_array(values) if key in text else values
        order = np.argsort(start, kind="stable")
        if np.any(order != np.arange(len(start))):
            start, end = start[order], end[order]
            columns = {k: v[order] for k, v in columns.items()}
        start, end = start.astype(np.float64), end.astype(np.float64)
        if disjoint:
            errors.check_disjoint(self.path, field, start, end)
        return Intervals(start=start, end=end, columns=columns)

    def series(self, group: h5py.Group, field: str) -> TimeSeries:
        """An Irregular- or RegularTimeSeries group as :class:`TimeSeries` (numeric columns only)."""
        regular = _kind(group) == "RegularTimeSeries"
        rate = None
        fix = f"write one sample of every '{field}' column per timestamp"
        if regular:
            with self.field(f"{field}.attrs[sampling_rate]"):
                rate = group.attrs.get("sampling_rate")
                problem = "is missing" if rate is None else f"is {rate}"
                rate = float(rate) if rate is not None else np.nan
            if not np.isfinite(rate) or rate <= 0:
                raise DataError(self.path, f"{field}.attrs[sampling_rate]", problem, "store the rate in Hz (> 0)")
            domain = self.intervals(self.group(group, "domain", f"{field}/domain", ("Interval",)), f"{field}/domain")
            if len(domain) == 0:
                raise DataError(self.path, f"{field}/domain", "is empty", "store the series' time span as its domain")
        else:
            timestamps = self.array(group, "timestamps", f"{field}/timestamps")
            sort_fix = f"store '{field}/timestamps' as sorted float64 seconds"
            errors.check_float_vector(self.path, f"{field}/timestamps", timestamps, fix=sort_fix)
            errors.check_sorted(self.path, f"{field}/timestamps", timestamps, fix=sort_fix)
        values = {}
        for key, node in group.items():
            if key in ("timestamps", "timestamp_indices_1s", "domain") or not isinstance(node, h5py.Dataset):
                continue
            with self.field(f"{field}/{key}"):
                if node.dtype.kind not in "fiub" or node.ndim == 0:
                    continue  # labels and metadata are not behaviour
                values[key] = node[()]
        if regular:
            n = next(iter(values.values())).shape[0] if values else 0
            timestamps = domain.start[0] + np.arange(n, dtype=np.float64) / rate
            if abs(domain.end[-1] - (domain.start[0] + n / rate)) > 1.0 / rate:
                raise DataError(
                    self.path,
                    field,
                    f"has {n} samples at {rate} Hz, but its domain spans [{domain.start[0]}, {domain.end[-1]})",
                    fix,
                )
        for key, value in values.items():
            if value.shape[0] != len(timestamps):
                raise DataError(
                    self.path,
                    f"{field}/{key}",
                    f"has {value.shape[0]} rows but there are {len(timestamps)} samples",
                    fix,
                )
        return TimeSeries(timestamps=timestamps.astype(np.float64), values=values, sampling_rate=rate)

    def identifiers(self) -> tuple[str, str, str]:
        """(brainset, session, subject) ids from the ``id`` attrs of their Data groups; defaults from the path."""
        defaults = {"brainset": self.path.parent.name, "session": self.path.stem, "subject": "unknown"}
        out = []
        for name in ("brainset", "session", "subject"):
            with self.field(f"{name}.attrs[id]"):
                node = self.file.get(name)
                out.append(_text(node.attrs["id"]) if isinstance(node, h5py.Group) and "id" in node.attrs else None)
        return tuple(v if v else defaults[k] for v, k in zip(out, defaults, strict=True))

    def unit_ids(self) -> np.ndarray:
        units = self.group(self.file, "units", "units", ("ArrayDict",))
        ids = as_text_array(self.array(units, "id", "units/id"))
        if ids.ndim != 1 or ids.dtype.kind not in "Uiu":
            raise DataError(
                self.path, "units/id", f"has dtype {ids.dtype}, shape {ids.shape}", "store unit names as 1-D"
            )
        ids = ids.astype(str)
        if len(np.unique(ids)) != len(ids):
            raise DataError(self.path, "units/id", "has duplicate unit ids", "give every unit a unique id")
        return ids

    def walk(self, group: h5py.Group, prefix: str, behaviour: dict, intervals: dict) -> None:
        """Collect time series and interval sets, recursing into Data groups; unknown groups are ignored."""
        for name, node in group.items():
            field = f"{prefix}{name}"
            if field in _SPECIAL or (prefix and name == "domain"):
                continue
            with self.field(field):
                kind = _kind(node)
            if kind in ("IrregularTimeSeries", "RegularTimeSeries"):
                behaviour[field] = self.series(node, field)
            elif kind == "Interval":
                intervals[field] = self.intervals(node, field)
            elif kind == "Data":
                self.walk(node, f"{field}/", behaviour, intervals)

    def arrays(self, group: h5py.Group, prefix: str, out: dict[str, np.ndarray]) -> None:
        """Datasets of a Data group and its Data children, keyed ``child/name`` (their domains are skipped)."""
        for name, node in group.items():
            with self.field(f"{group.name.lstrip('/')}/{name}"):
                if isinstance(node, h5py.Dataset):
                    out[f"{prefix}{name}"] = node[()]
                elif _kind(node) == "Data":
                    self.arrays(node, f"{prefix}{name}/", out)

    def spike_index(self, spikes: h5py.Group, domain: Intervals, n_units: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Validate the spikes blockwise and build the 1 s coarse index.

        Returns:
          grid: [g] f8 whole seconds from the spikes' domain start, as temporaldata lays them out.
          coarse: [g] i8 ``searchsorted(timestamps, grid)``, checked against the file's copy when present.
          n: number of spikes.
        """
        with self.field("spikes/timestamps"):
            times, units = spikes.get("timestamps"), spikes.get("unit_index")
        for key, node in (("timestamps", times), ("unit_index", units)):
            if not isinstance(node, h5py.Dataset):
                raise DataError(self.path, f"spikes/{key}", "is missing", f"write the 'spikes/{key}' array (SPEC 3.1)")
        if times.ndim != 1:
            raise DataError(self.path, "spikes/timestamps", f"has shape {times.shape}", "store a 1-D array of times")
        n = times.shape[0]
        errors.check_same_length(self.path, "spikes/unit_index", units, n, "spikes/timestamps")
        if n == 0:
            raise DataError(self.path, "spikes/timestamps", "is empty: the session has no spikes", "drop this session")
        field = "domain"
        if "domain" in spikes:
            field = "spikes/domain"
            domain = self.intervals(self.group(spikes, "domain", field, ("Interval",)), field)
            if len(domain) == 0:
                raise DataError(self.path, field, "is empty", "store the spikes' time span(s) as their domain")
        span = domain.end[-1] + 1.0 - domain.start[0]
        if span > _MAX_GRID:
            raise DataError(self.path, field, f"spans {span:.3g} s", "store times in seconds")
        grid = np.arange(domain.start[0], domain.end[-1] + 1.0, 1.0, dtype=np.float64)
        coarse = np.zeros(len(grid), dtype=np.int64)
        fix = "store spikes as float64 seconds sorted in time, with unit_index rows of 'units'"
        last = -np.inf
        for lo in range(0, n, _BLOCK):
            with self.field("spikes/timestamps"):
                block = times[lo : lo + _BLOCK]
            errors.check_float_vector(self.path, "spikes/timestamps", block, fix=fix)
            errors.check_sorted(self.path, "spikes/timestamps", np.concatenate([[last], block]), fix=fix, offset=lo - 1)
            with self.field("spikes/unit_index"):
                rows = units[lo : lo + _BLOCK]
            errors.check_index_range(self.path, "spikes/unit_index", rows, n_units, fix=fix)
            coarse += np.searchsorted(block, grid, side="left")
            last = block[-1]
        if "timestamp_indices_1s" in spikes and "domain" in spikes:
            stored = self.array(spikes, "timestamp_indices_1s", "spikes/timestamp_indices_1s")
            if stored.shape != coarse.shape or np.any(stored != coarse):
                raise DataError(
                    self.path,
                    "spikes/timestamp_indices_1s",
                    "does not match searchsorted(timestamps, arange(domain.start[0], domain.end[-1] + 1, 1.0))",
                    errors.REWRITE,
                )
        return grid, coarse, n


class StoredRecording(SessionKeys):
    """One session file, read lazily; the same attributes as :class:`~data_pipeline.recording.Recording`.

    Identifiers, unit ids, domains, behaviour and intervals are read (and validated) at open; spikes are read per
    window by :meth:`spikes_between`; ``truth`` and the full ``spike_times``/``spike_units`` arrays on first access.
    Picklable (for data-loader worker processes): each process reopens the file read-only on first use.
    """

    def __init__(self, path: str | os.PathLike):
        """Open and validate ``path``; raises :class:`DataError` on any problem. Prefer :func:`open_recording`."""
        self.path = Path(path)
        self._h5: h5py.File | None = None
        self._pid = -1
        file = errors.open_hdf5(self.path, "pass a brainsets/temporaldata session file (.h5)")
        with file:
            parser = _Parser(self.path, file)
            self.brainset_id, self.session_id, self.subject_id = parser.identifiers()
            self.unit_ids = parser.unit_ids()
            self.domain = parser.intervals(
                parser.group(file, "domain", "domain", ("Interval",)), "domain", disjoint=True
            )
            if len(self.domain) == 0:
                raise DataError(self.path, "domain", "is empty", "store the session's time span(s) as its domain")
            spikes = parser.group(file, "spikes", "spikes", ("IrregularTimeSeries",))
            self._grid, self._coarse, self.num_spikes = parser.spike_index(spikes, self.domain, len(self.unit_ids))
            self.splits = {}
            for split, name in _SPLITS.items():
                if name in file:  # a file may lack some splits; users of a split check for it
                    group = parser.group(file, name, name, ("Interval",))
                    self.splits[split] = parser.intervals(group, name, disjoint=True)
            self.behaviour: dict[str, TimeSeries] = {}
            self.intervals: dict[str, Intervals] = {}
            parser.walk(file, "", self.behaviour, self.intervals)
            self._has_truth = _kind(file.get("truth")) == "Data"

    def _file(self) -> h5py.File:
        if self._h5 is None or self._pid != os.getpid():
            self._h5 = h5py.File(self.path, "r")
            self._pid = os.getpid()
            self._times = self._h5["spikes/timestamps"]
            self._units = self._h5["spikes/unit_index"]
        return self._h5

    def spikes_between(self, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray]:
        """Spikes with ``t0 <= t < t1``: (times f8 [k], unit rows i8 [k]), reading only that window's rows."""
        if "spike_times" in self.__dict__:  # fully loaded: slice memory instead
            i0, i1 = np.searchsorted(self.spike_times, [t0, t1], side="left")
            return self.spike_times[i0:i1], self.spike_units[i0:i1]
        if self._pid != os.getpid():
            self._file()
        # grid[k0] <= t0 so rows before coarse[k0] are earlier than t0; grid[k1] >= t1 so rows from coarse[k1] on
        # are at or after t1. Only rows [lo, hi) can fall in the window.
        k0 = int(np.searchsorted(self._grid, t0, side="right")) - 1
        k1 = int(np.searchsorted(self._grid, t1, side="left"))
        lo = int(self._coarse[k0]) if k0 >= 0 else 0
        hi = int(self._coarse[k1]) if k1 < len(self._grid) else self.num_spikes
        if hi <= lo:
            return np.zeros(0, np.float64), np.zeros(0, np.int64)
        times = self._times[lo:hi]
        i0, i1 = np.searchsorted(times, [t0, t1], side="left")
        units = self._units[lo + i0 : lo + i1] if i1 > i0 else np.zeros(0, np.int64)
        return times[i0:i1].astype(np.float64, copy=False), units.astype(np.int64, copy=False)

    @functools.cached_property
    def spike_times(self) -> np.ndarray:
        """[n] f8 all spike times (reads the whole array once; later windows are sliced from memory)."""
        return self._file()["spikes/timestamps"][()].astype(np.float64, copy=False)

    @functools.cached_property
    def spike_units(self) -> np.ndarray:
        """[n] i8 unit row of every spike (read whole on first access)."""
        return self._file()["spikes/unit_index"][()].astype(np.int64, copy=False)

    @functools.cached_property
    def truth(self) -> dict[str, np.ndarray]:
        """Generator ground truth under ``truth/`` (nested keys joined with ``/``); empty for real data."""
        out: dict[str, np.ndarray] = {}
        if not self._has_truth:
            return out
        _Parser(self.path, self._file()).arrays(self._file()["truth"], "", out)
        return out

    def load_in_memory(self) -> Recording:
        """Everything as a plain :class:`Recording` (faster for small sessions sliced many times)."""
        return Recording(
            brainset_id=self.brainset_id,
            session_id=self.session_id,
            subject_id=self.subject_id,
            unit_ids=self.unit_ids,
            spike_times=self.spike_times,
            spike_units=self.spike_units,
            domain=self.domain,
            splits=self.splits,
            behaviour=self.behaviour,
            intervals=self.intervals,
            truth=self.truth,
        )

    def close(self) -> None:
        """Close this process's file handle (reopened on next use)."""
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5, self._pid = None, -1

    def __enter__(self) -> StoredRecording:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for key in ("_h5", "_times", "_units"):
            state.pop(key, None)
        state["_pid"] = -1
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._h5 = None

    def __repr__(self) -> str:
        return (
            f"StoredRecording({self.session_key!r}, units={len(self.unit_ids)}, spikes={self.num_spikes}, "
            f"duration={self.domain.total_duration():.1f}s, path={str(self.path)!r})"
        )


def open_recording(path: str | os.PathLike) -> StoredRecording:
    """Open one brainsets/temporaldata session file lazily and read-only (raises :class:`DataError` if unusable)."""
    return StoredRecording(path)


def open_directory(path: str | os.PathLike) -> list[StoredRecording]:
    """Open every ``*.h5`` session file in directory ``path``, sorted by file name."""
    files = sorted(Path(path).glob("*.h5"))
    if not files:
        raise DataError(path, "<directory>", "holds no *.h5 session files", "point at a directory of .h5 sessions")
    return [open_recording(f) for f in files]
