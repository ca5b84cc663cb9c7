"""Vectorised slice + tokenize + batch of many training windows at once (the training hot path).

Tokenizing window by window costs a few dozen numpy calls per window, which caps a core at a few thousand windows
per second. Here a whole batch is one pass: the spikes of all sessions sit in one concatenated table, each window's
spikes are a contiguous range found with ``searchsorted``, the ranges are gathered with one index array, dropped
units are removed with one boolean lookup, and every token is scattered straight into preallocated batch arrays.
There is no Python loop over windows or spikes (only over the distinct sessions of a batch, for the searches).

The numbers are the same as :func:`data_pipeline.tokenize.tokenize_window` followed by
:func:`data_pipeline.tokenize.collate` (``tests/test_tokenize.py`` checks both against a naive reference).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from data_pipeline import buckets
from data_pipeline.recording import Intervals, Recording
from data_pipeline.tokenize import QueryTable, TokenizerConfig, check_unit_index, chunk_and_offset
from data_pipeline.unit_dropout import UnitDropoutConfig, keep_masks


@dataclasses.dataclass(frozen=True)
class PreparedSession:
    """One session held in memory for training: its spikes, queries and train split.

    Attributes:
        session_key: ``brainset/session``, for messages.
        session_index: the session's vocabulary index.
        spike_times: [n] float64 sorted spike times.
        spike_row: [n] int32 session-local unit row per spike (for unit dropout).
        spike_unit: [n] int32 global unit index per spike.
        num_units: the session's unit count.
        queries: its :class:`QueryTable`, thinned to ``cfg.query_rate`` (:meth:`QueryTable.thinned`).
        train: the intervals training windows are drawn from.
    """

    session_key: str
    session_index: int
    spike_times: np.ndarray
    spike_row: np.ndarray
    spike_unit: np.ndarray
    num_units: int
    queries: QueryTable
    train: Intervals

    @classmethod
    def from_recording(
        cls, recording: Recording, unit_index: np.ndarray, session_index: int, cfg: TokenizerConfig, split="train"
    ) -> PreparedSession:
        """Loads a recording's spikes and queries.

        Raises:
            ValueError: naming the session and field for a missing split, no units or spikes, unsorted or non-finite
              spike times, unit rows outside ``unit_ids``, or a bad ``unit_index``.
        """
        key = recording.session_key
        if split not in recording.splits:
            raise ValueError(f"split: {key} has no {split!r} split (has {sorted(recording.splits)})")
        num_units = len(recording.unit_ids)
        if num_units == 0:
            raise ValueError(f"unit_ids: {key} has no units; drop the session or fix its units table")
        unit_index = check_unit_index(unit_index, num_units, key)
        times = np.asarray(recording.spike_times, dtype=np.float64)
        rows = np.asarray(recording.spike_units)
        if times.size == 0:
            raise ValueError(f"spike_times: {key} has no spikes; drop the session")
        if times.shape != rows.shape:
            raise ValueError(f"spike_units: {key} has {rows.size} entries for {times.size} spike times")
        if not np.all(np.isfinite(times)) or np.any(np.diff(times) < 0):
            raise ValueError(f"spike_times: {key} must be finite and sorted")
        if rows.min() < 0 or rows.max() >= num_units:
            raise ValueError(f"spike_units: {key} has unit rows outside [0, {num_units}); check the units table")
        rows = rows.astype(np.int32)
        return cls(
            session_key=key,
            session_index=int(session_index),
            spike_times=times,
            spike_row=rows,
            spike_unit=unit_index[rows],
            num_units=num_units,
            queries=QueryTable.from_recording(recording, cfg).thinned(cfg.query_rate),
            train=recording.splits[split],
        )


def _concat_ranges(starts: np.ndarray, counts: np.ndarray, dtype=np.int64) -> np.ndarray:
    """``concatenate([arange(a, a + n) for a, n in zip(starts, counts)])`` without a Python loop."""
    first = np.cumsum(counts) - counts
    out = np.arange(int(first[-1] + counts[-1]), dtype=dtype)
    out += np.repeat((starts - first).astype(dtype), counts)
    return out


def _segment_sums(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Sums of consecutive segments of bool ``values`` with lengths ``counts`` (empty segments sum to 0)."""
    first = np.cumsum(counts) - counts  # <= len(values); the appended 0 keeps every start a valid index
    sums = np.add.reduceat(np.append(values, False), first, dtype=np.int64)
    return np.where(counts > 0, sums, 0)


class WindowBatcher:
    """Builds fixed-shape training batches of windows from several sessions.

    Args:
        sessions: the sessions; windows name them by position in this list.
        cfg: tokenizer configuration (windows are ``cfg.window_chunks`` chunks long).
        sizes: fixed ``(s, q, c)``; None sizes ``s`` and ``q`` so that no window of any session can overflow (the
          most spikes in any window rounded up to a bucket, the most queries to a multiple of 8) and
          ``c = cfg.window_chunks``.
        unit_dropout: unit dropout distribution, or None for no dropout.
    """

    def __init__(
        self,
        sessions: Sequence[PreparedSession],
        cfg: TokenizerConfig,
        sizes: buckets.BatchSizes | None = None,
        unit_dropout: UnitDropoutConfig | None = None,
    ):
        if not sessions:
            raise ValueError("sessions: need at least one session")
        widths = {s.queries.target.shape[1] for s in sessions}
        if len(widths) != 1:
            raise ValueError(f"sessions: targets of {cfg.target!r} differ in width across sessions ({widths})")
        self.cfg = cfg
        self.unit_dropout = unit_dropout
        self.num_chunks = cfg.window_chunks
        self.duration = self.num_chunks * cfg.bin_width
        self._spike_off = np.cumsum([0] + [len(s.spike_times) for s in sessions])
        self._query_off = np.cumsum([0] + [len(s.queries.times) for s in sessions])
        self._spike_times = np.concatenate([s.spike_times for s in sessions])
        self._index_dtype = np.int32 if len(self._spike_times) < 2**31 else np.int64  # int32 gathers are faster
        self._spike_row = np.concatenate([s.spike_row for s in sessions])
        self._spike_unit = np.concatenate([s.spike_unit for s in sessions])
        self._query_times = np.concatenate([s.queries.times for s in sessions])
        self._target = np.concatenate([s.queries.target for s in sessions])
        self._weight = np.concatenate([s.queries.weight for s in sessions])
        self._num_units = np.array([s.num_units for s in sessions], dtype=np.int64)
        self._session_index = np.array([s.session_index for s in sessions], dtype=np.int32)
        if sizes is None:
            most_spikes = max(buckets.max_events_in_window(s.spike_times, self.duration) for s in sessions)
            most_queries = max(buckets.max_events_in_window(s.queries.times, self.duration) for s in sessions)
            sizes = buckets.BatchSizes(
                s=buckets.bucket_size(most_spikes, cfg.spike_buckets),
                q=max(8, -(-most_queries // 8) * 8),  # one size per run, so no ladder: a multiple of 8
                c=self.num_chunks,
            )
        if sizes.c != self.num_chunks:
            raise ValueError(f"sizes: training windows have c={self.num_chunks} chunks, got c={sizes.c}")
        self.sizes = sizes

    def _ranges(self, session: np.ndarray, t0: np.ndarray, t1: np.ndarray, times: np.ndarray, off: np.ndarray):
        """Per window, the first and one-past-last row of the concatenated ``times`` inside ``[t0, t1)``."""
        lo = np.empty(len(t0), np.int64)
        hi = np.empty(len(t0), np.int64)
        for k in np.unique(session):
            sel = session == k
            rows = times[off[k] : off[k + 1]]
            lo[sel] = np.searchsorted(rows, t0[sel], side="left") + off[k]
            hi[sel] = np.searchsorted(rows, t1[sel], side="left") + off[k]
        return lo, hi

    def __call__(self, session: np.ndarray, t0: np.ndarray, key: np.ndarray) -> dict[str, np.ndarray]:
        """Tokenizes and batches windows.

        Args:
            session: [b] int position of each window's session in ``sessions``.
            t0: [b] float64 window starts in seconds.
            key: [b] uint64 per-window random keys (unit dropout); ignored without dropout.

        Returns:
            A batch following ``BATCH_FIELDS`` with shapes ``self.sizes``.

        Raises:
            ValueError: if a window holds more spikes or queries than the fixed sizes allow.
        """
        session = np.asarray(session, dtype=np.int64)
        t0 = np.asarray(t0, dtype=np.float64)
        t1 = t0 + self.duration
        b, (s, q, c) = len(t0), self.sizes
        batch = {"session": self._session_index[session], "chunk_mask": np.ones((b, c), bool)}

        lo, hi = self._ranges(session, t0, t1, self._spike_times, self._spike_off)
        n = hi - lo
        idx = _concat_ranges(lo, n, self._index_dtype)
        if self.unit_dropout is not None:
            keep = keep_masks(key, self._num_units[session], self.unit_dropout)
            # Each spike looks up (window, unit row) in the flattened [b, width] keep matrix.
            # (np.take and np.compress are several times faster than fancy and boolean indexing.)
            lookup = np.take(self._spike_row, idx)
            lookup += np.repeat(np.arange(0, b * keep.shape[1], keep.shape[1], dtype=np.int32), n)
            kept = np.take(keep.ravel(), lookup)
            idx = np.compress(kept, idx)
            n = _segment_sums(kept, n)
        self._check_fits(n, s, "spike", "s")
        rel = np.take(self._spike_times, idx)
        rel -= np.repeat(t0, n)
        chunk, local = chunk_and_offset(rel, self.cfg.bin_width, c)
        dst = _concat_ranges(np.arange(b) * s, n, np.int32 if b * s < 2**31 else np.int64)
        last = np.zeros(b, np.int32)  # padding repeats each window's last chunk
        has = n > 0
        last[has] = chunk[np.cumsum(n)[has] - 1]
        batch["spike_unit"] = _scatter(np.take(self._spike_unit, idx), dst, (b, s), np.int32)
        batch["spike_chunk"] = _scatter(chunk, dst, (b, s), np.int32, fill=np.repeat(last, s))
        batch["spike_time"] = _scatter(local, dst, (b, s), np.float32)
        batch["spike_mask"] = np.arange(s) < n[:, None]
        batch["spike_value"] = batch["spike_mask"].astype(np.float32)

        lo, hi = self._ranges(session, t0, t1, self._query_times, self._query_off)
        m = hi - lo
        self._check_fits(m, q, "query", "q")
        idx = _concat_ranges(lo, m)
        chunk, local = chunk_and_offset(np.take(self._query_times, idx) - np.repeat(t0, m), self.cfg.bin_width, c)
        dst = _concat_ranges(np.arange(b) * q, m)
        batch["query_chunk"] = _scatter(chunk, dst, (b, q), np.int32)
        batch["query_time"] = _scatter(local, dst, (b, q), np.float32)
        batch["query_task"] = np.zeros((b, q), np.int32)
        batch["query_mask"] = np.arange(q) < m[:, None]
        batch["target"] = _scatter(np.take(self._target, idx, axis=0), dst, (b, q, self._target.shape[1]), np.float32)
        batch["weight"] = _scatter(np.take(self._weight, idx), dst, (b, q), np.float32)
        return batch

    def _check_fits(self, counts: np.ndarray, size: int, what: str, axis: str) -> None:
        if counts.size and counts.max() > size:
            raise ValueError(
                f"sizes: a window holds {int(counts.max())} {what} tokens but {axis}={size}; "
                "pass larger sizes or leave sizes=None to size from the data"
            )


def _scatter(values: np.ndarray, dst: np.ndarray, shape: tuple[int, ...], dtype, fill=None) -> np.ndarray:
    """A new ``shape`` array (zeros, or ``fill`` flat) with ``values`` written at flat rows ``dst`` of axes 0-1."""
    out = np.zeros(shape, dtype) if fill is None else np.asarray(fill, dtype).reshape(shape)
    out.reshape(shape[0] * shape[1], *shape[2:])[dst] = values
    return out
