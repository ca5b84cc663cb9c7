"""FSDP: parameters and optimiser state split over a ``model`` mesh axis (8 devices as 4 x 2) train exactly like
8 x 1 (everything replicated); the sharding rule splits the largest divisible axis of large tensors only."""

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P
from possm_batches import random_batch

from possm_jax.backbones.registry import BackboneConfig
from possm_jax.config import get_preset
from possm_jax.possm import POSSM
from possm_jax.train.loss import multitask_loss
from possm_jax.train.optim import reference_lamb
from possm_jax.train.sharding import fsdp_spec, make_mesh, place_state, replicate, shard_batch, state_shardings
from possm_jax.train.state import create_train_state
from possm_jax.train.step import make_train_step

B = 8


def test_fsdp_rule():
    assert fsdp_spec((64, 128), 2) == P(None, "model")  # the largest axis
    assert fsdp_spec((128, 128), 2) == P("model")  # the first of equal sizes
    assert fsdp_spec((3, 4096), 2) == P(None, "model")
    assert fsdp_spec((4097, 3), 2) == P()  # no axis divisible by 2
    assert fsdp_spec((64,), 2) == P()  # small: replicated
    assert fsdp_spec((64, 128), 1) == P()  # one model shard: replicated
    with pytest.raises(ValueError, match="model shards must divide"):
        make_mesh(8, model=3)


def _batches() -> list[dict[str, np.ndarray]]:
    out = []
    for seed in range(2):
        batch = random_batch(seed, batch=B, chunks=6, spikes=48, queries=12, num_units=30)
        rng = np.random.default_rng(seed)
        batch["target"] = rng.normal(size=(*batch["query_mask"].shape, 2)).astype(np.float32)
        batch["weight"] = batch["query_mask"].astype(np.float32)
        out.append(batch)
    return out


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (simulated) devices; see tests/conftest.py")
def test_model_axis_4x2_trains_like_8x1():
    cfg = get_preset("possm_small", backbone=BackboneConfig(kind="gru", hidden=64))

    def run(model_shards: int):
        model = POSSM(cfg, num_units=30, num_sessions=3, rngs=nnx.Rngs(0))
        tx = reference_lamb(B, 100)
        graphdef, state = create_train_state(model, tx)
        mesh = make_mesh(8, model=model_shards)
        shardings = state_shardings(state, mesh)
        step = make_train_step(
            graphdef, tx, lambda p, b: multitask_loss(p, b, cfg.task_names), mesh=mesh, state_sharding=shardings
        )
        state, rng = place_state(state, mesh), replicate(jax.random.key(0), mesh)
        losses = []
        for batch in _batches():
            state, metrics = step(state, shard_batch(batch, mesh), rng)
            losses.append(float(metrics["loss"]))
        return losses, state

    loss1, state1 = run(1)
    loss2, state2 = run(2)
    np.testing.assert_allclose(loss2, loss1, rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(state1), jax.tree.leaves(state2), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-5)

    # Large parameters and their LAMB moments are halved along the model axis (on every step's output); 8 x 1 keeps
    # whole copies.
    def halved(state) -> list[bool]:
        leaves = jax.tree.leaves((state.params, state.opt_state))
        return [x.addressable_shards[0].data.size * 2 == x.size for x in leaves]

    large = sum(x.size >= 4096 for x in jax.tree.leaves(state2.params))
    assert large > 0 and sum(halved(state2)) >= 3 * large  # the parameter and LAMB's two moments
    assert not any(halved(state1))
