"""RoPE: frequencies, the vectorised sincos, interleaved-pair rotation, and relative-time invariance (docs/model.md)."""

import jax.numpy as jnp
import numpy as np

from possm_jax.nn.rope import RotaryTime, rope_angles, rope_frequencies, rotate, rotation, sincos


def _rotate_np(x: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Float64 reference: pairs (2i, 2i+1), i < 16, as complex numbers multiplied by exp(i angle_i)."""
    z = x[..., 0:32:2] + 1j * x[..., 1:32:2]
    z = z * np.exp(1j * angles.astype(np.float64))
    y = x.astype(np.float64).copy()
    y[..., 0:32:2], y[..., 1:32:2] = z.real, z.imag
    return y


def test_frequencies_log_spaced_periods():
    omega = rope_frequencies().astype(np.float64)
    periods = 2 * np.pi / omega
    assert omega.shape == (16,)
    np.testing.assert_allclose(periods[[0, -1]], [1e-4, 10.0], rtol=1e-6)
    np.testing.assert_allclose(np.diff(np.log(periods)), np.log(1e5) / 15, rtol=1e-5)


def test_sincos_matches_float64_over_the_working_range():
    rng = np.random.default_rng(0)
    for limit in (1.0, 3.2e3, 1e5):
        phi = rng.uniform(-limit, limit, 20000).astype(np.float32)
        cos, sin = sincos(jnp.asarray(phi))
        exact = phi.astype(np.float64)
        assert np.abs(np.asarray(cos) - np.cos(exact)).max() < 2e-7
        assert np.abs(np.asarray(sin) - np.sin(exact)).max() < 2e-7


def test_rotate_matches_complex_reference_and_inverts():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 7, 64)).astype(np.float32)
    t = rng.uniform(0, 0.05, (5, 7)).astype(np.float32)
    omega = rope_frequencies()
    rot = rotation(rope_angles(jnp.asarray(t), jnp.asarray(omega)))
    y = np.asarray(rotate(jnp.asarray(x), rot))
    expected = _rotate_np(x, t[..., None] * omega)  # the same float32 angles, rotated in float64
    np.testing.assert_allclose(y, expected, atol=1e-5)
    np.testing.assert_array_equal(y[..., 32:], x[..., 32:])  # the last 32 dims are not rotated
    np.testing.assert_allclose(np.asarray(rotate(jnp.asarray(y), rot, inverse=True)), x, atol=1e-5)


def test_dot_products_depend_only_on_time_differences():
    """<R(t1 + s) q, R(t2 + s) k> = <R(t1) q, R(t2) k> for any shift s.

    Times are dyadic so t + s is exact in float32, and the periods start at 10 ms so the float32 angle products
    stay small (the default 0.1 ms period makes |phi| ~ 6e4 rad at 1 s, where rounding alone is ~4e-3 rad).
    """
    rng = np.random.default_rng(2)
    q, k = rng.normal(size=(2, 64)).astype(np.float32)
    rope = RotaryTime(t_min=1e-2, t_max=10.0)
    t1, t2 = np.float32(25 / 1024), np.float32(38 / 1024)

    def score(shift: float) -> float:
        return float(jnp.dot(rotate(q, rope(jnp.asarray(t1 + shift))), rotate(k, rope(jnp.asarray(t2 + shift)))))

    base = score(0.0)
    assert abs(base - float(q @ k)) > 1e-2  # the rotation matters
    for shift in (1 / 64, 1 / 8, 1 / 4):
        assert abs(score(shift) - base) < 1e-5
