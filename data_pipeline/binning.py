"""Binned views of a recording for the binned baselines (Wiener filter, GRU/S4D/Mamba on counts) and calibration.

Bin ``k`` of a segment starting at ``t0`` covers ``[t0 + k·w, t0 + (k+1)·w)``; its *time* is its end
``t0 + (k+1)·w``, so a decoder reading bins up to ``k`` and predicting behaviour at that time is causal.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from data_pipeline.recording import Intervals, Recording, TimeSeries


def bin_spikes(
    spike_times: np.ndarray, spike_units: np.ndarray, num_units: int, t0: float, num_bins: int, bin_width: float
) -> np.ndarray:
    """Spike counts per bin and unit.

    Args:
        spike_times: [n] seconds (any order).
        spike_units: [n] unit rows in ``[0, num_units)``.
        num_units: u.
        t0: start of the first bin.
        num_bins: t.
        bin_width: seconds.

    Returns:
        [t, u] int64 counts; spikes outside ``[t0, t0 + t·w)`` are ignored.
    """
    k = np.floor((np.asarray(spike_times) - t0) / bin_width).astype(np.int64)
    ok = (k >= 0) & (k < num_bins)
    flat = k[ok] * num_units + np.asarray(spike_units)[ok]
    return np.bincount(flat, minlength=num_bins * num_units).reshape(num_bins, num_units)


def interpolate(series: TimeSeries, key: str, times: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``series.values[key]`` ([t, ...]) at ``times`` [m]; NaN next to NaN samples.

    Within one sample spacing past either end the edge sample is held (a bin ending at the domain end, just after
    the last sample, still gets a target); further out the result is NaN.

    Returns:
        [m, ...] float64.
    """
    if key not in series.values:
        raise ValueError(f"behaviour has no value {key!r}; available: {sorted(series.values)}")
    ts = series.timestamps
    values = np.asarray(series.values[key], dtype=np.float64)
    flat = values.reshape(len(ts), -1)
    i1 = np.clip(np.searchsorted(ts, times, side="right"), 1, len(ts) - 1)
    i0 = i1 - 1
    frac = np.clip((times - ts[i0]) / (ts[i1] - ts[i0]), 0.0, 1.0)[:, None]
    out = flat[i0] * (1.0 - frac) + flat[i1] * frac
    spacing = np.median(np.diff(ts)) if len(ts) > 1 else 0.0
    out[(times < ts[0] - spacing) | (times > ts[-1] + spacing)] = np.nan
    return out.reshape(len(times), *values.shape[1:])


@dataclasses.dataclass
class BinnedSegment:
    """One contiguous stretch of binned data.

    Attributes:
        counts: [t, u] spike counts.
        times: [t] bin end times (s).
        target: [t, y] behaviour at ``times``.
    """

    counts: np.ndarray
    times: np.ndarray
    target: np.ndarray


def bin_recording(
    recording: Recording, intervals: Intervals, bin_width: float, behaviour: str = "cursor", key: str = "vel"
) -> list[BinnedSegment]:
    """Bins each interval (e.g. each trial of a split) separately: whole bins from the interval start.

    Args:
        recording: the session.
        intervals: where to bin; one segment per interval (a trailing partial bin is dropped).
        bin_width: seconds.
        behaviour, key: which behaviour value becomes the target, sampled at the bin end times.

    Returns:
        One :class:`BinnedSegment` per interval that holds at least one bin.
    """
    if behaviour not in recording.behaviour:
        raise ValueError(f"recording {recording.session_key} has no behaviour {behaviour!r}")
    segments = []
    for t0, t1 in zip(intervals.start, intervals.end, strict=True):
        num_bins = int(np.floor((t1 - t0) / bin_width + 1e-9))
        if num_bins == 0:
            continue
        times, units = recording.spikes_between(t0, t0 + num_bins * bin_width)
        counts = bin_spikes(times, units, len(recording.unit_ids), t0, num_bins, bin_width)
        bin_end = t0 + bin_width * np.arange(1, num_bins + 1)
        target = interpolate(recording.behaviour[behaviour], key, bin_end)
        segments.append(BinnedSegment(counts, bin_end, target.reshape(num_bins, -1)))
    return segments


def counts_to_spikes(counts: np.ndarray, t0: float, bin_width: float) -> tuple[np.ndarray, np.ndarray]:
    """Represents binned counts as spikes at bin centres (the inverse of :func:`bin_spikes` on the same grid).

    Args:
        counts: [t, u] non-negative integer counts.
        t0: start of the first bin.
        bin_width: seconds.

    Returns:
        (times f8 [n] sorted, unit rows i8 [n]): ``counts[k, i]`` copies of ``t0 + (k + 0.5)·w`` for unit ``i``.
    """
    k, unit = np.nonzero(counts)
    reps = counts[k, unit]
    return np.repeat(t0 + (k + 0.5) * bin_width, reps), np.repeat(unit.astype(np.int64), reps)
