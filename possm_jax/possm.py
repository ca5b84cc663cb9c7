"""POSSM: spike tokens -> per-chunk encoder -> recurrent backbone -> banded output cross-attention -> readouts.

Two ways to run the same equations:

* ``model(batch, state)``: a whole window (training, evaluation), batch layout of
  :mod:`data_pipeline.batch_layout`.
* ``state = model.init_stream(b)`` then ``state, preds = model.step(state, chunk, queries)`` once per chunk
  (real time). Applied to a window's chunks in order it equals the window forward (tests/test_possm.py).
  :mod:`possm_jax.streaming` wraps it into a jitted, bucketed, exportable step.

All times are local (spikes and queries relative to their chunk start), see :mod:`possm_jax.nn.decoder`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from possm_jax import validate
from possm_jax.backbones.registry import build_backbone
from possm_jax.config import POSSMConfig
from possm_jax.nn.decoder import OutputDecoder, band_key_times, band_length, band_offsets
from possm_jax.nn.embedding import vocab_embedding
from possm_jax.nn.encoder import SpikeEncoder, count_logit
from possm_jax.nn.rope import RotaryTime
from possm_jax.types import Array, PyTree


class StreamState(NamedTuple):
    """Carried between streaming steps.

    Attributes:
        backbone: the backbone's recurrent state.
        keys: [b, K, e] decoder keys of the last K backbone outputs, newest first, unrotated. Caching the
          projections (not the raw outputs) means each step projects only the new output.
        values: [b, K, e] decoder values, same layout.
        count: [b] int32 chunks processed so far (slots with offset >= count are empty).
    """

    backbone: PyTree
    keys: Array
    values: Array
    count: Array


class StreamTables(NamedTuple):
    """Per-parameter constants that speed up streaming (compute once with :meth:`POSSM.stream_tables`).

    Attributes:
        unit_keys: [u, e] encoder keys of every unit's token (spike inputs; None for binned inputs, whose tokens
          depend on the count).
        unit_values: [u, e] encoder values, same layout.
    """

    unit_keys: Array | None
    unit_values: Array | None


class DecoderTimes(NamedTuple):
    """Explicit decoder times in one common frame, overriding the local chunk frame (for reference parity).

    Attributes:
        query_time: [b, q] query times.
        chunk_end_time: [c] or [b, c] end time of every chunk, in the same frame.
    """

    query_time: Array
    chunk_end_time: Array


def _gather_chunks(x: Array, idx: Array) -> Array:
    """x: [b, c, ...], idx: [b, q, k] chunk indices -> [b, q, k, ...]."""
    return x[jnp.arange(x.shape[0])[:, None, None], idx]


class POSSM(nnx.Module):
    """The POSSM model.

    Args:
        config: hyper-parameters (see :func:`possm_jax.config.get_preset`).
        num_units: rows of the unit-embedding table, including the reserved row 0 (``len(unit_vocab)``).
        num_sessions: rows of the session-embedding table, including row 0 (``len(session_vocab)``).
        rngs: parameter RNG streams.
    """

    def __init__(self, config: POSSMConfig, num_units: int, num_sessions: int, *, rngs: nnx.Rngs):
        if num_units < 1 or num_sessions < 1:
            raise ValueError(
                f"POSSM: num_units ({num_units}) and num_sessions ({num_sessions}) count the reserved row 0 and "
                "must be >= 1; pass len(vocab)."
            )
        self.config = config
        self.num_units = num_units
        self.num_sessions = num_sessions
        self.rope = RotaryTime(config.rope_t_min, config.rope_t_max)
        self.unit_emb = vocab_embedding(num_units, config.dim, rngs)
        self.session_emb = vocab_embedding(num_sessions, config.dim, rngs)
        self.encoder = SpikeEncoder(
            config.dim,
            rngs=rngs,
            bin_width=config.bin_width,
            num_latents=config.num_latents,
            depth=config.depth,
            binned=config.input_kind == "binned",
            readin=config.count_readin,
            ffn_mult=config.ffn_mult,
            ffn_dropout=config.ffn_dropout,
            head_dim=config.head_dim,
        )
        self.backbone = build_backbone(config.backbone, config.num_latents * config.dim, rngs=rngs)
        self.decoder = OutputDecoder(
            config.dim,
            self.backbone.out_dim,
            config.tasks,
            rngs=rngs,
            task_embedding=config.task_embedding,
            ffn_mult=config.ffn_mult,
            ffn_dropout=config.ffn_dropout,
            head_dim=config.head_dim,
        )
        self.band = band_length(config.context_chunks, config.bin_width, config.lag)

    # ---------------------------------------------------------------- window forward

    def _tokens(self, inputs: Mapping[str, Array]) -> Array:
        """Token vectors [..., s, d] from ``spike_unit`` (and ``spike_value`` for binned inputs)."""
        value = inputs["spike_value"] if self.config.input_kind == "binned" else None
        return self.encoder.tokens(self.unit_emb(jnp.asarray(inputs["spike_unit"])), value)

    def _token_kv(self, inputs: Mapping[str, Array]) -> tuple[Array, Array]:
        """Unrotated encoder keys and values [..., s, e] of the tokens.

        A spike token depends only on its unit, so its key and value are looked up from the per-unit table of
        :meth:`stream_tables` (the same numbers, with the layer norm and projection run once per unit instead of
        once per token); binned tokens depend on their count and are projected one by one.
        """
        if self.config.input_kind == "binned":
            return self.encoder.attn.key_value(self._tokens(inputs))
        tables = self.stream_tables()
        unit = jnp.asarray(inputs["spike_unit"])
        return tables.unit_keys[unit], tables.unit_values[unit]

    def encode(self, batch: Mapping[str, Array], *, rngs: nnx.Rngs | None = None) -> Array:
        """Chunk latents [b, c, m * d] of a window (the backbone input)."""
        window = batch.get("spike_window")
        return self.encoder.window(
            self._token_kv(batch),
            jnp.asarray(batch["spike_time"]),
            jnp.asarray(batch["spike_chunk"]),
            jnp.asarray(batch["spike_mask"]),
            batch["chunk_mask"].shape[1],
            self.rope.omega[...],
            spike_window=None if window is None else jnp.asarray(window),
            logit_bias=self._count_logit(batch),
            readin=self._readin_inputs(batch),
            rngs=rngs,
        )

    def _readin_inputs(self, inputs: Mapping[str, Array]) -> tuple[Array, Array] | None:
        """(unit vectors, values) of the tokens for the encoder's count read-in; None without ``count_readin``."""
        if not self.config.count_readin:
            return None
        return self.unit_emb(jnp.asarray(inputs["spike_unit"])), jnp.asarray(inputs["spike_value"])

    def _count_logit(self, inputs: Mapping[str, Array]) -> Array | None:
        """``log n`` attention-logit bias of binned tokens (:func:`~possm_jax.nn.encoder.count_logit`); None for
        spikes."""
        if self.config.input_kind != "binned":
            return None
        return count_logit(jnp.asarray(inputs["spike_value"]))

    def _band(self, query_time: Array) -> Array:
        cfg = self.config
        return band_offsets(query_time, bin_width=cfg.bin_width, lag=cfg.lag, context_chunks=cfg.context_chunks)

    def decoder_inputs(
        self, batch: Mapping[str, Array], context: Array, *, times: DecoderTimes | None = None
    ) -> tuple[Array, Array, Array, Array, Array, Array]:
        """Queries and their gathered key band, ready for :meth:`OutputDecoder.attend`.

        Args:
            batch: reads ``session``, ``query_chunk``, ``query_time``, ``query_task`` and ``chunk_mask``.
            context: [b, c, h] backbone outputs.
            times: explicit query / chunk-end times in a common frame (reference parity); default: the local frame.

        Returns:
            (queries [b, q, d], query rotation [b, q, f], keys [b, q, k, e], values [b, q, k, e],
            key rotation [b, q, k, f], visible [b, q, k]).
        """
        query_time = jnp.asarray(batch["query_time"])
        x = self.decoder.queries(self.session_emb(jnp.asarray(batch["session"])), jnp.asarray(batch["query_task"]))
        k, v = self.decoder.key_value(context)
        offsets = self._band(query_time)
        chunk = jnp.asarray(batch["query_chunk"])[..., None] - offsets
        idx = jnp.clip(chunk, 0, context.shape[1] - 1)
        visible = (chunk >= 0) & _gather_chunks(jnp.asarray(batch["chunk_mask"]), idx)
        if times is None:
            query_rot = self.rope(query_time)
            key_rot = self.rope(band_key_times(offsets, self.config.bin_width))
        else:
            ends = jnp.broadcast_to(jnp.asarray(times.chunk_end_time), context.shape[:2])
            query_rot = self.rope(jnp.asarray(times.query_time))
            key_rot = self.rope(_gather_chunks(ends, idx))
        return x, query_rot, _gather_chunks(k, idx), _gather_chunks(v, idx), key_rot, visible

    def __call__(
        self, batch: Mapping[str, Array], state: PyTree | None = None, *, rngs: nnx.Rngs | None = None
    ) -> tuple[dict[str, Array], PyTree]:
        """Run windows.

        Args:
            batch: the keys of ``data_pipeline.batch_layout.MODEL_INPUT_KEYS`` (``spike_value`` only for binned input).
              Host (numpy) inputs are validated before any computation; traced inputs are not.
            state: backbone state before chunk 0; None for zeros (window / trial start).
            rngs: pass to enable dropout (training).

        Returns:
            (predictions {task: [b, q, y_task]} for every query and task, backbone state after the last chunk;
            padded chunks at the end of a window are included in that state, so carry state only across unpadded
            windows).
        """
        if not validate.is_traced(batch):
            validate.check_batch(batch, self)
        latents = self.encode(batch, rngs=rngs)
        if state is None:
            state = self.backbone.init_state(latents.shape[0])
        context, state = self.backbone(latents, state, rngs=rngs)
        out = self.decoder.attend(*self.decoder_inputs(batch, context), rngs=rngs)
        return self.decoder.readout(out), state

    # ---------------------------------------------------------------- streaming

    def init_stream(self, batch_size: int) -> StreamState:
        """Zero streaming state for ``batch_size`` independent streams."""
        e = self.config.head_dim
        return StreamState(
            backbone=self.backbone.init_state(batch_size),
            keys=jnp.zeros((batch_size, self.band, e), jnp.float32),
            values=jnp.zeros((batch_size, self.band, e), jnp.float32),
            count=jnp.zeros((batch_size,), jnp.int32),
        )

    def stream_tables(self) -> StreamTables:
        """Constants for :meth:`step`: the encoder key/value of every unit's token ([u, e] each)."""
        if self.config.input_kind == "binned":
            return StreamTables(None, None)
        tokens = self.encoder.tokens(self.unit_emb.embedding[...], None)
        return StreamTables(*self.encoder.attn.key_value(tokens))

    def step(
        self,
        state: StreamState,
        chunk: Mapping[str, Array],
        queries: Mapping[str, Array],
        tables: StreamTables | None = None,
    ) -> tuple[StreamState, dict[str, Array]]:
        """Advance every stream by one chunk and answer the queries that fall in it (inference, no dropout).

        Args:
            state: from :meth:`init_stream` or the previous step.
            chunk: ``spike_unit``, ``spike_time`` (seconds since the chunk start), ``spike_mask`` (and
              ``spike_value`` for binned input), each [b, s].
            queries: ``session`` [b]; ``query_time`` (seconds since this chunk's start), ``query_task``, each [b, q].
            tables: optional :meth:`stream_tables` of the current parameters (same result, less work per step).

        Returns:
            (new state, {task: [b, q, y_task]}).
        """
        if not (validate.is_traced(chunk) or validate.is_traced(queries)):
            validate.check_step(chunk, queries, self)
        y, backbone_state = self.backbone.step(self.stream_encode(chunk, tables), state.backbone)
        state, preds = self.stream_decode(state, y, queries)
        return state._replace(backbone=backbone_state), preds

    def stream_encode(self, chunk: Mapping[str, Array], tables: StreamTables | None = None) -> Array:
        """The encoder part of :meth:`step`: one chunk's tokens -> latents [b, m * d] (arguments as there)."""
        omega = self.rope.omega[...]
        spike_time, spike_mask = jnp.asarray(chunk["spike_time"]), jnp.asarray(chunk["spike_mask"])
        bias = self._count_logit(chunk)
        if tables is not None and tables.unit_keys is not None:
            unit = jnp.asarray(chunk["spike_unit"])
            kv = (tables.unit_keys[unit], tables.unit_values[unit])
            return self.encoder.chunk(spike_time, spike_mask, omega, kv=kv, logit_bias=bias)
        return self.encoder.chunk(
            spike_time,
            spike_mask,
            omega,
            tokens=self._tokens(chunk),
            logit_bias=bias,
            readin=self._readin_inputs(chunk),
        )

    def stream_decode(
        self, state: StreamState, y: Array, queries: Mapping[str, Array]
    ) -> tuple[StreamState, dict[str, Array]]:
        """The decoder part of :meth:`step`: cache the new backbone output y [b, h], answer the queries.

        Returns:
            (``state`` with the new key / value cache and count, its backbone field untouched; {task: [b, q, y]}).
        """
        k_new, v_new = self.decoder.key_value(y)
        keys = jnp.concatenate([k_new[:, None], state.keys[:, :-1]], axis=1)
        values = jnp.concatenate([v_new[:, None], state.values[:, :-1]], axis=1)
        count = state.count + 1

        query_time = jnp.asarray(queries["query_time"])
        offsets = self._band(query_time)
        visible = offsets < count[:, None, None]
        idx = jnp.minimum(offsets, self.band - 1)
        x = self.decoder.queries(self.session_emb(jnp.asarray(queries["session"])), jnp.asarray(queries["query_task"]))
        out = self.decoder.attend(
            x,
            self.rope(query_time),
            _gather_chunks(keys, idx),
            _gather_chunks(values, idx),
            self.rope(band_key_times(offsets, self.config.bin_width)),
            visible,
        )
        return StreamState(state.backbone, keys, values, count), self.decoder.readout(out)


def count_params(model: nnx.Module, *, exclude_tables: bool = True) -> int:
    """Number of trainable parameters; by default without the unit and session tables (as docs/model.md counts)."""
    params = nnx.state(model, nnx.Param)
    total = sum(int(x.size) for x in jax.tree.leaves(params))
    if exclude_tables and isinstance(model, POSSM):
        total -= int(model.unit_emb.embedding.size) + int(model.session_emb.embedding.size)
    return total
