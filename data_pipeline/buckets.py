"""Static sizes for the padded axes of a batch: spike tokens ``s``, queries ``q`` and chunks ``c``.

jit compiles once per distinct shape, so variable counts are rounded up to a short ladder of bucket sizes. Beyond
the largest bucket a count is rounded up to a multiple of it: nothing is ever truncated, a rare huge window costs
one more compilation instead of dropped spikes. Training uses one fixed size per axis (see
:func:`max_events_in_window`), so a training run compiles exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

SPIKE_BUCKETS = (64, 128, 256, 512, 768, 1024, 1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096, 5120, 6144, 7168, 8192)
SPIKE_BUCKETS += tuple(4 * b for b in SPIKE_BUCKETS[-8:])  # 10240 ... 32768
"""Default ladder for the flat spike-token axis ``s`` (steps of at most 1.25x from 1024 up to 32768)."""

QUERY_BUCKETS = (8, 16, 32, 64, 128, 256, 512, 1024, 2048)
"""Default ladder for the query axis ``q``."""


def check_buckets(buckets: Sequence[int], name: str) -> tuple[int, ...]:
    """Returns ``buckets`` as a tuple after checking they are positive and strictly increasing.

    Raises:
        ValueError: naming ``name`` if the ladder is empty, unsorted or not positive.
    """
    out = tuple(int(b) for b in buckets)
    if not out or out[0] < 1 or any(b <= a for a, b in zip(out, out[1:], strict=False)):
        raise ValueError(f"{name}: bucket sizes must be positive and strictly increasing, got {buckets!r}")
    return out


def chunk_buckets(window_chunks: int, count: int = 8) -> tuple[int, ...]:
    """The default chunk ladder: ``window_chunks * 2**k`` (20, 40, 80, ... at 50 ms bins and 1 s windows)."""
    return tuple(window_chunks * 2**k for k in range(count))


def bucket_size(n: int, buckets: Sequence[int]) -> int:
    """The smallest bucket ``>= n``; past the largest bucket, the next multiple of the largest.

    Args:
        n: the count to pad (``>= 0``).
        buckets: increasing positive sizes.

    Returns:
        The padded size (at least ``buckets[0]``, so empty windows still have a static shape).
    """
    i = int(np.searchsorted(buckets, n, side="left"))
    if i < len(buckets):
        return int(buckets[i])
    top = int(buckets[-1])
    return -(-int(n) // top) * top


def next_pow2(n: int, minimum: int = 1) -> int:
    """The smallest power of two ``>= max(n, minimum)`` (streaming and evaluation pad to these sizes)."""
    return 1 << max(int(n) - 1, int(minimum) - 1, 0).bit_length()


def max_events_in_window(times: np.ndarray, window: float) -> int:
    """The largest number of sorted ``times`` inside any half-open window ``[a, a + window)``.

    The maximum is reached by a window that starts at an event, so one ``searchsorted`` over all events gives it
    exactly (O(n log n)). Used to size training batches so that no window of a session can overflow.

    Args:
        times: [n] sorted event times in seconds.
        window: window length in seconds.
    """
    times = np.asarray(times, dtype=np.float64)
    if times.size == 0:
        return 0
    ends = np.searchsorted(times, times + window, side="left")
    return int(np.max(ends - np.arange(times.size)))


class BatchSizes(NamedTuple):
    """Padded sizes of a batch: spike tokens ``s``, queries ``q`` and chunks ``c``."""

    s: int
    q: int
    c: int
