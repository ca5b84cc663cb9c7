"""Rotary time embedding (RoPE) over continuous timestamps (docs/model.md).

A 64-d head vector is split into 16 interleaved pairs ``(2i, 2i+1)`` on its first 32 dims, each rotated by the
angle ``t * omega_i``; the last 32 dims are not rotated. The 16 periods are log-spaced from 1e-4 s to 10 s.

Angles are formed as a single float32 product ``t_f32 * omega_f32`` so that the reference's float32 numbers are
reproduced; the caller keeps ``t`` small by measuring it in a local frame (chunk start), because at ``t`` = 1 s the
fastest angle is already ~6e4 rad and one float32 ulp of it is ~4e-3 rad.
"""

from typing import NamedTuple

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


# pi/2 split into parts of at most 8 significant bits (the last one rounded to float32), so ``j * part`` is exact in
# float32 for |j| < 2**16 and the Cody-Waite reduction below keeps ~1e-7 absolute accuracy up to |phi| ~ 1e5 rad.
_HALF_PI_PARTS = (1.5703125, 4.8446655e-04, -6.4074993e-07, 9.920936e-10)
# Minimax polynomials for sin and cos on [-pi/4, pi/4] (Cephes sinf / cosf coefficients).
_SIN_COEFFS = (-1.9515295891e-4, 8.3321608736e-3, -1.6666654611e-1)
_COS_COEFFS = (2.443315711809948e-5, -1.388731625493765e-3, 4.166664568298827e-2)


def sincos(angles: Array) -> tuple[Array, Array]:
    """cos and sin of float32 angles with plain arithmetic (max abs error ~1e-7 for |angle| <= 1e5 rad).

    XLA's CPU sin/cos run scalar and slow down for large arguments (5-15 ns per value); this vectorises to ~1 ns
    and is what makes per-spike rotations cheap. Range reduction: ``j = round(angle / (pi/2))``,
    ``r = angle - j * pi/2`` with a 4-part split of pi/2; then polynomials on ``r`` and a quadrant swap.

    Args:
        angles: [...] float32 radians.

    Returns:
        (cos [...], sin [...]) float32.
    """
    angles = angles.astype(jnp.float32)
    j = jnp.round(angles * np.float32(2.0 / np.pi))
    r = angles
    for part in _HALF_PI_PARTS:
        r = r - j * np.float32(part)
    z = r * r
    s0, s1, s2 = (np.float32(c) for c in _SIN_COEFFS)
    c0, c1, c2 = (np.float32(c) for c in _COS_COEFFS)
    sin_r = ((s0 * z + s1) * z + s2) * z * r + r
    cos_r = ((c0 * z + c1) * z + c2) * z * z - np.float32(0.5) * z + np.float32(1.0)
    quadrant = j.astype(jnp.int32)
    odd = (quadrant & 1) == 1
    sin = jnp.where(odd, cos_r, sin_r)
    cos = jnp.where(odd, sin_r, cos_r)
    sin = jnp.where((quadrant & 2) == 2, -sin, sin)
    cos = jnp.where(((quadrant + 1) & 2) == 2, -cos, cos)
    return cos, sin


class Rotation(NamedTuple):
    """cos and sin of RoPE angles, each [..., f]."""

    cos: Array
    sin: Array


def rotation(angles: Array) -> Rotation:
    """angles: [..., f] -> their :class:`Rotation`."""
    return Rotation(*sincos(angles))


def rotate(x: Array, rot: Rotation, *, inverse: bool = False) -> Array:
    """Rotate the interleaved pairs ``(2i, 2i+1)``, i < f, of ``x`` by ``+angle_i`` (or ``-angle_i``).

    ``y[2i] = x[2i] cos - x[2i+1] sin`` and ``y[2i+1] = x[2i+1] cos + x[2i] sin``; dims ``2f..e`` pass through.

    Args:
        x: [..., e] head vectors (e >= 2f).
        rot: cos/sin [..., f], broadcastable against ``x``'s leading dims.
        inverse: rotate by ``-angle`` (used to bring an attention output back to the query's time).

    Returns:
        [..., e] rotated vectors.
    """
    f = rot.cos.shape[-1]
    cos, sin = rot.cos, rot.sin
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

    def __call__(self, t: Array) -> Rotation:
        """t: [...] seconds -> :class:`Rotation` with cos/sin [..., 16]."""
        return rotation(rope_angles(t, self.omega[...]))
