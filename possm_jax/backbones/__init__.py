"""Recurrent backbones over chunk latents: GRU, S4D and Mamba.

Every backbone is an ``nnx.Module`` with the same interface (see :class:`Backbone`):

* ``init_state(batch) -> state``: zeros, a pytree of arrays with leading axis ``b``.
* ``__call__(x [b, c, i], state, *, rngs=None) -> (y [b, c, h], state)``: a window, scanned over chunks;
  dropout is active iff ``rngs`` (an ``nnx.Rngs``) is passed.
* ``step(x [b, i], state) -> (y [b, h], state)``: one chunk; applying it c times equals ``__call__``.
* ``out_dim``: h.

The equations are pure functions over arrays in each backbone's module; the modules only hold parameters.
"""

from possm_jax.backbones.registry import BackboneConfig as BackboneConfig
from possm_jax.backbones.registry import build_backbone as build_backbone
