"""Training windows, evaluation trials, bucket sizes and unit dropout statistics."""

import numpy as np
import pytest
from handmade_recordings import intervals, make_recording

from data_pipeline import buckets
from data_pipeline.unit_dropout import UnitDropoutConfig, keep_masks, kept_unit_counts, splitmix64
from data_pipeline.windows import epoch_window_starts, eval_trials, trial_num_chunks, windows_per_epoch

TRAIN = intervals((0.0, 10.5), (12.0, 13.0), (20.0, 20.7), (30.0, 33.2))  # 10 + 1 + 0 + 3 windows per epoch


def test_epoch_windows_lie_inside_train_and_are_fresh_per_epoch():
    starts = [epoch_window_starts(TRAIN, 1.0, np.random.default_rng([0, e])) for e in range(3)]

    assert windows_per_epoch(TRAIN, 1.0) == 14
    for s in starts:
        assert len(s) == 14
        inside = [np.any((a >= TRAIN.start) & (a + 1.0 <= TRAIN.end)) for a in s]
        assert all(inside)
    assert not np.allclose(np.sort(starts[0]), np.sort(starts[1]))  # new offsets each epoch
    again = epoch_window_starts(TRAIN, 1.0, np.random.default_rng([0, 1]))
    np.testing.assert_array_equal(again, starts[1])  # deterministic given the seed and epoch


def test_epoch_windows_cover_valid_starts_uniformly():
    # Over many epochs, starts are uniform over the set of valid starts [0, 9.5] ∪ [12, 12] ∪ [30, 32.2]: the
    # measure of [0, 9.5] is 9.5 / 11.7 of it.
    all_starts = np.concatenate([epoch_window_starts(TRAIN, 1.0, np.random.default_rng(e)) for e in range(400)])
    first = all_starts < 10.0
    assert abs(first.mean() - 9.5 / 11.7) < 0.01
    hist, _ = np.histogram(all_starts[first], bins=19, range=(0.0, 9.5))
    assert hist.min() > 0.85 * hist.mean() and hist.max() < 1.15 * hist.mean()


def test_touching_intervals_merge_into_one_block():
    trials = intervals((0.0, 0.6), (0.6, 1.2), (1.2, 2.1), (5.0, 5.5))  # back-to-back trials of 0.6, 0.6, 0.9 s
    assert windows_per_epoch(trials, 1.0) == 2
    starts = epoch_window_starts(trials, 1.0, np.random.default_rng(0))
    assert np.all((starts >= 0.0) & (starts + 1.0 <= 2.1))


def test_no_interval_long_enough_raises():
    with pytest.raises(ValueError, match="window"):
        windows_per_epoch(intervals((0.0, 0.5), (1.0, 1.9)), 1.0)


def test_eval_trials_are_whole_trials_meeting_the_split():
    trials = intervals((11.0, 12.5), (12.5, 13.0), (15.0, 16.2), (16.5, 17.0))
    rec = make_recording(duration=20.0, trials=trials)  # valid split: [12, 16)

    got = eval_trials(rec, "valid")

    np.testing.assert_array_equal(got.start, [11.0, 12.5, 15.0])  # straddling trials are kept whole
    np.testing.assert_array_equal(got.end, [12.5, 13.0, 16.2])
    no_trials = make_recording(duration=20.0)
    np.testing.assert_array_equal(eval_trials(no_trials, "test").start, [16.0])
    with pytest.raises(ValueError, match="split"):
        eval_trials(rec, "holdout")


def test_trial_num_chunks():
    assert trial_num_chunks(1.0, 0.05) == 20
    assert trial_num_chunks(2.37, 0.05) == 48
    assert trial_num_chunks(0.001, 0.05) == 1


def test_bucket_size_and_max_events():
    assert buckets.bucket_size(0, (8, 16)) == 8
    assert buckets.bucket_size(9, (8, 16)) == 16
    assert buckets.bucket_size(40, (8, 16)) == 48  # past the ladder: multiples of the largest bucket
    times = np.sort(np.random.default_rng(0).uniform(0, 50, 3000))
    brute = max(np.count_nonzero((times >= a) & (times < a + 1.0)) for a in times)
    assert buckets.max_events_in_window(times, 1.0) == brute
    with pytest.raises(ValueError, match="spike_buckets"):
        buckets.check_buckets((8, 8), "spike_buckets")


def triangular_cdf(x, lo, mode, hi):
    x = np.clip(x, lo, hi)
    with np.errstate(divide="ignore", invalid="ignore"):  # one side is 0/0 when mode sits at a bound
        left = (x - lo) ** 2 / ((hi - lo) * (mode - lo))
        right = 1 - (hi - x) ** 2 / ((hi - lo) * (hi - mode))
    return np.where(x <= mode, left, right)


@pytest.mark.parametrize(
    ("units", "lo", "mode", "hi"), [(150, 60, 150, 150), (2000, 60, 300, 1000), (500, 60, 300, 500)]
)
def test_unit_dropout_counts_follow_the_capped_triangular(units, lo, mode, hi):
    keys = splitmix64(np.arange(40_000, dtype=np.uint64))

    counts = kept_unit_counts(keys, np.full(len(keys), units), UnitDropoutConfig())

    assert counts.min() >= lo and counts.max() <= hi
    assert abs(counts.mean() - (lo + mode + hi) / 3) < 0.01 * (lo + mode + hi) / 3
    grid = np.linspace(lo + 1, hi - 1, 9)
    empirical = np.array([(counts <= g).mean() for g in grid])
    np.testing.assert_allclose(empirical, triangular_cdf(grid + 0.5, lo, mode, hi), atol=0.01)


def test_unit_dropout_really_drops_on_small_sessions():
    keys = splitmix64(np.arange(5000, dtype=np.uint64))
    num_units = np.full(5000, 150)

    keep = keep_masks(keys, num_units, UnitDropoutConfig())

    fraction = keep.mean()
    assert fraction < 0.85 and abs(fraction - 120 / 150) < 0.01  # E[count] = (60 + 150 + 150) / 3
    np.testing.assert_array_equal(keep.sum(1), kept_unit_counts(keys, num_units, UnitDropoutConfig()))
    per_unit = keep.mean(0)  # every unit is equally likely to be kept
    assert per_unit.min() > 0.75 and per_unit.max() < 0.85
    assert np.all(keep_masks(keys[:50], np.full(50, 40), UnitDropoutConfig()))  # <= 60 units: keep all


def test_unit_dropout_depends_only_on_the_window_key():
    keys = splitmix64(np.arange(6, dtype=np.uint64))
    alone = keep_masks(keys[2:3], np.array([90]), UnitDropoutConfig())
    mixed = keep_masks(keys, np.array([300, 200, 90, 90, 150, 70]), UnitDropoutConfig())
    np.testing.assert_array_equal(mixed[2, :90], alone[0])
    assert not mixed[2, 90:].any()
