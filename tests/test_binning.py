"""Binning: counts and behaviour sampling against naive loops."""

import numpy as np
import pytest

from data_pipeline import binning
from data_pipeline.recording import Intervals, Recording, TimeSeries


def _naive_counts(times, units, num_units, t0, num_bins, w):
    out = np.zeros((num_bins, num_units), dtype=np.int64)
    for t, u in zip(times, units, strict=True):
        for k in range(num_bins):
            if t0 + k * w <= t < t0 + (k + 1) * w:
                out[k, u] += 1
    return out


def test_bin_spikes_matches_naive_loop():
    # Given random spikes, some outside the binned range
    rng = np.random.default_rng(0)
    times = np.sort(rng.uniform(-0.2, 1.3, 400))
    units = rng.integers(0, 7, 400)
    # When binned / Then every in-range spike lands in the bin a loop over bin edges finds
    got = binning.bin_spikes(times, units, 7, 0.1, 20, 0.05)
    np.testing.assert_array_equal(got, _naive_counts(times, units, 7, 0.1, 20, 0.05))


def test_counts_to_spikes_round_trip():
    rng = np.random.default_rng(1)
    counts = rng.poisson(0.7, (30, 5))
    times, units = binning.counts_to_spikes(counts, 2.0, 0.02)
    assert np.all(np.diff(times) >= 0)
    np.testing.assert_array_equal(binning.bin_spikes(times, units, 5, 2.0, 30, 0.02), counts)


def test_interpolate_linear_edge_hold_and_nan_outside():
    ts = np.arange(10) * 0.1
    values = np.stack([ts * 3.0, -ts], axis=1)
    series = TimeSeries(ts, {"vel": values}, 10.0)
    q = np.array([0.05, 0.37, 0.9, 0.95, 1.5])
    got = binning.interpolate(series, "vel", q)
    np.testing.assert_allclose(got[:3], np.stack([q[:3] * 3.0, -q[:3]], axis=1), atol=1e-12)
    np.testing.assert_allclose(got[3], values[-1], atol=1e-12)  # within one sample past the end: edge held
    assert np.all(np.isnan(got[4]))
    with pytest.raises(ValueError, match="no value 'pos'"):
        binning.interpolate(series, "pos", q)


def test_bin_recording_segments():
    rng = np.random.default_rng(2)
    times = np.sort(rng.uniform(0, 4, 300))
    units = rng.integers(0, 3, 300)
    ts = np.arange(400) / 100
    rec = Recording(
        "b", "s", "m", np.array(["a", "b", "c"]), times, units,
        Intervals(np.array([0.0]), np.array([4.0])), {},
        {"cursor": TimeSeries(ts, {"vel": np.stack([ts, 2 * ts], 1)}, 100.0)},
    )  # fmt: skip
    segs = binning.bin_recording(rec, Intervals(np.array([0.5, 2.0]), np.array([1.27, 3.0])), 0.05)
    assert [len(s.times) for s in segs] == [15, 20]  # the trailing partial bin of [0.5, 1.27) is dropped
    np.testing.assert_array_equal(segs[1].counts, _naive_counts(times, units, 3, 2.0, 20, 0.05))
    np.testing.assert_allclose(segs[0].target[:, 1], 2 * (0.5 + 0.05 * np.arange(1, 16)), atol=1e-9)
