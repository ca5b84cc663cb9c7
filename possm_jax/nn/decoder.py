"""Output decoder (docs/model.md): behaviour queries cross-attend to the last k backbone outputs, then task readouts.

A query at time t in chunk j (``t = j * bw + tau``) attends to a band of k = 3 chunks, gathered per query (no
dense [q, c] mask):

* chunk-causal (``lag=None``, the reference): chunks j, j-1, j-2. Chunk j ends up to one bin width after t.
* strictly causal (``lag >= 0``): the k most recent chunks that ended at or before ``t - lag``.

Chunks before the first (i < 0) are invisible; a query that sees no chunk gets a zero attention update.

Keys sit at chunk END times. The decoder computes angles in the frame of the query's chunk start, where the query is
at ``tau`` in [0, bw) and the key of chunk ``j - o`` ends at ``(1 - o) * bw``, so the numbers do not depend on how long
the stream has run. :meth:`OutputDecoder.attend` takes rotations explicitly, so any common frame can be fed (the parity
test feeds the reference's window-absolute times).
"""

from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from possm_jax.nn.attention import HEAD_DIM, RotaryCrossAttention, masked_attention
from possm_jax.nn.embedding import embedding_init
from possm_jax.nn.ffn import FeedForward
from possm_jax.nn.linear import torch_linear
from possm_jax.nn.rope import Rotation, rotate
from possm_jax.types import Array

BOUNDARY_TOLERANCE = 1e-5
"""Fraction of a bin width by which a chunk may end after ``t - lag`` and still count as visible (float32 slack)."""


def band_length(context_chunks: int, bin_width: float, lag: float | None) -> int:
    """How many of the most recent chunks any query may need: the streaming ring-buffer length.

    Returns ``context_chunks`` when chunk-causal; ``context_chunks + 1 + ceil(lag / bin_width)`` when strictly causal.
    """
    if lag is None:
        return context_chunks
    return context_chunks + 1 + int(np.ceil(lag / bin_width))


def band_offsets(query_time: Array, *, bin_width: float, lag: float | None, context_chunks: int) -> Array:
    """Chunk offsets ``o = j - i`` (newest first) of the chunks each query attends to.

    Args:
        query_time: [...] seconds since the start of the query's chunk j, in [0, bin_width).
        bin_width: chunk length in seconds.
        lag: None for chunk-causal; otherwise the strict-causality lag in seconds.
        context_chunks: k.

    Returns:
        [..., k] int32 offsets; chunk ``j - o`` is visible iff ``j - o >= 0``.
    """
    if lag is None:
        newest = jnp.zeros(query_time.shape, jnp.int32)
    else:
        # Chunk j - o ends at (1 - o) * bw in this frame; visible iff (1 - o) * bw <= tau - lag.
        steps = jnp.floor((query_time.astype(jnp.float32) - lag) / bin_width + BOUNDARY_TOLERANCE)
        newest = 1 - steps.astype(jnp.int32)
    return newest[..., None] + jnp.arange(context_chunks, dtype=jnp.int32)


def band_key_times(offsets: Array, bin_width: float) -> Array:
    """End times ``(1 - o) * bw`` (float32) of the chunks at ``offsets``, relative to the query's chunk start."""
    return (1 - offsets).astype(jnp.float32) * jnp.float32(bin_width)


class OutputDecoder(nnx.Module):
    """Query embeddings (task), rotary cross-attention over the band, FFN, and one linear readout per task.

    Args:
        dim: d.
        context_dim: h, the backbone output width.
        tasks: task name -> output width; readouts are built for these tasks only, in this order.
        rngs: parameter RNG streams.
        task_embedding: add a learned per-task vector to the queries.
        ffn_mult: FFN width multiplier.
        ffn_dropout: FFN dropout (training only).
        head_dim: attention head width e.
    """

    def __init__(
        self,
        dim: int,
        context_dim: int,
        tasks: Mapping[str, int],
        *,
        rngs: nnx.Rngs,
        task_embedding: bool = True,
        ffn_mult: int = 4,
        ffn_dropout: float = 0.0,
        head_dim: int = HEAD_DIM,
    ):
        init = embedding_init()
        self.task_emb = nnx.Param(init(rngs.params(), (len(tasks), dim))) if task_embedding else None
        self.attn = RotaryCrossAttention(dim, context_dim, rngs=rngs, head_dim=head_dim)
        self.ffn = FeedForward(dim, rngs=rngs, mult=ffn_mult, dropout_rate=ffn_dropout)
        self.readouts = nnx.Dict({name: torch_linear(dim, out_dim, rngs=rngs) for name, out_dim in tasks.items()})

    def queries(self, session_vec: Array, query_task: Array) -> Array:
        """session_vec: [b, d], query_task: [b, q] 0-based task index -> query tokens [b, q, d]."""
        x = jnp.broadcast_to(session_vec[:, None, :], (*query_task.shape, session_vec.shape[-1]))
        if self.task_emb is not None:
            x = x + self.task_emb[...][query_task]
        return x

    def key_value(self, context: Array) -> tuple[Array, Array]:
        """context: [..., h] backbone outputs -> unrotated (k, v) [..., e]; cheap to cache per chunk."""
        return self.attn.key_value(context)

    def attention_update(
        self, x: Array, query_rot: Rotation, k: Array, v: Array, key_rot: Rotation, visible: Array
    ) -> Array:
        """Cross-attention of each query over its gathered band, before the residual.

        Args:
            x: [b, q, d] query tokens.
            query_rot: [b, q, f] RoPE rotation at the query times.
            k: [b, q, k, e] unrotated keys of the band.
            v: [b, q, k, e] unrotated values of the band.
            key_rot: [b, q, k, f] RoPE rotation at the band's chunk-end times (same frame as the queries).
            visible: [b, q, k] True for usable keys.

        Returns:
            [b, q, d] update (zero attention, i.e. ``b_o``, where no key is visible).
        """
        q = self.attn.query(x, query_rot)
        a = masked_attention(q, rotate(k, key_rot), rotate(v, key_rot), visible)
        return self.attn.output(a, query_rot)

    def attend(
        self,
        x: Array,
        query_rot: Rotation,
        k: Array,
        v: Array,
        key_rot: Rotation,
        visible: Array,
        *,
        rngs: nnx.Rngs | None = None,
    ) -> Array:
        """``l = x + attention_update(...)``, then ``l + FFN(LN(l))``: [b, q, d] outputs before the readouts."""
        x = x + self.attention_update(x, query_rot, k, v, key_rot, visible)
        return x + self.ffn(x, rngs=rngs)

    def readout(self, x: Array) -> dict[str, Array]:
        """x: [b, q, d] -> {task: [b, q, y_task]} for every configured task."""
        return {name: head(x) for name, head in self.readouts.items()}
