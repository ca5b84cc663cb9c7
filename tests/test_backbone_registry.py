"""Every registered backbone: interface shapes, zero state, and finite gradients for every parameter."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from possm_jax.backbones import BackboneConfig, build_backbone

KINDS = ["gru", "s4d", "mamba"]


@pytest.mark.parametrize("kind", KINDS)
def test_interface_shapes_and_gradients(kind):
    # Given a 2-layer backbone of each kind with dropout
    cfg = BackboneConfig(kind=kind, hidden=8, num_layers=2, dropout=0.1, state_size=8)
    model = build_backbone(cfg, 5, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (3, 4, 5))
    state = model.init_state(3)
    assert all(float(jnp.abs(leaf).max()) == 0.0 for leaf in jax.tree.leaves(state))

    # When differentiating a training-mode window loss with respect to the parameters
    def loss(m):
        y, new_state = m(x, state, rngs=nnx.Rngs(dropout=1))
        assert y.shape == (3, 4, m.out_dim) and y.dtype == jnp.float32
        assert jax.tree.map(jnp.shape, new_state) == jax.tree.map(jnp.shape, state)
        return jnp.sum(y**2)

    grads = nnx.grad(loss)(model)
    # Then every parameter receives a finite gradient, and some are nonzero in every parameter tensor
    leaves = jax.tree.leaves(nnx.state(grads, nnx.Param))
    assert len(leaves) == len(jax.tree.leaves(nnx.state(model, nnx.Param)))
    for g in leaves:
        assert np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g)).max() > 0
