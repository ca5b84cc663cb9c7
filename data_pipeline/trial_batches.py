"""Trial batches of the human-BCI tasks: go-aligned handwriting windows and whole speech sentences (no jax).

Examples (one per trial of a split):

* handwriting (:func:`go_windows`): a fixed-length window starting ``before_go`` seconds before the trial's go cue
  (column ``go_cue_time`` of ``intervals["trials"]``), labelled with the trial's class (column ``label``);
* speech (:func:`sentences`): the whole trial, labelled with the ``phoneme`` column of the ``phonemes`` intervals
  that start inside it, in time order.

Window starts are snapped to the bin grid, so chunks are bins (:mod:`data_pipeline.binned_tokens`).

Query layouts (every query sits at the end of its bin, :func:`~data_pipeline.binned_tokens.query_offset`):

* handwriting: the last ``pool_chunks`` chunks of the window, task 0; ``label`` [b] is the class;
* speech, for a row padded to ``C`` chunks and CTC stride ``S``: ``T = C // S`` phoneme queries first (task 0, query
  ``n`` at the end of chunk ``n·S + S − 1``, real where that chunk is; ``ctc_mask`` [b, T]), then ``C`` count queries
  (task 1, query ``j`` predicts the next bin's counts ``counts_target[j] = counts[j + 1]``, ``weight`` 1 where bin
  ``j + 1`` is real); ``labels`` / ``label_mask`` [b, L] hold the phoneme sequence.

Training (:class:`EpochBatches`): an infinite grain ``MapDataset`` whose element ``i`` is a whole batch, a pure
function of ``(seed, i)``, so ``get_state`` / ``set_state`` resume exactly. In epoch ``e = i // per_epoch`` the
examples of each length group are shuffled with ``(seed, e)`` and cut into batches (a group's last batch is topped up
with its first examples), and the batches are shuffled; per-batch randomness (window jitter) uses ``(seed, i)``.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterator, Sequence

import grain
import numpy as np

from data_pipeline import binned_tokens as bt
from data_pipeline.buckets import next_pow2
from data_pipeline.count_augment import CountAugment
from data_pipeline.recording import Recording
from data_pipeline.tokenize import check_unit_index
from data_pipeline.windows import eval_trials, trial_num_chunks

TOKEN_ROUND = 256  # training spike axes are rounded up to this multiple
LABEL_ROUND = 8


@dataclasses.dataclass(frozen=True)
class BinnedSession:
    """A binned recording with its vocabulary mapping (``unit_index`` [u] row -> global unit, ``session_index``)."""

    recording: Recording
    unit_index: np.ndarray
    session_index: int

    @classmethod
    def build(cls, recording: Recording, vocab_map: tuple[np.ndarray, int]) -> BinnedSession:
        unit_index = check_unit_index(vocab_map[0], len(recording.unit_ids), recording.session_key)
        return cls(recording, unit_index, int(vocab_map[1]))


@dataclasses.dataclass(frozen=True)
class Example:
    """One trial: session position, window start (on the bin grid), chunk count and labels ([1] class or phonemes)."""

    session: int
    t0: float
    num_chunks: int
    labels: np.ndarray


@dataclasses.dataclass(frozen=True)
class HandwritingLayout:
    """Handwriting windows: ``window_chunks`` bins from ``before_go`` s before the go cue, the last ``pool_chunks``
    queried; training windows shift by up to ``jitter_chunks`` bins either way and, from epoch
    ``augment_from_epoch`` on, are perturbed by ``augment``."""

    bin_width: float
    before_go: float
    window_chunks: int
    pool_chunks: int
    jitter_chunks: int = 0
    augment: CountAugment = CountAugment()
    augment_from_epoch: int = 0


@dataclasses.dataclass(frozen=True)
class SpeechLayout:
    """Speech sentences: CTC ``stride`` in chunks, chunk axes padded to multiples of ``chunk_step``, and the width of
    the count target (``num_channels``, the model's count readout)."""

    bin_width: float
    stride: int
    chunk_step: int
    num_channels: int


def _trial_column(recording: Recording, split: str, column: str, fix: str) -> tuple[object, np.ndarray]:
    trials = eval_trials(recording, split)
    if column not in trials.columns:
        raise ValueError(
            f"{recording.session_key}: intervals['trials'] has no column {column!r} "
            f"(has {sorted(trials.columns)}); {fix}"
        )
    return trials, np.asarray(trials.columns[column])


def go_windows(
    recording: Recording, split: str, position: int, layout: HandwritingLayout, *, go_column: str, label_column: str
) -> list[Example]:
    """Handwriting examples of one session's ``split`` trials (module docstring)."""
    _, go = _trial_column(recording, split, go_column, "set go_column to the go-cue column of your trials")
    _, label = _trial_column(recording, split, label_column, "set label_column to the class column of your trials")
    w = layout.bin_width
    return [
        Example(position, bt.snap_to_grid(float(g) - layout.before_go, w), layout.window_chunks, np.array([int(y)]))
        for g, y in zip(go, label, strict=True)
    ]


def sentences(
    recording: Recording, split: str, position: int, bin_width: float, *, interval: str, column: str
) -> list[Example]:
    """Speech examples of one session's ``split`` trials: whole trials with their phoneme sequences."""
    phonemes = recording.intervals.get(interval)
    if phonemes is None or column not in phonemes.columns:
        raise ValueError(
            f"{recording.session_key}: needs intervals[{interval!r}] with a {column!r} column (one interval per "
            f"spoken phoneme); set phoneme_interval / phoneme_column to your recording's names"
        )
    trials = eval_trials(recording, split)
    starts, ids = np.asarray(phonemes.start, np.float64), np.asarray(phonemes.columns[column], np.int64)
    out = []
    for a, b in zip(trials.start, trials.end, strict=True):
        t0 = bt.snap_to_grid(float(a), bin_width)
        inside = (starts >= a) & (starts < b)
        out.append(Example(position, t0, trial_num_chunks(float(b) - t0, bin_width), ids[inside]))
    return out


def _row_counts(session: BinnedSession, t0: float, num_chunks: int, bin_width: float):
    return bt.window_counts(session.recording, t0, num_chunks, bin_width)


def handwriting_row(
    session: BinnedSession, ex: Example, layout: HandwritingLayout, shift: int = 0,
    rng: np.random.Generator | None = None,
) -> dict:  # fmt: skip
    """One handwriting example as unpadded arrays (window moved by ``shift`` bins; augmented when ``rng`` is given)."""
    c, p, w = layout.window_chunks, layout.pool_chunks, layout.bin_width
    chunk, row, count = _row_counts(session, ex.t0 + shift * w, c, w)
    tokens = bt.tokens(chunk, row, count, session.unit_index, w)
    if rng is not None and layout.augment.active:
        keep, value = layout.augment.apply(row, tokens["spike_value"], len(session.recording.unit_ids), rng)
        tokens = {k: v[keep] for k, v in (tokens | {"spike_value": value}).items()}
    return {
        **tokens,
        "chunk_mask": np.ones(c, bool),
        "session": np.int32(session.session_index),
        "query_chunk": np.arange(c - p, c, dtype=np.int32),
        "query_time": np.full(p, bt.query_offset(w), np.float32),
        "query_task": np.zeros(p, np.int32),
        "query_mask": np.ones(p, bool),
        "weight": np.ones(p, np.float32),
        "label": np.int32(ex.labels[0]),
    }


def speech_row(session: BinnedSession, ex: Example, layout: SpeechLayout, padded_chunks: int) -> dict:
    """One sentence as unpadded arrays, its queries laid out for ``padded_chunks`` chunks (module docstring)."""
    c, w, s = ex.num_chunks, layout.bin_width, layout.stride
    chunk, row, count = _row_counts(session, ex.t0, c, w)
    units = len(session.recording.unit_ids)
    if units > layout.num_channels:
        raise ValueError(
            f"{session.recording.session_key}: {units} channels but the count readout has num_channels="
            f"{layout.num_channels}; set num_channels >= {units}"
        )
    counts = np.zeros((padded_chunks + 1, layout.num_channels), np.float32)
    counts[:c, :units] = bt.dense_counts(chunk, row, count, c, units)
    t = padded_chunks // s
    ctc_chunk = np.arange(t, dtype=np.int32) * s + s - 1
    query_chunk = np.concatenate([ctc_chunk, np.arange(padded_chunks, dtype=np.int32)])
    return {
        **bt.tokens(chunk, row, count, session.unit_index, w),
        "chunk_mask": np.arange(padded_chunks) < c,
        "session": np.int32(session.session_index),
        "query_chunk": query_chunk,
        "query_time": np.full(len(query_chunk), bt.query_offset(w), np.float32),
        "query_task": np.concatenate([np.zeros(t, np.int32), np.ones(padded_chunks, np.int32)]),
        "query_mask": np.concatenate([ctc_chunk < c, np.arange(padded_chunks) < c]),
        "weight": np.concatenate([np.zeros(t, np.float32), (np.arange(1, padded_chunks + 1) < c).astype(np.float32)]),
        "counts_target": np.concatenate([np.zeros((t, layout.num_channels), np.float32), counts[1:]]),
        "ctc_mask": ctc_chunk < c,
        "labels": ex.labels.astype(np.int32),
        "label_mask": np.ones(len(ex.labels), bool),
    }


_AXES = {k: "s" for k in bt.TOKEN_KEYS} | {"chunk_mask": "c", "session": ""}
_AXES |= {k: "q" for k in ("query_chunk", "query_time", "query_task", "query_mask", "weight")}
HANDWRITING_AXES = _AXES | {"label": ""}
SPEECH_AXES = _AXES | {"counts_target": "q", "ctc_mask": "t", "labels": "l", "label_mask": "l"}


def handwriting_batch(sessions, examples, layout: HandwritingLayout, sizes: dict, shifts=None, rng=None) -> dict:
    """A padded handwriting batch (``sizes``: ``b``, ``s``; ``c``/``q`` follow the layout; ``rng`` augments)."""
    shifts = np.zeros(len(examples), int) if shifts is None else shifts
    pairs = zip(examples, shifts, strict=True)
    rows = [handwriting_row(sessions[e.session], e, layout, int(k), rng) for e, k in pairs]
    return bt.pad_rows(rows, {**sizes, "c": layout.window_chunks, "q": layout.pool_chunks}, HANDWRITING_AXES)


def speech_batch(sessions, examples, layout: SpeechLayout, sizes: dict) -> dict:
    """A padded speech batch (``sizes``: ``b``, ``s``, ``c``, ``l``; ``q`` and ``t`` follow from ``c``)."""
    c = sizes["c"]
    rows = [speech_row(sessions[e.session], e, layout, c) for e in examples]
    full = {**sizes, "q": c + c // layout.stride, "t": c // layout.stride}
    return bt.pad_rows(rows, full, SPEECH_AXES)


def num_tokens(session: BinnedSession, t0: float, num_chunks: int, bin_width: float) -> int:
    """Tokens of a window (non-zero (bin, channel) counts)."""
    return len(_row_counts(session, t0, num_chunks, bin_width)[0])


class EpochBatches(grain.MapDataset):
    """Infinite training batches in shuffled epochs (module docstring).

    Args:
        groups: example ids per length group (every batch comes from one group, so it pads to that group's sizes).
        batch_size: examples per batch.
        seed: data seed.
        make_batch: ``(group, example ids, rng, epoch) -> batch``.
    """

    def __init__(
        self,
        groups: Sequence[np.ndarray],
        batch_size: int,
        seed: int,
        make_batch: Callable[[int, np.ndarray, np.random.Generator, int], dict],
    ):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
        self.groups = [np.asarray(g, np.int64) for g in groups if len(g)]
        if not self.groups:
            raise ValueError("EpochBatches: no training examples; check the train split of the recordings")
        self.batch_size, self.seed, self.make_batch = batch_size, int(seed), make_batch
        self.per_epoch = sum(-(-len(g) // batch_size) for g in self.groups)
        self._plan: tuple[int, list[tuple[int, np.ndarray]]] = (-1, [])

    def __len__(self) -> int:
        return sys.maxsize

    def __str__(self) -> str:
        return f"EpochBatches(groups={len(self.groups)}, per_epoch={self.per_epoch})"

    def plan(self, epoch: int) -> list[tuple[int, np.ndarray]]:
        """``(group, example ids)`` of every batch of ``epoch`` (the last epoch is cached)."""
        if self._plan[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            batches = []
            for g, ids in enumerate(self.groups):
                order = ids[rng.permutation(len(ids))]
                n = -(-len(order) // self.batch_size) * self.batch_size
                order = np.resize(order, n)  # tops the last batch up with the group's first examples
                batches += [(g, order[k : k + self.batch_size]) for k in range(0, n, self.batch_size)]
            self._plan = (epoch, [batches[k] for k in rng.permutation(len(batches))])
        return self._plan[1]

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        epoch, k = divmod(int(index), self.per_epoch)
        group, ids = self.plan(epoch)[k]
        return self.make_batch(group, ids, np.random.default_rng([self.seed, int(index), 1]), epoch)


def handwriting_train_dataset(
    sessions: Sequence[BinnedSession],
    examples: Sequence[Example],
    layout: HandwritingLayout,
    batch_size: int,
    seed: int,
) -> EpochBatches:
    """Training batches of go-aligned windows, each shifted by a random ``[-jitter, jitter]`` bins and, from epoch
    ``layout.augment_from_epoch`` on, augmented by ``layout.augment``.

    The spike axis is fixed for the run: the most tokens any jittered window of the examples can hold.
    """
    w, j = layout.bin_width, layout.jitter_chunks
    most = max(num_tokens(sessions[e.session], e.t0 - j * w, e.num_chunks + 2 * j, w) for e in examples)
    sizes = {"b": batch_size, "s": bt.round_up(most, TOKEN_ROUND)}

    def make(_: int, ids: np.ndarray, rng: np.random.Generator, epoch: int) -> dict:
        shifts = rng.integers(-j, j + 1, len(ids))
        augment = rng if epoch >= layout.augment_from_epoch else None
        return handwriting_batch(sessions, [examples[i] for i in ids], layout, sizes, shifts, augment)

    return EpochBatches([np.arange(len(examples))], batch_size, seed, make)


def speech_train_dataset(
    sessions: Sequence[BinnedSession], examples: Sequence[Example], layout: SpeechLayout, batch_size: int, seed: int
) -> EpochBatches:
    """Training batches of whole sentences grouped by padded length (one compilation per group)."""
    padded = np.array([bt.round_up(e.num_chunks, layout.chunk_step) for e in examples])
    lengths = sorted(set(padded.tolist()))
    w = layout.bin_width
    tokens = np.array([num_tokens(sessions[e.session], e.t0, e.num_chunks, w) for e in examples])
    labels = bt.round_up(max(len(e.labels) for e in examples), LABEL_ROUND)
    sizes = [
        {"b": batch_size, "c": c, "l": labels, "s": bt.round_up(tokens[padded == c].max(), TOKEN_ROUND)}
        for c in lengths
    ]

    def make(group: int, ids: np.ndarray, *_) -> dict:
        return speech_batch(sessions, [examples[i] for i in ids], layout, sizes[group])

    return EpochBatches([np.flatnonzero(padded == c) for c in lengths], batch_size, seed, make)


def eval_batches(
    sessions: Sequence[BinnedSession],
    examples: Sequence[Example],
    layout: HandwritingLayout | SpeechLayout,
    batch_size: int,
) -> Iterator[tuple[dict, list[int]]]:
    """Evaluation batches in example order: ``(batch, example ids)``; spike axes padded to powers of two."""
    w = layout.bin_width
    for first in range(0, len(examples), batch_size):
        ids = list(range(first, min(first + batch_size, len(examples))))
        chosen = [examples[i] for i in ids]
        most = max(num_tokens(sessions[e.session], e.t0, e.num_chunks, w) for e in chosen)
        sizes = {"b": batch_size, "s": next_pow2(most, 64)}
        if isinstance(layout, HandwritingLayout):
            yield handwriting_batch(sessions, chosen, layout, sizes), ids
        else:
            sizes |= {
                "c": bt.round_up(max(e.num_chunks for e in chosen), layout.chunk_step),
                "l": bt.round_up(max(len(e.labels) for e in chosen), LABEL_ROUND),
            }
            yield speech_batch(sessions, chosen, layout, sizes), ids
