"""Packing the spike tokens of a batch across its rows, so padding is paid once per device shard, not per window.

A window batch (:mod:`data_pipeline.batch_layout`) pads every row's spike axis to one size ``s`` that must hold the
densest window, often several times the typical one, and the encoder's cost grows with ``b * s``. Packing lays the
real tokens of consecutive windows end to end over the rows of their device shard, adds ``spike_window`` (the batch
row whose window each token belongs to) and cuts ``s`` to the bucket that holds the fullest shard. The model's
segment softmax groups tokens by ``(spike_window, spike_chunk)`` wherever they sit, so the result is unchanged; a
window's tokens may straddle rows, but never leave their shard, so data-parallel sharding keeps each device's tokens
with its windows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from data_pipeline import buckets

SPIKE_KEYS = ("spike_unit", "spike_chunk", "spike_time", "spike_value", "spike_mask")
"""The per-token arrays that packing moves (``spike_window`` is added)."""


def packed_width(
    batch: dict[str, np.ndarray], shards: int, spike_buckets: tuple[int, ...] = buckets.SPIKE_BUCKETS
) -> int:
    """The padded spike size that packing ``batch`` into ``shards`` equal groups of rows needs (a bucket size)."""
    mask = np.asarray(batch["spike_mask"])
    b = mask.shape[0]
    if shards < 1 or b % shards:
        raise ValueError(f"pack_spikes: batch size {b} must be a positive multiple of shards={shards}")
    per_shard = mask.sum(axis=1).reshape(shards, b // shards).sum(axis=1)
    rows = b // shards
    return buckets.bucket_size(int(-(-per_shard.max() // rows)), spike_buckets)


def pack_spikes(
    batch: dict[str, np.ndarray],
    shards: int = 1,
    *,
    width: int | None = None,
    window_offset: int = 0,
    spike_buckets: tuple[int, ...] = buckets.SPIKE_BUCKETS,
) -> dict[str, np.ndarray]:
    """Repacks the spike tokens of ``batch`` across its rows (see the module docstring).

    Args:
        batch: a window batch whose spike arrays are padded at the end of each row (the batcher's layout).
        shards: equal groups of consecutive rows (the devices this host feeds); tokens stay within their group.
        width: the packed spike size; None for :func:`packed_width` (pass the maximum over hosts when several
          hosts must agree on one global shape).
        window_offset: added to ``spike_window`` (this host's first row in the global batch).
        spike_buckets: the ladder :func:`packed_width` rounds to.

    Returns:
        A new batch: the spike arrays [b, width] with the tokens packed and ``spike_window`` added; padding tokens
        repeat the last window and chunk of their shard with ``spike_mask = False``; other keys are shared.

    Raises:
        ValueError: if ``b`` is not a multiple of ``shards`` or ``width`` cannot hold the fullest shard.
    """
    mask = np.asarray(batch["spike_mask"])
    b = mask.shape[0]
    width = packed_width(batch, shards, spike_buckets) if width is None else int(width)
    rows = b // shards
    src_row, src_col = np.nonzero(mask)  # row-major: windows in order, tokens in (chunk, time) order
    shard = src_row // rows
    first = np.searchsorted(shard, np.arange(shards))  # index of each shard's first token
    position = np.arange(src_row.size) - first[shard]
    if position.size and position.max() >= rows * width:
        raise ValueError(f"pack_spikes: width {width} cannot hold {int(position.max()) + 1} tokens in {rows} rows")
    dst_row, dst_col = shard * rows + position // width, position % width

    last_row = (np.arange(b) // rows) * rows + rows - 1  # padding belongs to the last window of its shard
    c = np.asarray(batch["chunk_mask"]).shape[1]
    out = dict(batch)
    for key in SPIKE_KEYS:
        if key not in batch:
            continue
        src = np.asarray(batch[key])
        packed = np.zeros((b, width), src.dtype)
        if key == "spike_chunk":
            packed[:] = c - 1
        packed[dst_row, dst_col] = src[src_row, src_col]
        out[key] = packed
    window = np.broadcast_to(last_row[:, None], (b, width)).copy()
    window[dst_row, dst_col] = src_row
    out["spike_window"] = (window + window_offset).astype(np.int32)
    return out


def pack_stream(batches: Iterable[dict[str, np.ndarray]], shards: int = 1) -> Iterator[dict[str, np.ndarray]]:
    """Packs every batch of a single-host stream at the widest packed size seen so far.

    The width only grows, so a jitted consumer compiles a handful of times in a run instead of once per size a
    batch happens to need (the multi-host training loop does the same through
    :func:`possm_jax.train.sharding.pack_host_batch`).
    """
    width = 0
    for batch in batches:
        width = max(width, packed_width(batch, shards))
        yield pack_spikes(batch, shards, width=width)


def trim_stream(
    batches: Iterable[dict[str, np.ndarray]], spike_buckets: tuple[int, ...] = buckets.SPIKE_BUCKETS
) -> Iterator[dict[str, np.ndarray]]:
    """Cuts every batch's per-row spike padding to the bucket of its fullest row (never below the widest so far).

    For models that read one window per row (no ``spike_window``): the batcher pads every row to the session's
    densest window, and a typical batch needs a fraction of that. Tokens sit at the front of each row, so cutting
    the tail drops only padding.
    """
    width = 0
    for batch in batches:
        mask = np.asarray(batch["spike_mask"])
        width = min(mask.shape[1], max(width, buckets.bucket_size(int(mask.sum(axis=1).max()), spike_buckets)))
        yield {k: (np.asarray(v)[:, :width] if k in SPIKE_KEYS else v) for k, v in batch.items()}
