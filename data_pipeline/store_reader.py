"""Lazy, read-only access to brainsets/temporaldata HDF5 session files, with plain h5py.

The layout, and what is checked or tolerated, are described for users in docs/data.md; the groups are read by
:mod:`data_pipeline.store_parser`. The reader needs ``spikes`` (IrregularTimeSeries: ``timestamps``,
``unit_index``), ``units`` (``id``) and ``domain``; it maps the split domains, every Interval (nested ones keyed
``parent/child``), every time series (behaviour) and ``truth/`` arrays, and ignores anything else.

Opening validates the file once with O(n) vectorised checks, streaming the spikes in blocks so memory stays bounded;
afterwards :meth:`StoredRecording.spikes_between` reads only the spikes of the requested window: the 1 s coarse index
``spikes/timestamp_indices_1s`` bounds the rows, one small h5py read fetches their times, a ``searchsorted`` trims
them. Every problem with what a run uses is reported as one :class:`~data_pipeline.errors.DataError` naming file and
field; files are opened in mode ``"r"`` and never modified.
"""

from __future__ import annotations

import collections
import functools
import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from data_pipeline import errors
from data_pipeline.errors import DataError
from data_pipeline.recording import Intervals, Recording, SessionKeys, TimeSeries
from data_pipeline.store_parser import SPLITS, Parser, as_text_array, kind

__all__ = ["StoredRecording", "as_text_array", "check_unique_sessions", "open_directory", "open_recording"]

_BLOCK = 1 << 20  # spikes per validation read: bounded memory for hour-long sessions
_MAX_GRID = 100_000_000  # seconds of coarse index; more means a corrupt domain, not a real session


def _spike_index(
    parser: Parser, spikes: h5py.Group, domain: Intervals, n_units: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate the spikes blockwise and build the 1 s coarse index.

    Returns:
        grid: [g] f8 whole seconds from the spikes' domain start, as temporaldata lays them out.
        coarse: [g] i8 ``searchsorted(timestamps, grid)``, checked against the file's copy when present.
        n: number of spikes.
    """
    with parser.field("spikes/timestamps"):
        times, units = spikes.get("timestamps"), spikes.get("unit_index")
    for key, node in (("timestamps", times), ("unit_index", units)):
        if not isinstance(node, h5py.Dataset):
            raise DataError(parser.path, f"spikes/{key}", "is missing", f"write the 'spikes/{key}' array")
    if times.ndim != 1:
        raise DataError(parser.path, "spikes/timestamps", f"has shape {times.shape}", "store a 1-D array of times")
    n = times.shape[0]
    errors.check_same_length(parser.path, "spikes/unit_index", units, n, "spikes/timestamps")
    if n == 0:
        raise DataError(parser.path, "spikes/timestamps", "is empty: the session has no spikes", "drop this session")
    field = "domain"
    if "domain" in spikes:
        field = "spikes/domain"
        domain = parser.intervals(parser.group(spikes, "domain", field, ("Interval",)), field)
        if len(domain) == 0:
            raise DataError(parser.path, field, "is empty", "store the spikes' time span(s) as their domain")
    span = domain.end[-1] + 1.0 - domain.start[0]
    if span > _MAX_GRID:
        raise DataError(parser.path, field, f"spans {span:.3g} s", "store times in seconds")
    grid = np.arange(domain.start[0], domain.end[-1] + 1.0, 1.0, dtype=np.float64)
    coarse = np.zeros(len(grid), dtype=np.int64)
    fix = "store spikes as float64 seconds sorted in time, with unit_index rows of 'units'"
    last = -np.inf
    for lo in range(0, n, _BLOCK):
        with parser.field("spikes/timestamps"):
            block = times[lo : lo + _BLOCK]
        errors.check_float_vector(parser.path, "spikes/timestamps", block, fix=fix)
        errors.check_sorted(parser.path, "spikes/timestamps", np.concatenate([[last], block]), fix=fix, offset=lo - 1)
        with parser.field("spikes/unit_index"):
            rows = units[lo : lo + _BLOCK]
        errors.check_index_range(parser.path, "spikes/unit_index", rows, n_units, fix=fix)
        coarse += np.searchsorted(block, grid, side="left")
        last = block[-1]
    if "timestamp_indices_1s" in spikes and "domain" in spikes:
        stored = parser.array(spikes, "timestamp_indices_1s", "spikes/timestamp_indices_1s")
        if stored.shape != coarse.shape or np.any(stored != coarse):
            raise DataError(
                parser.path,
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
        """Open and validate ``path``; raises :class:`DataError` on any problem. Prefer :func:`open_recording`.

        Attributes beyond :class:`~data_pipeline.recording.Recording`'s: ``num_spikes``; ``domain_conventions``,
        the temporaldata domain convention of each regular time series (see docs/data.md).
        """
        self.path = Path(path)
        self._h5: h5py.File | None = None
        self._pid = -1
        file = errors.open_hdf5(self.path, "pass a brainsets/temporaldata session file (.h5)")
        with file:
            parser = Parser(self.path, file)
            self.brainset_id, self.session_id, self.subject_id = parser.identifiers()
            self.unit_ids = parser.unit_ids()
            self.domain = parser.intervals(
                parser.group(file, "domain", "domain", ("Interval",)), "domain", checked=True
            )
            if len(self.domain) == 0:
                raise DataError(self.path, "domain", "is empty", "store the session's time span(s) as its domain")
            spikes = parser.group(file, "spikes", "spikes", ("IrregularTimeSeries",))
            self._grid, self._coarse, self.num_spikes = _spike_index(parser, spikes, self.domain, len(self.unit_ids))
            self.splits = {}
            for split, name in SPLITS.items():
                if name in file:  # a file may lack some splits; users of a split check for it
                    group = parser.group(file, name, name, ("Interval",))
                    self.splits[split] = parser.intervals(group, name, checked=True)
            self.behaviour: dict[str, TimeSeries] = {}
            self.intervals: dict[str, Intervals] = {}
            parser.walk(file, "", self.behaviour, self.intervals)
            self._has_truth = kind(file.get("truth")) == "Data"
        self.skipped = parser.skipped
        self.domain_conventions = parser.conventions
        parser.log_conventions()

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
        Parser(self.path, self._file()).arrays(self._file()["truth"], "", out)
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
            path=str(self.path),
            skipped=dict(self.skipped),
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
        counts = collections.Counter(self.domain_conventions.values())
        regular = "; ".join(f"{n} as {c}" for c, n in sorted(counts.items()))
        return (
            f"StoredRecording({self.session_key!r}, units={len(self.unit_ids)}, spikes={self.num_spikes}, "
            f"duration={self.domain.total_duration():.1f}s, path={str(self.path)!r}"
            + (f", regular_series={regular!r}" if regular else "")
            + (f", skipped={sorted(self.skipped)}" if self.skipped else "")
            + ")"
        )


def open_recording(path: str | os.PathLike) -> StoredRecording:
    """Open one brainsets/temporaldata session file lazily and read-only (raises :class:`DataError` if unusable)."""
    return StoredRecording(path)


def check_unique_sessions(recordings: Sequence[SessionKeys]) -> None:
    """Refuse two recordings with one ``brainset/session`` key: their units would silently merge in a run.

    Raises:
        DataError: naming both files.
    """
    first: dict[str, SessionKeys] = {}
    for rec in recordings:
        other = first.setdefault(rec.session_key, rec)
        if other is not rec:
            raise DataError(
                rec.source,
                "session.attrs[id]",
                f"names session '{rec.session_key}', as {other.source} does",
                "give each session file its own brainset/session id, or move one of the two out of the directory",
            )


def open_directory(path: str | os.PathLike) -> list[StoredRecording]:
    """Open every ``*.h5`` session file in directory ``path``, sorted by file name.

    Raises:
        DataError: the directory holds no session file, one file is unusable, or two files hold the same session.
    """
    files = sorted(Path(path).glob("*.h5"))
    if not files:
        raise DataError(path, "<directory>", "holds no *.h5 session files", "point at a directory of .h5 sessions")
    recordings = [open_recording(f) for f in files]
    check_unique_sessions(recordings)
    return recordings
