"""Jitted, bucketed streaming step and its jax.export form, against the windowed forward."""

import numpy as np
import pytest
from flax import nnx
from possm_batches import chunk_inputs, random_batch

from data_pipeline.buckets import next_pow2
from possm_jax.backbones.registry import BackboneConfig
from possm_jax.config import get_preset
from possm_jax.possm import POSSM
from possm_jax.streaming import LoadedStep, Streamer, export_step, exported_step, load_step, pad_inputs

C, S, Q, U = 6, 64, 12, 30
TASK = "cursor_velocity_2d"


@pytest.fixture(scope="module")
def model():
    cfg = get_preset("possm_small", backbone=BackboneConfig(kind="gru", hidden=64))
    return POSSM(cfg, num_units=U, num_sessions=3, rngs=nnx.Rngs(0))


def test_next_pow2():
    assert [next_pow2(n, 16) for n in (0, 1, 16, 17, 100, 128, 129)] == [16, 16, 16, 32, 128, 128, 256]
    assert [next_pow2(n, 8) for n in (5, 8, 9)] == [8, 8, 16]
    assert [next_pow2(n) for n in (0, 1, 2, 3, 1000)] == [1, 1, 2, 4, 1024]


def test_streamer_equals_window_with_varying_spike_counts(model):
    batch = random_batch(0, chunks=C, spikes=S, queries=Q, num_units=U)
    window = np.asarray(model(batch)[0][TASK])
    streamer = Streamer(model)
    state = streamer.init(2)
    for j in range(C):
        chunk, queries, positions = chunk_inputs(batch, j, 20, 4)  # exact sizes; the streamer pads to buckets
        n_real = chunk["spike_mask"].sum(1).max()
        chunk = {k: v[:, : max(n_real, 1)] for k, v in chunk.items()}
        state, preds = streamer(state, chunk, {k: v for k, v in queries.items() if k != "query_mask"})
        assert preds[TASK].shape == (2, 4, 2)
        for row, pos in enumerate(positions):
            np.testing.assert_allclose(np.asarray(preds[TASK])[row, : len(pos)], window[row, pos], atol=1e-5)


def _run_exported(loaded: LoadedStep, model, batch):
    state, live_state = loaded.init_state(), model.init_stream(2)
    for j in range(C):
        chunk, queries, _ = chunk_inputs(batch, j, 32, 4)
        chunk, queries = pad_inputs(chunk, queries, 32, 4)
        state, preds = loaded(state, chunk, queries)
        live_state, live = model.step(live_state, chunk, queries)
        np.testing.assert_allclose(np.asarray(preds[TASK]), np.asarray(live[TASK]), atol=1e-5)


def test_exported_step_equals_live_step(model):
    batch = random_batch(1, chunks=C, spikes=S, queries=Q, num_units=U)
    _run_exported(LoadedStep(exported_step(model, 2, 32, 4)), model, batch)


def test_serialised_step_reloads_and_equals_live_step(model):
    pytest.importorskip("flatbuffers", reason="jax.export serialisation needs the flatbuffers package")
    batch = random_batch(2, chunks=C, spikes=S, queries=Q, num_units=U)
    _run_exported(load_step(export_step(model, 2, 32, 4)), model, batch)


def test_streamer_rejects_bad_chunk(model):
    streamer = Streamer(model)
    chunk = {
        "spike_unit": np.array([[1, U + 5]], np.int32),
        "spike_time": np.array([[0.01, 0.02]], np.float32),
        "spike_mask": np.ones((1, 2), bool),
    }
    queries = {"session": np.array([1], np.int32), "query_time": np.zeros((1, 1), np.float32)}
    queries["query_task"] = np.zeros((1, 1), np.int32)
    with pytest.raises(ValueError, match=r"chunk\['spike_unit'\]"):
        streamer(streamer.init(1), chunk, queries)
