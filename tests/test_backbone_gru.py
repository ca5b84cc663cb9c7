"""GRU backbone: numpy reference, torch fixture parity, streaming vs window, dropout, weight loading."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from possm_jax.backbones.gru import GRU, load_torch_gru_weights
from possm_jax.backbones.registry import BackboneConfig, build_backbone


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


def _numpy_gru(tensors: dict, x: np.ndarray, h0: np.ndarray, num_layers: int) -> tuple[np.ndarray, np.ndarray]:
    """torch.nn.GRU written from its documentation, float64, torch weight layout [3H, in], explicit loops."""
    b, c, _ = x.shape
    out = x.astype(np.float64)
    h_last = []
    for k in range(num_layers):
        w_ih, w_hh = tensors[f"weight_ih_l{k}"], tensors[f"weight_hh_l{k}"]
        b_ih, b_hh = tensors[f"bias_ih_l{k}"], tensors[f"bias_hh_l{k}"]
        w_ir, w_iz, w_in = np.split(w_ih, 3)
        w_hr, w_hz, w_hn = np.split(w_hh, 3)
        b_ir, b_iz, b_in = np.split(b_ih, 3)
        b_hr, b_hz, b_hn = np.split(b_hh, 3)
        h = h0[k].astype(np.float64)
        ys = []
        for t in range(c):
            xt = out[:, t]
            r = _sigmoid(xt @ w_ir.T + b_ir + h @ w_hr.T + b_hr)
            z = _sigmoid(xt @ w_iz.T + b_iz + h @ w_hz.T + b_hz)
            n = np.tanh(xt @ w_in.T + b_in + r * (h @ w_hn.T + b_hn))
            h = (1 - z) * n + z * h
            ys.append(h)
        out = np.stack(ys, axis=1)
        h_last.append(h)
    return out, np.stack(h_last)


def _random_torch_tensors(rng: np.random.Generator, in_dim: int, hidden: int, num_layers: int) -> dict:
    tensors = {}
    for k in range(num_layers):
        width = in_dim if k == 0 else hidden
        tensors[f"weight_ih_l{k}"] = rng.normal(0, 0.4, (3 * hidden, width)).astype(np.float32)
        tensors[f"weight_hh_l{k}"] = rng.normal(0, 0.4, (3 * hidden, hidden)).astype(np.float32)
        tensors[f"bias_ih_l{k}"] = rng.normal(0, 0.3, (3 * hidden,)).astype(np.float32)
        tensors[f"bias_hh_l{k}"] = rng.normal(0, 0.3, (3 * hidden,)).astype(np.float32)
    return tensors


def test_multilayer_gru_matches_numpy_reference():
    # Given a 3-layer GRU loaded with random torch-layout weights and a nonzero initial state
    rng = np.random.default_rng(0)
    in_dim, hidden, layers, b, c = 5, 7, 3, 2, 6
    tensors = _random_torch_tensors(rng, in_dim, hidden, layers)
    gru = GRU(in_dim, hidden, layers, rngs=nnx.Rngs(0))
    load_torch_gru_weights(gru, tensors)
    x = rng.normal(size=(b, c, in_dim)).astype(np.float32)
    h0 = rng.normal(0, 0.5, (layers, b, hidden)).astype(np.float32)
    # When the window runs
    y, h_last = gru(jnp.asarray(x), jnp.asarray(h0))
    # Then it equals the float64 loop written from the torch equations
    y_ref, h_ref = _numpy_gru(tensors, x, h0, layers)
    np.testing.assert_allclose(np.asarray(y), y_ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(h_last), h_ref, atol=1e-5, rtol=0)


def test_gru_matches_torch_fixture(reference_fixture):
    # Given the reference POSSM-small GRU weights and its recorded encoder outputs
    z = np.load(reference_fixture, allow_pickle=False)
    gru = GRU(64, 256, 1, rngs=nnx.Rngs(0))
    load_torch_gru_weights(gru, z, prefix="param/backbone.net.")
    # When the window runs from a zero state
    y, h_n = gru(jnp.asarray(z["act/enc_out"]), gru.init_state(3))
    # Then outputs and final state equal torch's
    np.testing.assert_allclose(np.asarray(y), z["act/backbone_out"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(h_n), z["act/gru_h_n"], atol=1e-5, rtol=0)


def test_step_repeated_equals_window():
    # Given a 2-layer GRU and a nonzero state
    gru = GRU(4, 6, 2, dropout=0.3, rngs=nnx.Rngs(1))
    x = jax.random.normal(jax.random.key(0), (3, 5, 4))
    h0 = 0.5 * jax.random.normal(jax.random.key(1), (2, 3, 6))
    # When stepping chunk by chunk vs running the window (both deterministic)
    y_win, h_win = gru(x, h0)
    step = jax.jit(lambda x_t, h: gru.step(x_t, h))
    h, ys = h0, []
    for t in range(x.shape[1]):
        y_t, h = step(x[:, t], h)
        ys.append(y_t)
    # Then outputs and states agree
    np.testing.assert_allclose(np.stack(ys, axis=1), y_win, atol=1e-5, rtol=0)
    np.testing.assert_allclose(h, h_win, atol=1e-5, rtol=0)


def test_dropout_only_between_layers_and_only_with_rngs():
    x = jax.random.normal(jax.random.key(0), (2, 4, 3))
    two = GRU(3, 8, 2, dropout=0.5, rngs=nnx.Rngs(0))
    h0 = two.init_state(2)
    y_eval, _ = two(x, h0)
    y_eval_again, _ = two(x, h0)
    y_train, _ = two(x, h0, rngs=nnx.Rngs(dropout=3))
    # Without rngs the call is deterministic; with rngs dropout changes the top layer's input
    np.testing.assert_array_equal(y_eval, y_eval_again)
    assert np.abs(np.asarray(y_train - y_eval)).max() > 1e-3
    # A single layer has nothing between layers, so rngs change nothing (torch semantics)
    one = GRU(3, 8, 1, dropout=0.5, rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(one(x, one.init_state(2))[0], one(x, one.init_state(2), rngs=nnx.Rngs(3))[0])


def test_init_is_uniform_within_torch_bound():
    gru = GRU(16, 64, 2, rngs=nnx.Rngs(0))
    bound = 1 / np.sqrt(64)
    for layer in gru.layers:
        for p in layer.arrays():
            p = np.asarray(p)
            assert p.dtype == np.float32
            assert np.abs(p).max() <= bound and np.abs(p).max() > 0.9 * bound


def test_loader_rejects_missing_wrong_shape_and_extra_layers():
    rng = np.random.default_rng(0)
    tensors = _random_torch_tensors(rng, 3, 4, 2)
    gru = GRU(3, 4, 2, rngs=nnx.Rngs(0))
    before = np.asarray(gru.layers[0].w_ih[...]).copy()
    missing = {k: v for k, v in tensors.items() if k != "bias_hh_l1"}
    with pytest.raises(ValueError, match="bias_hh_l1.*missing"):
        load_torch_gru_weights(gru, missing)
    # A failed load leaves the module untouched
    np.testing.assert_array_equal(gru.layers[0].w_ih[...], before)
    with pytest.raises(ValueError, match=r"weight_ih_l0.*shape \(12, 3\)"):
        load_torch_gru_weights(GRU(5, 4, 2, rngs=nnx.Rngs(0)), tensors)
    with pytest.raises(ValueError, match="only 1 layer"):
        load_torch_gru_weights(GRU(3, 4, 1, rngs=nnx.Rngs(0)), tensors)
    with pytest.raises(ValueError, match="missing"):
        load_torch_gru_weights(gru, tensors, prefix="net.")


def test_registry_builds_gru_and_rejects_unknown_kind():
    gru = build_backbone(BackboneConfig(kind="gru", hidden=8, num_layers=2), 3, rngs=nnx.Rngs(0))
    assert isinstance(gru, GRU) and gru.out_dim == 8 and gru.init_state(5).shape == (2, 5, 8)
    with pytest.raises(ValueError, match="valid kinds.*gru"):
        build_backbone(BackboneConfig(kind="lstm"), 3, rngs=nnx.Rngs(0))
