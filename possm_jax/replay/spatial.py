"""2-D navigation in a square box with wall avoidance (the spatial task of Krishna et al., ICLR 2024).

The runner draws a Rayleigh speed and a Gaussian turning rate every step. Within ``border`` of a wall and heading
towards it, it slows down (x0.25) and turns away by the angle that makes it run parallel to the wall. An optional
centre bias adds ``bias * (0 - pos)`` to every displacement. Positions are finally clipped to the box and the input
is the realised displacement, so the trajectory never leaves the arena and always integrates exactly.

Shapes: ``b`` batch, ``t`` time steps.
"""

import dataclasses

import jax
import jax.numpy as jnp

from possm_jax.replay.paths import Path
from possm_jax.types import Array


@dataclasses.dataclass(frozen=True)
class SpatialConfig:
    """Arena and motion statistics (defaults are the paper's).

    Attributes:
        box_size: Side of the square arena in metres.
        dt: Step in seconds.
        speed_scale: Rayleigh scale of the forward speed in m/s (0.13 * 2 pi).
        turn_sd: Standard deviation of the turning rate in rad/s.
        border: Distance from a wall under which the runner avoids it, in metres.
        wall_slowdown: Speed factor near a wall.
        centre_bias: Pull towards the centre per step (0.05 for the biased task, 0 for unbiased).
    """

    box_size: float = 2.2
    dt: float = 0.02
    speed_scale: float = 0.13 * 2 * jnp.pi
    turn_sd: float = 11.52
    border: float = 0.03
    wall_slowdown: float = 0.25
    centre_bias: float = 0.0


def nearest_wall(pos: Array, heading: Array, half: float) -> tuple[Array, Array]:
    """Distance to the nearest wall and the heading relative to that wall's outward normal.

    Args:
        pos: Positions ``[b, 2]``.
        heading: Headings ``[b]`` in radians.
        half: Half the box side.

    Returns:
        ``(distance [b], angle [b])`` with the angle wrapped to ``(-pi, pi]``; ``|angle| < pi/2`` means
        the runner is heading into the wall.
    """
    dists = jnp.stack([half - pos[:, 0], half - pos[:, 1], half + pos[:, 0], half + pos[:, 1]], axis=-1)
    normals = jnp.array([0.0, 0.5, 1.0, -0.5]) * jnp.pi
    wall = jnp.argmin(dists, axis=-1)
    angle = jnp.angle(jnp.exp(1j * (heading - normals[wall])))
    return jnp.min(dists, axis=-1), angle


def spatial_step(pos: Array, heading: Array, speed: Array, turn_rate: Array, cfg: SpatialConfig):
    """One step of the runner.

    Args:
        pos: Positions ``[b, 2]``.
        heading: Headings ``[b]``.
        speed: Drawn forward speeds ``[b]`` in m/s.
        turn_rate: Drawn turning rates ``[b]`` in rad/s.
        cfg: Task statistics.

    Returns:
        ``(new_pos [b, 2], new_heading [b], displacement [b, 2])``.
    """
    half = cfg.box_size / 2
    dist, angle = nearest_wall(pos, heading, half)
    near = (dist < cfg.border) & (jnp.abs(angle) < jnp.pi / 2)
    avoid = jnp.where(near, jnp.sign(angle) * (jnp.pi / 2 - jnp.abs(angle)), 0.0)
    speed = jnp.where(near, speed * cfg.wall_slowdown, speed)
    heading = heading + avoid
    step = (speed * cfg.dt)[:, None] * jnp.stack([jnp.cos(heading), jnp.sin(heading)], axis=-1)
    step = step + cfg.centre_bias * (0.0 - pos)
    new_pos = jnp.clip(pos + step, -half, half)
    return new_pos, heading + cfg.dt * turn_rate, new_pos - pos


def sample_spatial(key: Array, batch: int, steps: int, cfg: SpatialConfig = SpatialConfig()) -> Path:
    """Random trajectories in the box, starting uniformly in the arena with a uniform heading.

    Args:
        key: PRNG key.
        batch: Number of trajectories ``b``.
        steps: Steps per trajectory ``t``.
        cfg: Task statistics.

    Returns:
        A :class:`Path` with displacements ``[b, t, 2]`` as inputs and positions ``[b, t, 2]`` as states.
    """
    half = cfg.box_size / 2
    kpos, khead, kspeed, kturn = jax.random.split(key, 4)
    pos0 = jax.random.uniform(kpos, (batch, 2), minval=-half, maxval=half)
    head0 = jax.random.uniform(khead, (batch,), maxval=2 * jnp.pi)
    speeds = cfg.speed_scale * jax.random.rayleigh(kspeed, 1.0, (steps, batch))
    turns = cfg.turn_sd * jax.random.normal(kturn, (steps, batch))

    def body(carry, drawn):
        pos, head = carry
        pos, head, disp = spatial_step(pos, head, drawn[0], drawn[1], cfg)
        return (pos, head), (pos, disp)

    _, (states, disps) = jax.lax.scan(body, (pos0, head0), (speeds, turns))
    return Path(start=pos0, inputs=jnp.swapaxes(disps, 0, 1), states=jnp.swapaxes(states, 0, 1))
