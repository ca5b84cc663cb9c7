"""Replay metrics against closed forms."""

import numpy as np
import pytest

from possm_jax.replay import metrics

RNG = np.random.default_rng(0)


def test_kl_of_identical_samples_is_zero():
    x = RNG.normal(size=(3000, 2))
    assert abs(metrics.kde_kl(x, x)) < 1e-9


def test_kl_of_shifted_gaussians_matches_smoothed_closed_form():
    # KDEs of N(0, 1) and N(1, 1) are ~N(mu, 1 + h^2) with Scott's h = n^(-1/5): KL = 1 / (2 (1 + h^2)).
    n = 2000
    p, q = RNG.normal(size=(n, 1)), 1.0 + RNG.normal(size=(n, 1))
    expected = 0.5 / (1 + n ** (-2 / 5))
    assert metrics.kde_kl(p, q, num_mc=5000) == pytest.approx(expected, abs=0.05)


def test_wrapped_kl_treats_the_circle_as_periodic():
    # Samples near +pi and near -pi are the same place on the circle.
    p = np.pi - 0.1 * np.abs(RNG.normal(size=(1000, 1)))
    q = -np.pi + 0.1 * np.abs(RNG.normal(size=(1000, 1)))
    assert metrics.kde_kl(p, q, period=2 * np.pi) < 0.5 * metrics.kde_kl(p, q)


def test_exact_wasserstein_of_a_translated_cloud_is_the_shift():
    # For a translated copy, every assignment costs at least |m| on average and the identity achieves it.
    x = RNG.normal(size=(300, 2))
    shift = np.array([0.6, -0.8])
    assert metrics.wasserstein_exact(x, x + shift) == pytest.approx(1.0, abs=1e-6)


def test_exact_wasserstein_of_independent_shifted_gaussians():
    x, y = RNG.normal(size=(1000, 2)), RNG.normal(size=(1000, 2)) + np.array([2.0, 0.0])
    assert metrics.wasserstein_exact(x, y) == pytest.approx(2.0, abs=0.15)


def test_sliced_wasserstein_of_a_shift():
    # 1-D W1 along direction u is |m . u|; its mean over uniform directions in 2-D is 2 |m| / pi.
    x = RNG.normal(size=(2000, 2))
    value = metrics.sliced_wasserstein(x, x + np.array([0.0, 1.5]), num_projections=2000)
    assert value == pytest.approx(2 * 1.5 / np.pi, rel=0.03)


def test_pca_overlap_inside_and_orthogonal_to_the_active_subspace():
    active = np.zeros((500, 4))
    active[:, :2] = RNG.normal(size=(500, 2))
    active -= active.mean(0)  # centred, so the overlap is about directions only
    inside, outside = np.zeros((200, 4)), np.zeros((200, 4))
    inside[:, :2] = RNG.normal(size=(200, 2))
    outside[:, 2:] = RNG.normal(size=(200, 2))
    assert metrics.pca_overlap(active, inside, 2) == pytest.approx(1.0, abs=1e-6)
    assert metrics.pca_overlap(active, outside, 2) == pytest.approx(0.0, abs=1e-6)


def test_exploration_step_distance_and_first_hit():
    # One run walking along x from -1 to 1 in 100 steps of 0.02 (1-D positions padded with y = 0).
    x = np.linspace(-1.0, 0.98, 100)
    run = np.stack([x, np.zeros_like(x)], -1)[None]
    assert metrics.step_distance(run) == pytest.approx(0.02, rel=1e-6)
    assert metrics.exploration(run, 1.0, bins=10)["coverage"] == pytest.approx(10 / 100)
    assert metrics.exploration(run, 1.0)["variance"] == pytest.approx(np.var(x), rel=1e-6)
    hit = metrics.first_hit_time(run, np.array([[0.0, 0.0], [5.0, 5.0]]), radius=0.011)
    assert hit == pytest.approx((50 + 100) / 2)
