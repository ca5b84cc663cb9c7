"""Dense layers with PyTorch's default initialisation (docs/model.md), so fresh models match the reference's scale."""

import jax
import jax.numpy as jnp
from flax import nnx


def _uniform_fan_in(fan_in: int) -> nnx.initializers.Initializer:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)), torch's default for Linear biases."""
    bound = 1.0 / max(fan_in, 1) ** 0.5

    def init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def torch_linear(in_features: int, out_features: int, *, use_bias: bool = True, rngs: nnx.Rngs) -> nnx.Linear:
    """An ``nnx.Linear`` (kernel [in, out]) with torch's default init: weights and bias U(+-1/sqrt(in)).

    Args:
        in_features: input width.
        out_features: output width.
        use_bias: whether the layer has a bias.
        rngs: parameter RNG streams.
    """
    return nnx.Linear(
        in_features,
        out_features,
        use_bias=use_bias,
        kernel_init=nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"),
        bias_init=_uniform_fan_in(in_features),
        rngs=rngs,
    )


def layer_norm(dim: int, *, rngs: nnx.Rngs) -> nnx.LayerNorm:
    """LayerNorm with torch's eps 1e-5 and the two-pass variance (``mean((x - mean)^2)``) for reference parity."""
    return nnx.LayerNorm(dim, epsilon=1e-5, use_fast_variance=False, rngs=rngs)
