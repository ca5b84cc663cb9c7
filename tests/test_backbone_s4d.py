"""S4D backbone: numpy complex128 reference, parallel vs scan, streaming vs window, dropout, config errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from possm_jax.backbones.registry import BackboneConfig, build_backbone
from possm_jax.backbones.s4d import S4D, S4DLayer


def _perturb(layer: S4DLayer, seed: int) -> None:
    """Move the layer's SSM parameters off their structured init so the reference sees generic values."""
    rng = np.random.default_rng(seed)
    for name in ("log_dt", "log_neg_a_real", "a_imag", "c_re", "c_im", "d_skip"):
        p = getattr(layer, name)
        p[...] = p[...] + jnp.asarray(rng.normal(0, 0.3, p[...].shape), jnp.float32)


def _numpy_ssm(layer: S4DLayer, u: np.ndarray, s0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Explicit loop of the ZOH-discretised diagonal recurrence in complex128 (B = 1, conjugate pairs -> 2 Re)."""
    g = lambda name: np.asarray(getattr(layer, name)[...], np.float64)  # noqa: E731
    a = -np.exp(g("log_neg_a_real")) + 1j * g("a_imag")
    dt = np.exp(g("log_dt"))[:, None]
    a_bar = np.exp(dt * a)
    b_bar = (a_bar - 1) / a
    c = g("c_re") + 1j * g("c_im")
    s = s0.astype(np.complex128)
    ys = np.zeros(u.shape)
    for bi in range(u.shape[0]):
        for t in range(u.shape[1]):
            s[bi] = a_bar * s[bi] + b_bar * u[bi, t][:, None]
            ys[bi, t] = 2 * np.real(np.sum(c * s[bi], axis=-1)) + g("d_skip") * u[bi, t]
    return ys, s


def _numpy_layer_output(layer: S4DLayer, u: np.ndarray, y: np.ndarray) -> np.ndarray:
    """GELU (erf) -> Linear d->2d -> GLU -> residual -> LayerNorm(eps 1e-5), float64."""
    erf = np.vectorize(math.erf)
    gelu = 0.5 * y * (1 + erf(y / math.sqrt(2)))
    w, bias = np.asarray(layer.mix.kernel[...], np.float64), np.asarray(layer.mix.bias[...], np.float64)
    v = gelu @ w + bias
    half = v.shape[-1] // 2
    z = u + v[..., :half] / (1 + np.exp(-v[..., half:]))
    mean, var = z.mean(-1, keepdims=True), z.var(-1, keepdims=True)
    scale, shift = np.asarray(layer.norm.scale[...]), np.asarray(layer.norm.bias[...])
    return (z - mean) / np.sqrt(var + 1e-5) * scale + shift


@pytest.mark.parametrize("mode", ["scan", "parallel"])
def test_layer_matches_numpy_reference(mode):
    # Given one S4D layer with generic parameters and a nonzero complex state
    layer = S4DLayer(4, 16, 0.0, rngs=nnx.Rngs(0))
    _perturb(layer, 1)
    layer.norm.scale[...] = layer.norm.scale[...] + 0.2
    rng = np.random.default_rng(2)
    u = rng.normal(size=(2, 7, 4)).astype(np.float32)
    s0 = (0.2 * (rng.normal(size=(2, 4, 8)) + 1j * rng.normal(size=(2, 4, 8)))).astype(np.complex64)
    # When the SSM and the full layer run over the window
    y, s_last = layer.ssm(jnp.asarray(u), jnp.asarray(s0), mode)
    v, _ = layer(jnp.asarray(u), jnp.asarray(s0), mode, None)
    # Then they equal the explicit complex128 loop and the float64 mixing written from the equations
    y_ref, s_ref = _numpy_ssm(layer, u, s0)
    np.testing.assert_allclose(np.asarray(y), y_ref, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(s_last), s_ref, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(v), _numpy_layer_output(layer, u, y_ref), atol=1e-4, rtol=0)


def _model_and_inputs(mode: str = "scan", dropout: float = 0.0):
    model = S4D(5, 8, num_layers=2, state_size=16, dropout=dropout, mode=mode, rngs=nnx.Rngs(0))
    for layer in model.layers:
        _perturb(layer, 3)
    x = jax.random.normal(jax.random.key(0), (3, 9, 5))
    k1, k2 = jax.random.split(jax.random.key(1))
    state = 0.3 * jax.lax.complex(jax.random.normal(k1, (2, 3, 8, 8)), jax.random.normal(k2, (2, 3, 8, 8)))
    return model, x, state


def test_parallel_equals_scan():
    # Given the same parameters in both modes, an odd chunk count and a nonzero state
    scan_model, x, state = _model_and_inputs("scan")
    par_model, _, _ = _model_and_inputs("parallel")
    y_scan, s_scan = scan_model(x, state)
    y_par, s_par = par_model(x, state)
    np.testing.assert_allclose(y_par, y_scan, atol=1e-5, rtol=0)
    np.testing.assert_allclose(s_par, s_scan, atol=1e-5, rtol=0)


def test_step_repeated_equals_window():
    model, x, state = _model_and_inputs()
    y_win, s_win = model(x, state)
    step = jax.jit(lambda x_t, s: model.step(x_t, s))
    s, ys = state, []
    for t in range(x.shape[1]):
        y_t, s = step(x[:, t], s)
        ys.append(y_t)
    np.testing.assert_allclose(np.stack(ys, axis=1), y_win, atol=1e-5, rtol=0)
    np.testing.assert_allclose(s, s_win, atol=1e-5, rtol=0)


def test_dropout_only_with_rngs():
    model, x, state = _model_and_inputs(dropout=0.5)
    y_eval, _ = model(x, state)
    np.testing.assert_array_equal(y_eval, model(x, state)[0])
    assert np.abs(np.asarray(model(x, state, rngs=nnx.Rngs(dropout=1))[0] - y_eval)).max() > 1e-3


def test_init_follows_s4d_lin_and_dt_range():
    layer = S4DLayer(64, 64, 0.0, rngs=nnx.Rngs(0))
    a_bar = layer.kernel().a_bar
    assert a_bar.shape == (64, 32) and a_bar.dtype == jnp.complex64
    np.testing.assert_allclose(-np.exp(layer.log_neg_a_real[...]), -0.5)
    np.testing.assert_allclose(layer.a_imag[...][0], np.pi * np.arange(32), rtol=1e-6)
    dt = np.exp(np.asarray(layer.log_dt[...]))
    assert dt.min() >= 1e-3 * (1 - 1e-6) and dt.max() <= 1e-1 * (1 + 1e-6) and dt.max() / dt.min() > 10


def test_bad_config_raises_and_registry_builds():
    with pytest.raises(ValueError, match="mode"):
        S4D(4, 8, mode="fft", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="even"):
        S4D(4, 8, state_size=7, rngs=nnx.Rngs(0))
    cfg = BackboneConfig(kind="s4d", hidden=8, num_layers=2, state_size=16, s4d_mode="parallel")
    model = build_backbone(cfg, 5, rngs=nnx.Rngs(0))
    assert isinstance(model, S4D) and model.out_dim == 8 and model.mode == "parallel"
    assert model.init_state(3).shape == (2, 3, 8, 8)
