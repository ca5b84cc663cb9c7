"""Generic train step on a tiny nnx model: learning, 8 devices ≡ 1 device, frozen rows, NaN guard, no recompiles."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from possm_jax.train.loss import multitask_loss
from possm_jax.train.optim import lamb
from possm_jax.train.sharding import (
    cluster_env_present,
    host_batch_slice,
    make_mesh,
    maybe_initialize_distributed,
    replicate,
    shard_batch,
)
from possm_jax.train.state import create_train_state, param_paths, path_flags, trainable_mask
from possm_jax.train.step import NonFiniteLossError, check_finite, make_train_step

B, Q, UNITS = 8, 5, 6


class TinyModel(nnx.Module):
    """Unit embedding + linear readout with dropout; ``__call__(batch, *, rngs) -> (preds, state)`` like POSSM."""

    def __init__(self, rngs: nnx.Rngs):
        self.unit_emb = nnx.Embed(UNITS, 4, rngs=rngs)
        self.proj = nnx.Linear(3, 4, rngs=rngs)
        self.head = nnx.Linear(4, 2, rngs=rngs)
        self.drop = nnx.Dropout(0.1)

    def __call__(self, batch, *, rngs=None):
        h = jnp.tanh(self.unit_emb(batch["spike_unit"]) + self.proj(batch["x"]))
        h = self.drop(h, rngs=rngs, deterministic=rngs is None)
        return {"vel": self.head(h)}, None


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, Q, 3)).astype(np.float32)
    return {
        "spike_unit": rng.integers(1, 4, size=(B, Q)).astype(np.int32),  # rows 4, 5 never used
        "x": x,
        "query_task": np.zeros((B, Q), np.int32),
        "target": 0.5 * x[..., :2],  # learnable: the loss can approach 0
        "weight": rng.choice([0.1, 1.0, 5.0], size=(B, Q)).astype(np.float32),
    }


LOSS = functools.partial(multitask_loss, task_names=["vel"])


def _setup(trainable_fn=None, lr=1e-2):
    model = TinyModel(nnx.Rngs(0))
    tx = lamb(lr)
    if trainable_fn is not None:
        _, params, _ = nnx.split(model, nnx.Param, ...)
        graphdef, state = create_train_state(model, tx, trainable=trainable_fn(params))
    else:
        graphdef, state = create_train_state(model, tx)
    return graphdef, tx, state


def _run(num_devices, steps, batch, trainable_fn=None):
    graphdef, tx, state = _setup(trainable_fn)
    mesh = make_mesh(num_devices)
    step_fn = make_train_step(graphdef, tx, LOSS, mesh=mesh)
    state, rng = replicate(state, mesh), replicate(jax.random.key(1), mesh)
    sharded = shard_batch(batch, mesh)
    losses = []
    for _ in range(steps):
        state, metrics = step_fn(state, sharded, rng)
        losses.append(float(metrics["loss"]))
    return state, losses, step_fn


def test_loss_decreases_on_fixed_batch_without_recompiling():
    state, losses, step_fn = _run(1, 30, _batch())
    assert losses[-1] < 0.5 * losses[0], losses
    assert int(state.step) == 30
    assert step_fn._cache_size() == 1  # one compilation for 30 steps


def test_eight_devices_match_one_device():
    batch = _batch()
    s1, l1, _ = _run(1, 4, batch)
    s8, l8, _ = _run(8, 4, batch)
    np.testing.assert_allclose(l8, l1, rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s8.params), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-5)


def test_frozen_rows_stay_bit_identical():
    """UI: only rows 2 and 4 of the unit table train (4 gets no gradient); every other entry is untouched."""
    initial = nnx.state(TinyModel(nnx.Rngs(0)), nnx.Param)
    state, _, _ = _run(8, 5, _batch(), trainable_fn=lambda p: trainable_mask(p, rows={"unit_emb/embedding": [2, 4]}))
    before = dict(zip(param_paths(initial), jax.tree.leaves(initial), strict=True))
    after = dict(zip(param_paths(state.params), jax.tree.leaves(state.params), strict=True))
    for name, old in before.items():
        new, old = np.asarray(after[name]), np.asarray(old)
        if name == "unit_emb/embedding":
            np.testing.assert_array_equal(np.delete(new, [2, 4], axis=0), np.delete(old, [2, 4], axis=0))
            assert not np.allclose(new[2], old[2])
            # Row 4 gets no gradient; it moves only through weight decay, by at most lr * ratio * wd * |w|.
            np.testing.assert_allclose(new[4], old[4], rtol=1e-4)
        else:
            np.testing.assert_array_equal(new, old, err_msg=name)


def test_trainable_mask_errors():
    _, _, state = _setup()
    with pytest.raises(ValueError, match="Did you mean 'unit_emb/embedding'"):
        trainable_mask(state.params, rows={"unit_emb/embeding": [1]})
    with pytest.raises(ValueError, match="row indices must be in"):
        trainable_mask(state.params, rows={"unit_emb/embedding": [UNITS]})


def test_nan_guard_keeps_state_and_names_step():
    graphdef, tx, state = _setup()
    step_fn = make_train_step(graphdef, tx, LOSS, donate=False)
    state, metrics = step_fn(state, _batch(), jax.random.key(0))
    assert bool(metrics["finite"])
    bad = _batch()
    bad["target"][0, 0, 0] = np.nan
    new, metrics = step_fn(state, bad, jax.random.key(0))
    assert not bool(metrics["finite"])
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(new), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(NonFiniteLossError, match="at step 1 .*last good checkpoint \\(step 0\\)"):
        check_finite(metrics, step=int(state.step), last_checkpoint=0)


def test_cluster_env_detection():
    assert not cluster_env_present({})
    assert not cluster_env_present({"SLURM_NTASKS": "1"})
    assert cluster_env_present({"SLURM_NTASKS": "4"})
    assert cluster_env_present({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"})
    assert not maybe_initialize_distributed({})


def test_host_slicing_and_batch_errors():
    assert host_batch_slice(16) == slice(0, 16)  # one process holds the whole global batch
    with pytest.raises(ValueError, match="divisible by the 8 devices"):
        host_batch_slice(12)
    with pytest.raises(ValueError, match=r"batch\['x'\].*multiple of this host's 8 devices"):
        shard_batch({"x": np.zeros((6, 2), np.float32)}, make_mesh(8))
    with pytest.raises(ValueError, match="num_devices must be in"):
        make_mesh(9)


def test_sparse_embedding_rows_via_path_flags():
    """LAMB's sparse-row policy addressed by parameter path: untouched unit rows keep zero moments."""
    model = TinyModel(nnx.Rngs(0))
    params = nnx.state(model, nnx.Param)
    flags = path_flags(params, lambda path: path.startswith("unit_emb/"))
    assert dict(zip(param_paths(params), jax.tree.leaves(flags), strict=True))["unit_emb/embedding"] is True
    tx = lamb(1e-2, sparse_rows=lambda p: path_flags(p, lambda path: path.startswith("unit_emb/")))
    graphdef, state = create_train_state(model, tx)
    step_fn = make_train_step(graphdef, tx, LOSS, donate=False)
    for seed in range(2):
        batch = _batch(seed)
        batch["spike_unit"][:] = 1 + seed  # step 0 touches row 1 only, step 1 row 2 only
        state, _ = step_fn(state, batch, jax.random.key(0))
    mu = state.opt_state.inner_state[0].mu["unit_emb"]["embedding"][...]
    assert np.all(np.asarray(mu[1]) == 0) and np.all(np.asarray(mu[2]) != 0)
