"""Reading the groups of a brainsets/temporaldata HDF5 session file into the in-memory recording contract.

Layout (as ``temporaldata`` 0.1.6 writes it, described for users in docs/data.md): every group carries
``attrs["object"]``, one of ``Data``, ``ArrayDict``, ``Interval``, ``IrregularTimeSeries``, ``RegularTimeSeries``;
string columns are stored as fixed-length ASCII ``S`` arrays and listed in the group's ``attrs["_unicode_keys"]``.

What a run uses is checked strictly (a :class:`~data_pipeline.errors.DataError`): spikes, units, domains and the
interval sets of :func:`is_checked_interval_set`. Any other time series or interval set that cannot be read is
skipped with a :class:`~data_pipeline.errors.DataWarning` and its error kept, so that a run which does use it (a
behaviour series chosen as the decoding target) stops on the same error.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import h5py
import numpy as np

from data_pipeline import errors
from data_pipeline.errors import DataError
from data_pipeline.recording import Intervals, TimeSeries

SPLITS = {"train": "train_domain", "valid": "valid_domain", "test": "test_domain"}
ID_GROUPS = ("brainset", "session", "subject", "device")
_SPECIAL = {"spikes", "units", "domain", "truth", *SPLITS.values(), *ID_GROUPS}

# A RegularTimeSeries domain ends n / rate after its start since temporaldata 0.1.4, (n - 1) / rate before. The two
# differ by exactly one sample, so a file is matched to the convention within a quarter sample, far from both the
# float rounding of either and the half-way point between them.
END_AFTER_LAST = "temporaldata >= 0.1.4 (domain end = start + n / rate)"
END_AT_LAST = "temporaldata <= 0.1.3 (domain end = start + (n - 1) / rate)"
_SAMPLE_TOLERANCE = 0.25

log = logging.getLogger(__name__)


def is_checked_interval_set(name: str) -> bool:
    """Whether interval set ``name`` is one a run uses (trials, movement phases, outlier segments).

    These must be stored sorted by start and non-overlapping, like the domains; other interval sets are read as
    they are (sorted on reading) and skipped with a warning when unreadable.
    """
    return name in ("trials", "cursor_outlier_segments") or name.startswith("movement_phases/")


def text(value) -> str:
    """An HDF5 attribute or scalar (str, bytes, numpy scalar/0-d array) as ``str``."""
    if isinstance(value, np.ndarray):
        value = value.item() if value.size == 1 else value.tolist()
    if isinstance(value, bytes | np.bytes_):
        return value.decode("utf-8", errors="replace")
    return str(value)


def kind(node: h5py.Group | h5py.Dataset | None) -> str | None:
    """The temporaldata class a group was written from, or None for datasets and foreign groups."""
    if not isinstance(node, h5py.Group) or "object" not in node.attrs:
        return None
    return text(node.attrs["object"])


def _unicode_keys(group: h5py.Group) -> set[str]:
    return {text(k) for k in np.atleast_1d(group.attrs.get("_unicode_keys", np.array([], dtype="S")))}


def as_text_array(values: np.ndarray) -> np.ndarray:
    """Decode ``S``/object byte strings to ``U``; other dtypes are returned unchanged."""
    if values.dtype.kind in "SO":
        return np.array([text(v) for v in values.ravel()], dtype=str).reshape(values.shape)
    return values


def domain_convention(start: float, end: float, rate: float, n: int) -> str | None:
    """Which temporaldata convention a regular series' domain ``[start, end)`` of ``n`` samples follows, or None."""
    spanned = (end - start) * rate
    for convention, samples in ((END_AFTER_LAST, n), (END_AT_LAST, n - 1)):
        if abs(spanned - samples) <= _SAMPLE_TOLERANCE:
            return convention
    return None


class Parser:
    """Reads the groups of one open file, naming the field in every error.

    Attributes:
        skipped: the error of every unusable time series or unchecked interval set, by field.
        conventions: the domain convention of every regular time series, by field.
    """

    def __init__(self, path: Path, file: h5py.File):
        self.path = path
        self.file = file
        self.skipped: dict[str, DataError] = {}
        self.conventions: dict[str, str] = {}

    def field(self, name: str) -> contextlib.AbstractContextManager:
        """Context in which low-level read failures become a DataError naming field ``name``."""
        return errors.reading(self.path, name)

    def group(self, parent: h5py.Group, name: str, field: str, kinds: tuple[str, ...]) -> h5py.Group:
        """The child group ``name`` of ``parent``; it must exist and be one of the temporaldata ``kinds``."""
        with self.field(field):
            node = parent.get(name)
            found = kind(node)
        if node is None:
            raise DataError(self.path, field, "is missing", f"add a '{field}' group of type {kinds[0]}")
        if found not in kinds:
            raise DataError(
                self.path,
                field,
                f"has attrs['object']={found!r}, expected {' or '.join(kinds)}",
                f"store '{field}' as a temporaldata {kinds[0]}",
            )
        return node

    def array(self, group: h5py.Group, key: str, field: str) -> np.ndarray:
        """Read dataset ``group[key]`` whole."""
        with self.field(field):
            node = group.get(key)
            if node is None or not isinstance(node, h5py.Dataset):
                raise DataError(self.path, field, "is missing", f"write the '{field}' array")
            return node[()]

    def intervals(self, group: h5py.Group, field: str, *, checked: bool = False) -> Intervals:
        """An Interval group as :class:`Intervals` sorted by start.

        ``checked`` sets (domains, trials, phases...) must be stored sorted and non-overlapping; others are sorted.
        """
        start = self.array(group, "start", f"{field}/start")
        end = self.array(group, "end", f"{field}/end")
        errors.check_intervals(self.path, field, start, end)
        unicode = _unicode_keys(group)
        columns = {}
        for key, node in group.items():
            if key in ("start", "end") or not isinstance(node, h5py.Dataset):
                continue
            values = self.array(group, key, f"{field}/{key}")
            errors.check_same_length(self.path, f"{field}/{key}", values, len(start), f"{field}/start")
            columns[key] = as_text_array(values) if key in unicode else values
        start, end = start.astype(np.float64), end.astype(np.float64)
        if checked:
            errors.check_rows_in_order(self.path, field, start, end)
            return Intervals(start=start, end=end, columns=columns)
        order = np.argsort(start, kind="stable")
        return Intervals(start=start[order], end=end[order], columns={k: v[order] for k, v in columns.items()})

    def _rate(self, group: h5py.Group, field: str) -> float:
        with self.field(f"{field}.attrs[sampling_rate]"):
            rate = group.attrs.get("sampling_rate")
            problem = "is missing" if rate is None else f"is {rate}"
            rate = float(rate) if rate is not None else np.nan
        if not np.isfinite(rate) or rate <= 0:
            raise DataError(self.path, f"{field}.attrs[sampling_rate]", problem, "store the rate in Hz (> 0)")
        return rate

    def _regular_timestamps(self, group: h5py.Group, field: str, rate: float, n: int) -> np.ndarray:
        """Sample times of a RegularTimeSeries of ``n`` samples; records which domain convention it follows."""
        domain = self.intervals(self.group(group, "domain", f"{field}/domain", ("Interval",)), f"{field}/domain")
        if len(domain) == 0:
            raise DataError(self.path, f"{field}/domain", "is empty", "store the series' time span as its domain")
        start, end = float(domain.start[0]), float(domain.end[-1])
        convention = domain_convention(start, end, rate, n)
        if convention is None:
            raise DataError(
                self.path,
                field,
                f"has {n} samples at {rate} Hz, but its domain spans [{start}, {end}), "
                f"{(end - start) * rate:.2f} samples long (expected {n}, or {n - 1} as temporaldata <= 0.1.3 wrote)",
                f"write one sample of every '{field}' column per 1 / sampling_rate of its domain",
            )
        self.conventions[field] = convention
        return start + np.arange(n, dtype=np.float64) / rate

    def series(self, group: h5py.Group, field: str) -> TimeSeries:
        """An Irregular- or RegularTimeSeries group as :class:`TimeSeries` (numeric columns only)."""
        regular = kind(group) == "RegularTimeSeries"
        rate = self._rate(group, field) if regular else None
        if not regular:
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
            timestamps = self._regular_timestamps(group, field, rate, n)
        for key, value in values.items():
            if value.shape[0] != len(timestamps):
                raise DataError(
                    self.path,
                    f"{field}/{key}",
                    f"has {value.shape[0]} rows but there are {len(timestamps)} samples",
                    f"write one sample of every '{field}' column per timestamp",
                )
            if value.dtype.kind == "f" and np.isinf(value).any():
                raise DataError(self.path, f"{field}/{key}", "holds inf values", "store gaps as NaN, not inf")
        return TimeSeries(timestamps=timestamps.astype(np.float64), values=values, sampling_rate=rate)

    def identifiers(self) -> tuple[str, str, str]:
        """(brainset, session, subject) ids from the ``id`` attrs of their Data groups; defaults from the path."""
        defaults = {"brainset": self.path.parent.name, "session": self.path.stem, "subject": "unknown"}
        out = []
        for name in ("brainset", "session", "subject"):
            with self.field(f"{name}.attrs[id]"):
                node = self.file.get(name)
                out.append(text(node.attrs["id"]) if isinstance(node, h5py.Group) and "id" in node.attrs else None)
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
        """Collect time series and interval sets, recursing into Data groups; unknown groups are ignored.

        A time series or unchecked interval set that cannot be read is skipped with a warning (see module doc).
        """
        for name, node in group.items():
            field = f"{prefix}{name}"
            if field in _SPECIAL or (prefix and name == "domain"):
                continue
            with self.field(field):
                found = kind(node)
            if found == "Data":
                self.walk(node, f"{field}/", behaviour, intervals)
                continue
            if found not in ("IrregularTimeSeries", "RegularTimeSeries", "Interval"):
                continue
            checked = found == "Interval" and is_checked_interval_set(field)
            try:
                if found == "Interval":
                    intervals[field] = self.intervals(node, field, checked=checked)
                else:
                    behaviour[field] = self.series(node, field)
            except DataError as error:
                if checked:
                    raise
                errors.warn_skipped(error)
                self.skipped[field] = error

    def arrays(self, group: h5py.Group, prefix: str, out: dict[str, np.ndarray]) -> None:
        """Datasets of a Data group and its Data children, keyed ``child/name`` (their domains are skipped)."""
        for name, node in group.items():
            with self.field(f"{group.name.lstrip('/')}/{name}"):
                if isinstance(node, h5py.Dataset):
                    out[f"{prefix}{name}"] = node[()]
                elif kind(node) == "Data":
                    self.arrays(node, f"{prefix}{name}/", out)

    def log_conventions(self) -> None:
        """Log the regular series written with the temporaldata <= 0.1.3 domain convention (once per file)."""
        old = sorted(f for f, c in self.conventions.items() if c == END_AT_LAST)
        if old:
            log.info("%s: regular series %s follow the %s convention", self.path, old, END_AT_LAST)
