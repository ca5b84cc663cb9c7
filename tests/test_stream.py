"""Replaying a recording chunk by chunk through the Streamer equals the windowed forward over the same span."""

import numpy as np
import pytest
from flax import nnx

import possm_jax
from data_pipeline.stream import stream_chunks
from data_pipeline.tokenize import TokenizerConfig, collate, tokenize_window
from tests.handmade_recordings import make_recording, vocab_map


@pytest.fixture(scope="module")
def setup():
    rec = make_recording(seed=3, num_units=10, rate=40.0, duration=6.0)
    unit_index, session_index = vocab_map(rec, first_unit=1, session_index=1)
    model = possm_jax.POSSM(possm_jax.get_preset("possm_small"), num_units=12, num_sessions=2, rngs=nnx.Rngs(0))
    return rec, unit_index, session_index, model


def test_chunks_partition_the_span(setup):
    """Given a 2.37 s span, every spike and behaviour sample lands in exactly one chunk at the right local time."""
    rec, unit_index, session_index, _ = setup
    cfg = TokenizerConfig()
    t0, t1 = 1.013, 3.383
    chunks = list(stream_chunks(rec, unit_index, session_index, cfg, t0, t1))
    assert len(chunks) == int(np.ceil((t1 - t0) / cfg.bin_width))
    end = t0 + len(chunks) * cfg.bin_width
    expected = rec.spike_times[(rec.spike_times >= t0) & (rec.spike_times < end)]
    got = np.concatenate([c.start + c.chunk["spike_time"][0].astype(np.float64) for c in chunks])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    for c in chunks:
        assert np.all((c.chunk["spike_time"] >= 0) & (c.chunk["spike_time"] < cfg.bin_width))
        np.testing.assert_allclose(c.start + c.queries["query_time"][0], c.query_times, atol=1e-6)
    behaviour = rec.behaviour["cursor"].timestamps
    assert sum(len(c.query_times) for c in chunks) == np.count_nonzero((behaviour >= t0) & (behaviour < end))


def test_streamer_matches_windowed_forward(setup):
    """When a span is streamed through possm_jax.Streamer, predictions equal the window forward (1e-4)."""
    rec, unit_index, session_index, model = setup
    cfg = TokenizerConfig()
    t0, num_chunks = 0.5, 30  # 1.5 s: longer than a training window
    window = tokenize_window(rec, t0, num_chunks, unit_index, session_index, cfg)
    batch = collate([window])
    preds, _ = model(batch)
    q = int(batch["query_mask"].sum())
    expected = np.asarray(preds["cursor_velocity_2d"])[0, :q]

    streamer = possm_jax.Streamer(model)
    state = streamer.init(1)
    got = []
    for c in stream_chunks(rec, unit_index, session_index, cfg, t0, t0 + num_chunks * cfg.bin_width):
        state, out = streamer(state, c.chunk, c.queries)
        got.append(np.asarray(out["cursor_velocity_2d"])[0])
    got = np.concatenate(got)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_rejects_empty_span(setup):
    rec, unit_index, session_index, _ = setup
    with pytest.raises(ValueError, match="t1"):
        next(stream_chunks(rec, unit_index, session_index, TokenizerConfig(), 2.0, 2.0))
