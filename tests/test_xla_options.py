"""CPU compiler options of the train step: reductions leave YNNPACK, the numbers stay, the user's XLA_FLAGS win."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments import bench
from possm_jax import xla_options
from possm_jax.config import get_preset
from possm_jax.possm import POSSM
from possm_jax.train.loss import multitask_loss
from possm_jax.train.optim import reference_lamb
from possm_jax.train.setup import init_training
from possm_jax.train.step import train_step


def _per_token_dot(p, v):
    return jnp.sum(p[:, None] * v, axis=-1)


def _ynn_fusions(options) -> int:
    args = (jnp.ones((4096,)), jnp.ones((4096, 64)))
    return jax.jit(_per_token_dot, compiler_options=options).lower(*args).compile().as_text().count("__ynn_fusion")


def test_cpu_options_take_the_per_token_reduction_out_of_ynnpack():
    train, stream = xla_options.train_compiler_options(), xla_options.stream_compiler_options()
    assert train == {xla_options.YNN_FUSION_OPTION: xla_options.TRAIN_YNN_FUSIONS}
    assert stream == {xla_options.YNN_FUSION_OPTION: xla_options.STREAM_YNN_FUSIONS}
    assert _ynn_fusions(None) >= 1  # XLA's default (what the options exist to change)
    assert _ynn_fusions(train) == _ynn_fusions(stream) == 0


def test_user_xla_flags_and_unknown_values_keep_the_defaults(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", f"--{xla_options.YNN_FUSION_OPTION}=-reduce")
    assert xla_options.train_compiler_options() is None
    assert xla_options.stream_compiler_options() is None
    assert not xla_options._accepted(xla_options.YNN_FUSION_OPTION, "NOT_A_FUSION_TYPE")


def test_train_step_with_the_options_matches_xla_defaults():
    units, _, packed = bench.training_batches(4, count=1)
    batch = {k: jnp.asarray(v) for k, v in packed[0].items()}
    model = POSSM(get_preset("possm_small"), units + 1, 2, rngs=nnx.Rngs(0))
    loss_fn = functools.partial(multitask_loss, task_names=model.config.task_names)
    tx = reference_lamb(4, 10)
    graphdef, state, step_fn = init_training(model, tx, loss_fn, donate=False)
    default_fn = jax.jit(functools.partial(train_step, graphdef=graphdef, tx=tx, loss_fn=loss_fn))
    rng = jax.random.key(0)
    (new, metrics), (ref_new, ref_metrics) = step_fn(state, batch, rng), default_fn(state, batch, rng)
    np.testing.assert_allclose(metrics["loss"], ref_metrics["loss"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(ref_new.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
