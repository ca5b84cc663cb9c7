"""The public Streamer in a live session: no compilation after warm-up, many streams in one step, per-stream reset,
and the fast host-side check agreeing with the full validator."""

import contextlib

import numpy as np
import pytest
from flax import nnx
from jax._src import dispatch, monitoring

from possm_jax.backbones.registry import BackboneConfig
from possm_jax.config import get_preset
from possm_jax.possm import POSSM
from possm_jax.stream_inputs import InputLimits, inputs_ok
from possm_jax.streaming import Streamer, stack_streams
from possm_jax.validate import InputError, check_step

U, SESSIONS, TASK = 30, 3, "cursor_velocity_2d"


@pytest.fixture(scope="module")
def model():
    cfg = get_preset("possm_small", backbone=BackboneConfig(kind="gru", hidden=64))
    return POSSM(cfg, num_units=U, num_sessions=SESSIONS, rngs=nnx.Rngs(0))


@contextlib.contextmanager
def count_xla_compiles():
    """Counts XLA backend compilations (JAX records one duration event per compile) inside the block."""
    events = []

    def listener(event: str, duration: float, **_) -> None:
        if event == dispatch.BACKEND_COMPILE_EVENT:
            events.append(duration)

    monitoring.register_event_duration_secs_listener(listener)
    try:
        yield events
    finally:
        monitoring.unregister_event_duration_listener(listener)


def one_stream_chunk(rng, n: int, q: int, session: int) -> tuple[dict, dict]:
    """A batch-1 chunk with ``n`` sorted spikes and ``q`` queries."""
    chunk = {
        "spike_unit": rng.integers(1, U, (1, n)).astype(np.int32),
        "spike_time": np.sort(rng.uniform(0, 0.05, (1, n))).astype(np.float32),
        "spike_mask": np.ones((1, n), bool),
    }
    queries = {
        "session": np.array([session], np.int32),
        "query_time": rng.uniform(0, 0.05, (1, q)).astype(np.float32),
        "query_task": np.zeros((1, q), np.int32),
    }
    return chunk, queries


def test_no_compilation_after_warmup(model):
    """Given warmup(b=2, 64 spikes, 8 queries), streaming chunks of 0..64 spikes, init and reset compile nothing."""
    rng = np.random.default_rng(0)
    counts = [0, 3, 17, 40, 64, 1, 33, 16]
    stream = [stack_streams(*zip(*(one_stream_chunk(rng, n, 5, 1) for _ in range(2)), strict=True)) for n in counts]
    cold = Streamer(model)
    with count_xla_compiles() as compiles:
        state = cold.init(2)
        for chunk, queries, _ in stream[:2]:
            state, _ = cold(state, chunk, queries)
    assert len(compiles) >= 1  # the counter sees the compilation of the 16-spike bucket on a cold streamer

    warm = Streamer(model)
    assert warm.warmup(2, max_spikes=64, max_queries=8) == 3  # spike buckets 16, 32, 64
    with count_xla_compiles() as compiles:
        state = warm.init(2)
        for j, (chunk, queries, _) in enumerate(stream):
            state, preds = warm(state, chunk, queries)
            if j == 4:
                state = warm.reset(state, np.array([True, False]))
    assert preds[TASK].shape == (2, 5, 2)
    assert compiles == []


def test_stacked_streams_equal_single_streams_and_reset_restarts_one(model):
    """Three streams with different spike counts and sessions, stepped together, equal each stream stepped alone;
    resetting stream 1 at chunk 3 equals starting a fresh stream there."""
    rng = np.random.default_rng(1)
    sizes = [(5, 3, 1), (20, 5, 2), (0, 1, 1)]  # (spikes, queries, session) per stream
    chunks = [[one_stream_chunk(rng, n + j, q, s) for n, q, s in sizes] for j in range(6)]
    streamer = Streamer(model)
    state = streamer.init(3)
    alone = [streamer.init(1) for _ in sizes]
    for j, per_stream in enumerate(chunks):
        if j == 3:
            state = streamer.reset(state, np.array([False, True, False]))
            alone[1] = streamer.init(1)
        chunk, queries, q_counts = stack_streams(*zip(*per_stream, strict=True))
        state, preds = streamer(state, chunk, queries)
        for i, (c, q) in enumerate(per_stream):
            alone[i], single = streamer(alone[i], c, q)
            np.testing.assert_allclose(preds[TASK][i, : q_counts[i]], single[TASK][0], atol=1e-5)


def _valid_inputs(rng) -> tuple[dict, dict]:
    chunk, queries = one_stream_chunk(rng, 6, 3, 2)
    return chunk, queries


CORRUPTIONS = {
    "unit out of range": lambda c, q: c["spike_unit"].__setitem__((0, 2), U),
    "negative time": lambda c, q: c["spike_time"].__setitem__((0, 0), -0.001),
    "time past chunk": lambda c, q: c["spike_time"].__setitem__((0, 5), 0.05),
    "unsorted": lambda c, q: c["spike_time"].__setitem__((0, 1), 0.0),
    "session out of range": lambda c, q: q["session"].__setitem__(0, SESSIONS),
    "task out of range": lambda c, q: q["query_task"].__setitem__((0, 1), 1),
    "nan query time": lambda c, q: q["query_time"].__setitem__((0, 0), np.nan),
    "float units": lambda c, q: c.__setitem__("spike_unit", c["spike_unit"].astype(np.float32)),
    "missing mask": lambda c, q: c.pop("spike_mask"),
    "masked garbage is fine": lambda c, q: (
        c["spike_mask"].__setitem__((0, 2), False),
        c["spike_unit"].__setitem__((0, 2), 999),
        c["spike_time"].__setitem__((0, 2), 9.0),
    ),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_fast_check_agrees_with_validator(model, case):
    """inputs_ok is False exactly when possm_jax.validate.check_step raises, and the Streamer raises its message."""
    chunk, queries = _valid_inputs(np.random.default_rng(2))
    CORRUPTIONS[case](chunk, queries)
    limits = InputLimits(U, SESSIONS, 0.05, 1, False)
    try:
        check_step(chunk, queries, model)
        valid = True
    except InputError:
        valid = False
    assert inputs_ok(chunk, queries, limits) == valid
    streamer = Streamer(model)
    if valid:
        streamer(streamer.init(1), chunk, queries)
    else:
        with pytest.raises(InputError):
            streamer(streamer.init(1), chunk, queries)
