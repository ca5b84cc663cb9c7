"""Replay RNN: the unified update against numpy references, determinism, GRU shapes, and training."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from possm_jax.replay.rnn import CellConfig, CellState, ReplayRNN, unified_step
from possm_jax.replay.tasks import make_task
from possm_jax.replay.train import build_model, train

RNG = np.random.default_rng(0)


def _weights(h=6, i=3):
    return RNG.normal(size=(h, h)) / np.sqrt(h), RNG.normal(size=(i, h))


def test_first_order_equals_second_order_at_unit_momentum():
    # Given lambda_v = 1 and no adaptation, the unified step is Krishna et al.'s leaky RNN step.
    w, u = _weights()
    h, x, xi = RNG.normal(size=(4, 6)), RNG.normal(size=(4, 3)), RNG.normal(size=(4, 6))
    cfg = CellConfig(leak=0.3, momentum=1.0, noise_sd=0.05)
    state = CellState(*(jnp.asarray(a, jnp.float32) for a in (h, np.zeros_like(h), RNG.normal(size=h.shape))))
    out = unified_step(jnp.asarray(w, jnp.float32), jnp.asarray(u, jnp.float32), state, jnp.asarray(x), xi, cfg)
    expected = (1 - 0.3) * h + 0.3 * np.maximum(h @ w + x @ u, 0) + 0.05 * xi
    np.testing.assert_allclose(out.h, expected, rtol=1e-5, atol=1e-5)


def test_second_order_with_adaptation_matches_numpy_loop():
    w, u = _weights()
    cfg = CellConfig(leak=0.2, adapt_rate=0.1, adapt_strength=0.5, momentum=0.4, noise_sd=0.1)
    xs, xis = RNG.normal(size=(8, 2, 3)), RNG.normal(size=(8, 2, 6))
    h, a, v = RNG.normal(size=(2, 6)), np.zeros((2, 6)), np.zeros((2, 6))
    state = CellState(*(jnp.asarray(z, jnp.float32) for z in (h, a, v)))
    for x, xi in zip(xs, xis, strict=True):
        state = unified_step(jnp.asarray(w, jnp.float32), jnp.asarray(u, jnp.float32), state, x, xi, cfg)
        delta = -0.2 * h + 0.2 * np.maximum(h @ w + x @ u - 0.5 * a, 0)
        a = 0.9 * a + 0.1 * h
        v = 0.6 * v + delta + 0.1 * xi
        h = h + v
    np.testing.assert_allclose(state.h, h, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(state.a, a, rtol=1e-4, atol=1e-4)


def test_module_rollout_matches_numpy_and_noise_free_is_deterministic():
    cell = CellConfig(leak=0.25, noise_sd=0.0)
    model = ReplayRNN(2, 8, 5, cell, rngs=nnx.Rngs(0))
    inputs = jnp.asarray(RNG.normal(size=(3, 7, 2)), jnp.float32)
    code = jax.nn.softmax(jnp.asarray(RNG.normal(size=(3, 5)), jnp.float32))
    out1, hid, _ = model(inputs, model.init_state(code), key=jax.random.key(1))
    out2, _, _ = model(inputs, model.init_state(code), key=jax.random.key(2))
    np.testing.assert_array_equal(out1, out2)
    w_in, w_rec, w_out, w_enc = (
        np.asarray(p[...], np.float64) for p in (model.w_in, model.w_rec, model.w_out, model.w_enc)
    )
    h = np.asarray(code, np.float64) @ w_enc
    for t in range(7):
        h = 0.75 * h + 0.25 * np.maximum(h @ w_rec + np.asarray(inputs[:, t]) @ w_in, 0)
        np.testing.assert_allclose(hid[:, t], h, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out1[:, -1], h @ w_out, rtol=1e-4, atol=1e-5)


def test_noise_changes_noisy_network_and_gru_runs():
    model = ReplayRNN(2, 8, 5, CellConfig(kind="gru", noise_sd=0.1, noise_kind="uniform"), rngs=nnx.Rngs(0))
    inputs = jnp.ones((2, 4, 2))
    state = model.init_state(jnp.full((2, 5), 0.2))
    out1, hid, last = model(inputs, state, key=jax.random.key(1))
    out2, _, _ = model(inputs, state, key=jax.random.key(2))
    assert out1.shape == (2, 4, 5) and hid.shape == (2, 4, 8) and last.h.shape == (2, 8)
    assert not np.allclose(out1, out2)


@pytest.mark.parametrize("kwargs", [dict(kind="lstm"), dict(noise_kind="pink"), dict(momentum=0.0)])
def test_bad_cell_config_raises(kwargs):
    with pytest.raises(ValueError):
        CellConfig(**kwargs)


def test_short_training_reduces_loss():
    task = make_task(
        ml_collections.ConfigDict(
            dict(name="spatial", num_cells=32, sigma=0.3, dog_surround=0.0, bias=0.0, concentration=4.0, code_seed=0)
        )
    )
    cfg = ml_collections.ConfigDict(
        dict(
            hidden_dim=32,
            cell=dict(
                kind="rnn",
                leak=0.2,
                adapt_rate=0.0,
                adapt_strength=0.0,
                momentum=1.0,
                noise_sd=0.01,
                noise_kind="gaussian",
            ),
            train=dict(steps=80, batch_size=16, seq_len=20, learning_rate=1e-2, log_every=1, progress=False),
        )
    )
    model = build_model(task, cfg, 0)
    before = np.asarray(model.w_rec[...]).copy()
    model, history = train(model, task, cfg.train, jax.random.key(0))
    assert np.mean(history["loss"][-10:]) < 0.5 * np.mean(history["loss"][:5])
    assert not np.allclose(before, model.w_rec[...])
