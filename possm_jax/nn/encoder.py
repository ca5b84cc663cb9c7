"""Per-chunk spike encoder (docs/model.md): M learned latents cross-attend to the spike tokens of their chunk.

For every chunk, with times measured from the chunk start (so every chunk, of a window or of an hours-long stream,
uses the same small numbers)::

    token = unit_emb[unit] + type_vec (+ value * value_vec for binned counts)
    z     = latent + W_o rotate(softmax(q k^T + log n) v, -t_latent)   (rotary cross-attention, rotate_value)
    z     = z + FFN(LN(z))
    (depth times) z = z + SelfAttn(z); z = z + FFN(LN(z))       (rotary self-attention among the M latents)

and the chunk's output is the M latents concatenated, [M * d].

Binned tokens: a token that stands for ``n`` threshold crossings of its channel in the bin adds ``log n`` to its
attention logits (:func:`count_logit`). Attending to ``n`` identical spike tokens is exactly attending to one of
them with its logit raised by ``log n``, so a count token weighs what its ``n`` spikes would, and the latents' average
is count-weighted. Without it every active channel weighs the same, and on the handwriting task the model did not
learn (``docs/tasks.md``). Spike tokens (n = 1) get no bias.

Count read-in (``readin=True``, binned inputs): each chunk's latents also get
``W_r LN(mean over the chunk's tokens of value * unit_emb[unit]) + b_r``, reshaped to [M, d]. At initialisation the
attention's output carries the counts in a form the handwriting readout's gradient started from only slowly; this
term makes the encoder's output a random linear map of the chunk's counts from the first step, which the backbone
learns from (``docs/tasks.md``).

Empty chunks: attention over an empty set is defined as a zero update, so an empty chunk yields
``latent + b_o`` followed by the FFN (no "blank" token). The window (segment) form and the streaming (dense) form
implement the same rule, so they agree on silent chunks too.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from possm_jax.nn.attention import HEAD_DIM, RotaryCrossAttention, masked_attention, segment_attention
from possm_jax.nn.embedding import embedding_init
from possm_jax.nn.ffn import FeedForward
from possm_jax.nn.linear import layer_norm, torch_linear
from possm_jax.nn.rope import Rotation, rope_angles, rotate, rotation
from possm_jax.types import Array


def latent_times(num_latents: int, bin_width: float) -> np.ndarray:
    """Times of the M latents within a chunk: ``(i + 1/2) * bin_width / M``; one latent sits at the chunk centre.

    Returns:
        [m] float32 seconds from the chunk start.
    """
    return ((np.arange(num_latents, dtype=np.float64) + 0.5) * bin_width / num_latents).astype(np.float32)


def count_logit(value: Array) -> Array:
    """``log n`` for binned tokens whose value is ``sqrt(n)`` (:mod:`data_pipeline.binned_tokens`): ``2 log value``.

    Values below 1 (padding, which is masked anyway) give 0.
    """
    return 2.0 * jnp.log(jnp.maximum(value, 1.0))


def rotate_at(k: Array, v: Array, spike_time: Array, omega: Array) -> tuple[Array, Array]:
    """Keys and values rotated at their spikes' times (rotate_value): k, v [..., s, e], spike_time [..., s]."""
    rot = rotation(rope_angles(spike_time, omega))
    return rotate(k, rot), rotate(v, rot)


class LatentSelfAttention(nnx.Module):
    """One in-chunk processing layer: rotary self-attention among the M latents, then a pre-norm FFN."""

    def __init__(self, dim: int, *, rngs: nnx.Rngs, ffn_mult: int, ffn_dropout: float, head_dim: int):
        self.attn = RotaryCrossAttention(dim, dim, rngs=rngs, head_dim=head_dim)
        self.ffn = FeedForward(dim, rngs=rngs, mult=ffn_mult, dropout_rate=ffn_dropout)

    def __call__(self, z: Array, rot: Rotation, *, rngs: nnx.Rngs | None = None) -> Array:
        """z: [..., m, d], rot: [m, f] at the latent times -> [..., m, d]."""
        q = self.attn.query(z, rot)
        k, v = self.attn.key_value(z)
        k, v = rotate(k, rot), rotate(v, rot)
        visible = jnp.ones(k.shape[:-1], dtype=bool)[..., None, :]  # [..., 1, m]: every latent sees all M
        a = masked_attention(q, k[..., None, :, :], v[..., None, :, :], visible)
        z = z + self.attn.output(a, rot)
        return z + self.ffn(z, rngs=rngs)


class SpikeEncoder(nnx.Module):
    """Token embedding tail, latent queries, rotary cross-attention, FFN and optional latent self-attention.

    The unit-embedding table lives in the model (it is resized by vocabulary operations); this module adds the
    token-type vector (and the value embedding for binned inputs) to the looked-up unit vectors.

    Args:
        dim: d.
        rngs: parameter RNG streams.
        bin_width: chunk length in seconds (sets the latent times).
        num_latents: M latents per chunk.
        depth: in-chunk self-attention layers over the M latents.
        binned: add ``value * value_vec`` to each token (binned-count inputs).
        readin: add the count read-in to the latents (binned inputs; see the module docstring).
        ffn_mult: FFN width multiplier.
        ffn_dropout: FFN dropout (training only).
        head_dim: attention head width e.
    """

    def __init__(
        self,
        dim: int,
        *,
        rngs: nnx.Rngs,
        bin_width: float,
        num_latents: int = 1,
        depth: int = 0,
        binned: bool = False,
        readin: bool = False,
        ffn_mult: int = 4,
        ffn_dropout: float = 0.0,
        head_dim: int = HEAD_DIM,
    ):
        init = embedding_init()
        self.num_latents = num_latents
        self.latent_time = latent_times(num_latents, bin_width)  # static numpy constant, not a parameter
        self.token_type = nnx.Param(init(rngs.params(), (dim,)))
        self.value_vec = nnx.Param(init(rngs.params(), (dim,))) if binned else None
        self.latents = nnx.Param(init(rngs.params(), (num_latents, dim)))
        self.attn = RotaryCrossAttention(dim, dim, rngs=rngs, head_dim=head_dim)
        self.readin_norm = layer_norm(dim, rngs=rngs) if readin else None
        self.readin = torch_linear(dim, num_latents * dim, rngs=rngs) if readin else None
        self.ffn = FeedForward(dim, rngs=rngs, mult=ffn_mult, dropout_rate=ffn_dropout)
        self.layers = nnx.List(
            [
                LatentSelfAttention(dim, rngs=rngs, ffn_mult=ffn_mult, ffn_dropout=ffn_dropout, head_dim=head_dim)
                for _ in range(depth)
            ]
        )

    def tokens(self, unit_vec: Array, value: Array) -> Array:
        """unit_vec: [..., d] looked-up unit embeddings, value: [...] -> token vectors [..., d]."""
        x = unit_vec + self.token_type[...]
        if self.value_vec is not None:
            x = x + value[..., None] * self.value_vec[...]
        return x

    def latent_query(self, omega: Array) -> tuple[Array, Rotation]:
        """Scaled rotated latent queries [m, e] and the latents' rotation [m, f] (identical for every chunk)."""
        rot = rotation(rope_angles(jnp.asarray(self.latent_time), omega))
        return self.attn.query(self.latents[...], rot), rot

    def readin_update(self, total: Array, count: Array) -> Array:
        """Count read-in [..., m, d] of chunks from the sum [..., d] of ``value * unit_vec`` over each chunk's tokens
        and their number [...]."""
        mean = total / jnp.maximum(count, 1.0)[..., None]
        out = self.readin(self.readin_norm(mean))
        return out.reshape(*out.shape[:-1], self.num_latents, -1)

    def finish(self, update: Array, rot: Rotation, *, rngs: nnx.Rngs | None = None) -> Array:
        """Residual, FFN and self-attention layers after the cross-attention.

        Args:
            update: [..., m, d] cross-attention update (``W_o`` output) per latent.
            rot: [m, f] the latents' rotation.
            rngs: dropout RNGs (training) or None.

        Returns:
            [..., m * d] chunk latents.
        """
        z = self.latents[...] + update
        z = z + self.ffn(z, rngs=rngs)
        for layer in self.layers:
            z = layer(z, rot, rngs=rngs)
        return z.reshape(*z.shape[:-2], -1)

    def window_update(
        self,
        kv: tuple[Array, Array],
        spike_time: Array,
        spike_chunk: Array,
        spike_mask: Array,
        num_chunks: int,
        omega: Array,
        *,
        spike_window: Array | None = None,
        logit_bias: Array | None = None,
        readin: tuple[Array, Array] | None = None,
    ) -> tuple[Array, Array]:
        """Cross-attention update of every chunk's latents from a flat token list (segment softmax, O(tokens)).

        Args:
            kv: unrotated token keys and values, each [b, s, e] (see :meth:`tokens` and ``attn.key_value``).
            spike_time: [b, s] seconds since each token's chunk start.
            spike_chunk: [b, s] chunk of each token, in [0, c).
            spike_mask: [b, s] True for real tokens.
            num_chunks: c (static).
            omega: [f] RoPE frequencies.
            spike_window: [b, s] window (output row) of each token when the tokens of several windows are packed
              across rows (:mod:`data_pipeline.packing`); None: each token belongs to the window of its own row.
            logit_bias: optional [b, s] added to each token's attention logits (binned inputs: :func:`count_logit`).
            readin: (unit vectors [b, s, d], values [b, s]) of the tokens for the count read-in (``readin=True``).

        Returns:
            (update [b, c, m, d] before the residual, latent rotation [m, f]).
        """
        b, s = spike_mask.shape
        q, q_rot = self.latent_query(omega)
        k, v = rotate_at(*kv, spike_time, omega)
        window = jnp.arange(b, dtype=jnp.int32)[:, None] if spike_window is None else spike_window
        segment = (window * num_chunks + spike_chunk).reshape(b * s)
        bias = None if logit_bias is None else logit_bias.reshape(b * s)
        a = segment_attention(
            q, k.reshape(b * s, -1), v.reshape(b * s, -1), segment, spike_mask.reshape(b * s), b * num_chunks, bias
        )
        update = self.attn.output(a.reshape(b, num_chunks, *a.shape[1:]), q_rot)
        if readin is not None:
            unit_vec, value = readin
            mask = spike_mask.reshape(b * s)
            weight = jnp.where(mask, value.reshape(b * s), 0.0)
            total = jax.ops.segment_sum(weight[:, None] * unit_vec.reshape(b * s, -1), segment, b * num_chunks)
            count = jax.ops.segment_sum(mask.astype(jnp.float32), segment, b * num_chunks)
            update = update + self.readin_update(total, count).reshape(update.shape)
        return update, q_rot

    def window(
        self,
        kv: tuple[Array, Array],
        spike_time: Array,
        spike_chunk: Array,
        spike_mask: Array,
        num_chunks: int,
        omega: Array,
        *,
        spike_window: Array | None = None,
        logit_bias: Array | None = None,
        readin: tuple[Array, Array] | None = None,
        rngs: nnx.Rngs | None = None,
    ) -> Array:
        """Encode every chunk of a window: [b, c, m * d] chunk latents (arguments as :meth:`window_update`)."""
        update, rot = self.window_update(
            kv,
            spike_time,
            spike_chunk,
            spike_mask,
            num_chunks,
            omega,
            spike_window=spike_window,
            logit_bias=logit_bias,
            readin=readin,
        )
        return self.finish(update, rot, rngs=rngs)

    def chunk(
        self,
        spike_time: Array,
        spike_mask: Array,
        omega: Array,
        *,
        tokens: Array | None = None,
        kv: tuple[Array, Array] | None = None,
        logit_bias: Array | None = None,
        readin: tuple[Array, Array] | None = None,
    ) -> Array:
        """Encode one chunk per stream (dense masked softmax; inference, no dropout).

        Args:
            spike_time: [b, s] seconds since the chunk start.
            spike_mask: [b, s] True for real tokens.
            omega: [f] RoPE frequencies.
            tokens: [b, s, d] token vectors; or
            kv: unrotated (k, v), each [b, s, e], e.g. looked up from a per-unit table (they depend only on the unit
              for spike inputs, so a stream need not recompute them).
            logit_bias: optional [b, s] attention-logit bias of each token (:func:`count_logit`).
            readin: (unit vectors [b, s, d], values [b, s]) for the count read-in (``readin=True``).

        Returns:
            [b, m * d] chunk latents.
        """
        q, q_rot = self.latent_query(omega)
        k, v = rotate_at(*(self.attn.key_value(tokens) if kv is None else kv), spike_time, omega)
        bias = None if logit_bias is None else logit_bias[:, None, :]
        a = masked_attention(q, k[:, None], v[:, None], spike_mask[:, None, :], bias)  # [b, m, e]
        update = self.attn.output(a, q_rot)
        if readin is not None:
            unit_vec, value = readin
            total = jnp.einsum("bs,bsd->bd", jnp.where(spike_mask, value, 0.0), unit_vec)
            update = update + self.readin_update(total, jnp.sum(spike_mask, axis=-1).astype(jnp.float32))
        return self.finish(update, q_rot)
