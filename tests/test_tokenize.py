"""Tokenization against a naive per-spike loop, the vectorised batcher against the per-window path, and eval trials.

Given hand-built recordings with spikes placed exactly on window and chunk edges, when a window is tokenized, then
every spike in [t0, t0 + c * bw) appears once, in chunk floor((t - t0) / bw), with local time in [0, bw) that adds
back to t - t0, sorted by (chunk, time), and nothing outside the window appears.
"""

import math

import numpy as np
import pytest
from handmade_recordings import intervals, make_recording, vocab_map

from data_pipeline import buckets
from data_pipeline.batch_layout import BATCH_FIELDS
from data_pipeline.batcher import PreparedSession, WindowBatcher, _segment_sums
from data_pipeline.pipeline import iterate_eval_trials
from data_pipeline.tokenize import QueryTable, TokenizerConfig, chunk_and_offset, collate, tokenize_window
from data_pipeline.unit_dropout import UnitDropoutConfig, keep_masks
from experiments.query_rate_check import resampled

T0 = 7.3  # not representable in binary, so t0 + j * bw lands a hair off the true edge


def edge_spikes(t0: float, bw: float, num_chunks: int) -> np.ndarray:
    """Spikes at, just before and just after every chunk edge of the window, and just outside it."""
    edges = t0 + np.arange(num_chunks + 1) * bw
    return np.concatenate([edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf), [t0 + 1e-12]])


def naive_tokens(times, units, unit_index, t0, num_chunks, bw, keep=None):
    """Loop over every spike of the recording; returns (chunk, local time, global unit) in time order."""
    out = []
    end = t0 + num_chunks * bw
    below_bw = np.nextafter(np.float32(bw), np.float32(0))
    for t, u in zip(times.tolist(), units.tolist(), strict=True):
        if not (t0 <= t < end) or (keep is not None and not keep[u]):
            continue
        rel = t - t0
        j = min(max(math.floor(rel / bw), 0), num_chunks - 1)
        local = min(max(np.float32(rel - j * bw), np.float32(0)), below_bw)
        out.append((j, local, unit_index[u]))
    return out


def real(window, key, mask_key="spike_mask"):
    return np.asarray(window[key])[np.asarray(window[mask_key])]


@pytest.mark.parametrize("bw", [0.05, 0.02, 0.01])
def test_window_matches_naive_reference(bw):
    cfg = TokenizerConfig(bin_width=bw)
    c = cfg.window_chunks
    rec = make_recording(seed=1, extra_spikes=edge_spikes(T0, bw, c))
    unit_index, session = vocab_map(rec, 5, 3)

    w = tokenize_window(rec, T0, c, unit_index, session, cfg)

    ref = naive_tokens(rec.spike_times, rec.spike_units, unit_index, T0, c, bw)
    inside = np.count_nonzero((rec.spike_times >= T0) & (rec.spike_times < T0 + c * bw))
    assert len(ref) == inside == int(w["spike_mask"].sum())
    np.testing.assert_array_equal(real(w, "spike_chunk"), [r[0] for r in ref])
    np.testing.assert_array_equal(real(w, "spike_time"), np.array([r[1] for r in ref], np.float32))
    np.testing.assert_array_equal(real(w, "spike_unit"), [r[2] for r in ref])
    # Independently of the formula: local times lie in [0, bw) and add back to the spike time.
    chunk, local = real(w, "spike_chunk"), real(w, "spike_time").astype(np.float64)
    assert np.all((local >= 0) & (local < bw))
    rel = np.sort(rec.spike_times[(rec.spike_times >= T0) & (rec.spike_times < T0 + c * bw)]) - T0
    np.testing.assert_allclose(chunk * bw + local, rel, atol=1e-6, rtol=0)
    order = np.lexsort((local, chunk))
    np.testing.assert_array_equal(order, np.arange(len(order)))
    # Padding: masked, unit 0, chunk repeats the last real chunk, bucketed size.
    pad = ~w["spike_mask"]
    assert len(w["spike_mask"]) == buckets.bucket_size(inside, cfg.spike_buckets)
    assert np.all(w["spike_unit"][pad] == 0) and np.all(w["spike_chunk"][pad] == chunk[-1])
    assert np.all(w["spike_value"] == w["spike_mask"])
    assert w["chunk_mask"].shape == (c,) and w["chunk_mask"].all()


def test_queries_targets_and_weights():
    phases = {
        "movement_phases/reach_period": intervals((7.5, 7.9)),
        "movement_phases/hold_period": intervals((7.9, 8.1)),
        "cursor_outlier_segments": intervals((7.6, 7.7)),
    }
    rec = make_recording(seed=2, phases=phases)
    vel = rec.behaviour["cursor"].values["vel"]
    vel[745] = np.nan  # t = 7.45: a NaN gap
    cfg = TokenizerConfig(target_mean=(1.0, -2.0), target_std=(20.0, 10.0))

    w = tokenize_window(rec, T0, 20, *vocab_map(rec, 1, 1), cfg)

    ts = rec.behaviour["cursor"].timestamps
    sel = np.flatnonzero((ts >= T0) & (ts < T0 + 1.0))
    assert int(w["query_mask"].sum()) == len(sel) == 100
    rel = ts[sel] - T0
    np.testing.assert_array_equal(real(w, "query_chunk", "query_mask"), np.floor(rel / 0.05).astype(int))
    np.testing.assert_allclose(real(w, "query_time", "query_mask"), rel - np.floor(rel / 0.05) * 0.05, atol=1e-7)
    expected = (vel[sel] - [1.0, -2.0]) / [20.0, 10.0]
    weight = np.ones(len(sel))
    t = ts[sel]
    weight[(t >= 7.5) & (t < 7.9)] = 5.0
    weight[(t >= 7.9) & (t < 8.1)] = 0.1
    weight[(t >= 7.6) & (t < 7.7)] = 0.0
    nan = np.isnan(expected).any(axis=1)
    weight[nan] = 0.0
    expected[nan] = 0.0
    np.testing.assert_allclose(real(w, "target", "query_mask"), expected, rtol=1e-6)
    np.testing.assert_allclose(real(w, "weight", "query_mask"), weight, rtol=1e-6)
    assert np.all(w["weight"][~w["query_mask"]] == 0) and np.all(w["query_task"] == 0)


def test_chunk_and_offset_edges_stay_inside():
    bw, c = 0.05, 20
    edges = np.arange(c + 1) * bw
    rel = np.concatenate([edges[:-1], np.nextafter(edges[1:], 0.0), np.nextafter(edges[:-1], 1.0)])
    chunk, local = chunk_and_offset(rel, bw, c)
    assert chunk.min() >= 0 and chunk.max() == c - 1
    assert np.all(local >= 0) and np.all(local < np.float32(bw))
    np.testing.assert_allclose(chunk * bw + local, rel, atol=1e-7)


def test_collate_pads_to_largest_and_fixed_sizes():
    cfg = TokenizerConfig()
    rec = make_recording(seed=3)
    vm = vocab_map(rec, 1, 1)
    ws = [tokenize_window(rec, t, n, *vm, cfg) for t, n in [(1.0, 20), (4.0, 45), (9.0, 3)]]

    batch = collate(ws)

    assert set(batch) == set(BATCH_FIELDS)
    for key, (dtype, legend, _) in BATCH_FIELDS.items():
        assert batch[key].dtype == dtype and batch[key].ndim == len(legend.split()), key
    assert batch["chunk_mask"].shape == (3, 80)
    np.testing.assert_array_equal(batch["chunk_mask"].sum(1), [20, 45, 3])
    for i, w in enumerate(ws):
        n = int(w["spike_mask"].sum())
        np.testing.assert_array_equal(batch["spike_time"][i, :n], w["spike_time"][:n])
        assert np.all(batch["spike_chunk"][i, n:] == w["spike_chunk"][n - 1])
    with pytest.raises(ValueError, match="sizes"):
        collate(ws, buckets.BatchSizes(s=8, q=8, c=20))


@pytest.mark.parametrize("dropout", [None, UnitDropoutConfig(min_units=3, mode_units=5, max_units=8)])
def test_batcher_equals_per_window_path(dropout):
    cfg = TokenizerConfig()
    recs = [make_recording(seed=4, num_units=12, name="a"), make_recording(seed=5, num_units=7, name="b")]
    vms = [vocab_map(recs[0], 1, 1), vocab_map(recs[1], 13, 2)]
    sessions = [PreparedSession.from_recording(r, *vm, cfg) for r, vm in zip(recs, vms, strict=True)]
    batcher = WindowBatcher(sessions, cfg, unit_dropout=dropout)
    rng = np.random.default_rng(0)
    pos = rng.integers(0, 2, 16)
    t0 = rng.uniform(0.0, 11.0, 16)
    t0[0] = recs[pos[0]].spike_times[100]  # a window starting exactly on a spike
    keys = rng.integers(0, 2**63, 16, dtype=np.uint64)

    batch = batcher(pos, t0, keys)

    keep = keep_masks(keys, np.array([12, 7])[pos], dropout) if dropout else [None] * 16
    windows = [
        tokenize_window(recs[p], t, 20, *vms[p], cfg, keep_units=None if dropout is None else k[: (12, 7)[p]])
        for p, t, k in zip(pos, t0, keep, strict=True)
    ]
    expected = collate(windows, batcher.sizes)
    for key in BATCH_FIELDS:
        np.testing.assert_array_equal(batch[key], expected[key], err_msg=key)
    if dropout is not None:  # dropout really removed spikes
        full = collate([tokenize_window(recs[p], t, 20, *vms[p], cfg) for p, t in zip(pos, t0, strict=True)])
        assert batch["spike_mask"].sum() < full["spike_mask"].sum()


def test_segment_sums_with_empty_segments_anywhere():
    rng = np.random.default_rng(0)
    for counts in ([3, 0, 2, 0, 0], [0, 0, 4], [5, 0], [0, 0], [1, 1, 1]):
        values = rng.random(sum(counts)) < 0.5
        edges = np.cumsum([0, *counts])
        expected = [int(values[a:b].sum()) for a, b in zip(edges[:-1], edges[1:], strict=True)]
        np.testing.assert_array_equal(_segment_sums(values, np.array(counts)), expected)


def test_eval_trials_longer_than_a_window_keep_every_spike_and_query():
    trials = intervals((12.1, 14.47), (14.5, 17.5), (17.6, 18.0))  # 2.37 s, 3 s (crosses into test), 0.4 s
    rec = make_recording(seed=6, trials=trials)
    cfg = TokenizerConfig()
    ts = rec.behaviour["cursor"].timestamps

    out = list(iterate_eval_trials(rec, vocab_map(rec, 1, 1), cfg, split="valid", batch_size=2))

    assert [len(tr) for _, tr in out] == [2]  # the 0.4 s trial lies in the test split only
    batch, tr = out[0]
    for i, (a, b) in enumerate(zip(tr.start, tr.end, strict=True)):
        c = math.ceil(round((b - a) / cfg.bin_width, 6))
        assert int(batch["chunk_mask"][i].sum()) == c and c > cfg.window_chunks
        end = a + c * cfg.bin_width
        spikes = rec.spike_times[(rec.spike_times >= a) & (rec.spike_times < end)]
        mask = batch["spike_mask"][i]
        assert mask.sum() == len(spikes) and np.all((spikes >= a) & (spikes < end))
        absolute = a + batch["spike_chunk"][i][mask] * cfg.bin_width + batch["spike_time"][i][mask]
        np.testing.assert_allclose(absolute, spikes, atol=1e-6, rtol=0)
        queries = ts[(ts >= a) & (ts < end)]
        qmask = batch["query_mask"][i]
        assert qmask.sum() == len(queries) > 100
        absolute = a + batch["query_chunk"][i][qmask] * cfg.bin_width + batch["query_time"][i][qmask]
        np.testing.assert_allclose(absolute, queries, atol=1e-6, rtol=0)
    assert batch["chunk_mask"].shape[1] == 80  # 60 chunks padded to the 80-chunk bucket


def test_bad_inputs_raise_clear_errors():
    rec = make_recording(seed=7)
    cfg = TokenizerConfig()
    with pytest.raises(ValueError, match="unit_index"):
        tokenize_window(rec, 1.0, 20, np.arange(1, 5), 1, cfg)  # wrong length
    with pytest.raises(ValueError, match="reserved"):
        tokenize_window(rec, 1.0, 20, np.arange(12), 1, cfg)  # uses index 0
    with pytest.raises(ValueError, match="target"):
        QueryTable.from_recording(rec, TokenizerConfig(target="hand.vel"))
    with pytest.raises(ValueError, match="window"):
        TokenizerConfig(window=1.01)
    rec.behaviour["cursor"].values["vel"] = rec.behaviour["cursor"].values["vel"][:-3]
    with pytest.raises(ValueError, match="timestamps"):
        QueryTable.from_recording(rec, cfg)
    unsorted = make_recording(seed=8)
    unsorted.spike_times[[10, 11]] = unsorted.spike_times[[11, 10]] + [0.0, 1e-3]
    with pytest.raises(ValueError, match="sorted"):
        PreparedSession.from_recording(unsorted, *vocab_map(unsorted, 1, 1), cfg)


@pytest.mark.parametrize(("behaviour_rate", "step"), [(1000.0, 10), (150.0, 2), (100.0, 1)])
def test_query_rate_thins_fast_behaviour_for_training_only(behaviour_rate, step):
    rec = make_recording(seed=7, behaviour_rate=behaviour_rate)
    cfg = TokenizerConfig(query_rate=100.0)
    full = QueryTable.from_recording(rec, TokenizerConfig())
    session = PreparedSession.from_recording(rec, *vocab_map(rec, 1, 1), cfg)

    # Every step-th sample of the full table, unchanged: at most 100 per second.
    np.testing.assert_array_equal(session.queries.times, full.times[::step])
    np.testing.assert_array_equal(session.queries.target, full.target[::step])
    np.testing.assert_array_equal(session.queries.weight, full.weight[::step])
    assert len(session.queries.times) <= 100.0 * 20.0 + 1  # 20 s recording
    batch = WindowBatcher([session], cfg)(np.zeros(4, np.int64), np.array([0.0, 3.3, 7.01, 10.5]), np.zeros(4))
    assert batch["query_mask"].sum(axis=1).max() <= 100 * cfg.window + 1
    # Evaluation scores every sample whatever query_rate says.
    trials = intervals((12.1, 14.47), (14.5, 15.5))
    rec = make_recording(seed=7, behaviour_rate=behaviour_rate, trials=trials)
    batch, tr = next(iter(iterate_eval_trials(rec, vocab_map(rec, 1, 1), cfg, split="valid", batch_size=2)))
    ts = rec.behaviour["cursor"].timestamps
    expected = [
        np.sum((ts >= a) & (ts < a + math.ceil(round((b - a) / cfg.bin_width, 6)) * cfg.bin_width))
        for a, b in zip(tr.start, tr.end, strict=True)
    ]
    np.testing.assert_array_equal(batch["query_mask"].sum(axis=1)[: len(tr)], expected)


def test_query_rate_check_resamples_behaviour_onto_the_finer_grid():
    rec = make_recording(seed=9)  # cursor.vel at 100 Hz from a closed-form sinusoid
    fast = resampled(rec, 1000.0)
    slow, series = rec.behaviour["cursor"], fast.behaviour["cursor"]
    assert series.sampling_rate == 1000.0
    np.testing.assert_allclose(np.diff(series.timestamps), 1e-3, atol=1e-9)
    np.testing.assert_allclose(series.values["vel"][::10], slow.values["vel"], atol=1e-4)  # original samples kept
    mid = (slow.values["vel"][:-1] + slow.values["vel"][1:]) / 2  # linear between them
    np.testing.assert_allclose(series.values["vel"][5::10][: len(mid)], mid, atol=1e-4)


def test_query_rate_zero_keeps_every_sample_and_negative_is_refused():
    rec = make_recording(seed=8, behaviour_rate=1000.0)
    table = QueryTable.from_recording(rec, TokenizerConfig())
    assert table.thinned(0.0) is table
    with pytest.raises(ValueError, match="query_rate"):
        TokenizerConfig(query_rate=-1.0)
