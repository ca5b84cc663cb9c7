"""The grain training pipeline: resume from saved state, determinism, workers, mixing and per-host sharding."""

import itertools

import numpy as np
import pytest
from handmade_recordings import make_recording, vocab_map

from data_pipeline.batch_layout import BATCH_FIELDS
from data_pipeline.pipeline import (
    ProportionalInterleave,
    SessionWindows,
    make_train_dataset,
    make_train_iterator,
    prepare_sessions,
)
from data_pipeline.tokenize import TokenizerConfig

CFG = TokenizerConfig()


@pytest.fixture(scope="module")
def corpus():
    recs = [
        make_recording(seed=0, num_units=10, duration=20.0, name="a"),  # 12 s of train time
        make_recording(seed=1, num_units=16, duration=40.0, name="b"),  # 24 s
    ]
    return recs, [vocab_map(recs[0], 1, 1), vocab_map(recs[1], 11, 2)]


def assert_batches_equal(a, b):
    assert set(a) == set(b) == set(BATCH_FIELDS)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def take(it, n):
    return [next(it) for _ in range(n)]


@pytest.mark.parametrize("prefetch", [0, 2])
def test_resume_yields_the_identical_next_batch(corpus, prefetch):
    it = make_train_iterator(*corpus, CFG, batch_size=4, seed=3, prefetch=prefetch)
    take(it, 5)
    state = it.get_state()
    expected = take(it, 2)

    resumed = make_train_iterator(*corpus, CFG, batch_size=4, seed=3, prefetch=prefetch)
    resumed.set_state(state)

    for a, b in zip(take(resumed, 2), expected, strict=True):
        assert_batches_equal(a, b)


def test_same_seed_same_batches_other_seed_differs(corpus):
    a = take(make_train_iterator(*corpus, CFG, batch_size=4, seed=7, prefetch=0), 3)
    b = take(make_train_iterator(*corpus, CFG, batch_size=4, seed=7, prefetch=0), 3)
    c = take(make_train_iterator(*corpus, CFG, batch_size=4, seed=8, prefetch=0), 3)
    for x, y in zip(a, b, strict=True):
        assert_batches_equal(x, y)
    assert not np.array_equal(a[0]["spike_time"], c[0]["spike_time"])
    assert a[0]["spike_unit"].shape == (4, a[0]["spike_unit"].shape[1]) and a[0]["chunk_mask"].shape == (4, 20)


def test_worker_processes_give_the_same_stream_and_resume(corpus):
    plain = take(make_train_iterator(*corpus, CFG, batch_size=4, seed=5, prefetch=0), 4)
    it = make_train_iterator(*corpus, CFG, batch_size=4, seed=5, num_workers=2)
    try:
        got = take(it, 2)
        state = it.get_state()
    finally:
        it.close()
    resumed = make_train_iterator(*corpus, CFG, batch_size=4, seed=5, num_workers=2)
    try:
        resumed.set_state(state)
        got += take(resumed, 2)
    finally:
        resumed.close()
    for a, b in zip(got, plain, strict=True):
        assert_batches_equal(a, b)


def test_sessions_are_mixed_in_proportion_to_train_time(corpus):
    it = make_train_iterator(*corpus, CFG, batch_size=30, seed=0, prefetch=0)
    sessions = np.concatenate([b["session"] for b in take(it, 10)])
    assert abs(np.mean(sessions == 2) - 24 / 36) < 0.02


def test_interleave_reads_each_session_in_order_in_proportion():
    weights = [3.0, 1.0, 0.5, 2.5]
    mix = ProportionalInterleave(weights, resolution=70)
    picks = np.array([mix[k] for k in range(3 * 70)])  # three periods

    for i, w in enumerate(weights):
        own = picks[picks[:, 0] == i, 1]
        np.testing.assert_array_equal(own, np.arange(len(own)))  # nothing skipped or repeated
        assert len(own) == 3 * round(w / sum(weights) * 70)
        # Evenly spread: any 20 consecutive elements hold the session's share up to rounding.
        counts = np.convolve(picks[:, 0] == i, np.ones(20), mode="valid")
        assert np.all(np.abs(counts - 20 * w / sum(weights)) <= 1.5)
    assert ProportionalInterleave([2.0])[5] == (0, 5)
    with pytest.raises(ValueError, match="mix_weights"):
        ProportionalInterleave([1.0, 0.0])


def test_hosts_get_disjoint_interleaved_slices(corpus):
    sessions = prepare_sessions(*corpus, CFG)
    whole, _ = make_train_dataset(sessions, CFG, batch_size=8, seed=1)
    shards = [make_train_dataset(sessions, CFG, batch_size=4, seed=1, shard_index=i, shard_count=2)[0] for i in (0, 1)]

    for i in range(2):
        # Host i sees elements i, i + 2, i + 4, ... of the global stream.
        assert_batches_equal({k: v[i::2] for k, v in whole[0].items()}, shards[i][0])


def test_session_windows_cover_epochs_inside_train(corpus):
    rec = corpus[0][0]
    src = SessionWindows(0, 1, rec.splits["train"], 1.0, seed=2)
    n = src.per_epoch
    assert n == 12

    epochs = [np.array([src[e * n + k][1] for k in range(n)]) for e in range(3)]

    for starts in epochs:
        assert np.all((starts >= 0.0) & (starts + 1.0 <= 12.0))
        assert np.all(np.diff(np.sort(starts)) > 0)
    assert not np.allclose(np.sort(epochs[0]), np.sort(epochs[1]))
    keys = [src[i][2] for i in range(3 * n)]
    assert len(set(keys)) == len(keys)
    again = SessionWindows(0, 1, rec.splits["train"], 1.0, seed=2)
    assert [again[i] for i in itertools.chain(range(30, 33), range(3))] == [
        src[i] for i in itertools.chain(range(30, 33), range(3))
    ]


def test_bad_arguments(corpus):
    recs, vms = corpus
    with pytest.raises(ValueError, match="vocab_maps"):
        make_train_iterator(recs, vms[:1], CFG, batch_size=4, seed=0)
    with pytest.raises(ValueError, match="shard_index"):
        make_train_iterator(recs, vms, CFG, batch_size=4, seed=0, shard_index=2, shard_count=2)


def test_throughput_measurement_runs(corpus):
    from data_pipeline.throughput import measure_windows_per_second

    got = measure_windows_per_second(corpus[0], CFG, batch_size=8, seconds=0.05)

    assert got["windows_per_second"] > 0 and got["grain_windows_per_second"] > 0 and got["batches"] > 0
    assert got["sizes"][2] == 20 and 0 < got["spikes_per_window"] <= got["sizes"][0]


def test_synthetic_tiny_corpus_end_to_end():
    synth = pytest.importorskip("data_pipeline.synth.sessions")
    presets = pytest.importorskip("data_pipeline.synth.presets")
    recs = [rec for _, rec in synth.generate(presets.get_preset("tiny"), seed=0)]
    first = np.cumsum([1] + [len(r.unit_ids) for r in recs])
    vms = [(np.arange(a, a + len(r.unit_ids)), i + 1) for i, (a, r) in enumerate(zip(first, recs, strict=False))]

    batch = next(make_train_iterator(recs, vms, CFG, batch_size=16, seed=0, prefetch=0))

    weights = np.unique(batch["weight"][batch["query_mask"]])
    assert 5.0 in weights and np.all(np.isin(weights, np.float32([0.0, 0.1, 1.0, 5.0])))  # reach, hold, return
    units = batch["spike_unit"][batch["spike_mask"]]
    assert units.min() >= 1 and units.max() < first[-1]
