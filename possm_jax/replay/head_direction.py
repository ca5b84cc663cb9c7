"""Head-direction task: integrate angular velocity on the circle (Krishna et al., ICLR 2024).

The heading performs a random walk with Gaussian turning rates; an optional bias pulls it towards 0 rad. The input is
the realised angular velocity in radians per step (O(0.1), a well-scaled network input), so
``start + cumsum(inputs) == states`` modulo 2 pi.

Shapes: ``b`` batch, ``t`` time steps.
"""

import jax
import jax.numpy as jnp

from possm_jax.replay.paths import Path
from possm_jax.types import Array


def wrap_angle(theta: Array) -> Array:
    """Wraps angles to ``(-pi, pi]``."""
    return jnp.angle(jnp.exp(1j * theta))


def sample_head_direction(
    key: Array, batch: int, steps: int, *, turn_sd: float = 11.52, bias: float = 0.0, dt: float = 0.02
) -> Path:
    """Random head-direction trajectories.

    Args:
        key: PRNG key.
        batch: Number of trajectories ``b``.
        steps: Steps per trajectory ``t``.
        turn_sd: Standard deviation of the turning rate in rad/s.
        bias: Fraction of the angle to 0 rad recovered each step (0 = unbiased).
        dt: Step in seconds.

    Returns:
        A :class:`Path` with angular velocities ``[b, t, 1]`` (rad/step) as inputs and wrapped angles
        ``[b, t, 1]`` as states.
    """
    k0, kturn = jax.random.split(key)
    theta0 = jax.random.uniform(k0, (batch,), minval=-jnp.pi, maxval=jnp.pi)
    turns = turn_sd * jax.random.normal(kturn, (steps, batch))

    def body(theta, turn):
        dtheta = dt * turn + bias * wrap_angle(0.0 - theta)
        new = wrap_angle(theta + dtheta)
        return new, (new, dtheta)

    _, (states, omega) = jax.lax.scan(body, theta0, turns)
    return Path(start=theta0[:, None], inputs=omega.T[..., None], states=states.T[..., None])
