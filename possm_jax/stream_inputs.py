"""Host-side streaming inputs: padding to buckets, one packed transfer per chunk, a vectorised validity check.

The public :class:`possm_jax.streaming.Streamer` spends most of a small model's latency on the host, so this module
keeps that work to a few numpy operations per chunk:

* :func:`inputs_ok` checks a chunk and its queries with whole-array operations against limits fixed at construction
  (:class:`InputLimits`); only when it finds a problem does the caller run :func:`possm_jax.validate.check_step`,
  which names the offending key and the fix.
* :func:`pack_inputs` writes every input of a chunk into one int32 array (float32 values bit-cast), so a step costs
  one host-to-device transfer; :func:`unpack_inputs` undoes it inside the jitted step.
* :func:`stack_streams` pads the chunks of several independent streams to a common size (many streams, one step).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from possm_jax.types import Array

CHUNK_KEYS = {"spike_unit": np.int32, "spike_time": np.float32, "spike_value": np.float32, "spike_mask": np.bool_}
"""The arrays of one chunk, each [b, s], and their dtypes."""
QUERY_KEYS = {"session": np.int32, "query_time": np.float32, "query_task": np.int32}
"""The query arrays (``session`` [b], the others [b, q]) and their dtypes."""


class InputLimits(NamedTuple):
    """What a model accepts, read once from it (unit / session vocabulary sizes, chunk length, tasks)."""

    num_units: int
    num_sessions: int
    bin_width: float
    num_tasks: int
    binned: bool


def _sorted_rows(time: np.ndarray, mask: np.ndarray) -> bool:
    """True if the real (masked) times of every row are non-decreasing, padding anywhere."""
    running = np.maximum.accumulate(np.where(mask, time, -np.inf), axis=1)
    return not np.any(mask[:, 1:] & (time[:, 1:] < running[:, :-1]))


def _all_in(values: np.ndarray, mask: np.ndarray, high: float) -> bool:
    """True if every masked value lies in [0, high) (NaN fails)."""
    return bool(np.all(((values >= 0) & (values < high)) | ~mask))


def inputs_ok(chunk: Mapping, queries: Mapping, limits: InputLimits) -> bool:
    """Whole-array check of one chunk and its queries; False means: run ``validate.check_step`` for the message.

    Accepts what :func:`possm_jax.validate.check_step` accepts (integer ids, float times, bool masks, sorted real
    spikes, ids and times in range); anything else returns False rather than raising.
    """
    try:
        unit, time, mask = (np.asarray(chunk[k]) for k in ("spike_unit", "spike_time", "spike_mask"))
        session, qtime, qtask = (np.asarray(queries[k]) for k in ("session", "query_time", "query_task"))
    except (KeyError, TypeError):
        return False
    qmask = np.asarray(queries.get("query_mask", np.ones(qtime.shape, bool)))
    kinds_ok = (
        unit.dtype.kind in "iu" and time.dtype.kind == "f" and mask.dtype == np.bool_ and session.dtype.kind in "iu"
    )
    if not kinds_ok or qtime.dtype.kind != "f" or qtask.dtype.kind not in "iu" or qmask.dtype != np.bool_:
        return False
    b = unit.shape[0] if unit.ndim == 2 else 0
    if b == 0 or not (time.shape == mask.shape == unit.shape) or session.shape != (b,):
        return False
    if qtime.ndim != 2 or qtime.shape[0] != b or not (qtask.shape == qmask.shape == qtime.shape):
        return False
    if limits.binned:
        value = np.asarray(chunk.get("spike_value", np.zeros(0)))
        if value.shape != unit.shape or value.dtype.kind != "f" or not np.all(np.isfinite(value) | ~mask):
            return False
    return (
        _all_in(unit, mask, limits.num_units)
        and _all_in(time, mask, limits.bin_width)
        and _all_in(session, np.ones(b, bool), limits.num_sessions)
        and _all_in(qtime, qmask, limits.bin_width)
        and _all_in(qtask, qmask, limits.num_tasks)
        and _sorted_rows(time, mask)
    )


def pad_inputs(
    chunk: Mapping[str, np.ndarray], queries: Mapping[str, np.ndarray], spike_bucket: int, query_bucket: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Pad a chunk's tokens to ``spike_bucket`` (masked) and the queries to ``query_bucket``.

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


def packed_width(spike_bucket: int, query_bucket: int, binned: bool) -> int:
    """Columns of the packed array: unit, time, mask (, value) per spike; time, task per query; the session."""
    return (4 if binned else 3) * spike_bucket + 2 * query_bucket + 1


def pack_inputs(chunk: Mapping, queries: Mapping, spike_bucket: int, query_bucket: int, binned: bool) -> np.ndarray:
    """One chunk's inputs, padded to the buckets, as a single [b, :func:`packed_width`] int32 array."""
    unit = np.asarray(chunk["spike_unit"])
    b, s = unit.shape
    q = np.shape(queries["query_time"])[1]
    sb, qb = spike_bucket, query_bucket
    out = np.zeros((b, packed_width(sb, qb, binned)), np.int32)
    out[:, :s] = unit
    out[:, sb : sb + s] = np.asarray(chunk["spike_time"], np.float32).view(np.int32)
    out[:, 2 * sb : 2 * sb + s] = np.asarray(chunk["spike_mask"])
    col = 3 * sb
    if binned:
        out[:, col : col + s] = np.asarray(chunk["spike_value"], np.float32).view(np.int32)
        col += sb
    out[:, col : col + q] = np.asarray(queries["query_time"], np.float32).view(np.int32)
    out[:, col + qb : col + qb + q] = np.asarray(queries["query_task"])
    out[:, -1] = np.asarray(queries["session"])
    return out


def unpack_inputs(packed: Array, spike_bucket: int, query_bucket: int, binned: bool) -> tuple[dict, dict]:
    """Inside the step: the chunk and query dicts (:data:`CHUNK_KEYS`, :data:`QUERY_KEYS`) of :func:`pack_inputs`."""
    sb, qb = spike_bucket, query_bucket

    def f32(block: Array) -> Array:
        return jax.lax.bitcast_convert_type(block, jnp.float32)

    chunk = {
        "spike_unit": packed[:, :sb],
        "spike_time": f32(packed[:, sb : 2 * sb]),
        "spike_mask": packed[:, 2 * sb : 3 * sb] != 0,
    }
    col = 3 * sb
    if binned:
        chunk["spike_value"] = f32(packed[:, col : col + sb])
        col += sb
    queries = {
        "session": packed[:, -1],
        "query_time": f32(packed[:, col : col + qb]),
        "query_task": packed[:, col + qb : col + 2 * qb],
    }
    return chunk, queries


def stack_streams(
    chunks: Sequence[Mapping[str, np.ndarray]], queries: Sequence[Mapping[str, np.ndarray]]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[int]]:
    """The current chunk of several independent streams as one batch (one row per stream).

    Args:
        chunks: per stream, a batch-1 chunk (``spike_unit``, ``spike_time``, ``spike_mask`` [, ``spike_value``],
          each [1, s_i]), e.g. ``data_pipeline.stream.stream_chunks(...).chunk``; spike counts may differ.
        queries: per stream, its batch-1 queries (``session`` [1], ``query_time``, ``query_task`` [1, q_i]).

    Returns:
        (chunk [n, max s_i], queries [n, max q_i], [q_i]); padded spikes are masked, and the predictions of row i
        beyond its q_i are padding to drop.
    """
    s = max(np.shape(c["spike_unit"])[1] for c in chunks)
    counts = [np.shape(q["query_time"])[1] for q in queries]
    padded = [pad_inputs(c, q, s, max(counts)) for c, q in zip(chunks, queries, strict=True)]
    chunk = {k: np.concatenate([p[0][k] for p in padded]) for k in CHUNK_KEYS}
    query = {k: np.concatenate([p[1][k] for p in padded]) for k in QUERY_KEYS}
    return chunk, query, counts
