"""Real-time decoding: a jitted, shape-bucketed streaming step and its ``jax.export`` serialisation (SPEC 2.7).

Three layers, from convenient to raw:

* :class:`Streamer`: validates host inputs, pads them to buckets, runs the jitted step, trims the predictions.
* :func:`make_step`: ``step_fn(state, chunk, queries) -> (state, preds)``, jitted over ``nnx.split`` state (no
  graph-mode ``nnx.jit``) with the weights as constants; inputs must already have bucketed shapes.
* :func:`export_step` / :func:`load_step`: the step for fixed shapes as serialised StableHLO with the weights
  embedded, which runs without this package's model code (:func:`exported_step` gives the unserialised form).

Spike counts per chunk are padded to powers of two (at least ``MIN_SPIKE_BUCKET``) and query counts likewise (at least
``MIN_QUERY_BUCKET``), so a stream compiles a handful of times, not once per chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from data_pipeline.buckets import next_pow2
from possm_jax import validate
from possm_jax.possm import POSSM, StreamState
from possm_jax.types import Array, PyTree

MIN_SPIKE_BUCKET = 16
MIN_QUERY_BUCKET = 8
CHUNK_KEYS = {"spike_unit": np.int32, "spike_time": np.float32, "spike_value": np.float32, "spike_mask": np.bool_}
"""The arrays of one chunk, each [b, s], and their dtypes."""
QUERY_KEYS = {"session": np.int32, "query_time": np.float32, "query_task": np.int32}
"""The query arrays (``session`` [b], the others [b, q]) and their dtypes."""


def pad_inputs(
    chunk: Mapping[str, np.ndarray], queries: Mapping[str, np.ndarray], spike_bucket: int, query_bucket: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Host-side: pad a chunk's tokens to ``spike_bucket`` (masked) and the queries to ``query_bucket``.

    ``spike_value`` defaults to ones and ``query_mask`` is dropped (padded queries are computed and trimmed).
    """
    b, s = np.shape(chunk["spike_unit"])
    padded_chunk = {}
    for key, dtype in CHUNK_KEYS.items():
        value = chunk.get(key, np.ones((b, s), dtype))
        out = np.zeros((b, spike_bucket), dtype)
        out[:, :s] = value
        padded_chunk[key] = out
    q = np.shape(queries["query_time"])[1]
    padded_queries = {"session": np.asarray(queries["session"], np.int32)}
    for key in ("query_time", "query_task"):
        out = np.zeros((b, query_bucket), QUERY_KEYS[key])
        out[:, :q] = queries[key]
        padded_queries[key] = out
    return padded_chunk, padded_queries


def _step_with_constants(model: POSSM) -> Callable:
    """``(state, chunk, queries) -> (state, preds)`` with the weights and stream tables as closed-over constants."""
    graphdef, params = nnx.split(model)
    tables = jax.jit(model.stream_tables)()

    def step(state: StreamState, chunk: dict[str, Array], queries: dict[str, Array]):
        return nnx.merge(graphdef, params).step(state, chunk, queries, tables)

    return step


def make_step(model: POSSM) -> Callable:
    """The jitted streaming step ``step_fn(state, chunk, queries) -> (state, preds)``.

    Functional over ``nnx.split`` state (merged at trace time only). The current weights and
    :meth:`~possm_jax.possm.POSSM.stream_tables` are compile-time constants: a deployed decoder's weights are fixed,
    and constants let XLA fold weight-only work and skip passing ~50 buffers per call. Call again after changing the
    parameters. Inputs need the keys of :data:`CHUNK_KEYS` / :data:`QUERY_KEYS` with bucketed shapes; each new shape
    compiles once.
    """
    return jax.jit(_step_with_constants(model))


class Streamer:
    """Convenience wrapper: ``state = s.init(b)``; ``state, preds = s(state, chunk, queries)`` once per chunk.

    Args:
      model: a POSSM; its parameters are snapshotted (split) at construction.
    """

    def __init__(self, model: POSSM):
        self._model_info = model  # for host-side validation (config, vocabulary sizes)
        self._init = model.init_stream
        self.step_fn = make_step(model)

    def init(self, batch_size: int) -> StreamState:
        """Zero state for ``batch_size`` streams."""
        return self._init(batch_size)

    def __call__(
        self, state: StreamState, chunk: Mapping[str, np.ndarray], queries: Mapping[str, np.ndarray]
    ) -> tuple[StreamState, dict[str, Array]]:
        """Validate, pad, step, trim.

        Args:
          state: the previous state.
          chunk: host arrays ``spike_unit``, ``spike_time``, ``spike_mask`` (``spike_value``), each [b, s].
          queries: host arrays ``session`` [b], ``query_time``, ``query_task`` [b, q] (times since this chunk's start).

        Returns:
          (state, {task: [b, q, y]}).
        """
        validate.check_step(chunk, queries, self._model_info)
        s = np.shape(chunk["spike_unit"])[1]
        q = np.shape(queries["query_time"])[1]
        padded_chunk, padded_queries = pad_inputs(
            chunk, queries, next_pow2(s, MIN_SPIKE_BUCKET), next_pow2(q, MIN_QUERY_BUCKET)
        )
        state, preds = self.step_fn(state, padded_chunk, padded_queries)
        return state, {k: v[:, :q] for k, v in preds.items()}


def _input_specs(batch_size: int, spike_bucket: int, query_bucket: int) -> tuple[dict, dict]:
    chunk = {k: jax.ShapeDtypeStruct((batch_size, spike_bucket), d) for k, d in CHUNK_KEYS.items()}
    queries = {
        "session": jax.ShapeDtypeStruct((batch_size,), np.int32),
        "query_time": jax.ShapeDtypeStruct((batch_size, query_bucket), np.float32),
        "query_task": jax.ShapeDtypeStruct((batch_size, query_bucket), np.int32),
    }
    return chunk, queries


def exported_step(model: POSSM, batch_size: int, spike_bucket: int, query_bucket: int) -> jax.export.Exported:
    """The streaming step for fixed shapes as a ``jax.export.Exported``, weights embedded as constants.

    The exported function is ``(state_leaves, chunk, queries) -> (state_leaves, preds)`` where ``state_leaves`` is a
    flat list of arrays (zeros at stream start, see :class:`LoadedStep`), ``chunk`` and ``queries`` are dicts with the
    keys of :data:`CHUNK_KEYS` / :data:`QUERY_KEYS` shaped [batch_size, spike_bucket] / [batch_size, query_bucket]
    (``session`` [batch_size]).

    Raises:
      ValueError: the model's initial stream state is not all zeros (the loader rebuilds it as zeros).
    """
    step_fn = _step_with_constants(model)
    leaves, treedef = jax.tree.flatten(model.init_stream(batch_size))
    if any(bool(jnp.any(x != 0)) for x in leaves):
        raise ValueError("exported_step: the backbone's initial state is not zero; load_step could not rebuild it.")

    def step(state_leaves: list[Array], chunk: dict[str, Array], queries: dict[str, Array]):
        new_state, preds = step_fn(jax.tree.unflatten(treedef, state_leaves), chunk, queries)
        return jax.tree.leaves(new_state), preds

    state_specs = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in leaves]
    return jax.export.export(jax.jit(step))(state_specs, *_input_specs(batch_size, spike_bucket, query_bucket))


def export_step(model: POSSM, batch_size: int, spike_bucket: int, query_bucket: int) -> bytes:
    """Serialise :func:`exported_step` to bytes (needs the ``flatbuffers`` package, as ``jax.export`` does)."""
    return bytes(exported_step(model, batch_size, spike_bucket, query_bucket).serialize())


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
