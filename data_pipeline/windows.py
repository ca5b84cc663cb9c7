"""Where windows come from (docs/training.md): random training windows and whole evaluation trials.

Training windows lie fully inside a session's ``train`` split. An *epoch* of a session has one window per full
window-length of train time (``sum(floor(L_i / window))`` over its train intervals), placed by stratified sampling
over the set of valid start times: the valid starts of all intervals are laid end to end on one line, cut into
equal strata, and each stratum gets one uniformly random start. Every epoch draws fresh offsets (deterministic given
the seed and the epoch) and the windows are then shuffled, so coverage is even within an epoch and chunk boundaries
fall at new phases every epoch.

Evaluation uses whole trials of the ``valid`` / ``test`` splits, never cut to 1 s (unlike the reference).
"""

from __future__ import annotations

import math

import numpy as np

from data_pipeline.recording import Intervals, Recording


def _fitting_intervals(intervals: Intervals, window: float) -> tuple[np.ndarray, np.ndarray]:
    """(start [i], length [i]) of the intervals at least ``window`` long, after merging touching intervals.

    A split stored trial by trial lists back-to-back trials as separate intervals; merging them first lets
    windows span trial boundaries, as they would in one contiguous block.
    """
    start = np.asarray(intervals.start, dtype=np.float64)
    end = np.asarray(intervals.end, dtype=np.float64)
    if len(start) > 1:  # intervals are sorted by start; a block ends where the next start passes every end so far
        first = np.flatnonzero(np.concatenate([[True], start[1:] > np.maximum.accumulate(end)[:-1]]))
        start, end = start[first], np.maximum.reduceat(end, first)
    length = end - start
    fits = length >= window
    return start[fits], length[fits]


def windows_per_epoch(intervals: Intervals, window: float) -> int:
    """The number of training windows in one epoch: ``sum(floor(L_i / window))`` over the intervals.

    Raises:
        ValueError: if no interval is at least one window long.
    """
    _, length = _fitting_intervals(intervals, window)
    n = int(np.sum(np.floor(length / window)))
    if n == 0:
        longest = float(np.max(np.asarray(intervals.end) - np.asarray(intervals.start), initial=0.0))
        raise ValueError(
            f"intervals: no train interval is at least window={window} s long (longest {longest:.3f} s); "
            "use a shorter window or a longer train split"
        )
    return n


def epoch_window_starts(intervals: Intervals, window: float, rng: np.random.Generator) -> np.ndarray:
    """Random window starts for one epoch, each window fully inside one of ``intervals``, in shuffled order.

    Args:
        intervals: the session's train intervals.
        window: window length in seconds.
        rng: the epoch's generator (seed it with (seed, session, epoch) for determinism).

    Returns:
        [windows_per_epoch] float64 start times.

    Raises:
        ValueError: if no interval is at least one window long.
    """
    n = windows_per_epoch(intervals, window)
    start, length = _fitting_intervals(intervals, window)
    slack = length - window  # length of each interval's set of valid starts
    total = float(np.sum(slack))
    if total <= 0.0:  # every interval is exactly one window long: no offsets to draw
        starts = np.resize(start, n)
    else:
        line = (np.arange(n) + rng.random(n)) * (total / n)  # one uniform point per stratum of the line
        edges = np.cumsum(slack)
        seg = np.minimum(np.searchsorted(edges, line, side="right"), len(slack) - 1)
        offset = line - (edges[seg] - slack[seg])
        starts = start[seg] + np.clip(offset, 0.0, slack[seg])
    return rng.permutation(starts)


def trial_num_chunks(duration: float, bin_width: float) -> int:
    """Chunks needed to cover ``duration`` seconds: ``ceil(duration / bin_width)``, ignoring float dust, >= 1."""
    return max(1, math.ceil(duration / bin_width - 1e-9))


def eval_trials(recording: Recording, split: str) -> Intervals:
    """The whole trials that intersect the ``split`` domain (``valid`` or ``test``), in time order.

    Trials are taken from ``recording.intervals["trials"]``; a recording without trials uses the split's own
    intervals as trials. A trial that straddles the split boundary is kept whole.

    Raises:
        ValueError: if the recording has no such split or no trial intersects it.
    """
    if split not in recording.splits:
        raise ValueError(
            f"split: recording {recording.session_key} has no {split!r} split (has {sorted(recording.splits)})"
        )
    domain = recording.splits[split]
    trials = recording.intervals.get("trials")
    if trials is None or len(trials) == 0:
        return Intervals(np.asarray(domain.start, np.float64), np.asarray(domain.end, np.float64))
    t_start = np.asarray(trials.start, dtype=np.float64)
    t_end = np.asarray(trials.end, dtype=np.float64)
    d_start = np.asarray(domain.start, dtype=np.float64)
    d_end = np.asarray(domain.end, dtype=np.float64)
    # A trial [a, b) meets a domain interval [c, d) iff a < d and c < b; the domain is sorted and disjoint, so
    # the last domain interval starting before b is the only candidate that can still end after a.
    j = np.searchsorted(d_start, t_end, side="left") - 1
    hit = (j >= 0) & (t_start < d_end[np.maximum(j, 0)])
    if not np.any(hit):
        raise ValueError(f"split: no trial of {recording.session_key} intersects its {split!r} domain")
    columns = {k: np.asarray(v)[hit] for k, v in trials.columns.items()}
    return Intervals(t_start[hit], t_end[hit], columns)
