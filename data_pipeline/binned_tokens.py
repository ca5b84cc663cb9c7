"""Binned-count tokens for the human-BCI tasks (handwriting, speech): one token per (bin, channel) with a count.

Binned recordings store ``n`` threshold crossings of channel ``u`` in bin ``k`` as ``n`` spikes at the bin centre
(:mod:`data_pipeline.synth.binned`). Here a chunk *is* a bin: a window starts on the bin grid (``t0 = m · w``) and
chunk ``j`` covers ``[t0 + j·w, t0 + (j+1)·w)``. Every channel with ``n > 0`` crossings in a bin becomes one token:

* ``spike_unit``: the channel's global unit index (channels are the units of a binned session);
* ``spike_time``: ``w / 2``, the bin centre, in chunk-local time;
* ``spike_value``: ``sqrt(n)``, the normalised count (Poisson counts have variance = mean; the square root makes the
  spread about constant, so busy channels do not dominate the value embedding).

A zero count makes no token (silence, as for spikes), so a 192-channel array with ~10 Hz rates and 10 ms bins gives
~20 tokens per chunk instead of 192.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from data_pipeline.recording import Recording
from data_pipeline.tokenize import chunk_and_offset

TOKEN_KEYS = ("spike_unit", "spike_chunk", "spike_time", "spike_value", "spike_mask")


def snap_to_grid(t: float, bin_width: float) -> float:
    """``t`` rounded to the nearest bin edge ``m · bin_width`` (bins of binned recordings start at time 0)."""
    return round(t / bin_width) * bin_width


def query_offset(bin_width: float) -> np.float32:
    """Chunk-local time of a query at the *end* of its bin: the largest float32 below ``bin_width``.

    A query there has seen its whole bin, so reading the chunk that contains it is causal for binned inputs.
    """
    return np.nextafter(np.float32(bin_width), np.float32(0.0))


def window_counts(
    recording: Recording, t0: float, num_chunks: int, bin_width: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-zero counts of ``[t0, t0 + num_chunks · bin_width)``: (chunk [n], unit row [n], count [n]).

    Sorted by (chunk, unit row).
    """
    times, rows = recording.spikes_between(t0, t0 + num_chunks * bin_width)
    rows = np.asarray(rows, dtype=np.int64)
    chunk, _ = chunk_and_offset(np.asarray(times, np.float64) - t0, bin_width, num_chunks)
    width = len(recording.unit_ids)
    key, count = np.unique(chunk.astype(np.int64) * width + rows, return_counts=True)
    return (key // width).astype(np.int32), key % width, count


def dense_counts(chunk: np.ndarray, row: np.ndarray, count: np.ndarray, num_chunks: int, num_units: int) -> np.ndarray:
    """The counts of :func:`window_counts` as a dense [num_chunks, num_units] float32 array."""
    out = np.zeros((num_chunks, num_units), np.float32)
    out[chunk, row] = count
    return out


def tokens(
    chunk: np.ndarray, row: np.ndarray, count: np.ndarray, unit_index: np.ndarray, bin_width: float
) -> dict[str, np.ndarray]:
    """Unpadded token arrays of one window (module docstring) from :func:`window_counts`."""
    n = len(chunk)
    return {
        "spike_unit": np.asarray(unit_index, np.int32)[row],
        "spike_chunk": chunk.astype(np.int32),
        "spike_time": np.full(n, bin_width / 2, np.float32),
        "spike_value": np.sqrt(count).astype(np.float32),
        "spike_mask": np.ones(n, bool),
    }


def pad_rows(rows: Sequence[Mapping[str, np.ndarray]], sizes: Mapping[str, int], axes: Mapping[str, str]) -> dict:
    """Stacks per-example arrays into a batch, padding each to the size of its axis.

    Args:
        rows: one dict of arrays per example (same keys); scalars are stacked as they are.
        sizes: axis name -> padded length, e.g. ``{"b": 8, "s": 4096, "c": 150, "q": 30}``; ``"b"`` rows beyond
          ``len(rows)`` are all padding.
        axes: key -> axis name of its first dimension (``"s"``, ``"c"``...), or ``""`` for per-example scalars.

    Returns:
        key -> [b, ...] arrays; padding is 0 / False, except ``spike_chunk``, which repeats the row's last chunk
        index (the batch layout's rule), 0 for an empty row.

    Raises:
        ValueError: an example is longer than its axis' size.
    """
    b = sizes["b"]
    if len(rows) > b:
        raise ValueError(f"pad_rows: {len(rows)} examples do not fit a batch of {b} rows")
    out = {}
    for key, axis in axes.items():
        first = np.asarray(rows[0][key])
        if not axis:
            arr = np.zeros((b, *first.shape), first.dtype)
            for i, r in enumerate(rows):
                arr[i] = r[key]
            out[key] = arr
            continue
        arr = np.zeros((b, sizes[axis], *first.shape[1:]), first.dtype)
        for i, r in enumerate(rows):
            x = np.asarray(r[key])
            if len(x) > sizes[axis]:
                raise ValueError(f"pad_rows: {key} has {len(x)} entries but axis {axis!r} holds {sizes[axis]}")
            arr[i, : len(x)] = x
            if key == "spike_chunk" and len(x):
                arr[i, len(x) :] = x[-1]
        out[key] = arr
    return out


def round_up(n: int, multiple: int) -> int:
    """``n`` rounded up to a multiple of ``multiple`` (at least one multiple, so empty windows keep a shape)."""
    return max(1, -(-int(n) // multiple)) * multiple
