"""Mixed precision: a bfloat16 forward/backward trains POSSM like float32, and the stored weights stay float32."""

import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from possm_batches import random_batch
from test_loop import tiny_config

from possm_jax.backbones.registry import BackboneConfig
from possm_jax.config import get_preset
from possm_jax.possm import POSSM
from possm_jax.train import loop
from possm_jax.train.loss import multitask_loss
from possm_jax.train.optim import lamb
from possm_jax.train.state import create_train_state
from possm_jax.train.step import make_train_step

STEPS = 15
R2_STEPS = 6


def _batch() -> dict[str, np.ndarray]:
    batch = random_batch(0, batch=4, chunks=6, spikes=48, queries=12, num_units=30)
    rng = np.random.default_rng(1)
    # A target the model can fit: a smooth function of the query's chunk, the same for every window.
    phase = batch["query_chunk"] * 0.5
    batch["target"] = np.stack([np.sin(phase), np.cos(phase)], -1).astype(np.float32)
    batch["weight"] = batch["query_mask"].astype(np.float32) * rng.uniform(0.5, 1.5, batch["query_mask"].shape)
    return batch


def _train(compute_dtype) -> tuple[list[float], object, str]:
    """Trains STEPS steps on the fixed batch: ``(losses, final state, StableHLO text of the step)``."""
    cfg = get_preset("possm_small", backbone=BackboneConfig(kind="gru", hidden=64), ffn_dropout=0.0)
    model = POSSM(cfg, num_units=30, num_sessions=3, rngs=nnx.Rngs(0))
    tx = lamb(2e-3)
    graphdef, state = create_train_state(model, tx)
    step = make_train_step(graphdef, tx, lambda p, b: multitask_loss(p, b, cfg.task_names), compute_dtype=compute_dtype)
    batch, losses = _batch(), []
    hlo = step.lower(state, batch, jax.random.key(0)).as_text()
    for _ in range(STEPS):
        state, metrics = step(state, batch, jax.random.key(0))
        losses.append(float(metrics["loss"]))
    return losses, state, hlo


def test_bfloat16_compute_trains_like_float32_with_float32_master_weights():
    # Given the same model, optimiser and fixed batch,
    f32, _, hlo32 = _train(jnp.float32)
    bf16, state16, hlo16 = _train(jnp.bfloat16)
    # when trained with a bfloat16 forward/backward, the loss falls like the float32 run's,
    assert f32[-1] < 0.5 * f32[0] and bf16[-1] < 0.5 * bf16[0], (f32, bf16)
    np.testing.assert_allclose(bf16[0], f32[0], rtol=2e-2)  # same start up to bfloat16 rounding
    np.testing.assert_allclose(bf16[-1], f32[-1], rtol=0.15)
    # the master weights and the optimiser moments stay float32,
    floats = [x for x in jax.tree.leaves((state16.params, state16.opt_state)) if jnp.issubdtype(x.dtype, jnp.floating)]
    assert floats and all(x.dtype == jnp.float32 for x in floats)
    # and matrix products really run in bfloat16 (only in the bfloat16 step).
    bf16_dot = re.compile(r"dot_general.*tensor<[0-9x]*bf16>, tensor<[0-9x]*bf16>")
    assert bf16_dot.search(hlo16) and not bf16_dot.search(hlo32)


def _tiny_run(dtype: str, workdir: str) -> dict:
    """``train_and_evaluate`` of the tiny test config (one block, 4 latents, no dropout) with ``train.dtype``."""
    config = tiny_config(R2_STEPS)
    config.model.depth, config.model.num_latents, config.model.ffn_dropout = 1, 4, 0.0
    config.checkpoint.every = R2_STEPS  # one save, at the end
    config.train.dtype = dtype
    return loop.train_and_evaluate(config, workdir)


def test_bfloat16_and_float32_training_reach_the_same_validation_r2_on_the_tiny_corpus(tmp_path):
    # Given the same tiny run (seed, data, steps) trained with float32 and with bfloat16 compute,
    f32 = _tiny_run("float32", str(tmp_path / "f32"))
    bf16 = _tiny_run("bfloat16", str(tmp_path / "bf16"))
    # the bfloat16 run really computed in bfloat16: its last training loss differs from float32's by rounding only,
    loss32, loss16 = f32["train"]["loss"], bf16["train"]["loss"]
    assert loss16 != loss32 and abs(loss16 - loss32) < 0.02 * loss32, (loss32, loss16)
    # and both reach the same validation R² (every session scored, within 0.01).
    r2_32, r2_16 = f32["valid"]["r2_mean"], bf16["valid"]["r2_mean"]
    assert np.isfinite(r2_32) and f32["valid"]["num_scored"] == bf16["valid"]["num_scored"]
    assert abs(r2_16 - r2_32) <= 0.01, (r2_32, r2_16)
