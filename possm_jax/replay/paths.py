"""Trajectory container and the 2-D track tasks of Casco-Rodriguez et al.: triangular loops and T-maze runs.

Every generator returns a :class:`Path` whose inputs are the per-step changes of the state variable, so that
``start + cumsum(inputs) == states`` (the path-integration invariant the tests check).

Shapes: ``b`` batch, ``t`` time steps, ``k`` state-variable size (2 for positions), ``i`` input size.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from possm_jax.types import Array


class Path(NamedTuple):
    """A batch of trajectories.

    Attributes:
        start: State variable before the first step ``[b, k]``.
        inputs: Network input at each step ``[b, t, i]`` (a displacement or velocity).
        states: State variable after each step ``[b, t, k]``.
    """

    start: Array
    inputs: Array
    states: Array


def triangle_vertices(radius: float = 0.9) -> np.ndarray:
    """Vertices ``[3, 2]`` of an equilateral triangle centred on the arena, pointing up."""
    angles = np.deg2rad([90.0, 210.0, 330.0])
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=-1)


def tmaze_routes(stem: float = 1.4, arm: float = 0.9, junction_y: float = 0.5) -> np.ndarray:
    """The two T-maze routes ``[2, 3, 2]``: stem bottom -> junction -> left (0) or right (1) arm end."""
    bottom, junction = [0.0, junction_y - stem], [0.0, junction_y]
    return np.array([[bottom, junction, [-arm, junction_y]], [bottom, junction, [arm, junction_y]]])


def polyline_point(vertices: Array, s: Array) -> Array:
    """Point at arc length ``s`` along an open polyline.

    Args:
        vertices: Polyline corners ``[m, 2]``.
        s: Arc lengths ``[...]``, clipped to ``[0, length]``.

    Returns:
        Points ``[..., 2]``.
    """
    seg = vertices[1:] - vertices[:-1]
    seg_len = jnp.linalg.norm(seg, axis=-1)
    cum = jnp.concatenate([jnp.zeros(1), jnp.cumsum(seg_len)])
    s = jnp.clip(s, 0.0, cum[-1])
    idx = jnp.clip(jnp.searchsorted(cum, s, side="right") - 1, 0, seg.shape[0] - 1)
    frac = (s - cum[idx]) / seg_len[idx]
    return vertices[idx] + frac[..., None] * seg[idx]


def _fold(s: Array, length: float) -> Array:
    """Reflect an unbounded arc length into ``[0, length]`` (the runner turns back at the ends)."""
    return length - jnp.abs(jnp.mod(s, 2 * length) - length)


def _arc_lengths(key: Array, batch: int, steps: int, length: float, speed: float, speed_sd: float, dt: float):
    """Unbounded arc lengths ``[b, t + 1]``: random start, random direction, jittered speed (never backwards)."""
    k0, kdir, kv = jax.random.split(key, 3)
    s0 = jax.random.uniform(k0, (batch, 1), maxval=length)
    direction = jnp.where(jax.random.bernoulli(kdir, 0.5, (batch, 1)), 1.0, -1.0)
    v = jnp.abs(speed + speed_sd * jax.random.normal(kv, (batch, steps)))
    return jnp.concatenate([s0, s0 + direction * jnp.cumsum(v * dt, axis=1)], axis=1)


def _as_path(points: Array) -> Path:
    """Path from positions ``[b, t + 1, 2]`` (inputs are the successive displacements)."""
    return Path(start=points[:, 0], inputs=jnp.diff(points, axis=1), states=points[:, 1:])


def sample_triangle(
    key: Array,
    batch: int,
    steps: int,
    *,
    radius: float = 0.9,
    speed: float = 0.5,
    speed_sd: float = 0.1,
    dt: float = 0.02,
) -> Path:
    """Runs around a closed triangular track at a jittered speed, clockwise or anticlockwise.

    Args:
        key: PRNG key.
        batch: Number of trajectories ``b``.
        steps: Steps per trajectory ``t``.
        radius: Circumradius of the triangle in metres.
        speed: Mean running speed in m/s.
        speed_sd: Per-step speed jitter in m/s.
        dt: Step in seconds.

    Returns:
        A :class:`Path` with 2-D displacements as inputs and positions as states.
    """
    corners = jnp.asarray(triangle_vertices(radius))
    loop = jnp.concatenate([corners, corners[:1]])
    perimeter = float(3 * np.sqrt(3) * radius)
    s = _arc_lengths(key, batch, steps, perimeter, speed, speed_sd, dt)
    return _as_path(polyline_point(loop, jnp.mod(s, perimeter)))


def sample_tmaze(
    key: Array, batch: int, steps: int, *, speed: float = 0.5, speed_sd: float = 0.1, dt: float = 0.02
) -> Path:
    """Runs along one T-maze route (stem + left or right arm), turning back at either end.

    Args:
        key: PRNG key.
        batch: Number of trajectories ``b``.
        steps: Steps per trajectory ``t``.
        speed: Mean running speed in m/s.
        speed_sd: Per-step speed jitter in m/s.
        dt: Step in seconds.

    Returns:
        A :class:`Path` with 2-D displacements as inputs and positions as states.
    """
    routes = jnp.asarray(tmaze_routes())
    length = float(np.sum(np.linalg.norm(np.diff(tmaze_routes()[0], axis=0), axis=-1)))
    kroute, ks = jax.random.split(key)
    route = jax.random.randint(kroute, (batch,), 0, 2)
    s = _fold(_arc_lengths(ks, batch, steps, length, speed, speed_sd, dt), length)
    points = jax.vmap(polyline_point)(routes[route], s)
    return _as_path(points)
