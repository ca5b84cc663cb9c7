"""Mamba backbone: numpy reference for one block, streaming vs window, split windows, dropout, init, config."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from possm_jax.backbones.mamba import Mamba, MambaBlock, MambaState
from possm_jax.backbones.registry import BackboneConfig, build_backbone


def _softplus(v):
    return np.log1p(np.exp(v))


def _silu(v):
    return v / (1 + np.exp(-v))


def _numpy_block(blk: MambaBlock, u, conv_buf, h0):
    """One pre-norm Mamba block written from the equations, float64, explicit loops over chunks and taps."""
    g = lambda p: np.asarray(p[...], np.float64)  # noqa: E731
    r, n = blk.dt_rank, blk.state_size
    un = u / np.sqrt(np.mean(u**2, -1, keepdims=True) + 1e-5) * g(blk.norm.scale)
    xz = un @ g(blk.in_proj.kernel)
    inner = xz.shape[-1] // 2
    x_in, z = xz[..., :inner], xz[..., inner:]
    w, cb = g(blk.conv_w), g(blk.conv_b)
    taps = w.shape[0]
    hist = np.concatenate([conv_buf, x_in], axis=1)
    a = -np.exp(g(blk.a_log))
    h = h0.astype(np.float64).copy()
    out = np.zeros(u.shape)
    for t in range(u.shape[1]):
        xc = cb.copy()
        for k in range(taps):
            xc = xc + w[k] * hist[:, t + k]
        xc = _silu(xc)
        proj = xc @ g(blk.x_proj.kernel)
        delta = _softplus(proj[:, :r] @ g(blk.dt_w) + g(blk.dt_b))
        b_t, c_t = proj[:, r : r + n], proj[:, r + n :]
        y = np.zeros_like(xc)
        for s in range(n):
            h[:, :, s] = np.exp(delta * a[:, s]) * h[:, :, s] + delta * xc * b_t[:, s : s + 1]
            y += h[:, :, s] * c_t[:, s : s + 1]
        y += g(blk.d_skip) * xc
        out[:, t] = u[:, t] + (y * _silu(z[:, t])) @ g(blk.out_proj.kernel)
    return out, hist[:, hist.shape[1] - (taps - 1) :], h


def _perturb(module: nnx.Module, seed: int) -> None:
    """Add noise to every parameter so the reference sees generic values (not D = 1, RMS scale = 1, ...)."""
    rng = np.random.default_rng(seed)
    for _, p in nnx.iter_graph(module):
        if isinstance(p, nnx.Param):
            p[...] = p[...] + jnp.asarray(rng.normal(0, 0.2, p[...].shape), jnp.float32)


def test_block_matches_numpy_reference():
    # Given one block with generic parameters, a nonzero conv buffer and SSM state
    blk = MambaBlock(4, 3, 2, 4, 2, 0.0, rngs=nnx.Rngs(0))
    _perturb(blk, 1)
    rng = np.random.default_rng(2)
    u = rng.normal(size=(2, 6, 4)).astype(np.float32)
    conv_buf = rng.normal(size=(2, 3, 8)).astype(np.float32)
    h0 = rng.normal(0, 0.5, (2, 8, 3)).astype(np.float32)
    # When the block runs over the window
    v, conv_new, h = blk(jnp.asarray(u), jnp.asarray(conv_buf), jnp.asarray(h0), None)
    # Then it equals the explicit float64 loops
    v_ref, conv_ref, h_ref = _numpy_block(blk, u, conv_buf, h0)
    np.testing.assert_allclose(np.asarray(v), v_ref, atol=1e-4, rtol=0)
    np.testing.assert_allclose(np.asarray(conv_new), conv_ref, atol=1e-6, rtol=0)
    np.testing.assert_allclose(np.asarray(h), h_ref, atol=1e-4, rtol=0)


def _model_and_inputs(dropout: float = 0.0, conv_width: int = 4):
    model = Mamba(5, 8, num_layers=2, state_size=4, conv_width=conv_width, dropout=dropout, rngs=nnx.Rngs(0))
    _perturb(model, 3)
    x = jax.random.normal(jax.random.key(0), (3, 8, 5))
    zero = model.init_state(3)
    k1, k2 = jax.random.split(jax.random.key(1))
    state = MambaState(jax.random.normal(k1, zero.conv.shape), 0.3 * jax.random.normal(k2, zero.ssm.shape))
    return model, x, state


@pytest.mark.parametrize("conv_width", [4, 1])
def test_step_repeated_equals_window(conv_width):
    model, x, state = _model_and_inputs(conv_width=conv_width)
    y_win, s_win = model(x, state)
    step = jax.jit(lambda x_t, s: model.step(x_t, s))
    s, ys = state, []
    for t in range(x.shape[1]):
        y_t, s = step(x[:, t], s)
        ys.append(y_t)
    np.testing.assert_allclose(np.stack(ys, axis=1), y_win, atol=1e-5, rtol=0)
    for got, want in zip(s, s_win, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_two_halves_with_carried_state_equal_whole_window():
    model, x, state = _model_and_inputs()
    y_all, s_all = model(x, state)
    y1, s1 = model(x[:, :3], state)
    y2, s2 = model(x[:, 3:], s1)
    np.testing.assert_allclose(jnp.concatenate([y1, y2], axis=1), y_all, atol=1e-5, rtol=0)
    for got, want in zip(s2, s_all, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_dropout_only_with_rngs():
    model, x, state = _model_and_inputs(dropout=0.5)
    y_eval, _ = model(x, state)
    np.testing.assert_array_equal(y_eval, model(x, state)[0])
    assert np.abs(np.asarray(model(x, state, rngs=nnx.Rngs(dropout=1))[0] - y_eval)).max() > 1e-3


def test_init_dt_range_and_s4d_real_a():
    blk = MambaBlock(64, 16, 2, 4, 4, 0.0, rngs=nnx.Rngs(0))
    dt = np.asarray(jax.nn.softplus(blk.dt_b[...]))
    assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 1e-1 * (1 + 1e-5) and dt.max() / dt.min() > 10
    np.testing.assert_allclose(-np.exp(blk.a_log[...]), -np.broadcast_to(np.arange(1, 17), (128, 16)), rtol=1e-6)


def test_bad_config_raises_and_registry_builds():
    with pytest.raises(ValueError, match="conv_width"):
        Mamba(4, 8, conv_width=0, rngs=nnx.Rngs(0))
    cfg = BackboneConfig(kind="mamba", hidden=32, num_layers=2, state_size=16, expand=2)
    model = build_backbone(cfg, 5, rngs=nnx.Rngs(0))
    assert isinstance(model, Mamba) and model.out_dim == 32
    state = model.init_state(3)
    assert state.conv.shape == (2, 3, 3, 64) and state.ssm.shape == (2, 3, 64, 16)
    assert model.layers[0].dt_rank == 2
