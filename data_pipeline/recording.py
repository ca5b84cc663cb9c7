"""In-memory recording: what the synthetic generators build, the store writer writes and the reader returns.

A :class:`Recording` mirrors one brainsets/temporaldata session file (layout: docs/data.md). The store reader
returns a lazy object with the same attributes whose ``spikes`` are read on demand through
:meth:`Recording.spikes_between`; everything downstream (windows, tokenization, calibration) only uses the attributes
and methods defined here.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from data_pipeline.errors import DataError


@dataclasses.dataclass
class Intervals:
    """A set of time intervals ``[start, end)`` in seconds, sorted by start, with optional extra columns."""

    start: np.ndarray  # f8 [i]
    end: np.ndarray  # f8 [i]
    columns: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # each [i]

    def __len__(self) -> int:
        return len(self.start)

    def total_duration(self) -> float:
        return float(np.sum(self.end - self.start))

    def contains(self, t: np.ndarray) -> np.ndarray:
        """Boolean mask: which times fall inside any interval (half-open)."""
        t = np.asarray(t, dtype=np.float64)
        idx = np.searchsorted(self.start, t, side="right") - 1
        ok = idx >= 0
        inside = np.zeros(t.shape, dtype=bool)
        inside[ok] = t[ok] < self.end[idx[ok]]
        return inside


@dataclasses.dataclass
class TimeSeries:
    """Behaviour samples: ``timestamps`` [t] (f8, sorted) and named value arrays [t, ...].

    ``sampling_rate`` is set for regular series (timestamps = domain start + arange(t) / rate) and None for
    irregular ones. Values may contain NaN gaps.
    """

    timestamps: np.ndarray
    values: dict[str, np.ndarray]
    sampling_rate: float | None = None


class SessionKeys:
    """What both recording types share: vocabulary keys, the source file and the checked lookup of a target.

    Keys derive from ``brainset_id``, ``session_id`` and ``unit_ids``; ``skipped`` holds the errors of file fields
    that were skipped when the file was opened, raised again if a run asks for them.
    """

    brainset_id: str
    session_id: str
    unit_ids: np.ndarray
    behaviour: dict[str, TimeSeries]
    path: object
    skipped: dict[str, DataError]

    @property
    def source(self) -> str:
        """The file the recording was read from, or ``<in memory: brainset/session>`` for one built in memory."""
        return str(self.path) if self.path else f"<in memory: {self.session_key}>"

    def target_series(self, name: str, field: str) -> TimeSeries:
        """Behaviour series ``name``, which must hold value ``field``: what a run decodes.

        Raises:
            DataError: naming the file and field when the series or the field is missing, or was skipped as unusable
              when the file was opened (that error is raised again).
        """
        if name in self.skipped:
            raise self.skipped[name]
        fix = "add it to the session file or choose the target among those (config.tokenizer.target=<name>.<field>)"
        if name not in self.behaviour:
            raise DataError(self.source, name, f"is missing (behaviour here: {sorted(self.behaviour)})", fix)
        series = self.behaviour[name]
        if field not in series.values:
            raise DataError(self.source, f"{name}/{field}", f"is missing ('{name}' has {sorted(series.values)})", fix)
        return series

    @property
    def session_key(self) -> str:
        """The session's vocabulary key, ``brainset/session``."""
        return f"{self.brainset_id}/{self.session_id}"

    @property
    def unit_keys(self) -> list[str]:
        """The units' vocabulary keys, ``brainset/session/unit``, in row order."""
        return [f"{self.session_key}/{u}" for u in self.unit_ids]


@dataclasses.dataclass
class Recording(SessionKeys):
    """One recording session.

    Attributes:
        brainset_id, session_id, subject_id: identifiers; unit ids are namespaced ``brainset/session/unit``.
        unit_ids: [u] local unit names (the ``units/id`` column), unique within the session.
        spike_times: [n] f8 sorted spike times in seconds.
        spike_units: [n] i8 row of ``unit_ids`` per spike.
        domain: where the session has data; ``splits`` maps ``train``/``valid``/``test`` to their domains.
        behaviour: named behaviour series, e.g. ``cursor`` with ``pos``/``vel``/``acc``.
        intervals: named interval sets: ``trials``, ``movement_phases/reach_period``, ``cursor_outlier_segments``...
        truth: generator ground truth (latents, rates, tuning), empty for real data.
        path: the file the recording was read from, None if it was built in memory.
        skipped: errors of the file's fields skipped as unusable when it was read, by field.
    """

    brainset_id: str
    session_id: str
    subject_id: str
    unit_ids: np.ndarray
    spike_times: np.ndarray
    spike_units: np.ndarray
    domain: Intervals
    splits: dict[str, Intervals]
    behaviour: dict[str, TimeSeries]
    intervals: dict[str, Intervals] = dataclasses.field(default_factory=dict)
    truth: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    path: str | None = None
    skipped: dict[str, DataError] = dataclasses.field(default_factory=dict)

    def spikes_between(self, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray]:
        """Spikes with ``t0 <= t < t1``: (times f8 [k], unit rows i8 [k])."""
        i0, i1 = np.searchsorted(self.spike_times, [t0, t1], side="left")
        return self.spike_times[i0:i1], self.spike_units[i0:i1]
