"""Tasks = a trajectory generator + a target code + a decoder, built by name from a config.

Names: ``spatial`` (box navigation, ``bias`` 0 or 0.05), ``head_direction``, ``triangle``, ``tmaze`` (2-D tracks
read out through the place-cell code) and ``place_paths`` (the high-dimensional task: the input is the change of the
512-d place-cell vector, the target the vector itself).

Shapes: ``b`` batch, ``t`` time steps, ``i`` inputs, ``o`` output cells, ``k`` decoded state size.
"""

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections

from possm_jax.replay import codes
from possm_jax.replay.head_direction import sample_head_direction
from possm_jax.replay.paths import Path, sample_tmaze, sample_triangle
from possm_jax.replay.spatial import SpatialConfig, sample_spatial
from possm_jax.types import Array

TASKS = ("spatial", "head_direction", "triangle", "tmaze", "place_paths")


class Batch(NamedTuple):
    """A training batch.

    Attributes:
        inputs: ``[b, t, i]``.
        targets: Target code after each step ``[b, t, o]``.
        init_code: Target code at the start, fed to the encoder ``[b, o]``.
        states: True state variable after each step ``[b, t, k]`` (positions or angles).
    """

    inputs: Array
    targets: Array
    init_code: Array
    states: Array


@dataclasses.dataclass(frozen=True)
class Task:
    """A task bound to its code.

    Attributes:
        name: One of :data:`TASKS`.
        in_dim: Input size ``i``.
        out_dim: Output cells ``o``.
        period: ``2 pi`` for circular states (head direction), else ``None``.
        extent: Half-width of the arena in metres (or pi for angles), used for uniform references and plots.
        dt: Step duration in seconds.
        sample_path: ``(key, batch, steps) -> Path``.
        encode: State variable ``[..., k]`` -> code ``[..., o]``.
        decode: Outputs ``[..., o]`` -> decoded state ``[..., k]``.
        to_inputs: Maps a :class:`Path` to network inputs (identity except for ``place_paths``).
    """

    name: str
    in_dim: int
    out_dim: int
    period: float | None
    extent: float
    dt: float
    sample_path: Callable[[Array, int, int], Path]
    encode: Callable[[Array], Array]
    decode: Callable[[Array], Array]
    to_inputs: Callable[[Path], Array]

    def sample(self, key: Array, batch: int, steps: int) -> Batch:
        """Draws a fresh batch (pure and jit-able)."""
        path = self.sample_path(key, batch, steps)
        return Batch(
            inputs=self.to_inputs(path),
            targets=self.encode(path.states),
            init_code=self.encode(path.start),
            states=path.states,
        )


def make_task(cfg: ml_collections.ConfigDict) -> Task:
    """Builds a task from ``cfg`` (fields: name, num_cells, sigma, dog_surround, bias, concentration, code_seed).

    Raises:
        ValueError: If ``cfg.name`` is not one of :data:`TASKS`.
    """
    if cfg.name not in TASKS:
        raise ValueError(f"task.name={cfg.name!r} is not a replay task; choose one of {TASKS}.")
    spatial = SpatialConfig(centre_bias=cfg.bias)
    key = jax.random.key(cfg.code_seed)
    if cfg.name == "head_direction":
        preferred = jnp.linspace(-jnp.pi, jnp.pi, cfg.num_cells, endpoint=False)
        return Task(
            name=cfg.name,
            in_dim=1,
            out_dim=cfg.num_cells,
            period=2 * jnp.pi,
            extent=jnp.pi,
            dt=spatial.dt,
            sample_path=lambda k, b, t: sample_head_direction(k, b, t, bias=cfg.bias),
            encode=lambda s: codes.head_direction_code(s[..., 0], preferred, cfg.concentration),
            decode=lambda y: codes.decode_top_k_angle(y, preferred)[..., None],
            to_inputs=lambda p: p.inputs,
        )
    centres = codes.place_cell_centres(key, cfg.num_cells, spatial.box_size)

    def encode(pos: Array) -> Array:
        return codes.place_code(pos, centres, cfg.sigma, cfg.dog_surround)

    samplers = {
        "spatial": lambda k, b, t: sample_spatial(k, b, t, spatial),
        "place_paths": lambda k, b, t: sample_spatial(k, b, t, spatial),
        "triangle": sample_triangle,
        "tmaze": sample_tmaze,
    }
    if cfg.name == "place_paths":
        in_dim = cfg.num_cells

        def to_inputs(p: Path) -> Array:
            full = encode(jnp.concatenate([p.start[:, None], p.states], axis=1))
            return jnp.diff(full, axis=1)
    else:
        in_dim = 2

        def to_inputs(p: Path) -> Array:
            return p.inputs

    return Task(
        name=cfg.name,
        in_dim=in_dim,
        out_dim=cfg.num_cells,
        period=None,
        extent=spatial.box_size / 2,
        dt=spatial.dt,
        sample_path=samplers[cfg.name],
        encode=encode,
        decode=lambda y: codes.decode_top_k(y, centres),
        to_inputs=to_inputs,
    )
