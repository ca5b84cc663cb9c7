"""Tokenization of one recording window into the flat chunk-keyed layout of :mod:`data_pipeline.batch_layout`.

A window starting at ``t0`` with ``c`` chunks covers ``[t0, t0 + c * bin_width)``. Every spike in it becomes a
token in chunk ``j = floor((t - t0) / bin_width)`` with local time ``(t - t0) - j * bin_width`` (float64, then
float32, then clipped into ``[0, bin_width)`` so float rounding at chunk edges can never push a time out of its
chunk). Queries sit at the behaviour's own timestamps inside the window with their chunk and local time computed
the same way; targets are z-scored, ``(value - target_mean) / target_std``.

Loss weights multiply: a query starts at ``default_weight`` and is multiplied by the weight of every configured
interval set that contains it. Phases are disjoint, so a reach sample gets 5.0 and a hold sample 0.1, and an outlier
segment (weight 0.0) zeroes the query whatever else holds. Samples with a NaN target get weight 0 and target 0.

This module holds the per-window path (:func:`tokenize_window`, :func:`collate`), used for evaluation trials of any
length; :mod:`data_pipeline.batcher` is the vectorised training path, which produces identical numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from data_pipeline import buckets
from data_pipeline.batch_layout import BATCH_FIELDS
from data_pipeline.recording import Intervals, Recording

DEFAULT_WEIGHTS = {
    "movement_phases/reach_period": 5.0,
    "movement_phases/hold_period": 0.1,
    "movement_phases/return_period": 1.0,
    "movement_phases/random_period": 1.0,
    "cursor_outlier_segments": 0.0,
}
"""Loss weight per interval set (docs/training.md); interval sets a recording lacks are skipped."""


@dataclasses.dataclass(frozen=True)
class TokenizerConfig:
    """How recordings become tokens.

    Attributes:
        bin_width: chunk length in seconds (0.05; 0.02 and 0.01 work too).
        window: training window length in seconds, a multiple of ``bin_width``.
        target: ``"<behaviour>.<field>"``, e.g. ``"cursor.vel"`` or ``"hand.vel"``.
        target_mean, target_std: z-scoring, a scalar or one value per target dimension (cm/s for cursor velocity).
        weights: loss weight per interval set name (a mapping; stored as sorted ``(name, weight)`` pairs).
        default_weight: weight of a query before interval weights multiply in.
        spike_buckets, query_buckets: padding ladders for ``s`` and ``q``.
        chunk_buckets: padding ladder for ``c``; None means ``window_chunks * 2**k``.
        query_rate: training only: at most this many queries per second. A behaviour sampled faster is thinned to
          every k-th sample, ``k = ceil(sampling rate / query_rate)`` (:meth:`QueryTable.thinned`), so a 1 kHz hand
          signal trains on 100 queries per second at ``query_rate = 100``. 0: every sample. Evaluation always
          scores every behaviour sample.
    """

    bin_width: float = 0.05
    window: float = 1.0
    target: str = "cursor.vel"
    target_mean: float | tuple[float, ...] = 0.0
    target_std: float | tuple[float, ...] = 20.0
    weights: Mapping[str, float] | tuple[tuple[str, float], ...] = tuple(sorted(DEFAULT_WEIGHTS.items()))
    default_weight: float = 1.0
    spike_buckets: tuple[int, ...] = buckets.SPIKE_BUCKETS
    query_buckets: tuple[int, ...] = buckets.QUERY_BUCKETS
    chunk_buckets: tuple[int, ...] | None = None
    query_rate: float = 0.0

    def __post_init__(self):
        if not self.query_rate >= 0:
            raise ValueError(f"query_rate: must be >= 0 queries per second (0: every sample), got {self.query_rate}")
        if not self.bin_width > 0:
            raise ValueError(f"bin_width: must be positive, got {self.bin_width}")
        ratio = self.window / self.bin_width
        if self.window <= 0 or abs(ratio - round(ratio)) > 1e-6:
            raise ValueError(f"window: must be a positive multiple of bin_width={self.bin_width}, got {self.window}")
        if self.target.count(".") != 1 or not all(self.target.split(".")):
            raise ValueError(f"target: expected '<behaviour>.<field>' such as 'cursor.vel', got {self.target!r}")
        if np.any(np.asarray(self.target_std, dtype=np.float64) <= 0):
            raise ValueError(f"target_std: must be positive, got {self.target_std}")
        weights = self.weights.items() if isinstance(self.weights, Mapping) else self.weights
        object.__setattr__(self, "weights", tuple(sorted((str(k), float(v)) for k, v in weights)))
        object.__setattr__(self, "spike_buckets", buckets.check_buckets(self.spike_buckets, "spike_buckets"))
        object.__setattr__(self, "query_buckets", buckets.check_buckets(self.query_buckets, "query_buckets"))
        ladder = buckets.chunk_buckets(self.window_chunks) if self.chunk_buckets is None else self.chunk_buckets
        object.__setattr__(self, "chunk_buckets", buckets.check_buckets(ladder, "chunk_buckets"))

    @property
    def window_chunks(self) -> int:
        """Chunks per training window (20 for 1 s at 50 ms)."""
        return round(self.window / self.bin_width)


def check_unit_index(unit_index: np.ndarray, num_units: int, session: str) -> np.ndarray:
    """Validates a session's unit-row → global-unit map and returns it as int32.

    Raises:
        ValueError: if it is not 1-D integer, does not have one entry per unit, or uses the reserved index 0.
    """
    unit_index = np.asarray(unit_index)
    if unit_index.ndim != 1 or not np.issubdtype(unit_index.dtype, np.integer):
        raise ValueError(
            f"unit_index ({session}): expected a 1-D integer array, got {unit_index.dtype} {unit_index.shape}"
        )
    if len(unit_index) != num_units:
        raise ValueError(
            f"unit_index ({session}): has {len(unit_index)} entries but the session has {num_units} units; "
            "build it from the vocabulary with one entry per row of unit_ids"
        )
    if num_units and unit_index.min() < 1:
        raise ValueError(f"unit_index ({session}): global index 0 is reserved for padding; real units start at 1")
    return unit_index.astype(np.int32)


def interval_weights(times: np.ndarray, intervals: Mapping[str, Intervals], cfg: TokenizerConfig) -> np.ndarray:
    """Loss weight of each time: ``default_weight`` times the weight of every configured interval set holding it.

    Args:
        times: [t] seconds.
        intervals: the recording's named interval sets.
        cfg: supplies ``weights`` and ``default_weight``.

    Returns:
        [t] float32.
    """
    w = np.full(len(times), cfg.default_weight, dtype=np.float64)
    for name, weight in cfg.weights:
        if name in intervals:
            w[intervals[name].contains(times)] *= weight
    return w.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class QueryTable:
    """A session's queries, computed once: behaviour times with z-scored targets and loss weights.

    Attributes:
        times: [t] float64 behaviour timestamps (sorted).
        target: [t, y] float32 z-scored targets, 0 where the behaviour is NaN.
        weight: [t] float32 loss weights, 0 where the behaviour is NaN.
    """

    times: np.ndarray
    target: np.ndarray
    weight: np.ndarray

    @classmethod
    def from_recording(cls, recording: Recording, cfg: TokenizerConfig) -> QueryTable:
        """Reads ``cfg.target`` from the recording's behaviour.

        Raises:
            DataError: naming the file and field if the behaviour or field is missing or unusable.
            ValueError: naming the file if values and timestamps differ in length, or if timestamps are not sorted.
        """
        name, field = cfg.target.split(".")
        series = recording.target_series(name, field)
        where = f"{recording.source}: behaviour {name!r}"
        times = np.asarray(series.timestamps, dtype=np.float64)
        values = np.asarray(series.values[field], dtype=np.float64)
        values = values.reshape(len(values), -1)
        if len(values) != len(times):
            raise ValueError(f"target: {where} field {field!r} has {len(values)} samples but {len(times)} timestamps")
        if np.any(np.diff(times) < 0):
            raise ValueError(f"target: {where} timestamps are not sorted")
        target = (values - np.asarray(cfg.target_mean, dtype=np.float64)) / np.asarray(cfg.target_std, np.float64)
        missing = np.isnan(target).any(axis=1)
        weight = interval_weights(times, recording.intervals, cfg)
        weight[missing] = 0.0
        target[missing] = 0.0
        return cls(times, target.astype(np.float32), weight)

    def thinned(self, query_rate: float) -> QueryTable:
        """Every k-th sample, ``k = ceil(sampling rate / query_rate)``, so at most ``query_rate`` queries per second
        remain; ``query_rate = 0`` or a table sampled no faster returns ``self``.

        The sampling rate is the inverse of the median interval between timestamps.
        """
        if query_rate <= 0 or len(self.times) < 2:
            return self
        step = int(np.ceil(1.0 / (float(np.median(np.diff(self.times))) * query_rate) - 1e-6))
        if step <= 1:
            return self
        return QueryTable(self.times[::step], self.target[::step], self.weight[::step])


def chunk_and_offset(rel: np.ndarray, bin_width: float, num_chunks: int) -> tuple[np.ndarray, np.ndarray]:
    """Chunk index and chunk-local time of times measured from the window start.

    ``j = floor(rel / bin_width)`` and ``rel - j * bin_width`` in float64, cast to float32 and clipped into
    ``[0, bin_width)``: a time a hair below a chunk edge may round onto the edge, and a time a hair below the
    window end may divide to ``num_chunks``; both stay in their chunk.

    Args:
        rel: [k] float64 seconds since the window start, in ``[0, num_chunks * bin_width)``.
        bin_width: chunk length in seconds.
        num_chunks: chunks in the window.

    Returns:
        chunk [k] int32 in ``[0, num_chunks)``, local [k] float32 in ``[0, bin_width)``.
    """
    scaled = np.divide(rel, bin_width)
    np.floor(scaled, out=scaled)
    chunk = scaled.astype(np.int32)
    np.clip(chunk, 0, num_chunks - 1, out=chunk)
    np.multiply(chunk, bin_width, out=scaled)  # reuse the buffer: chunk start within the window
    np.subtract(rel, scaled, out=scaled)
    local = scaled.astype(np.float32)
    np.clip(local, 0.0, np.nextafter(np.float32(bin_width), np.float32(0.0)), out=local)
    return chunk, local


def _window_queries(queries: QueryTable, t0: float, t1: float) -> slice:
    """The rows of ``queries`` with ``t0 <= time < t1``."""
    k0, k1 = np.searchsorted(queries.times, [t0, t1], side="left")
    return slice(int(k0), int(k1))


def tokenize_window(
    recording: Recording,
    t0: float,
    num_chunks: int,
    unit_index: np.ndarray,
    session_index: int,
    cfg: TokenizerConfig,
    keep_units: np.ndarray | None = None,
    queries: QueryTable | None = None,
) -> dict[str, np.ndarray]:
    """Tokenizes the window ``[t0, t0 + num_chunks * bin_width)`` of one recording (no batch axis).

    Args:
        recording: a :class:`Recording` or a lazy reader with the same attributes (spikes read by time).
        t0: window start in seconds.
        num_chunks: chunks in the window (any length: evaluation trials are never cut).
        unit_index: [u] int session-local unit row -> global unit index (>= 1).
        session_index: the session's vocabulary index.
        cfg: tokenizer configuration.
        keep_units: optional [u] bool, units to keep (unit dropout); None keeps all.
        queries: the session's :class:`QueryTable`, to avoid recomputing it per window; None builds it.

    Returns:
        The fields of ``BATCH_FIELDS`` without the batch axis, ``s``, ``q``, ``c`` padded to their buckets.
    """
    unit_index = check_unit_index(unit_index, len(recording.unit_ids), recording.session_key)
    if num_chunks < 1:
        raise ValueError(f"num_chunks: must be >= 1, got {num_chunks}")
    t1 = t0 + num_chunks * cfg.bin_width
    times, rows = recording.spikes_between(t0, t1)
    times = np.asarray(times, dtype=np.float64)
    rows = np.asarray(rows, dtype=np.int64)
    if keep_units is not None:
        keep = np.asarray(keep_units, dtype=bool)
        if keep.shape != unit_index.shape:
            raise ValueError(f"keep_units: expected shape {unit_index.shape}, got {keep.shape}")
        kept = keep[rows]
        times, rows = times[kept], rows[kept]
    spike_chunk, spike_time = chunk_and_offset(times - t0, cfg.bin_width, num_chunks)

    queries = QueryTable.from_recording(recording, cfg) if queries is None else queries
    rows_q = _window_queries(queries, t0, t1)
    query_chunk, query_time = chunk_and_offset(queries.times[rows_q] - t0, cfg.bin_width, num_chunks)

    n, m = len(times), len(query_chunk)
    s = buckets.bucket_size(n, cfg.spike_buckets)
    q = buckets.bucket_size(m, cfg.query_buckets)
    c = buckets.bucket_size(num_chunks, cfg.chunk_buckets)
    out = {
        "spike_unit": _pad(unit_index[rows], s),
        "spike_chunk": _pad(spike_chunk, s, fill=spike_chunk[-1] if n else 0),
        "spike_time": _pad(spike_time, s),
        "spike_value": _pad(np.ones(n, np.float32), s),
        "spike_mask": _pad(np.ones(n, bool), s),
        "chunk_mask": _pad(np.ones(num_chunks, bool), c),
        "session": np.asarray(session_index, dtype=np.int32),
        "query_chunk": _pad(query_chunk, q),
        "query_time": _pad(query_time, q),
        "query_task": np.zeros(q, np.int32),
        "query_mask": _pad(np.ones(m, bool), q),
        "target": _pad(queries.target[rows_q], q),
        "weight": _pad(queries.weight[rows_q], q),
    }
    return out


def _pad(x: np.ndarray, size: int, fill=0) -> np.ndarray:
    """``x`` padded along axis 0 to ``size`` with ``fill``."""
    out = np.full((size, *x.shape[1:]), fill, dtype=x.dtype)
    out[: len(x)] = x
    return out


def collate(windows: Sequence[Mapping[str, np.ndarray]], sizes: buckets.BatchSizes | None = None) -> dict:
    """Stacks tokenized windows into a batch, padding ``s``, ``q``, ``c`` to the largest in the batch.

    Args:
        windows: outputs of :func:`tokenize_window` (already bucketed, so the maxima are buckets too).
        sizes: fixed sizes to pad to instead (training keeps shapes fixed so jit compiles once).

    Returns:
        A batch following ``BATCH_FIELDS``.

    Raises:
        ValueError: if ``windows`` is empty or a window holds more real tokens, queries or chunks than ``sizes``.
    """
    if not windows:
        raise ValueError("windows: cannot collate an empty list")
    largest = buckets.BatchSizes(
        s=max(len(w["spike_unit"]) for w in windows),
        q=max(len(w["query_chunk"]) for w in windows),
        c=max(len(w["chunk_mask"]) for w in windows),
    )
    real = buckets.BatchSizes(
        s=max(int(np.sum(w["spike_mask"])) for w in windows),
        q=max(int(np.sum(w["query_mask"])) for w in windows),
        c=largest.c,
    )
    if sizes is None:
        sizes = largest
    elif any(a > b for a, b in zip(real, sizes, strict=True)):
        raise ValueError(f"sizes: {sizes} is smaller than the largest window {real}; pass larger sizes")
    lengths = {"b s": sizes.s, "b q": sizes.q, "b q y": sizes.q, "b c": sizes.c}
    batch = {}
    for key in windows[0]:
        dtype, legend, _ = BATCH_FIELDS[key]
        rows = [np.asarray(w[key]) for w in windows]
        if legend == "b":
            batch[key] = np.stack(rows).astype(dtype)
            continue
        out = np.zeros((len(rows), lengths[legend], *rows[0].shape[1:]), dtype)
        for i, x in enumerate(rows):
            if key == "spike_chunk":  # padding repeats the window's last chunk
                out[i] = x[-1]
            x = x[: out.shape[1]]  # cuts padding only: the real counts were checked against ``sizes``
            out[i, : len(x)] = x
        batch[key] = out
    return batch
