"""A recording replayed as a real-time stream: one chunk of spikes and its behaviour queries at a time.

This is what a closed-loop decoder sees: every ``bin_width`` seconds, the spikes that arrived in the last chunk
(times measured from the chunk start) and the timestamps at which a prediction is wanted. The chunk boundaries and
local times are computed exactly as :func:`data_pipeline.tokenize.tokenize_window` computes them, so streaming a
span through ``possm_jax.Streamer`` reproduces the windowed forward pass over the same span.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import numpy as np

from data_pipeline.recording import Recording
from data_pipeline.tokenize import QueryTable, TokenizerConfig, check_unit_index, chunk_and_offset


@dataclasses.dataclass(frozen=True)
class StreamChunk:
    """One chunk of a stream, with a leading batch axis of 1 (``Streamer`` inputs).

    Attributes:
        start: absolute start time of the chunk in seconds.
        chunk: ``spike_unit`` (global unit index), ``spike_time`` (seconds since ``start``), ``spike_mask``; each
            [1, s].
        queries: ``session`` [1]; ``query_time`` (seconds since ``start``) and ``query_task`` (zeros), each [1, q].
        query_times: [q] float64 absolute query times.
        target: [q, y] float32 z-scored behaviour at the query times (0 where missing).
    """

    start: float
    chunk: dict[str, np.ndarray]
    queries: dict[str, np.ndarray]
    query_times: np.ndarray
    target: np.ndarray


def stream_chunks(
    recording: Recording,
    unit_index: np.ndarray,
    session_index: int,
    cfg: TokenizerConfig,
    t0: float,
    t1: float,
) -> Iterator[StreamChunk]:
    """Yields the chunks of ``[t0, t1)`` in order (the last chunk may extend past ``t1``, like evaluation trials).

    Args:
        recording: a :class:`Recording` or a lazy store reader.
        unit_index: [u] session-local unit row -> global unit index (>= 1).
        session_index: the session's vocabulary index.
        cfg: tokenizer configuration (``bin_width``, ``target`` and its normalisation).
        t0: stream start in seconds (chunk 0 starts here).
        t1: stream end in seconds; must be > ``t0``.

    Raises:
        ValueError: naming the argument if ``t1 <= t0`` or ``unit_index`` does not match the recording.
    """
    if not t1 > t0:
        raise ValueError(f"t1: the stream must end after it starts, got t0={t0}, t1={t1}")
    unit_index = check_unit_index(unit_index, len(recording.unit_ids), recording.session_key)
    bw = cfg.bin_width
    num_chunks = max(1, math.ceil(round((t1 - t0) / bw, 9)))
    end = t0 + num_chunks * bw
    times, rows = recording.spikes_between(t0, end)
    spike_chunk, spike_time = chunk_and_offset(np.asarray(times, np.float64) - t0, bw, num_chunks)
    spike_unit = unit_index[np.asarray(rows, np.int64)].astype(np.int32)

    table = QueryTable.from_recording(recording, cfg)
    k0, k1 = np.searchsorted(table.times, [t0, end], side="left")
    q_abs = table.times[k0:k1]
    q_chunk, q_time = chunk_and_offset(q_abs - t0, bw, num_chunks)
    target = table.target[k0:k1]

    spike_edges = np.searchsorted(spike_chunk, np.arange(num_chunks + 1), side="left")
    query_edges = np.searchsorted(q_chunk, np.arange(num_chunks + 1), side="left")
    session = np.asarray([session_index], np.int32)
    for j in range(num_chunks):
        s = slice(spike_edges[j], spike_edges[j + 1])
        q = slice(query_edges[j], query_edges[j + 1])
        n = s.stop - s.start
        yield StreamChunk(
            start=t0 + j * bw,
            chunk={
                "spike_unit": spike_unit[None, s],
                "spike_time": spike_time[None, s],
                "spike_mask": np.ones((1, n), bool),
            },
            queries={
                "session": session,
                "query_time": q_time[None, q],
                "query_task": np.zeros((1, q.stop - q.start), np.int32),
            },
            query_times=q_abs[q],
            target=target[q],
        )
