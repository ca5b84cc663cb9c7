"""Real-time decoding: a jitted, shape-bucketed streaming step and its ``jax.export`` serialisation.

Three layers, from convenient to raw:

* :class:`Streamer`: checks host inputs, packs them into one array, runs an ahead-of-time compiled executable per
  bucket (:meth:`Streamer.warmup` compiles them all before a live session), returns host predictions.
* :func:`make_step`: ``step_fn(state, chunk, queries) -> (state, preds)``, jitted over ``nnx.split`` state (no
  graph-mode ``nnx.jit``) with the weights as constants; inputs must already have bucketed shapes.
* :func:`export_step` / :func:`load_step`: the step for fixed shapes as serialised StableHLO with the weights
  embedded, which runs without this package's model code (:func:`exported_step` gives the unserialised form).

Spike counts per chunk are padded to powers of two (at least ``MIN_SPIKE_BUCKET``) and query counts likewise (at least
``MIN_QUERY_BUCKET``), so a stream compiles a handful of times, not once per chunk. Every layer takes
``weights="f32" | "bf16" | "int8"`` (:mod:`possm_jax.quantize`). ``docs/streaming.md`` has the measured latencies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from data_pipeline.buckets import next_pow2
from possm_jax import quantize, validate
from possm_jax.possm import POSSM, StreamState
from possm_jax.stream_inputs import (
    CHUNK_KEYS,
    QUERY_KEYS,
    InputLimits,
    inputs_ok,
    pack_inputs,
    packed_width,
    pad_inputs,
    stack_streams,
    unpack_inputs,
)
from possm_jax.types import Array, PyTree
from possm_jax.xla_options import stream_compiler_options

MIN_SPIKE_BUCKET = 16
MIN_QUERY_BUCKET = 8
R2Check = Callable[[POSSM], float]
"""model -> test R² on held-out data; passed as ``r2_check`` to refuse a quantised format that costs accuracy."""

__all__ = [  # the host-side helpers of possm_jax.stream_inputs are re-exported for callers of this module
    "CHUNK_KEYS",
    "QUERY_KEYS",
    "LoadedStep",
    "Streamer",
    "export_step",
    "exported_step",
    "load_step",
    "make_step",
    "pad_inputs",
    "stack_streams",
]


def _step_with_constants(model: POSSM, weights: str = "f32", r2_check: R2Check | None = None) -> Callable:
    """``(state, chunk, queries) -> (state, preds)`` with the weights and stream tables as closed-over constants.

    Quantised weights are closed over in their narrow type and dequantised inside the step, next to their matmul.
    """
    quantize.check_format(weights)
    if r2_check is not None:
        quantize.check_r2_drop(model, weights, r2_check)
    graphdef, params = nnx.split(model)
    qparams = quantize.quantize_state(params, weights)
    reference = model if weights == "f32" else quantize.fake_quantized(model, weights)
    tables = jax.jit(reference.stream_tables)()

    def step(state: StreamState, chunk: dict[str, Array], queries: dict[str, Array]):
        return nnx.merge(graphdef, quantize.dequantize_state(qparams)).step(state, chunk, queries, tables)

    return step


def make_step(model: POSSM, *, weights: str = "f32", r2_check: R2Check | None = None) -> Callable:
    """The jitted streaming step ``step_fn(state, chunk, queries) -> (state, preds)``.

    Functional over ``nnx.split`` state (merged at trace time only). The current weights and
    :meth:`~possm_jax.possm.POSSM.stream_tables` are compile-time constants: a deployed decoder's weights are fixed,
    and constants let XLA fold weight-only work and skip passing ~50 buffers per call. Call again after changing the
    parameters. Inputs need the keys of :data:`CHUNK_KEYS` / :data:`QUERY_KEYS` with bucketed shapes; each new shape
    compiles once.

    Args:
        model: the model.
        weights: matmul weight format, one of :data:`possm_jax.quantize.WEIGHT_FORMATS`.
        r2_check: optional model -> test R²; raises ValueError if ``weights`` loses more than
          :data:`possm_jax.quantize.R2_DROP_LIMIT` against float32.
    """
    return jax.jit(_step_with_constants(model, weights, r2_check), compiler_options=stream_compiler_options())


def _batch_axes(model: POSSM) -> PyTree:
    """Per state leaf, the axis that indexes streams (found by comparing the state shapes for 1 and 2 streams)."""
    one, two = (jax.eval_shape(lambda b=b: model.init_stream(b)) for b in (1, 2))

    def axis(a: jax.ShapeDtypeStruct, b: jax.ShapeDtypeStruct) -> int:
        return next(i for i, (x, y) in enumerate(zip(a.shape, b.shape, strict=True)) if x != y)

    return jax.tree.map(axis, one, two)


class Streamer:
    """Real-time decoding of ``b`` independent streams: ``state = s.init(b)``, then ``s(state, chunk, queries)``.

    Each call checks the inputs with whole-array numpy operations, packs them into one int32 array (one transfer),
    runs the ahead-of-time compiled executable of its (streams, spike bucket, query bucket) shape and returns host
    (numpy) predictions. Call :meth:`warmup` before a live session so that no chunk waits for a compilation. Rows
    are independent streams: each has its own session (``queries["session"]``), its own spike count (pad with
    :func:`stack_streams`) and can restart alone (:meth:`reset`).

    Args:
        model: a POSSM; its parameters are snapshotted at construction.
        weights: matmul weight format, one of :data:`possm_jax.quantize.WEIGHT_FORMATS`.
        check_inputs: check every chunk (False skips the host-side check for inputs already known to be valid).
        r2_check: optional model -> test R²; the constructor raises ValueError if ``weights`` loses more than
          :data:`possm_jax.quantize.R2_DROP_LIMIT` against float32.
    """

    def __init__(
        self, model: POSSM, *, weights: str = "f32", check_inputs: bool = True, r2_check: R2Check | None = None
    ):
        cfg = model.config
        self._model_info = model  # for validate.check_step's messages when the fast check fails
        self._limits = InputLimits(
            model.num_units, model.num_sessions, cfg.bin_width, len(cfg.tasks), cfg.input_kind == "binned"
        )
        self._tasks = tuple(cfg.tasks.items())
        self._check = check_inputs
        self._init = model.init_stream
        self._axes = _batch_axes(model)
        self._step = _step_with_constants(model, weights, r2_check)
        self._executables: dict[tuple[int, int, int], Callable] = {}
        self._reset = jax.jit(self._reset_rows)

    @property
    def compiled_shapes(self) -> list[tuple[int, int, int]]:
        """(streams, spike bucket, query bucket) of every executable compiled so far."""
        return sorted(self._executables)

    def _packed_step(self, spike_bucket: int, query_bucket: int) -> Callable:
        """(state, packed inputs) -> (state, [b, query_bucket, sum of task widths]): one array in, one out."""

        def run(state: StreamState, packed: Array) -> tuple[StreamState, Array]:
            chunk, queries = unpack_inputs(packed, spike_bucket, query_bucket, self._limits.binned)
            state, preds = self._step(state, chunk, queries)
            return state, jnp.concatenate([preds[name] for name, _ in self._tasks], axis=-1)

        return run

    def executable(self, batch_size: int, spike_bucket: int, query_bucket: int) -> Callable:
        """The compiled step for one bucket shape, compiling it (``lower(...).compile()``) on first use."""
        key = (batch_size, spike_bucket, query_bucket)
        if key not in self._executables:
            state = jax.eval_shape(lambda: self._init(batch_size))
            width = packed_width(spike_bucket, query_bucket, self._limits.binned)
            packed = jax.ShapeDtypeStruct((batch_size, width), np.int32)
            fn = jax.jit(self._packed_step(spike_bucket, query_bucket), compiler_options=stream_compiler_options())
            self._executables[key] = fn.lower(state, packed).compile()
        return self._executables[key]

    def warmup(self, batch_size: int, max_spikes: int, max_queries: int = MIN_QUERY_BUCKET) -> int:
        """Compile every spike / query bucket up to ``max_spikes`` / ``max_queries`` for ``batch_size`` streams.

        Also runs :meth:`init` and :meth:`reset` once, so that a live session with at most that many spikes and
        queries per chunk never compiles.

        Returns:
            The number of executables compiled by this call.
        """
        before = len(self._executables)
        spike_buckets = _buckets(MIN_SPIKE_BUCKET, next_pow2(max_spikes, MIN_SPIKE_BUCKET))
        for q in _buckets(MIN_QUERY_BUCKET, next_pow2(max_queries, MIN_QUERY_BUCKET)):
            for s in spike_buckets:
                self.executable(batch_size, s, q)
        self.reset(self.init(batch_size), np.zeros(batch_size, bool))
        return len(self._executables) - before

    def init(self, batch_size: int) -> StreamState:
        """Zero state for ``batch_size`` streams."""
        return self._init(batch_size)

    def _reset_rows(self, state: StreamState, rows: Array) -> StreamState:
        fresh = self._init(rows.shape[0])

        def select(x: Array, zero: Array, axis: int) -> Array:
            shape = [1] * x.ndim
            shape[axis] = -1
            return jnp.where(rows.reshape(shape), zero, x)

        return jax.tree.map(select, state, fresh, self._axes)

    def reset(self, state: StreamState, rows: np.ndarray) -> StreamState:
        """Restart the streams where ``rows`` ([b] bool) is True (a new recording or trial); others carry on."""
        return self._reset(state, np.asarray(rows, bool))

    def __call__(
        self, state: StreamState, chunk: Mapping[str, np.ndarray], queries: Mapping[str, np.ndarray]
    ) -> tuple[StreamState, dict[str, np.ndarray]]:
        """Check, pack, step, split.

        Args:
            state: the previous state.
            chunk: host arrays ``spike_unit``, ``spike_time``, ``spike_mask`` (``spike_value``), each [b, s].
            queries: host arrays ``session`` [b], ``query_time``, ``query_task`` [b, q] (times since this chunk's
                start).

        Returns:
            (state, {task: [b, q, y] numpy}).

        Raises:
            possm_jax.InputError: an input has the wrong keys, shape, dtype or values (the message names it).
        """
        if self._check and not inputs_ok(chunk, queries, self._limits):
            validate.check_step(chunk, queries, self._model_info)  # raises with the offending key
            raise validate.InputError("Streamer: chunk or queries rejected; see possm_jax.validate.check_step.")
        b, s = np.shape(chunk["spike_unit"])
        q = np.shape(queries["query_time"])[1]
        sb, qb = next_pow2(s, MIN_SPIKE_BUCKET), next_pow2(q, MIN_QUERY_BUCKET)
        packed = pack_inputs(chunk, queries, sb, qb, self._limits.binned)
        state, out = self.executable(b, sb, qb)(state, packed)
        out = np.asarray(out)
        preds, col = {}, 0
        for name, width in self._tasks:
            preds[name] = out[:, :q, col : col + width]
            col += width
        return state, preds


def _buckets(low: int, high: int) -> list[int]:
    """Powers of two from ``low`` to ``high`` inclusive (both powers of two)."""
    return [low << k for k in range((high // low).bit_length())]


def _input_specs(batch_size: int, spike_bucket: int, query_bucket: int) -> tuple[dict, dict]:
    chunk = {k: jax.ShapeDtypeStruct((batch_size, spike_bucket), d) for k, d in CHUNK_KEYS.items()}
    queries = {
        "session": jax.ShapeDtypeStruct((batch_size,), np.int32),
        "query_time": jax.ShapeDtypeStruct((batch_size, query_bucket), np.float32),
        "query_task": jax.ShapeDtypeStruct((batch_size, query_bucket), np.int32),
    }
    return chunk, queries


def exported_step(
    model: POSSM,
    batch_size: int,
    spike_bucket: int,
    query_bucket: int,
    *,
    weights: str = "f32",
    r2_check: R2Check | None = None,
) -> jax.export.Exported:
    """The streaming step for fixed shapes as a ``jax.export.Exported``, weights embedded as constants.

    The exported function is ``(state_leaves, chunk, queries) -> (state_leaves, preds)`` where ``state_leaves`` is a
    flat list of arrays (zeros at stream start, see :class:`LoadedStep`), ``chunk`` and ``queries`` are dicts with the
    keys of :data:`CHUNK_KEYS` / :data:`QUERY_KEYS` shaped [batch_size, spike_bucket] / [batch_size, query_bucket]
    (``session`` [batch_size]). With ``weights="bf16"`` or ``"int8"`` the matmul weights are stored in that type
    (a 2x / 4x smaller export) and dequantised in the step; ``r2_check`` as in :func:`make_step`.

    Raises:
        ValueError: the model's initial stream state is not all zeros (the loader rebuilds it as zeros), or an
          unknown ``weights`` format, or one that fails ``r2_check``.
    """
    step_fn = _step_with_constants(model, weights, r2_check)
    leaves, treedef = jax.tree.flatten(model.init_stream(batch_size))
    if any(bool(jnp.any(x != 0)) for x in leaves):
        raise ValueError("exported_step: the backbone's initial state is not zero; load_step could not rebuild it.")

    def step(state_leaves: list[Array], chunk: dict[str, Array], queries: dict[str, Array]):
        new_state, preds = step_fn(jax.tree.unflatten(treedef, state_leaves), chunk, queries)
        return jax.tree.leaves(new_state), preds

    state_specs = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in leaves]
    return jax.export.export(jax.jit(step))(state_specs, *_input_specs(batch_size, spike_bucket, query_bucket))


def export_step(model: POSSM, batch_size: int, spike_bucket: int, query_bucket: int, **options) -> bytes:
    """Serialise :func:`exported_step` (``options``: ``weights``, ``r2_check``) to bytes (needs ``flatbuffers``)."""
    return bytes(exported_step(model, batch_size, spike_bucket, query_bucket, **options).serialize())


class LoadedStep:
    """A streaming step restored from :func:`export_step`; needs only JAX, not this package's model code.

    Args:
        exported: the ``jax.export.Exported`` (from :func:`exported_step` or deserialised bytes).
    """

    def __init__(self, exported: jax.export.Exported):
        self.exported = exported
        args_tree = exported.in_tree.children()[0]  # in_tree is ((state_leaves, chunk, queries), {})
        self._state_avals = exported.in_avals[: args_tree.children()[0].num_leaves]

    def init_state(self) -> list[Array]:
        """Zero state leaves (stream start)."""
        return [jnp.zeros(a.shape, a.dtype) for a in self._state_avals]

    def __call__(
        self, state: list[Array], chunk: Mapping[str, Array], queries: Mapping[str, Array]
    ) -> tuple[list[Array], PyTree]:
        """One chunk, inputs shaped as at export -> (new state leaves, {task: [b, query_bucket, y]})."""
        chunk = {k: jnp.asarray(chunk[k], d) for k, d in CHUNK_KEYS.items()}
        queries = {k: jnp.asarray(queries[k], d) for k, d in QUERY_KEYS.items()}
        return self.exported.call(list(state), chunk, queries)


def load_step(data: bytes) -> LoadedStep:
    """Deserialise the output of :func:`export_step` (needs ``flatbuffers``)."""
    return LoadedStep(jax.export.deserialize(bytearray(data)))
