"""POSSM window forward vs streaming, masking, empty chunks, M > 1 latents, strict causality (lag), inputs kinds."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from possm_batches import chunk_inputs, random_batch

from possm_jax.backbones.registry import BackboneConfig
from possm_jax.config import POSSMConfig, get_preset
from possm_jax.possm import POSSM

C, S, Q, U = 8, 48, 16, 30
TASK = "cursor_velocity_2d"


def _model(**overrides) -> POSSM:
    cfg = get_preset("possm_small", backbone=BackboneConfig(kind="gru", hidden=64), **overrides)
    return POSSM(cfg, num_units=U, num_sessions=3, rngs=nnx.Rngs(0))


def _batch(seed: int = 0, **kw) -> dict[str, np.ndarray]:
    return random_batch(seed, chunks=C, spikes=S, queries=Q, num_units=U, **kw)


def _stream(model: POSSM, batch: dict[str, np.ndarray]):
    """Step through the window chunk by chunk; predictions scattered back to the window's query positions."""
    b = batch["session"].shape[0]
    state = model.init_stream(b)
    out = np.zeros((b, Q, 2), np.float32)
    for j in range(C):
        chunk, queries, positions = chunk_inputs(batch, j, 16, 8)
        state, preds = model.step(state, chunk, queries)
        for row, pos in enumerate(positions):
            out[row, pos] = np.asarray(preds[TASK])[row, : len(pos)]
    return out, state


def _real(x, batch):
    return np.asarray(x)[batch["query_mask"]]


@pytest.mark.parametrize(
    "backbone",
    [
        BackboneConfig(kind="gru", hidden=64, num_layers=2),
        BackboneConfig(kind="s4d", hidden=64, num_layers=2),
        BackboneConfig(kind="mamba", hidden=64, num_layers=2, state_size=8),
    ],
    ids=lambda b: b.kind,
)
def test_streaming_equals_window(backbone):
    model = POSSM(get_preset("possm_small", backbone=backbone), num_units=U, num_sessions=3, rngs=nnx.Rngs(0))
    batch = _batch(1)
    preds, state = model(batch)
    streamed, stream_state = _stream(model, batch)
    np.testing.assert_allclose(_real(streamed, batch), _real(preds[TASK], batch), atol=1e-5)
    for a, b in zip(jax.tree.leaves(stream_state.backbone), jax.tree.leaves(state), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def test_multiple_latents_with_self_attention_stream_equals_window():
    model = _model(num_latents=3, depth=1)
    assert model.backbone.in_dim == 3 * 64
    batch = _batch(2)
    preds, _ = model(batch)
    streamed, _ = _stream(model, batch)
    np.testing.assert_allclose(_real(streamed, batch), _real(preds[TASK], batch), atol=1e-5)


def test_padding_changes_nothing():
    """Extra padded spikes (garbage ids/times), padded queries and padded trailing chunks leave real outputs alone."""
    model = _model()
    batch = _batch(3)
    base = _real(model(batch)[0][TASK], batch)
    rng = np.random.default_rng(0)
    b, extra = 2, 21
    padded = dict(batch)
    for key, fill in (("spike_unit", rng.integers(1, U, (b, extra))), ("spike_time", rng.uniform(0, 0.05, (b, extra)))):
        padded[key] = np.concatenate([batch[key], fill.astype(batch[key].dtype)], axis=1)
    padded["spike_chunk"] = np.concatenate([batch["spike_chunk"], np.full((b, extra), C, np.int32)], axis=1)
    padded["spike_value"] = np.concatenate([batch["spike_value"], np.ones((b, extra), np.float32)], axis=1)
    padded["spike_mask"] = np.concatenate([batch["spike_mask"], np.zeros((b, extra), bool)], axis=1)
    padded["chunk_mask"] = np.concatenate([batch["chunk_mask"], np.zeros((b, 3), bool)], axis=1)  # c = C + 3
    for key in ("query_chunk", "query_time", "query_task", "query_mask"):
        padded[key] = np.concatenate([batch[key], np.zeros((b, 5), batch[key].dtype)], axis=1)
    out = np.asarray(model(padded)[0][TASK])[:, :Q][batch["query_mask"]]
    np.testing.assert_allclose(out, base, atol=1e-6)


def test_empty_chunk_is_latent_plus_output_bias_then_ffn():
    model = _model()
    batch = _batch(4, empty_chunks=(3,))
    latents = np.asarray(model.encode(batch))
    enc = model.encoder
    z = enc.latents[...] + enc.attn.to_out.bias[...]
    expected = np.asarray(z + enc.ffn(z)).reshape(-1)
    np.testing.assert_allclose(latents[:, 3], np.broadcast_to(expected, latents[:, 3].shape), atol=1e-6)


def _band_np(query_chunk, query_time, bw, lag, k=3):
    """Independent float64 band: the k newest chunks i with (i + 1) * bw <= t - lag, t = chunk * bw + time."""
    t = query_chunk * bw + query_time.astype(np.float64)
    idx = np.zeros((*t.shape, k), np.int64)
    visible = np.zeros((*t.shape, k), bool)
    for pos in np.ndindex(t.shape):
        chunks = [i for i in range(C) if (i + 1) * bw <= t[pos] - lag + 1e-9][::-1][:k]
        idx[pos][: len(chunks)] = chunks
        visible[pos][: len(chunks)] = True
    return idx, visible


def test_strict_lag_attends_only_to_chunks_ended_before_t_minus_lag():
    lag, bw = 0.07, 0.05
    model = _model(lag=lag)
    batch = _batch(5)
    preds = np.asarray(model(batch)[0][TASK])

    # Independent band and local key times, then the decoder equations.
    idx, visible = _band_np(batch["query_chunk"], batch["query_time"], bw, lag)
    context, _ = model.backbone(model.encode(batch), model.backbone.init_state(2))
    k, v = model.decoder.key_value(context)
    rows = np.arange(2)[:, None, None]
    key_time = (idx - batch["query_chunk"][..., None] + 1).astype(np.float32) * np.float32(bw)
    x = model.decoder.queries(model.session_emb(jnp.asarray(batch["session"])), jnp.asarray(batch["query_task"]))
    out = model.decoder.attend(
        x, model.rope(jnp.asarray(batch["query_time"])), k[rows, idx], v[rows, idx], model.rope(key_time), visible
    )
    expected = np.asarray(model.decoder.readout(out)[TASK])
    np.testing.assert_allclose(preds[batch["query_mask"]], expected[batch["query_mask"]], atol=1e-5)
    assert (~visible.any(-1) & batch["query_mask"]).any()  # some queries see nothing (zero update) ...
    assert visible.all(-1).any()  # ... and some see a full band

    # Causality: changing spikes in chunks that end after t - lag leaves that query's prediction unchanged.
    row, pos = 0, int(np.flatnonzero(batch["query_mask"][0] & (batch["query_chunk"][0] == 5))[0])
    newest = idx[row, pos, 0] if visible[row, pos, 0] else -1
    later = batch["spike_mask"][row] & (batch["spike_chunk"][row] > newest)
    changed = dict(batch, spike_unit=batch["spike_unit"].copy())
    changed["spike_unit"][row, later] = (changed["spike_unit"][row, later] % (U - 1)) + 1
    changed["spike_unit"][row, later] = np.roll(changed["spike_unit"][row, later], 1)
    new = np.asarray(model(changed)[0][TASK])
    np.testing.assert_allclose(new[row, pos], preds[row, pos], atol=1e-6)
    assert np.abs(new[row] - preds[row]).max() > 1e-4  # later queries do see the change


def test_lag_none_sees_own_chunk_lag_zero_does_not():
    batch = _batch(6)
    chunk_causal, _ = _model()(batch)
    strict, _ = _model(lag=0.0)(batch)
    assert np.abs(np.asarray(chunk_causal[TASK]) - np.asarray(strict[TASK]))[batch["query_mask"]].max() > 1e-4


def test_binned_inputs_use_the_value_and_spikes_ignore_it():
    batch = _batch(7)
    scaled = dict(batch, spike_value=batch["spike_value"] * 2.0)
    spikes = _model()
    np.testing.assert_array_equal(spikes(batch)[0][TASK], spikes(scaled)[0][TASK])
    binned = _model(input_kind="binned")
    assert np.abs(np.asarray(binned(batch)[0][TASK]) - np.asarray(binned(scaled)[0][TASK])).max() > 1e-4
    streamed, _ = _stream(binned, batch)
    np.testing.assert_allclose(_real(streamed, batch), _real(binned(batch)[0][TASK], batch), atol=1e-5)


def test_count_readin_adds_a_linear_map_of_each_chunks_counts():
    """The read-in term equals a numpy mean of value * unit vector per chunk, layer-normed and projected; streaming
    still equals the window forward with it."""
    batch = _batch(9)
    model = _model(input_kind="binned", count_readin=True)
    streamed, _ = _stream(model, batch)
    np.testing.assert_allclose(_real(streamed, batch), _real(model(batch)[0][TASK], batch), atol=1e-5)

    def update(m):
        kv = m._token_kv(batch)
        args = (jnp.asarray(batch["spike_time"]), batch["spike_chunk"], batch["spike_mask"], C, m.rope.omega[...])
        return np.asarray(m.encoder.window_update(kv, *args, readin=m._readin_inputs(batch))[0])

    with_readin = update(model)
    w, bias = np.asarray(model.encoder.readin.kernel[...]), np.asarray(model.encoder.readin.bias[...])
    model.encoder.readin.kernel[...] = jnp.zeros_like(model.encoder.readin.kernel[...])
    model.encoder.readin.bias[...] = jnp.zeros_like(model.encoder.readin.bias[...])
    without = update(model)
    emb = np.asarray(model.unit_emb.embedding[...])
    gamma, beta = np.asarray(model.encoder.readin_norm.scale[...]), np.asarray(model.encoder.readin_norm.bias[...])
    for row in range(2):
        for j in range(C):
            sel = batch["spike_mask"][row] & (batch["spike_chunk"][row] == j)
            total = (batch["spike_value"][row, sel, None] * emb[batch["spike_unit"][row, sel]]).sum(0)
            mean = total / max(sel.sum(), 1)
            norm = (mean - mean.mean()) / np.sqrt(mean.var() + 1e-5) * gamma + beta
            expected = (norm @ w + bias).reshape(model.config.num_latents, -1)
            np.testing.assert_allclose(with_readin[row, j] - without[row, j], expected, atol=1e-5)
    with pytest.raises(ValueError, match="count_readin"):
        _model(count_readin=True)


def test_dropout_only_with_rngs_and_gradients_only_over_params():
    model = _model()
    batch = _batch(8)
    eval_a, eval_b = model(batch)[0][TASK], model(batch)[0][TASK]
    np.testing.assert_array_equal(eval_a, eval_b)
    train = model(batch, rngs=nnx.Rngs(dropout=1))[0][TASK]
    assert np.abs(np.asarray(train) - np.asarray(eval_a)).max() > 1e-4
    params = nnx.state(model, nnx.Param)
    paths = {"/".join(map(str, p)) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]}
    assert not any("omega" in p for p in paths)  # RoPE frequencies are fixed, not trained
    assert np.all(np.asarray(model.unit_emb.embedding[...])[0] == 0)
    assert np.all(np.asarray(model.session_emb.embedding[...])[0] == 0)


def test_config_json_roundtrip_and_hashable():
    cfg = get_preset("possm_s4d", lag=0.05, tasks={"a": 2, "b": 3})
    assert POSSMConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert hash(cfg) == hash(POSSMConfig.from_dict(cfg.to_dict()))
    with pytest.raises(ValueError, match="lag"):
        get_preset("possm_small", lag=-1.0)
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("possm_tiny")
