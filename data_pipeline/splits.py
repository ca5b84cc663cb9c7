"""Train/valid/test domains of an imported session: whole trials to valid and test, the rest of the time to train.

Two rules (docs/data.md): a seeded random draw of trials by shares (:func:`make_splits`), or the trials' own labels
when the file carries them, as NLB / DANDI files do in ``intervals/trials/split`` (:func:`splits_from_labels`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from data_pipeline.recording import Intervals

SPLIT_LABELS = ("train", "val", "test", "none")
"""The values a trial ``split`` label may take (NLB's; the NLB test files have no labels)."""

VALID_EVERY = 10
"""Every this-many-th labelled train trial, starting with the first, is held out as valid."""


def _merge(start: np.ndarray, end: np.ndarray) -> Intervals:
    """Union of intervals [i] as sorted disjoint intervals."""
    if len(start) == 0:
        return Intervals(np.zeros(0), np.zeros(0))
    order = np.argsort(start, kind="stable")
    start, reach = start[order], np.maximum.accumulate(end[order])
    first = np.flatnonzero(np.r_[True, start[1:] > reach[:-1]])
    last = np.r_[first[1:] - 1, len(start) - 1]
    return Intervals(start[first], reach[last])


def _subtract(a: Intervals, b: Intervals) -> Intervals:
    """``a`` minus ``b``, both sorted and disjoint."""
    starts, ends = [], []
    for s, e in zip(a.start, a.end, strict=True):
        j0, j1 = np.searchsorted(b.end, s, side="right"), np.searchsorted(b.start, e, side="left")
        cursor = s
        for bs, be in zip(b.start[j0:j1], b.end[j0:j1], strict=True):
            if bs > cursor:
                starts.append(cursor)
                ends.append(bs)
            cursor = max(cursor, be)
        if cursor < e:
            starts.append(cursor)
            ends.append(e)
    return Intervals(np.array(starts, dtype=np.float64), np.array(ends, dtype=np.float64))


def make_splits(
    domain: Intervals, trials: Intervals | None, fractions: Sequence[float], seed: int
) -> dict[str, Intervals]:
    """Train/valid/test domains: whole trials to valid/test, all remaining time to train.

    Args:
        domain: the session's domain.
        trials: the trials, or None to cut ``domain`` in time into consecutive train/valid/test blocks.
        fractions: (train, valid, test) shares of the trials (or of the time), summing to 1.
        seed: which trials go where is a seeded permutation, so the same seed gives the same splits.
    """
    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions.shape != (3,) or np.any(fractions < 0) or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(
            f"fractions={fractions.tolist()}: give three non-negative (train, valid, test) shares summing to 1"
        )
    if trials is None or len(trials) == 0:
        t0, t1 = domain.start[0], domain.end[-1]
        cuts = t0 + np.cumsum(np.r_[0.0, fractions]) * (t1 - t0)
        cuts[-1] = t1
        # domain ∩ block = domain − (domain − block)
        blocks = [
            _subtract(domain, _subtract(domain, Intervals(cuts[i : i + 1], cuts[i + 1 : i + 2]))) for i in range(3)
        ]
        return dict(zip(("train", "valid", "test"), blocks, strict=True))
    n = len(trials)
    n_valid, n_test = int(round(n * fractions[1])), int(round(n * fractions[2]))
    order = np.random.default_rng(seed).permutation(n)
    return _trial_splits(domain, trials, valid_rows=order[n_test : n_test + n_valid], test_rows=order[:n_test])


def _trial_splits(
    domain: Intervals, trials: Intervals, valid_rows: np.ndarray, test_rows: np.ndarray
) -> dict[str, Intervals]:
    """Trials ``test_rows`` to test, ``valid_rows`` to valid (less any test overlap), the rest of the time to train."""
    test = _merge(trials.start[test_rows], trials.end[test_rows])
    valid = _subtract(_merge(trials.start[valid_rows], trials.end[valid_rows]), test)
    return {"train": _subtract(_subtract(domain, valid), test), "valid": valid, "test": test}


def splits_from_labels(domain: Intervals, trials: Intervals, labels: np.ndarray) -> dict[str, Intervals]:
    """Train/valid/test domains from a label per trial (the ``split`` column of NLB / DANDI files).

    ``val`` (and ``test``) trials become the test split. Of the ``train`` trials in time order, every
    ``VALID_EVERY``-th one, starting with the first, becomes valid. All remaining time (the other ``train`` trials,
    ``none`` trials and the time between trials) is train.

    Args:
        domain: the session's domain.
        trials: [i] the trials, sorted by start.
        labels: [i] str, each one of :data:`SPLIT_LABELS`.
    """
    labels = np.asarray(labels)
    train = labels == "train"
    rank = np.cumsum(train) - 1  # position of each train trial among the train trials
    valid_rows = np.flatnonzero(train & (rank % VALID_EVERY == 0))
    return _trial_splits(domain, trials, valid_rows, np.flatnonzero(np.isin(labels, ("val", "test"))))
