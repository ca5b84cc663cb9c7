"""Weight-only quantised streaming: the quantiser against closed-form bounds, the quantised step against float32
(bounded deviation) and against its own fake-quantised window forward, export size, and the R² refusal."""

import numpy as np
import pytest
from flax import nnx
from possm_batches import chunk_inputs, random_batch

from possm_jax.backbones.registry import BackboneConfig
from possm_jax.config import get_preset
from possm_jax.possm import POSSM
from possm_jax.quantize import R2_DROP_LIMIT, dequantize, fake_quantized, quantize_array
from possm_jax.streaming import Streamer, exported_step, make_step, pad_inputs

U, C, TASK = 30, 6, "cursor_velocity_2d"
EPS = {"bf16": 2.0**-8, "int8": 1.0 / 254}
"""Per-weight rounding error relative to its output channel's largest weight (bf16: relative to the weight)."""
STEP_BOUND = 8
"""Output deviation bound in units of EPS, relative to the largest float32 output: about one EPS per matmul on the
longest path of a step (encoder W_kv, W_o, FFN in / out, GRU, decoder W_kv, W_q, W_o, FFN, readout), where the
errors of independent roundings partly cancel; measured 1.5 EPS (bf16) and 3.3 EPS (int8) on a fresh possm_small
(margin >= 2.4x)."""


@pytest.fixture(scope="module")
def model():
    cfg = get_preset("possm_small", backbone=BackboneConfig(kind="gru", hidden=64))
    return POSSM(cfg, num_units=U, num_sessions=3, rngs=nnx.Rngs(0))


def test_int8_per_channel_rounding_bound():
    """Given a weight with columns of very different scales, each int8 weight is within max|column| / 254."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((40, 6)).astype(np.float32) * np.array([1e-3, 0.1, 1, 10, 100, 0], np.float32)
    q = quantize_array(w, "int8")
    assert q.values.dtype == np.int8 and q.scale.shape == (6,)
    bound = np.abs(w).max(0) / 254 + 1e-12
    assert np.all(np.abs(np.asarray(dequantize(q)) - w) <= bound * (1 + 1e-6))
    assert np.all(np.abs(q.values).max(0)[:5] == 127)  # the full int8 range is used per column


def test_bf16_relative_rounding_bound():
    w = np.random.default_rng(1).standard_normal((30, 7)).astype(np.float32) * 3
    q = quantize_array(w, "bf16")
    assert q.scale is None and q.values.dtype.name == "bfloat16"
    assert np.all(np.abs(np.asarray(dequantize(q)) - w) <= np.abs(w) * EPS["bf16"])


def _stream(step, model, batch) -> np.ndarray:
    state, outs = model.init_stream(2), []
    for j in range(C):
        chunk, queries, _ = chunk_inputs(batch, j, 32, 4)
        state, preds = step(state, *pad_inputs(chunk, queries, 32, 8))
        outs.append(np.asarray(preds[TASK])[:, :4])
    return np.stack(outs)


@pytest.mark.parametrize("weights", ["bf16", "int8"])
def test_quantised_step_deviation_is_bounded(model, weights):
    """The quantised step differs from float32 (it is quantised) by less than STEP_BOUND * EPS of the output range,
    and equals the window forward of the fake-quantised model (1e-5), so its numbers are the rounded weights'."""
    batch = random_batch(3, chunks=C, spikes=64, queries=12, num_units=U)
    exact = _stream(make_step(model), model, batch)
    got = _stream(make_step(model, weights=weights), model, batch)
    deviation = np.abs(got - exact).max() / np.abs(exact).max()
    assert 1e-6 < deviation < STEP_BOUND * EPS[weights]
    window = np.asarray(fake_quantized(model, weights)(batch)[0][TASK])
    for j in range(C):
        _, _, positions = chunk_inputs(batch, j, 32, 4)
        for row, pos in enumerate(positions):
            np.testing.assert_allclose(got[j, row, : len(pos)], window[row, pos], atol=1e-5)


def test_export_stores_narrow_weights(model):
    """The exported int8 step holds int8 constants and is under half the float32 export's size."""
    sizes = {w: len(exported_step(model, 1, 16, 8, weights=w).mlir_module()) for w in ("f32", "int8")}
    assert "xi8" in exported_step(model, 1, 16, 8, weights="int8").mlir_module()
    assert sizes["int8"] < 0.5 * sizes["f32"]


def test_r2_check_refuses_a_costly_format(model):
    """A format whose R² drop exceeds the limit is refused; one within the limit is accepted.

    The R² stand-in is 1 - k * (mean squared change of the readout kernel), so its drop is known in closed form.
    """
    kernel = np.asarray(model.decoder.readouts[TASK].kernel[...])
    err = {
        w: np.mean((np.asarray(fake_quantized(model, w).decoder.readouts[TASK].kernel[...]) - kernel) ** 2)
        for w in ("bf16", "int8")
    }
    k = 2 * R2_DROP_LIMIT / err["int8"]  # the int8 drop is twice the limit

    def r2(m: POSSM) -> float:
        return 1.0 - k * float(np.mean((np.asarray(m.decoder.readouts[TASK].kernel[...]) - kernel) ** 2))

    assert k * err["bf16"] < R2_DROP_LIMIT  # bf16 rounds these weights finer than int8 does
    with pytest.raises(ValueError, match="weights='int8' lowers test R²"):
        Streamer(model, weights="int8", r2_check=r2)
    Streamer(model, weights="bf16", r2_check=r2)
    with pytest.raises(ValueError, match="weights='int4'"):
        make_step(model, weights="int4")
