"""Baselines: binned RNN step ≡ window, POYO's re-running streamer ≡ an independently built window, Wiener streaming
step ≡ the fitted filter's batch prediction, and a short training run lowers the loss."""

import numpy as np
from flax import nnx

from data_pipeline.binning import BinnedSegment
from experiments.bench_latency import wiener_stream_step
from possm_jax.backbones import BackboneConfig
from possm_jax.baselines.binned_rnn import BinnedRNN, binned_batches
from possm_jax.baselines.poyo import POYO, POYOConfig, POYOStreamer
from possm_jax.baselines.train_simple import fit
from possm_jax.baselines.wiener import fit_wiener

TASKS = {"cursor_velocity_2d": 2}


def test_binned_gru_step_equals_window():
    model = BinnedRNN(12, BackboneConfig(kind="gru", hidden=32, num_layers=2), TASKS, rngs=nnx.Rngs(0), dim=16)
    counts = np.random.default_rng(0).poisson(1.5, (3, 9, 12)).astype(np.float32)
    window, _ = model({"counts": counts})
    state = model.init_state(3)
    for t in range(9):
        out, state = model.step(counts[:, t], state)
        np.testing.assert_allclose(out["cursor_velocity_2d"], window["cursor_velocity_2d"][:, t], atol=1e-5)


def test_poyo_streamer_reruns_the_last_second():
    # A 0.25 s window (5 chunks) keeps the test quick: every chunk count up to the window compiles once.
    cfg = POYOConfig(dim=32, depth=1, latents_per_step=2, ffn_mult=2, window=0.25)
    model = POYO(cfg, num_units=9, num_sessions=3, rngs=nnx.Rngs(1))
    streamer = POYOStreamer(model)
    rng = np.random.default_rng(2)
    bw, num_chunks = cfg.bin_width, 8
    spike_abs, spike_unit = np.sort(rng.uniform(0, num_chunks * bw, 300)), rng.integers(1, 9, 300)
    query_time = np.array([0.004, 0.021, 0.049], np.float32)
    queries = {"session": 2, "query_time": query_time, "query_task": np.zeros(3, np.int32)}
    for j in range(num_chunks):
        sel = (spike_abs >= j * bw) & (spike_abs < (j + 1) * bw)
        chunk = {"spike_unit": spike_unit[sel], "spike_time": (spike_abs[sel] - j * bw).astype(np.float32)}
        streamed = streamer(chunk, queries)["cursor_velocity_2d"]
    # Independent window: every spike of the last window (0.25 s) in window time, chunk = floor(t / bw) of that frame.
    start = num_chunks * bw - cfg.window
    sel = spike_abs >= start
    rel = spike_abs[sel] - start
    chunk_of = np.minimum(np.floor(rel / bw + 1e-9).astype(np.int32), cfg.window_chunks - 1)
    n = int(sel.sum())
    batch = {
        "spike_unit": spike_unit[sel][None].astype(np.int32),
        "spike_chunk": chunk_of[None],
        "spike_time": (rel - chunk_of * bw)[None].astype(np.float32),
        "spike_mask": np.ones((1, n), bool),
        "chunk_mask": np.ones((1, cfg.window_chunks), bool),
        "session": np.array([2], np.int32),
        "query_chunk": np.full((1, 3), cfg.window_chunks - 1, np.int32),
        "query_time": query_time[None],
        "query_task": np.zeros((1, 3), np.int32),
        "query_mask": np.ones((1, 3), bool),
    }
    expected = model(batch)[0]["cursor_velocity_2d"][0]
    np.testing.assert_allclose(streamed, expected, atol=1e-4)
    # Spikes older than the window must not matter: the streamer keeps only the window's chunks.
    assert len(streamer.history) == cfg.window_chunks


def test_wiener_streaming_step_matches_fit():
    rng = np.random.default_rng(3)
    taps, u = 5, 100
    segs = [(rng.poisson(1.0, (40, u)).astype(float), rng.standard_normal((40, 2))) for _ in range(4)]
    filt, _ = fit_wiener(segs[:3], segs[3:], taps)
    assert filt.weights.shape == (taps * u, 2)  # the shape the latency row times
    counts = segs[3][0]
    history = np.zeros((taps, u))
    streamed = np.stack([wiener_stream_step(filt, history, c) for c in counts])
    np.testing.assert_allclose(streamed, filt.predict(counts), atol=1e-9)


def test_short_training_reduces_loss():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((10, 2))
    segments = []
    for _ in range(6):
        counts = rng.poisson(2.0, (60, 10)).astype(np.float32)
        target = (np.sqrt(counts) @ w / 10).astype(np.float32)
        segments.append((BinnedSegment(counts, np.arange(60) * 0.05, target), np.ones(60)))
    model = BinnedRNN(10, BackboneConfig(kind="gru", hidden=32), TASKS, rngs=nnx.Rngs(0), dim=16)
    info = fit(model, binned_batches(segments, 20, 64, 0), 60, task_names=tuple(TASKS), batch_size=64)
    assert np.mean(info["loss"][-5:]) < 0.7 * np.mean(info["loss"][:5])
