"""A POYO-style transformer baseline: perceiver over every spike of the last 1 s, re-run on every chunk.

Per window (all times in the window frame, seconds since the window start)::

    tokens  x_s = unit_emb[unit_s]                      at t_s = chunk_s · bw + spike_time_s
    latents z_l = latent_emb[l mod m]                   at t_l = (⌊l / m⌋ + ½) · latent_step   (m per step)
    z = z + RotaryCrossAttention(z ← x);  z = z + FFN(z)           (every latent sees every spike of the window)
    depth × [ z = z + RotaryCrossAttention(z ← z);  z = z + FFN(z) ]   (self-attention: context = the latents)
    q = session_emb (+ task_emb) at the query times;  q = q + RotaryCrossAttention(q ← z);  q = q + FFN(q)
    y = Linear(q) per task

The attention blocks and RoPE are POSSM's (:mod:`possm_jax.nn.attention`, :mod:`possm_jax.nn.rope`), so the only
difference from POSSM is the architecture: no recurrence, hence no state, hence the whole window is recomputed
for every new 50 ms chunk when streaming (:class:`POYOStreamer`).
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.core import FrozenDict

from possm_jax.baselines.binned_rnn import split_outputs
from possm_jax.config import DEFAULT_TASKS
from possm_jax.nn.attention import RotaryCrossAttention, masked_attention
from possm_jax.nn.embedding import EMBEDDING_INIT_STD, vocab_embedding
from possm_jax.nn.ffn import FeedForward
from possm_jax.nn.linear import torch_linear
from possm_jax.nn.rope import RotaryTime, rotate
from possm_jax.types import Array


@dataclasses.dataclass(frozen=True)
class POYOConfig:
    """Hyper-parameters.

    Attributes:
        dim: d (64 matches ``possm_small``'s width).
        latent_step: seconds between latent timestamps (POYO: 125 ms).
        latents_per_step: m distinct latent embeddings per timestamp.
        depth: self-attention layers over the latents.
        window: seconds of spikes the model reads (1 s).
        bin_width: the streaming chunk length (the window holds window / bin_width chunks).
        head_dim: attention head width (64).
        ffn_mult: GEGLU multiplier.
        ffn_dropout: dropout in the FFNs (training only).
        tasks: task name -> output width.
    """

    dim: int = 64
    latent_step: float = 0.125
    latents_per_step: int = 4
    depth: int = 2
    window: float = 1.0
    bin_width: float = 0.05
    head_dim: int = 64
    ffn_mult: int = 4
    ffn_dropout: float = 0.2
    tasks: Mapping[str, int] = DEFAULT_TASKS

    def __post_init__(self):
        object.__setattr__(self, "tasks", FrozenDict({str(k): int(v) for k, v in dict(self.tasks).items()}))
        if self.dim < 1 or self.depth < 0 or self.latents_per_step < 1:
            raise ValueError("POYOConfig: need dim >= 1, depth >= 0 and latents_per_step >= 1.")
        if not 0 < self.bin_width <= self.window or not 0 < self.latent_step <= self.window:
            raise ValueError("POYOConfig: need 0 < bin_width, latent_step <= window (seconds).")

    @property
    def task_names(self) -> tuple[str, ...]:
        """Task names in ``query_task`` order."""
        return tuple(self.tasks)

    @property
    def window_chunks(self) -> int:
        """Chunks per window."""
        return round(self.window / self.bin_width)


class _Block(nnx.Module):
    """Rotary cross-attention plus FFN, both residual: ``x <- x + attn(x <- context); x <- x + FFN(x)``."""

    def __init__(self, cfg: POYOConfig, *, rngs: nnx.Rngs):
        self.attn = RotaryCrossAttention(cfg.dim, cfg.dim, rngs=rngs, head_dim=cfg.head_dim)
        self.ffn = FeedForward(cfg.dim, rngs=rngs, mult=cfg.ffn_mult, dropout_rate=cfg.ffn_dropout)

    def __call__(self, x, x_rot, context, context_rot, mask, *, rngs: nnx.Rngs | None = None) -> Array:
        """x: [b, n, d] at x_rot; context: [b, s, d] at context_rot; mask: [b, 1, s] -> [b, n, d]."""
        return self.attend(x, x_rot, self.attn.key_value(context), context_rot, mask, rngs=rngs)

    def attend(self, x, x_rot, kv, context_rot, mask, *, rngs: nnx.Rngs | None = None) -> Array:
        """As ``__call__`` with the context's unrotated (k, v) [b, s, e] given, e.g. gathered from a per-unit table."""
        k, v = (rotate(a, context_rot) for a in kv)
        a = masked_attention(self.attn.query(x, x_rot), k[:, None], v[:, None], mask)
        x = x + self.attn.output(a, x_rot)
        return x + self.ffn(x, rngs=rngs)


class POYO(nnx.Module):
    """The POYO-style model; ``model(batch)`` reads the POSSM batch layout of one window per row.

    Args:
        config: hyper-parameters.
        num_units: unit table rows (``len(unit_vocab)``).
        num_sessions: session table rows (``len(session_vocab)``).
        rngs: parameter RNG streams.
    """

    def __init__(self, config: POYOConfig, num_units: int, num_sessions: int, *, rngs: nnx.Rngs):
        if num_units < 1 or num_sessions < 1:
            raise ValueError(f"POYO: num_units ({num_units}) and num_sessions ({num_sessions}) must be >= 1.")
        self.config = config
        self.rope = RotaryTime()
        self.unit_emb = vocab_embedding(num_units, config.dim, rngs)
        self.session_emb = vocab_embedding(num_sessions, config.dim, rngs)
        self.task_emb = nnx.Embed(len(config.tasks), config.dim, rngs=rngs)
        shape = (config.latents_per_step, config.dim)
        self.latent_emb = nnx.Param(EMBEDDING_INIT_STD * jax.random.normal(rngs.params(), shape))
        self.encoder = _Block(config, rngs=rngs)
        self.layers = nnx.List([_Block(config, rngs=rngs) for _ in range(config.depth)])
        self.decoder = _Block(config, rngs=rngs)
        self.readout = torch_linear(config.dim, sum(config.tasks.values()), rngs=rngs)

    def __call__(
        self, batch: Mapping[str, Array], state: None = None, *, rngs: nnx.Rngs | None = None
    ) -> tuple[dict[str, Array], None]:
        """Windows of the batch layout -> ({task: [b, q, y]}, None). ``state`` is unused (POYO has none)."""
        del state
        cfg = self.config
        num_chunks = batch["chunk_mask"].shape[1]
        spike_t = jnp.asarray(batch["spike_chunk"]) * cfg.bin_width + jnp.asarray(batch["spike_time"])
        query_t = jnp.asarray(batch["query_chunk"]) * cfg.bin_width + jnp.asarray(batch["query_time"])
        b = spike_t.shape[0]
        steps = math.ceil(num_chunks * cfg.bin_width / cfg.latent_step - 1e-6)
        latent_t = jnp.repeat((jnp.arange(steps) + 0.5) * cfg.latent_step, cfg.latents_per_step)
        z = jnp.broadcast_to(jnp.tile(self.latent_emb[...], (steps, 1)), (b, *latent_t.shape, cfg.dim))
        latent_rot = self.rope(jnp.broadcast_to(latent_t, (b, *latent_t.shape)))
        # A spike's key and value depend only on its unit: project the unit table once and gather per spike.
        unit = jnp.asarray(batch["spike_unit"])
        kv = tuple(table[unit] for table in self.encoder.attn.key_value(self.unit_emb.embedding[...]))
        spike_mask = jnp.asarray(batch["spike_mask"])[:, None, :]
        z = self.encoder.attend(z, latent_rot, kv, self.rope(spike_t), spike_mask, rngs=rngs)
        all_latents = jnp.ones((b, 1, z.shape[1]), bool)
        for layer in self.layers:
            z = layer(z, latent_rot, z, latent_rot, all_latents, rngs=rngs)
        session = self.session_emb(jnp.asarray(batch["session"]))[:, None, :]
        q = session + self.task_emb(jnp.asarray(batch["query_task"]))
        q = self.decoder(q, self.rope(query_t), z, latent_rot, all_latents, rngs=rngs)
        return split_outputs(self.readout(q), cfg.tasks), None


def window_from_chunks(chunks: list[dict[str, np.ndarray]], queries: Mapping[str, np.ndarray]) -> dict:
    """Host-side: one window batch (b = 1) from the last chunks (oldest first) and the newest chunk's queries.

    Args:
        chunks: per chunk ``spike_unit``, ``spike_time`` (seconds since that chunk's start), 1-D arrays.
        queries: ``session`` (int), ``query_time`` [q] (seconds since the newest chunk's start), ``query_task`` [q].

    Returns:
        A batch-layout dict with the chunks at positions 0 .. len(chunks) - 1 and the queries in the last one.
    """
    unit = np.concatenate([np.asarray(c["spike_unit"], np.int32) for c in chunks])
    time = np.concatenate([np.asarray(c["spike_time"], np.float32) for c in chunks])
    chunk = np.concatenate([np.full(len(c["spike_unit"]), j, np.int32) for j, c in enumerate(chunks)])
    q = len(queries["query_time"])
    return {
        "spike_unit": unit[None],
        "spike_chunk": chunk[None],
        "spike_time": time[None],
        "spike_mask": np.ones((1, len(unit)), bool),
        "chunk_mask": np.ones((1, len(chunks)), bool),
        "session": np.array([queries["session"]], np.int32),
        "query_chunk": np.full((1, q), len(chunks) - 1, np.int32),
        "query_time": np.asarray(queries["query_time"], np.float32)[None],
        "query_task": np.asarray(queries["query_task"], np.int32)[None],
        "query_mask": np.ones((1, q), bool),
    }


class POYOStreamer:
    """Real-time use of POYO: keeps the last ``window_chunks`` chunks and re-runs the whole window per chunk.

    Args:
        model: a trained :class:`POYO` (parameters are snapshotted).
    """

    def __init__(self, model: POYO):
        self.window_chunks = model.config.window_chunks
        graphdef, params = nnx.split(model)
        self._forward = jax.jit(lambda batch: nnx.merge(graphdef, params)(batch)[0])
        self.history: collections.deque = collections.deque(maxlen=self.window_chunks)

    def __call__(self, chunk: Mapping[str, np.ndarray], queries: Mapping[str, np.ndarray]) -> dict[str, Array]:
        """Adds one chunk (1-D ``spike_unit``, ``spike_time``) and returns {task: [q, y]} for its queries."""
        self.history.append({k: np.asarray(chunk[k]) for k in ("spike_unit", "spike_time")})
        preds = self._forward(window_from_chunks(list(self.history), queries))
        return {k: v[0] for k, v in preds.items()}
