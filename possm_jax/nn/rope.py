"""Rotary time embedding (RoPE) over continuous timestamps (SPEC 2.3).

A 64-d head vector is split into 16 interleaved pairs ``(2i, 2i+1)`` on its first 32 dims, each rotated by the
angle ``t * omega_i``; the last 32 dims are not rotated. The 16 periods are log-spaced from 1e-4 s to 10 s.

Angles are formed as a single float32 product ``t_f32 * omega_f32`` so that the reference's float32 numbers are
reproduced; the caller keeps ``t`` small by measuring it in a local frame (chunk start), because at ``t`` = 1 s the
fastest angle is already ~6e4 rad and one float32 ulp of it is ~4e-3 rad.
"""

import jax.numpy as jnp
import numpy as np
from flax import nnx

from possm_jax.types import Array

NUM_FREQUENCIES = 16
ROTATED_DIMS = 2 * NUM_FREQUENCIES  # 32 of the 64 head dims are rotated


def rope_frequencies(t_min: float = 1e-4, t_max: float = 10.0, num: int = NUM_FREQUENCIES) -> np.ndarray:
    """Angular frequencies ``omega_i = 2 pi / period_i`` for log-spaced periods ``t_min .. t_max`` inclusive.

    Returns:
      [num] float32, fastest first.
    """
    periods = np.exp(np.linspace(np.log(t_min), np.log(t_max), num, dtype=np.float64))
    return (2.0 * np.pi / periods).astype(np.float32)


def rope_angles(t: Array, omega: Array) -> Array:
    """Rotation angles ``phi = t * omega`` as one float32 multiply.

    Args:
      t: [...] times in seconds (cast to float32).
      omega: [f] angular frequencies (float32).

    Returns:
      [..., f] float32 angles.
    """
    return t.astype(jnp.float32)[..., None] * omega.astype(jnp.float32)


def rotate(x: Array, angles: Array, *, inverse: bool = False) -> Array:
    """Rotate the interleaved pairs ``(2i, 2i+1)``, i < f, of ``x`` by ``+angles[i]`` (or ``-angles[i]``).

    ``y[2i] = x[2i] cos - x[2i+1] sin`` and ``y[2i+1] = x[2i+1] cos + x[2i] sin``; dims ``2f..e`` pass through.

    Args:
      x: [..., e] head vectors (e >= 2f).
      angles: [..., f] angles broadcastable against ``x``'s leading dims.
      inverse: rotate by ``-angles`` (used to bring an attention output back to the query's time).

    Returns:
      [..., e] rotated vectors.
    """
    f = angles.shape[-1]
    cos = jnp.cos(angles)
    sin = jnp.sin(angles)
    if inverse:
        sin = -sin
    pairs = x[..., : 2 * f].reshape(*x.shape[:-1], f, 2)
    even, odd = pairs[..., 0], pairs[..., 1]
    rotated = jnp.stack([even * cos - odd * sin, odd * cos + even * sin], axis=-1)
    rotated = rotated.reshape(*rotated.shape[:-2], 2 * f)
    return jnp.concatenate([rotated, x[..., 2 * f :]], axis=-1)


class Frequencies(nnx.Variable):
    """A fixed (non-trainable) array of RoPE angular frequencies; excluded from ``nnx.Param`` gradients."""


class RotaryTime(nnx.Module):
    """Holds the RoPE frequencies as a non-trainable variable, so exact reference values can be loaded.

    Args:
      t_min: shortest period in seconds.
      t_max: longest period in seconds.
    """

    def __init__(self, t_min: float = 1e-4, t_max: float = 10.0):
        self.omega = Frequencies(jnp.asarray(rope_frequencies(t_min, t_max)))

    def __call__(self, t: Array) -> Array:
        """t: [...] seconds -> [..., 16] float32 angles."""
        return rope_angles(t, self.omega[...])
