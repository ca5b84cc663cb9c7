"""Replay task generators and codes: stay in the arena, integrate exactly, match numpy references."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from possm_jax.replay import codes
from possm_jax.replay.head_direction import sample_head_direction
from possm_jax.replay.paths import sample_tmaze, sample_triangle, tmaze_routes, triangle_vertices
from possm_jax.replay.spatial import SpatialConfig, nearest_wall, sample_spatial
from possm_jax.replay.tasks import make_task


def _integrated(path):
    return np.asarray(path.start)[:, None] + np.cumsum(np.asarray(path.inputs, np.float64), axis=1)


def _distance_to_segments(points: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Distance of points ``[n, 2]`` to a polyline ``[m, 2]`` (numpy reference)."""
    a, b = corners[:-1], corners[1:]
    ab = b - a
    t = np.clip(np.einsum("nmd,md->nm", points[:, None] - a, ab) / np.sum(ab**2, -1), 0, 1)
    proj = a + t[..., None] * ab
    return np.min(np.linalg.norm(points[:, None] - proj, axis=-1), axis=1)


@pytest.mark.parametrize("bias", [0.0, 0.05])
def test_spatial_paths_stay_in_box_and_integrate(bias):
    # Given random box trajectories, when the displacements are summed, then they give the positions.
    path = jax.jit(lambda k: sample_spatial(k, 64, 100, SpatialConfig(centre_bias=bias)))(jax.random.key(0))
    states = np.asarray(path.states)
    assert np.all(np.abs(states) <= 1.1 + 1e-6)
    np.testing.assert_allclose(_integrated(path), states, atol=1e-5)


def test_centre_bias_concentrates_occupancy():
    unbiased = sample_spatial(jax.random.key(1), 200, 100, SpatialConfig())
    biased = sample_spatial(jax.random.key(1), 200, 100, SpatialConfig(centre_bias=0.05))
    radius = lambda p: np.linalg.norm(np.asarray(p.states[:, 50:]), axis=-1).mean()  # noqa: E731
    assert radius(biased) < 0.6 * radius(unbiased)


def test_nearest_wall_closed_form():
    pos = jnp.array([[1.09, 0.0], [0.0, -1.0]])
    heading = jnp.array([0.1, -jnp.pi / 2])
    dist, angle = nearest_wall(pos, heading, 1.1)
    np.testing.assert_allclose(dist, [0.01, 0.1], atol=1e-6)
    np.testing.assert_allclose(angle, [0.1, 0.0], atol=1e-6)


def test_head_direction_integrates_modulo_two_pi():
    path = sample_head_direction(jax.random.key(2), 32, 100, bias=0.02)
    diff = _integrated(path) - np.asarray(path.states)
    np.testing.assert_allclose(np.angle(np.exp(1j * diff)), 0.0, atol=1e-4)


@pytest.mark.parametrize("name", ["triangle", "tmaze"])
def test_track_paths_stay_on_track_and_integrate(name):
    if name == "triangle":
        path = sample_triangle(jax.random.key(3), 32, 100)
        tracks = [np.concatenate([triangle_vertices(), triangle_vertices()[:1]])]
    else:
        path = sample_tmaze(jax.random.key(3), 32, 100)
        tracks = list(tmaze_routes())
    points = np.asarray(path.states).reshape(-1, 2)
    dist = np.min([_distance_to_segments(points, t) for t in tracks], axis=0)
    assert dist.max() < 1e-5
    np.testing.assert_allclose(_integrated(path), np.asarray(path.states), atol=1e-5)


def test_place_paths_inputs_integrate_to_the_code():
    cfg = ml_collections.ConfigDict(
        dict(name="place_paths", num_cells=64, sigma=0.2, dog_surround=0.0, bias=0.0, concentration=4.0, code_seed=0)
    )
    task = make_task(cfg)
    batch = task.sample(jax.random.key(4), 8, 50)
    np.testing.assert_allclose(
        np.asarray(batch.init_code)[:, None] + np.cumsum(np.asarray(batch.inputs), 1), batch.targets, atol=1e-5
    )


def test_place_code_and_decoder_match_numpy():
    centres = np.asarray(codes.place_cell_centres(jax.random.key(5), 50, 2.2))
    pos = np.array([[0.3, -0.2], [-1.0, 1.0]])
    logits = -np.sum((pos[:, None] - centres) ** 2, -1) / (2 * 0.2**2)
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    code = np.asarray(codes.place_code(jnp.asarray(pos), jnp.asarray(centres), 0.2))
    np.testing.assert_allclose(code, expected, rtol=1e-5, atol=1e-7)
    top3 = np.argsort(-code, axis=1)[:, :3]
    np.testing.assert_allclose(codes.decode_top_k(jnp.asarray(code), jnp.asarray(centres)), centres[top3].mean(1), 1e-6)


def test_head_direction_decoder_recovers_angle():
    preferred = jnp.linspace(-jnp.pi, jnp.pi, 90, endpoint=False)
    theta = jnp.array([-3.0, -0.5, 0.0, 2.9])
    decoded = codes.decode_top_k_angle(codes.head_direction_code(theta, preferred, 8.0), preferred)
    # Top-3 cells are the nearest preferred direction and its two neighbours: error below one spacing.
    assert np.max(np.abs(np.angle(np.exp(1j * (np.asarray(decoded) - np.asarray(theta)))))) < 2 * np.pi / 90


def test_unknown_task_name_raises():
    cfg = ml_collections.ConfigDict(dict(name="maze", num_cells=8, sigma=0.2, dog_surround=0.0, bias=0.0))
    with pytest.raises(ValueError, match="task.name"):
        make_task(cfg)
