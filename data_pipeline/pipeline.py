"""grain pipelines: mixed multi-session training batches and whole-trial evaluation batches (docs/training.md).

Training::

    one MapDataset per session     index i -> (session, window start, random key), deterministic in (seed, i)
      -> select_from_datasets      weights ∝ train duration (ProportionalInterleave: O(1) per element)
      -> [shard_index::shard_count] per-host slice
      -> batch(batch_fn=WindowBatcher)  vectorised slice + tokenize + batch of the whole batch
      -> to_iter_dataset -> mp_prefetch (optional worker processes)

Elements before batching are tiny window descriptors, so tokenization runs once per batch, vectorised (see
:mod:`data_pipeline.batcher`). Every element is a pure function of its index, so the iterator's state is just a
position: ``get_state()`` / ``set_state()`` resume with the identical next batch, with or without workers.

Per-session datasets are infinite: index ``i`` of a session belongs to epoch ``i // windows_per_epoch``, whose
window starts are drawn afresh from ``(seed, session, epoch)`` (:func:`data_pipeline.windows.epoch_window_starts`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence

import grain
import numpy as np

from data_pipeline import buckets
from data_pipeline.batcher import PreparedSession, WindowBatcher
from data_pipeline.recording import Intervals, Recording
from data_pipeline.tokenize import QueryTable, TokenizerConfig, check_unit_index, collate, tokenize_window
from data_pipeline.unit_dropout import UnitDropoutConfig, splitmix64
from data_pipeline.windows import epoch_window_starts, eval_trials, trial_num_chunks, windows_per_epoch

VocabMap = tuple[np.ndarray, int]
"""A session's vocabulary mapping: (unit_index [u] int32 row -> global unit >= 1, session_index)."""


class SessionWindows(grain.MapDataset):
    """One session's training windows as an infinite grain ``MapDataset``.

    Element ``i`` is ``(position, t0, key)``: the session's position in the batcher's list, the window start and a
    64-bit key for the window's own randomness (unit dropout). All three depend only on ``(seed, i)``.

    Args:
        position: the session's position in the list given to :class:`WindowBatcher`.
        session_index: the session's vocabulary index (seeds its stream, so it does not depend on list order).
        train: the intervals windows are drawn from.
        window: window length in seconds.
        seed: the run's data seed.
    """

    def __init__(self, position: int, session_index: int, train: Intervals, window: float, seed: int):
        super().__init__()
        self.position = position
        self.train = train
        self.window = window
        self.per_epoch = windows_per_epoch(train, window)
        self._seed = (int(seed), int(session_index))
        self._key = splitmix64(splitmix64(int(seed) & 0xFFFFFFFFFFFFFFFF) ^ int(session_index))
        self._epoch = (-1, np.empty(0))

    def __len__(self) -> int:
        return sys.maxsize

    def __str__(self) -> str:
        return f"SessionWindows(position={self.position}, per_epoch={self.per_epoch})"

    def starts(self, epoch: int) -> np.ndarray:
        """The shuffled window starts of ``epoch`` (the last epoch is cached)."""
        if self._epoch[0] != epoch:
            rng = np.random.default_rng([*self._seed, epoch])
            self._epoch = (epoch, epoch_window_starts(self.train, self.window, rng))
        return self._epoch[1]

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        epoch, k = divmod(int(index), self.per_epoch)
        return self.position, float(self.starts(epoch)[k]), splitmix64(self._key ^ int(index))


class ProportionalInterleave(grain.transforms.DatasetSelectionMap):
    """Mixes infinite datasets in fixed proportions with an O(1) lookup per element.

    grain's ``MapDataset.mix`` walks every component for each element, which costs several microseconds per window
    with ~100 sessions. Here one *period* of ``P`` elements is tabulated once: component ``i`` owns ``p_i`` of its
    slots (``p_i ∝ weight_i``, ``P <= resolution``), spread evenly by placing its ``j``-th slot at
    ``(j + 1/2) / p_i`` of the period. Element ``k`` is slot ``k mod P`` of period ``k // P``, and every component
    is read in order 0, 1, 2, ... with nothing skipped or repeated.

    Args:
        weights: one positive weight per component.
        resolution: the largest period; proportions are exact to about ``1 / resolution``.
    """

    def __init__(self, weights: Sequence[float], resolution: int = 100_000):
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 1 or len(w) == 0 or np.any(~(w > 0)):
            raise ValueError(f"mix_weights: need one positive weight per session, got {list(weights)}")
        self.per_period = np.maximum(1, np.round(w / w.sum() * resolution)).astype(np.int64)
        component = np.repeat(np.arange(len(w)), self.per_period)
        slot = np.concatenate([np.arange(p) for p in self.per_period])
        order = np.argsort((slot + 0.5) / self.per_period[component], kind="stable")
        self._component = component[order]
        self._slot = slot[order]

    def __len__(self) -> int:
        return sys.maxsize

    def __getitem__(self, index: int) -> tuple[int, int]:
        period, r = divmod(int(index), len(self._component))
        i = int(self._component[r])
        return i, period * int(self.per_period[i]) + int(self._slot[r])


class _BatchFn:
    """grain ``batch_fn``: window descriptors -> a tokenized batch."""

    def __init__(self, batcher: WindowBatcher):
        self.batcher = batcher

    def __call__(self, elements: Sequence[tuple[int, float, int]]) -> dict[str, np.ndarray]:
        position, t0, key = zip(*elements, strict=True)
        return self.batcher(np.array(position), np.array(t0), np.array(key, dtype=np.uint64))


def prepare_sessions(
    recordings: Sequence[Recording], vocab_maps: Sequence[VocabMap], cfg: TokenizerConfig
) -> list[PreparedSession]:
    """Loads each recording's spikes and queries into memory for training."""
    if len(recordings) != len(vocab_maps):
        raise ValueError(f"vocab_maps: got {len(vocab_maps)} for {len(recordings)} recordings; pass one per recording")
    return [
        PreparedSession.from_recording(rec, unit_index, session_index, cfg)
        for rec, (unit_index, session_index) in zip(recordings, vocab_maps, strict=True)
    ]


def make_train_dataset(
    sessions: Sequence[PreparedSession],
    cfg: TokenizerConfig,
    batch_size: int,
    seed: int,
    *,
    shard_index: int = 0,
    shard_count: int = 1,
    unit_dropout: UnitDropoutConfig | None = UnitDropoutConfig(),
    sizes: buckets.BatchSizes | None = None,
    mix_weights: Sequence[float] | None = None,
) -> tuple[grain.MapDataset, WindowBatcher]:
    """The batched training ``MapDataset`` (infinite) and the batcher that fixes its shapes.

    Args:
        sessions: prepared sessions (:func:`prepare_sessions`).
        cfg: tokenizer configuration.
        batch_size: windows per batch on this host.
        seed: data seed; the same seed gives the same batches.
        shard_index, shard_count: this host's slice (``jax.process_index()``, ``jax.process_count()``).
        unit_dropout: unit dropout distribution, None to disable.
        sizes: fixed ``(s, q, c)``; None sizes them from the data so no window overflows.
        mix_weights: sampling weight per session; None weighs sessions by train duration.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index: need 0 <= shard_index < shard_count={shard_count}, got {shard_index}")
    per_session = [SessionWindows(i, s.session_index, s.train, cfg.window, seed) for i, s in enumerate(sessions)]
    weights = [s.train.total_duration() for s in sessions] if mix_weights is None else list(mix_weights)
    if len(weights) != len(sessions):
        raise ValueError(f"mix_weights: need one weight per session ({len(sessions)}), got {len(weights)}")
    mixed = grain.MapDataset.select_from_datasets(per_session, ProportionalInterleave(weights))
    batcher = WindowBatcher(sessions, cfg, sizes=sizes, unit_dropout=unit_dropout)
    dataset = mixed[shard_index::shard_count].batch(batch_size, drop_remainder=True, batch_fn=_BatchFn(batcher))
    return dataset, batcher


def make_train_iterator(
    recordings: Sequence[Recording],
    vocab_maps: Sequence[VocabMap],
    cfg: TokenizerConfig,
    batch_size: int,
    seed: int,
    *,
    num_workers: int = 0,
    prefetch: int = 2,
    shard_index: int = 0,
    shard_count: int = 1,
    unit_dropout: UnitDropoutConfig | None = UnitDropoutConfig(),
    sizes: buckets.BatchSizes | None = None,
    mix_weights: Sequence[float] | None = None,
) -> grain.DatasetIterator:
    """An endless, checkpointable iterator of fixed-shape training batches.

    Save ``it.get_state()`` with the model checkpoint and call ``it.set_state(state)`` on a fresh iterator built
    with the same arguments to resume with the identical next batch. Close iterators with workers
    (``it.close()``) when done.

    Args:
        recordings: the training sessions (in-memory or lazy store recordings).
        vocab_maps: per recording, ``(unit_index, session_index)`` from the unit and session vocabularies.
        cfg: tokenizer configuration.
        batch_size: windows per batch on this host.
        seed: data seed.
        num_workers: worker processes for ``mp_prefetch`` (0: tokenize in this process).
        prefetch: batches computed ahead by a background thread per process (0: none).
        shard_index, shard_count: this host's slice of the stream for multi-host training.
        unit_dropout, sizes, mix_weights: see :func:`make_train_dataset`.
    """
    sessions = prepare_sessions(recordings, vocab_maps, cfg)
    dataset, _ = make_train_dataset(
        sessions,
        cfg,
        batch_size,
        seed,
        shard_index=shard_index,
        shard_count=shard_count,
        unit_dropout=unit_dropout,
        sizes=sizes,
        mix_weights=mix_weights,
    )
    read = grain.ReadOptions(num_threads=1 if prefetch else 0, prefetch_buffer_size=prefetch)
    it_dataset = dataset.to_iter_dataset(read)
    if num_workers:
        it_dataset = it_dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
    return iter(it_dataset)


def iterate_eval_trials(
    recording: Recording,
    vocab_map: VocabMap,
    cfg: TokenizerConfig,
    split: str = "valid",
    batch_size: int = 8,
) -> Iterator[tuple[dict[str, np.ndarray], Intervals]]:
    """Whole evaluation trials of one session, batched in time order (never cut to 1 s; docs/training.md).

    Each trial ``[start, end)`` becomes one window starting at ``start`` with ``ceil((end - start) / bin_width)``
    chunks, so every spike and every behaviour sample of the trial is kept (the last chunk may run up to one bin
    past ``end``). Chunk, spike and query axes are padded to buckets; padded chunks sit at the end with
    ``chunk_mask`` False, so a recurrent state starting at zero at the trial start is unaffected by them.

    Args:
        recording: the session (in-memory or lazy; spikes are read per trial).
        vocab_map: ``(unit_index, session_index)``.
        cfg: tokenizer configuration.
        split: ``"valid"`` or ``"test"``.
        batch_size: trials per batch.

    Yields:
        ``(batch, trials)``: the batch and the :class:`Intervals` of its trials (absolute query time of row ``i`` is
        ``trials.start[i] + query_chunk * bin_width + query_time``).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
    unit_index, session_index = vocab_map
    unit_index = check_unit_index(unit_index, len(recording.unit_ids), recording.session_key)
    trials = eval_trials(recording, split)
    queries = QueryTable.from_recording(recording, cfg)
    for first in range(0, len(trials), batch_size):
        rows = slice(first, first + batch_size)
        starts, ends = trials.start[rows], trials.end[rows]
        windows = [
            tokenize_window(
                recording,
                float(a),
                trial_num_chunks(float(b) - float(a), cfg.bin_width),
                unit_index,
                session_index,
                cfg,
                queries=queries,
            )
            for a, b in zip(starts, ends, strict=True)
        ]
        columns = {k: v[rows] for k, v in trials.columns.items()}
        yield collate(windows), Intervals(starts, ends, columns)
