"""Attention cores vs numpy softmax, empty sets, masking, gradients; rotary cross-attention invariances."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from possm_jax.nn.attention import RotaryCrossAttention, masked_attention, segment_attention
from possm_jax.nn.encoder import count_logit
from possm_jax.nn.rope import RotaryTime, rotate


def _softmax_np(q, k, v, mask):
    """Float64 reference for one query: softmax over the visible keys only; zeros if none."""
    if not mask.any():
        return np.zeros(v.shape[-1])
    logits = k[mask].astype(np.float64) @ q
    p = np.exp(logits - logits.max())
    return (p / p.sum()) @ v[mask]


def test_masked_attention_matches_numpy_and_empty_rows_are_zero():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(3, 4, 64)).astype(np.float32)
    k = rng.normal(size=(3, 4, 5, 64)).astype(np.float32)
    v = rng.normal(size=(3, 4, 5, 64)).astype(np.float32)
    mask = rng.random((3, 4, 5)) < 0.6
    mask[0, 0] = False  # a query that sees nothing
    k[~mask] = 1e4  # huge masked keys must not leak into anything
    out = np.asarray(masked_attention(q, k, v, mask))
    for i in np.ndindex(3, 4):
        np.testing.assert_allclose(out[i], _softmax_np(q[i], k[i], v[i], mask[i]), atol=1e-5)
    assert np.all(out[0, 0] == 0)


def test_masked_attention_gradients_finite_with_empty_rows():
    rng = np.random.default_rng(1)
    q, k, v = (jnp.asarray(rng.normal(size=s).astype(np.float32)) for s in [(2, 64), (2, 3, 64), (2, 3, 64)])
    mask = jnp.asarray([[False, False, False], [True, False, True]])
    grads = jax.grad(lambda q, k, v: masked_attention(q, k, v, mask).sum(), argnums=(0, 1, 2))(q, k, v)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)
    assert float(jnp.abs(grads[0][0]).max()) == 0.0


def test_segment_attention_matches_per_segment_numpy():
    rng = np.random.default_rng(2)
    s, g, m = 40, 6, 2
    q = rng.normal(size=(m, 64)).astype(np.float32)
    k, v = rng.normal(size=(2, s, 64)).astype(np.float32)
    seg = np.sort(rng.integers(0, g, s)).astype(np.int32)
    seg[seg == 4] = 3  # segment 4 has no tokens
    mask = rng.random(s) < 0.8
    k[~mask] = -1e4
    out = np.asarray(segment_attention(jnp.asarray(q), k, v, seg, mask, g))
    assert out.shape == (g, m, 64)
    for j in range(g):
        sel = seg == j
        for i in range(m):
            np.testing.assert_allclose(out[j, i], _softmax_np(q[i], k[sel], v[sel], mask[sel]), atol=1e-5)
    assert np.all(out[4] == 0)
    # the dense core over the same segments agrees
    dense_mask = (seg[None, :] == np.arange(g)[:, None]) & mask[None, :]
    dense = masked_attention(jnp.broadcast_to(q, (g, m, 64)), k[None, None], v[None, None], dense_mask[:, None, :])
    np.testing.assert_allclose(np.asarray(dense), out, atol=1e-5)


def _attend(attn: RotaryCrossAttention, rope: RotaryTime, xq, tq, xc, tc, mask):
    """rotate_value cross-attention, composed as the encoder and decoder do."""
    q_rot, k_rot = rope(jnp.asarray(tq)), rope(jnp.asarray(tc))
    k, v = attn.key_value(jnp.asarray(xc))
    a = masked_attention(attn.query(jnp.asarray(xq), q_rot), rotate(k, k_rot), rotate(v, k_rot), mask)
    return np.asarray(attn.output(a, q_rot))


def test_rotary_cross_attention_is_invariant_to_a_common_time_shift():
    """With rotate_value, shifting query and key times together changes nothing (dyadic times, 10 ms periods)."""
    rng = np.random.default_rng(3)
    attn = RotaryCrossAttention(32, 48, rngs=nnx.Rngs(0))
    rope = RotaryTime(t_min=1e-2, t_max=10.0)
    xq, xc = rng.normal(size=(32,)).astype(np.float32), rng.normal(size=(7, 48)).astype(np.float32)
    tq = np.float32(13 / 512)
    tc = (rng.integers(0, 25, 7) / 512).astype(np.float32)
    mask = np.ones(7, bool)
    base = _attend(attn, rope, xq, tq, xc, tc, mask)
    for shift in (1 / 32, 1 / 4):
        np.testing.assert_allclose(_attend(attn, rope, xq, tq + shift, xc, tc + shift, mask), base, atol=1e-5)
    # but moving only the keys does change the output (time enters through relative rotations)
    assert np.abs(_attend(attn, rope, xq, tq, xc, tc + np.float32(1 / 32), mask) - base).max() > 1e-3


def test_padding_tokens_change_nothing():
    rng = np.random.default_rng(4)
    attn = RotaryCrossAttention(32, 32, rngs=nnx.Rngs(1))
    rope = RotaryTime()
    xq, xc = rng.normal(size=(32,)).astype(np.float32), rng.normal(size=(5, 32)).astype(np.float32)
    tc = rng.uniform(0, 0.05, 5).astype(np.float32)
    base = _attend(attn, rope, xq, np.float32(0.025), xc, tc, np.ones(5, bool))
    pad = rng.normal(size=(4, 32)).astype(np.float32) * 100
    padded = _attend(
        attn,
        rope,
        xq,
        np.float32(0.025),
        np.concatenate([xc, pad]),
        np.concatenate([tc, rng.uniform(0, 0.05, 4).astype(np.float32)]),
        np.arange(9) < 5,
    )
    np.testing.assert_allclose(padded, base, atol=1e-6)


def test_count_logit_makes_a_count_token_weigh_like_its_repeated_spikes():
    """A token with count n and logit bias log n attends exactly like n identical tokens without bias."""
    rng = np.random.default_rng(3)
    m, j, e = 4, 6, 64
    q = rng.normal(size=(m, e)).astype(np.float32)
    k = rng.normal(size=(j, e)).astype(np.float32)
    v = rng.normal(size=(j, e)).astype(np.float32)
    counts = np.array([1, 3, 2, 5, 1, 4])
    bias = np.asarray(count_logit(jnp.sqrt(jnp.asarray(counts, jnp.float32))))  # binned tokens carry sqrt(n)
    np.testing.assert_allclose(bias, np.log(counts), rtol=1e-6, atol=1e-6)
    mask = np.ones(j, bool)
    dense = np.asarray(masked_attention(jnp.asarray(q), k[None], v[None], mask[None], jnp.asarray(bias)[None]))
    segment = np.asarray(segment_attention(jnp.asarray(q), k, v, np.zeros(j, np.int32), mask, 1, jnp.asarray(bias)))
    rep = np.repeat(np.arange(j), counts)  # every token written out n times, no bias
    for i in range(m):
        expected = _softmax_np(q[i], k[rep], v[rep], np.ones(len(rep), bool))
        np.testing.assert_allclose(dense[i], expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(segment[0, i], expected, rtol=1e-5, atol=1e-5)
