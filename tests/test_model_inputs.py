"""Bad inputs to the public entry points raise a ValueError naming the argument, before any computation."""

import numpy as np
import pytest
from flax import nnx
from possm_batches import chunk_inputs, random_batch

from possm_jax.backbones.registry import BackboneConfig
from possm_jax.config import get_preset
from possm_jax.possm import POSSM
from possm_jax.validate import InputError, check_batch

U = 30


@pytest.fixture(scope="module")
def model():
    cfg = get_preset("possm_small", backbone=BackboneConfig(kind="gru", hidden=32))
    return POSSM(cfg, num_units=U, num_sessions=3, rngs=nnx.Rngs(0))


def _batch():
    return random_batch(0, chunks=4, spikes=32, queries=8, num_units=U)


def _set(batch, key, row, col, value):
    out = {k: v.copy() for k, v in batch.items()}
    out[key][row, col] = value
    return out


CASES = {
    "mismatched spike/unit lengths": (lambda b: dict(b, spike_time=b["spike_time"][:, :-1]), "same shape"),
    "unit outside vocabulary": (lambda b: _set(b, "spike_unit", 0, 0, U), r"batch\['spike_unit'\]"),
    "negative unit": (lambda b: _set(b, "spike_unit", 1, 2, -1), r"batch\['spike_unit'\]"),
    "negative time": (lambda b: _set(b, "spike_time", 0, 0, -0.001), r"batch\['spike_time'\]"),
    "time >= bin width": (lambda b: _set(b, "spike_time", 0, 1, 0.05), r"batch\['spike_time'\]"),
    "NaN time": (lambda b: _set(b, "spike_time", 0, 1, np.nan), r"batch\['spike_time'\]"),
    "unsorted times": (lambda b: _set(b, "spike_time", 0, 1, b["spike_time"][0, 0] - 1e-4), "not sorted"),
    "float unit ids": (lambda b: dict(b, spike_unit=b["spike_unit"].astype(np.float32)), r"spike_unit'\] has dtype"),
    "int times": (lambda b: dict(b, spike_time=b["spike_time"].astype(np.int32)), r"spike_time'\] has dtype"),
    "int mask": (lambda b: dict(b, spike_mask=b["spike_mask"].astype(np.int8)), r"spike_mask'\] has dtype"),
    "empty window": (lambda b: dict(b, chunk_mask=np.zeros((2, 0), bool)), "empty window"),
    "missing key": (lambda b: {k: v for k, v in b.items() if k != "query_time"}, "missing key 'query_time'"),
    "spike chunk past the window": (
        lambda b: _set(b, "spike_chunk", 1, b["spike_mask"][1].sum() - 1, 4),  # the last real token: still sorted
        r"batch\['spike_chunk'\]",
    ),
    "session outside vocabulary": (lambda b: dict(b, session=np.array([1, 3], np.int32)), r"batch\['session'\]"),
    "query time >= bin width": (lambda b: _set(b, "query_time", 0, 0, 0.07), r"batch\['query_time'\]"),
    "unknown task": (lambda b: _set(b, "query_task", 0, 0, 1), r"batch\['query_task'\]"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_batch_raises_naming_the_argument(model, case):
    corrupt, pattern = CASES[case]
    bad = corrupt(_batch())
    with pytest.raises(ValueError, match=pattern):
        check_batch(bad, model)
    with pytest.raises(InputError):
        model(bad)


def test_valid_batch_passes_and_padding_is_not_checked(model):
    batch = _batch()
    pad = ~batch["spike_mask"]
    batch["spike_unit"][pad], batch["spike_time"][pad] = 10**6, -5.0  # garbage in padding is ignored
    check_batch(batch, model)


def test_bad_step_inputs_raise_naming_the_argument(model):
    chunk, queries, _ = chunk_inputs(_batch(), 1, 16, 4)
    state = model.init_stream(2)
    model.step(state, chunk, queries)
    with pytest.raises(ValueError, match=r"chunk\['spike_time'\]"):
        model.step(state, _set(chunk, "spike_time", 0, 0, 0.2), queries)
    with pytest.raises(ValueError, match=r"queries\['query_time'\]"):
        model.step(state, chunk, _set(queries, "query_time", 0, 0, -1.0))
    with pytest.raises(ValueError, match="batch size"):
        one_row = {k: v[:1] for k, v in queries.items() if k != "session"}
        model.step(state, chunk, dict(queries, **one_row))
