"""Data-parallel forward: batch sharded over 8 devices on a ``data`` mesh axis equals the 1-device forward."""

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from possm_batches import random_batch

from possm_jax.backbones.registry import BackboneConfig
from possm_jax.config import get_preset
from possm_jax.possm import POSSM

TASK = "cursor_velocity_2d"


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (simulated) devices; see tests/conftest.py")
def test_sharded_forward_equals_single_device():
    cfg = get_preset("possm_small", backbone=BackboneConfig(kind="gru", hidden=64))
    model = POSSM(cfg, num_units=30, num_sessions=3, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model)
    batch = random_batch(0, batch=8, chunks=6, spikes=48, queries=12, num_units=30)

    def forward(params, batch):
        return nnx.merge(graphdef, params)(batch)[0][TASK]

    single = np.asarray(jax.jit(forward)(params, batch))

    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    data = NamedSharding(mesh, P("data"))
    replicated = NamedSharding(mesh, P())
    sharded_batch = jax.device_put(batch, data)
    sharded_params = jax.device_put(params, replicated)
    out = jax.jit(forward, in_shardings=(replicated, data), out_shardings=data)(sharded_params, sharded_batch)
    assert out.sharding.is_equivalent_to(data, out.ndim)
    assert len({s.device for s in out.addressable_shards}) == 8
    np.testing.assert_allclose(np.asarray(out), single, atol=1e-5)
