"""Pre-norm GEGLU feed-forward block: ``FFN(LN(x)) = W_2 (a * gelu(g)) + b_2`` with ``[a | g] = W_1 LN(x) + b_1``."""

import jax
import jax.numpy as jnp
from flax import nnx

from possm_jax.nn.linear import layer_norm, torch_linear
from possm_jax.types import Array


def geglu(h: Array) -> Array:
    """h: [..., 2f] -> [..., f]: first half (value) times exact-erf GELU of the second half (gate)."""
    value, gate = jnp.split(h, 2, axis=-1)
    return value * jax.nn.gelu(gate, approximate=False)


class FeedForward(nnx.Module):
    """``x -> FFN(LN(x))`` (the residual is added by the caller): Linear d->2*mult*d, GEGLU, dropout, Linear.

    Args:
        dim: d.
        rngs: parameter RNG streams.
        mult: hidden width multiplier (4: the GEGLU output is 4d, its input 8d).
        dropout_rate: dropout after the GEGLU, active when ``rngs`` is passed at call time.
    """

    def __init__(self, dim: int, *, rngs: nnx.Rngs, mult: int = 4, dropout_rate: float = 0.0):
        self.dropout = nnx.Dropout(dropout_rate)  # inverted dropout from the ``dropout`` stream, as in the backbones
        self.norm = layer_norm(dim, rngs=rngs)
        self.proj_in = torch_linear(dim, 2 * mult * dim, rngs=rngs)
        self.proj_out = torch_linear(mult * dim, dim, rngs=rngs)

    def __call__(self, x: Array, *, rngs: nnx.Rngs | None = None) -> Array:
        """x: [..., d] -> [..., d] update."""
        h = geglu(self.proj_in(self.norm(x)))
        return self.proj_out(self.dropout(h, deterministic=rngs is None, rngs=rngs))
