"""Rotary cross-attention with ``rotate_value`` (docs/model.md; reference equations in fixtures README 3.2).

One 64-d head. Queries are rotated at their times; keys *and values* at theirs; the attention output is rotated
back by the query time, so logits and outputs depend only on time differences::

    q = rotate(LN_q(x_q) W_q, t_q) / sqrt(e)
    k = rotate(LN_c(x_c) W_k, t_k);  v = rotate(LN_c(x_c) W_v, t_k)
    a = rotate(softmax(q k^T) v, -t_q);  out = a W_o + b_o

Two attention cores over already projected and rotated vectors:

* :func:`masked_attention`: a dense softmax over a small gathered context (decoder, one streaming chunk).
* :func:`segment_attention`: a softmax per segment over a flat token list (encoder over a window), O(tokens).

Both give a zero vector for a query with no visible key (empty chunk, fully masked band) instead of NaN.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from possm_jax.nn.linear import layer_norm, torch_linear
from possm_jax.nn.rope import Rotation, rotate
from possm_jax.types import Array

HEAD_DIM = 64


def _stable_shift(masked_logits: Array, any_visible: Array) -> Array:
    """Per-query logit shift for a stable softmax; 0 where nothing is visible (avoids -inf - -inf)."""
    return jax.lax.stop_gradient(jnp.where(any_visible, masked_logits, 0.0))


def masked_attention(q: Array, k: Array, v: Array, mask: Array, logit_bias: Array | None = None) -> Array:
    """Softmax attention of each query over its own small set of keys.

    Leading dims broadcast, so a query block ``[b, m, e]`` can attend to shared keys ``[b, 1, s, e]``.

    Args:
        q: [..., e] scaled, rotated queries.
        k: [..., j, e] rotated keys.
        v: [..., j, e] rotated values.
        mask: [..., j] True where the key is visible.
        logit_bias: optional [..., j] added to every query's logit of each key (e.g. ``log(count)``, see
          :func:`possm_jax.nn.encoder.count_logit`).

    Returns:
        [..., e] attention outputs; zeros where no key is visible.
    """
    logits = jnp.einsum("...e,...je->...j", q, k)
    if logit_bias is not None:
        logits = logits + logit_bias
    mask = jnp.broadcast_to(mask, logits.shape)
    shift = _stable_shift(jnp.max(jnp.where(mask, logits, -jnp.inf), axis=-1), jnp.any(mask, axis=-1))
    # Masked logits are replaced before exp so their (ignored) values can never overflow into NaN gradients.
    p = jnp.where(mask, jnp.exp(jnp.where(mask, logits, shift[..., None]) - shift[..., None]), 0.0)
    denom = jnp.sum(p, axis=-1)
    out = jnp.einsum("...j,...je->...e", p, v)
    return out / jnp.where(denom > 0, denom, 1.0)[..., None]


def segment_attention(
    q: Array, k: Array, v: Array, segment_ids: Array, mask: Array, num_segments: int, logit_bias: Array | None = None
) -> Array:
    """Softmax attention of the same m queries, separately in each segment, over that segment's tokens only.

    Args:
        q: [m, e] scaled, rotated queries shared by every segment (the encoder's latents).
        k: [s, e] rotated keys of a flat token list.
        v: [s, e] rotated values.
        segment_ids: [s] int segment of each token, in [0, g).
        mask: [s] True for real tokens; masked tokens contribute nothing.
        num_segments: g (static).
        logit_bias: optional [s] added to every query's logit of each token.

    Returns:
        [g, m, e] attention outputs; zeros for segments without real tokens.
    """
    logits = jnp.einsum("me,se->sm", q, k)
    if logit_bias is not None:
        logits = logits + logit_bias[:, None]
    mask = mask[:, None]
    seg_max = jax.ops.segment_max(jnp.where(mask, logits, -jnp.inf), segment_ids, num_segments)
    shift = _stable_shift(seg_max, jnp.isfinite(seg_max))[segment_ids]
    p = jnp.where(mask, jnp.exp(jnp.where(mask, logits, shift) - shift), 0.0)
    denom = jax.ops.segment_sum(p, segment_ids, num_segments)
    num = jax.ops.segment_sum(p[:, :, None] * v[:, None, :], segment_ids, num_segments)
    return num / jnp.where(denom > 0, denom, 1.0)[..., None]


class RotaryCrossAttention(nnx.Module):
    """Parameters of one rotary cross-attention block: LNs, ``W_q`` and ``W_kv`` without bias, ``W_o`` with bias.

    The module only projects and rotates; the caller picks the attention core (dense or segment) and the time
    frame. Args:
      dim: query-side width d.
      context_dim: context-side width (d in the encoder, h in the decoder).
      rngs: parameter RNG streams.
      head_dim: e (64).
    """

    def __init__(self, dim: int, context_dim: int, *, rngs: nnx.Rngs, head_dim: int = HEAD_DIM):
        self.head_dim = head_dim
        self.norm = layer_norm(dim, rngs=rngs)
        self.norm_context = layer_norm(context_dim, rngs=rngs)
        self.to_q = torch_linear(dim, head_dim, use_bias=False, rngs=rngs)
        self.to_kv = torch_linear(context_dim, 2 * head_dim, use_bias=False, rngs=rngs)
        self.to_out = torch_linear(head_dim, dim, rngs=rngs)

    def query(self, x: Array, rot: Rotation) -> Array:
        """x: [..., d], rot: [..., f] at the query times -> scaled rotated queries [..., e]."""
        q = rotate(self.to_q(self.norm(x)), rot)
        # 1/sqrt(64) = 1/8 is a power of two, so pre-scaling q is exact and equals scaling the logits.
        return q * (1.0 / self.head_dim**0.5)

    def key_value(self, context: Array) -> tuple[Array, Array]:
        """context: [..., h] -> unrotated (k, v), each [..., e]; rotate them at the keys' times before attending."""
        kv = self.to_kv(self.norm_context(context))
        return kv[..., : self.head_dim], kv[..., self.head_dim :]

    def output(self, a: Array, rot: Rotation) -> Array:
        """a: [..., e] attention output, rot: [..., f] at the query times -> [..., d] (inverse rotation, then W_o)."""
        return self.to_out(rotate(a, rot, inverse=True))
