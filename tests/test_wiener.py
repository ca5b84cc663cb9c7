"""Wiener filter: closed form vs least squares, history taps, causality, R²."""

import numpy as np
import pytest

from possm_jax.baselines import fit_wiener, lagged_design, r2_score, ridge_solutions


def test_lagged_design_against_loop():
    rng = np.random.default_rng(0)
    x = rng.poisson(2.0, (12, 3)).astype(float)
    got = lagged_design(x, 4)
    for t in range(12):
        for j in range(4):
            want = x[t - j] if t - j >= 0 else np.zeros(3)
            np.testing.assert_array_equal(got[t, 3 * j : 3 * j + 3], want)


def test_ridge_zero_alpha_equals_lstsq_and_recovers_weights():
    # Given a linear system with known weights and intercept
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 6))
    w_true, b_true = rng.normal(size=(6, 2)), np.array([0.3, -1.0])
    y = x @ w_true + b_true + 0.01 * rng.normal(size=(500, 2))
    # When solved in closed form without penalty
    (w, b), (w_big, _) = ridge_solutions(x, y, [0.0, 1e3])
    # Then it matches lstsq on [x, 1] and the true weights
    sol = np.linalg.lstsq(np.c_[x, np.ones(500)], y, rcond=None)[0]
    np.testing.assert_allclose(w, sol[:6], atol=1e-10)
    np.testing.assert_allclose(b, sol[6], atol=1e-10)
    np.testing.assert_allclose(w, w_true, atol=0.01)
    assert np.linalg.norm(w_big) < 0.01 * np.linalg.norm(w)  # a huge ridge shrinks the weights


def test_weighted_ridge_equals_lstsq_on_sqrt_weighted_rows():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(200, 4)), rng.normal(size=(200, 1))
    sw = rng.uniform(0.1, 5.0, 200)
    alpha = 0.1
    ((w, b),) = ridge_solutions(x, y, [alpha], sw)
    # Independent route: augmented least squares with the weights normalised to sum 1 and an unpenalised intercept.
    sn = np.sqrt(sw / sw.sum())
    design = np.c_[x, np.ones(200)] * sn[:, None]
    xm = x - (sw / sw.sum()) @ x
    scale = np.mean(np.sum((sw / sw.sum())[:, None] * xm**2, axis=0))
    aug = np.r_[design, np.c_[np.sqrt(alpha * scale) * np.eye(4), np.zeros((4, 1))]]
    sol = np.linalg.lstsq(aug, np.r_[y * sn[:, None], np.zeros((4, 1))], rcond=None)[0]
    np.testing.assert_allclose(w, sol[:4], atol=1e-10)
    np.testing.assert_allclose(b, sol[4], atol=1e-10)


def test_fit_wiener_recovers_a_causal_filter():
    # Given targets that are a known filter of the current and two previous bins
    rng = np.random.default_rng(3)
    segs = [rng.poisson(3.0, (80, 5)).astype(float) for _ in range(6)]
    k = rng.normal(size=(15, 2))
    data = [(c, lagged_design(c, 3) @ k + 1.5) for c in segs]
    filt, scores = fit_wiener(data[:4], data[4:], taps=3, alphas=(1e-8, 1.0))
    # Then the least-penalised alpha wins and the predictions are exact on new data
    assert filt.alpha == 1e-8 and scores[1e-8] > scores[1.0]
    np.testing.assert_allclose(filt.predict(segs[5]), data[5][1], atol=1e-5)
    # And the prediction at bin t does not depend on later bins
    changed = segs[5].copy()
    changed[40:] += 7.0
    np.testing.assert_allclose(filt.predict(changed)[:40], filt.predict(segs[5])[:40], atol=1e-12)


def test_r2_score_definition():
    y = np.array([[1.0, 0.0], [2.0, 1.0], [3.0, 5.0]])
    p = np.array([[1.5, 0.0], [2.0, 2.0], [2.5, 4.0]])
    want = np.mean([1 - 0.5 / 2.0, 1 - 2.0 / np.sum((y[:, 1] - 2.0) ** 2)])
    assert r2_score(y, p) == pytest.approx(want, abs=1e-12)


def test_bad_inputs():
    with pytest.raises(ValueError, match="taps"):
        lagged_design(np.zeros((3, 2)), 0)
    with pytest.raises(ValueError, match="sample_weight"):
        ridge_solutions(np.zeros((3, 2)), np.zeros((3, 1)), [1.0], np.array([1.0, -1.0, 1.0]))
