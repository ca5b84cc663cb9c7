"""Unit dropout augmentation (docs/training.md): each training window keeps a random subset of the session's units.

The number kept is drawn from a triangular distribution (``min 60, mode 300, max 1000``) whose bounds are *capped
at the session's unit count* ``u``: ``lo = min(min, u)``, ``hi = min(max, u)``, ``mode = clip(mode, lo, hi)``.
The reference draws from the uncapped distribution and keeps every unit whenever the draw exceeds ``u``, so a
150-unit session almost never loses a unit (a reference defect). With the caps a 150-unit session keeps
``(60 + 150 + 150) / 3 = 120`` units on average (80 %), a 100-unit one 87 %, a 500-unit one 57 %; sessions with at
most ``min`` units keep everything.

Randomness is counter-based: every draw is a hash (splitmix64) of a per-window 64-bit key and a counter, so a
window's kept units depend only on its key, not on which batch, worker process or host produced it. That is what
makes the grain pipeline restorable and identical with or without worker processes.
"""

from __future__ import annotations

import dataclasses

import numpy as np

_MASK64 = 0xFFFFFFFFFFFFFFFF
_GOLDEN64 = 0x9E3779B97F4A7C15
_COUNT_STREAM = 0xD1B54A32D192ED03  # xor-ed into the key for the kept-count draw


def splitmix64(x):
    """The splitmix64 finaliser: a bijective 64-bit hash with good avalanche.

    Works on Python ints (arbitrary size, reduced mod 2**64) and on ``uint64`` arrays with at least one dimension
    (numpy wraps array arithmetic silently; 0-d values would warn, so pass Python ints for scalars).
    """
    x = (x + _GOLDEN64) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def uniform_from_bits(bits: np.ndarray) -> np.ndarray:
    """Maps uint64 hashes to float64 uniforms in [0, 1) using their top 53 bits."""
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


@dataclasses.dataclass(frozen=True)
class UnitDropoutConfig:
    """Triangular distribution of the number of units kept per window (before capping at the session's count)."""

    min_units: int = 60
    mode_units: int = 300
    max_units: int = 1000

    def __post_init__(self):
        if not 1 <= self.min_units <= self.mode_units <= self.max_units:
            raise ValueError(
                "UnitDropoutConfig: need 1 <= min_units <= mode_units <= max_units, got "
                f"{self.min_units}, {self.mode_units}, {self.max_units}"
            )

    def bounds(self, num_units: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The capped ``(lo, mode, hi)`` of the kept-count distribution for sessions of ``num_units`` units."""
        num_units = np.asarray(num_units, dtype=np.float64)
        lo = np.minimum(self.min_units, num_units)
        hi = np.minimum(self.max_units, num_units)
        mode = np.clip(float(self.mode_units), lo, hi)
        return lo, mode, hi


def triangular_icdf(u: np.ndarray, lo: np.ndarray, mode: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Inverse CDF of the triangular distribution on ``[lo, hi]`` with peak ``mode``, at uniforms ``u``.

    Degenerate ranges (``lo == hi``) return ``lo``.
    """
    width = hi - lo
    safe = np.where(width > 0, width, 1.0)
    split = (mode - lo) / safe
    left = lo + np.sqrt(u * safe * (mode - lo))
    right = hi - np.sqrt((1.0 - u) * safe * (hi - mode))
    return np.where(width > 0, np.where(u < split, left, right), lo)


def kept_unit_counts(keys: np.ndarray, num_units: np.ndarray, cfg: UnitDropoutConfig) -> np.ndarray:
    """How many units each window keeps.

    Args:
        keys: [b] uint64 per-window random keys.
        num_units: [b] the unit count of each window's session.
        cfg: the (uncapped) triangular distribution.

    Returns:
        [b] int64 counts in ``[min(min_units, u), min(max_units, u)]``.
    """
    keys = np.asarray(keys, dtype=np.uint64)
    u = uniform_from_bits(splitmix64(keys ^ np.uint64(_COUNT_STREAM)))
    lo, mode, hi = cfg.bounds(num_units)
    counts = np.rint(triangular_icdf(u, lo, mode, hi))
    return np.clip(counts, lo, hi).astype(np.int64)


def keep_masks(keys: np.ndarray, num_units: np.ndarray, cfg: UnitDropoutConfig) -> np.ndarray:
    """Which units each window keeps: exactly ``kept_unit_counts`` of them, chosen uniformly at random.

    Each unit gets a hash of (window key, unit row); the units with the smallest hashes are kept. Rows past a
    session's unit count (when sessions of different sizes share a batch) are never kept.

    Args:
        keys: [b] uint64 per-window random keys.
        num_units: [b] the unit count of each window's session.
        cfg: the triangular distribution.

    Returns:
        [b, max(num_units)] bool.
    """
    keys = np.asarray(keys, dtype=np.uint64)
    num_units = np.asarray(num_units, dtype=np.int64)
    width = int(num_units.max(initial=0))
    rows = np.arange(1, width + 1, dtype=np.uint64) * np.uint64(_GOLDEN64)
    hashes = splitmix64(keys[:, None] + rows[None, :])
    hashes[np.arange(width)[None, :] >= num_units[:, None]] = np.uint64(_MASK64)
    counts = kept_unit_counts(keys, num_units, cfg)
    # The count-th smallest hash of each row is its threshold; hashes are distinct with overwhelming probability.
    ordered = np.sort(hashes, axis=1)
    threshold = ordered[np.arange(len(keys)), np.maximum(counts - 1, 0)]
    keep = hashes <= threshold[:, None]
    keep[counts == 0] = False
    return keep
