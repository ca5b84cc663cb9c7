"""The training-step profile: its phases are the model's step cut apart, and the launcher writes its tables."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments import bench, profile_train
from possm_jax.config import get_preset
from possm_jax.possm import POSSM
from possm_jax.train.loss import multitask_loss
from possm_jax.train.optim import reference_lamb


def test_forward_phases_chain_to_the_models_loss_and_gradient():
    units, _, packed = bench.training_batches(2, count=1)
    batch = {k: jnp.asarray(v) for k, v in packed[0].items()}
    model = POSSM(get_preset("possm_small"), units + 1, 2, rngs=nnx.Rngs(0))
    loss_fn = functools.partial(multitask_loss, task_names=model.config.task_names)
    phases = profile_train.phase_functions(model, reference_lamb(2, 10), loss_fn, batch)
    encode, (params, _) = phases["encoder fwd"]
    backbone, head = phases["backbone fwd"][0], phases["decoder + loss fwd"][0]
    context = backbone(params, encode(params, batch))
    expected = loss_fn(model(batch)[0], batch)[0]
    np.testing.assert_allclose(head(params, context, batch), expected, rtol=1e-5)
    # the decoder phase's gradient with respect to its input is the model's gradient at the backbone output
    _, d_context = phases["decoder + loss fwd+bwd"][0](params, context, batch)
    direction = jax.random.normal(jax.random.key(1), context.shape)
    eps = 1e-3
    numeric = (head(params, context + eps * direction, batch) - head(params, context - eps * direction, batch)) / (
        2 * eps
    )
    np.testing.assert_allclose(jnp.vdot(d_context, direction), numeric, rtol=5e-3)


def test_profile_writes_a_phase_table_and_json(tmp_path):
    results = profile_train.run(str(tmp_path), ["possm_small"], batch_size=2, steps=1, trace=False, log=lambda _: None)
    row = results["presets"][0]
    assert row["step"]["gflop"] > row["phases"]["encoder fwd"]["gflop"] > 0
    assert row["windows_per_s"] == 2 / (row["step"]["ms"] / 1e3)
    table = (tmp_path / "profile.md").read_text()
    for phase in row["phases"]:
        assert f"| {phase} |" in table
    assert json.loads((tmp_path / "profile.json").read_text())["presets"][0]["preset"] == "possm_small"
