"""Packing spike tokens across batch rows: every token kept in its shard, forward and sharded training unchanged."""

import jax
import numpy as np
import pytest
from flax import nnx
from possm_batches import random_batch

from data_pipeline.packing import pack_spikes, pack_stream, packed_width, trim_stream
from possm_jax.backbones.registry import BackboneConfig
from possm_jax.config import get_preset
from possm_jax.possm import POSSM
from possm_jax.train.loss import multitask_loss
from possm_jax.train.optim import reference_lamb
from possm_jax.train.sharding import make_mesh, pack_host_batch, replicate, shard_batch
from possm_jax.train.state import create_train_state
from possm_jax.train.step import make_train_step

B, C, S, Q, U = 8, 6, 96, 12, 30
TASK = "cursor_velocity_2d"


def _uneven_batch(seed: int) -> dict[str, np.ndarray]:
    """A batch whose rows hold very different spike counts (one dense row, several nearly empty ones)."""
    batch = random_batch(seed, batch=B, chunks=C, spikes=S, queries=Q, num_units=U)
    keep = np.random.default_rng(seed).integers(0, 12, B)
    keep[3] = S
    batch["spike_mask"] &= np.arange(S)[None, :] < keep[:, None]
    batch["target"] = np.random.default_rng(seed + 1).normal(size=(B, Q, 2)).astype(np.float32)
    batch["weight"] = batch["query_mask"].astype(np.float32)
    return batch


def _tokens(batch: dict[str, np.ndarray]) -> list[tuple]:
    """Every real token as (window, chunk, time, unit, value), in storage order."""
    real = batch["spike_mask"]
    window = batch.get("spike_window", np.broadcast_to(np.arange(real.shape[0])[:, None], real.shape))
    keys = (window, batch["spike_chunk"], batch["spike_time"], batch["spike_unit"], batch["spike_value"])
    return list(zip(*(np.asarray(k)[real].tolist() for k in keys), strict=True))


@pytest.mark.parametrize("shards", [1, 2, 4])
def test_packing_keeps_every_token_in_its_shard(shards):
    batch = _uneven_batch(0)
    packed = pack_spikes(batch, shards)
    rows = B // shards
    assert packed["spike_mask"].shape[1] == packed_width(batch, shards) < S
    assert _tokens(packed) == _tokens(batch)  # same tokens, same (window, chunk, time) order
    real = packed["spike_mask"]
    row_shard = np.broadcast_to((np.arange(B) // rows)[:, None], real.shape)
    np.testing.assert_array_equal(packed["spike_window"][real] // rows, row_shard[real])
    assert np.all(packed["spike_window"][~real] // rows == row_shard[~real])  # padding stays in its shard too
    for key in ("session", "query_time", "chunk_mask"):
        assert packed[key] is batch[key]


def test_packed_width_only_grows_along_a_stream():
    # Given a stream of a sparse, a full and an uneven batch (different packed widths on 8 shards),
    sparse, full = _uneven_batch(1), _uneven_batch(2)
    sparse["spike_mask"][3] = False
    full["spike_mask"][:] = True
    stream = [sparse, full, _uneven_batch(3)]
    needed = [packed_width(b, 8) for b in stream]
    assert needed[0] < needed[1] and needed[2] < needed[1]
    # When the stream is packed with a sticky width (and by pack_host_batch with a floor),
    widths = [b["spike_mask"].shape[1] for b in pack_stream(stream, 8)]
    # Then every batch gets the widest size so far, and each keeps its tokens.
    assert widths == list(np.maximum.accumulate(needed))
    assert [_tokens(p) for p in pack_stream(stream, 8)] == [_tokens(b) for b in stream]
    floor = 1024  # above anything these batches need on any number of shards
    assert pack_host_batch(sparse, make_mesh(), min_width=floor)["spike_mask"].shape[1] == floor


def test_trim_stream_cuts_only_padding():
    # Given batches padded to S = 96 whose fullest rows hold 59, 11 and 96 tokens,
    small = _uneven_batch(1)
    small["spike_mask"][3] = False
    full = _uneven_batch(2)
    full["spike_mask"][:] = True
    stream = [_uneven_batch(0), small, full]
    # When their padding is trimmed along the stream,
    trimmed = list(trim_stream(stream))
    # Then widths are the 64-bucket, then still 64 (never shrinking), then the whole row; every token is kept.
    assert [t["spike_mask"].shape[1] for t in trimmed] == [64, 64, S]
    assert [_tokens(t) for t in trimmed] == [_tokens(b) for b in stream]
    assert all(t["session"] is b["session"] for t, b in zip(trimmed, stream, strict=True))


def test_packing_errors():
    batch = _uneven_batch(0)
    with pytest.raises(ValueError, match="multiple of shards=3"):
        pack_spikes(batch, 3)
    with pytest.raises(ValueError, match="width 4 cannot hold"):
        pack_spikes(batch, 2, width=4)


@pytest.mark.parametrize("input_kind", ["spikes", "binned"])
def test_packed_forward_equals_unpacked(input_kind):
    cfg = get_preset("possm_small", backbone=BackboneConfig(kind="gru", hidden=64), input_kind=input_kind)
    model = POSSM(cfg, num_units=U, num_sessions=3, rngs=nnx.Rngs(0))
    batch = _uneven_batch(1)
    expected = np.asarray(model(batch)[0][TASK])
    for shards in (1, 4):
        got = np.asarray(model(pack_spikes(batch, shards))[0][TASK])  # host input: validated, then run
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_packed_tokens_out_of_order_are_rejected():
    model = POSSM(get_preset("possm_small"), num_units=U, num_sessions=3, rngs=nnx.Rngs(0))
    packed = pack_spikes(_uneven_batch(2), 2)
    packed["spike_window"][0, 0] = 5  # first token claims a later window than the tokens after it
    with pytest.raises(ValueError, match="packed tokens.*not sorted"):
        model(packed)


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (simulated) devices; see tests/conftest.py")
def test_packed_training_on_8_devices_equals_unpacked_on_1():
    cfg = get_preset("possm_small", backbone=BackboneConfig(kind="gru", hidden=64))
    batches = [_uneven_batch(seed) for seed in range(3)]

    def run(num_devices: int, pack: bool) -> tuple[list[float], list[np.ndarray]]:
        model = POSSM(cfg, num_units=U, num_sessions=3, rngs=nnx.Rngs(0))
        tx = reference_lamb(B, 100)
        graphdef, state = create_train_state(model, tx)
        mesh = make_mesh(num_devices)
        step_fn = make_train_step(graphdef, tx, lambda p, b: multitask_loss(p, b, cfg.task_names), mesh=mesh)
        state, rng = replicate(state, mesh), replicate(jax.random.key(0), mesh)
        losses = []
        for batch in batches:
            state, metrics = step_fn(state, shard_batch(pack_host_batch(batch, mesh) if pack else batch, mesh), rng)
            losses.append(float(metrics["loss"]))
        return losses, [np.asarray(x) for x in jax.tree.leaves(state.params)]

    loss1, params1 = run(1, pack=False)
    loss8, params8 = run(8, pack=True)
    np.testing.assert_allclose(loss8, loss1, rtol=1e-5, atol=1e-6)
    for a, b in zip(params1, params8, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
