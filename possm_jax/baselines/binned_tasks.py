"""Binned baselines for the human-BCI tasks: character classification (handwriting) and CTC phonemes (speech).

Both reuse :class:`~possm_jax.baselines.binned_rnn.BinnedRNN` (GRU / S4D / Mamba on binned counts, causal: the output
at bin k has read bins 0..k only) and :func:`~possm_jax.baselines.train_simple.fit`, with a different loss:

* Handwriting: each trial is its go-aligned cube cropped to bins 21:181 (the PCA-KNN baseline's input, see
  :mod:`possm_jax.baselines.pca_knn`); the ``character`` readout (31 logits) is trained with cross-entropy at the
  cube's last bin (``multitask_loss`` with kind ``ce``, label in ``target[..., 0]``), and a trial's prediction is the
  argmax there.
* Speech: each trial is a whole sentence of 20 ms counts from its start (zero state), its target the phonemes inside
  it; the ``phoneme`` readout (41 logits, 0 the blank) is trained with :func:`~possm_jax.train.loss.ctc_loss` and
  decoded greedily (:func:`~possm_jax.eval.metrics.ctc_greedy_decode`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Mapping

import jax
import numpy as np
from flax import nnx

from data_pipeline import binning
from data_pipeline.recording import Recording
from possm_jax.baselines.binned_rnn import BinnedRNN, trials_in
from possm_jax.baselines.pca_knn import CROP, go_aligned_cubes
from possm_jax.eval.metrics import accuracy, ctc_greedy_decode, phoneme_error_rate
from possm_jax.train.loss import ctc_loss, multitask_loss
from possm_jax.types import Array

CHARACTER_TASK = "character"
PHONEME_TASK = "phoneme"
character_loss = functools.partial(multitask_loss, task_names=(CHARACTER_TASK,), kinds={CHARACTER_TASK: "ce"})
"""Cross-entropy of the ``character`` readout where ``weight`` > 0 (the last bin of each cube)."""


def character_cubes(recording: Recording, split: str, merge: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(counts [n, 160 / merge, u] float32: go-aligned cubes cropped to bins 21:181, ``merge`` consecutive bins
    summed, labels [n] int) of a split's trials."""
    trials = trials_in(recording, split)
    cubes = go_aligned_cubes(recording, trials)[:, CROP]
    n, t, u = cubes.shape
    if t % merge:
        raise ValueError(f"merge={merge}: must divide the {t} bins of a cropped cube")
    return cubes.reshape(n, t // merge, merge, u).sum(2), trials.columns["label"].astype(np.int64)


def character_batches(
    cubes: np.ndarray, labels: np.ndarray, batch_size: int, seed: int, scored_bins: int = 1
) -> Iterator[dict]:
    """Endless batches of random trials: ``counts`` [b, t, u], ``query_task`` [b, t] (0), ``target`` [b, t, 1]
    (the label at every bin) and ``weight`` [b, t] (1 on the last ``scored_bins`` bins)."""
    rng = np.random.default_rng(seed)
    t = cubes.shape[1]
    weight = np.zeros((batch_size, t), np.float32)
    weight[:, t - scored_bins :] = 1.0
    while True:
        pick = rng.integers(len(cubes), size=batch_size)
        yield {
            "counts": cubes[pick],
            "query_task": np.zeros((batch_size, t), np.int32),
            "target": np.broadcast_to(labels[pick, None, None], (batch_size, t, 1)).astype(np.float32),
            "weight": weight,
        }


def _forward(model: BinnedRNN, task: str):
    graphdef, params = nnx.split(model)
    return jax.jit(lambda counts: nnx.merge(graphdef, params)({"counts": counts})[0][task])


def character_accuracy(model: BinnedRNN, cubes: np.ndarray, labels: np.ndarray, batch_size: int = 128) -> float:
    """Fraction of trials whose last-bin argmax is their label."""
    forward = _forward(model, CHARACTER_TASK)
    pred = np.concatenate(
        [np.asarray(forward(cubes[i : i + batch_size]))[:, -1].argmax(-1) for i in range(0, len(cubes), batch_size)]
    )
    return accuracy(pred, labels)


@dataclasses.dataclass
class Sentences:
    """Whole trials of a speech session, zero-padded to one length.

    Attributes:
        counts: [n, t, u] float32 counts from each trial's start.
        mask: [n, t] True for real bins.
        labels: [n, l] int32 phoneme ids (1–40), zero-padded.
        label_mask: [n, l] True for real labels.
    """

    counts: np.ndarray
    mask: np.ndarray
    labels: np.ndarray
    label_mask: np.ndarray

    def targets(self) -> list[list[int]]:
        """Each sentence's phoneme sequence."""
        return [row[m].tolist() for row, m in zip(self.labels, self.label_mask, strict=True)]


def speech_sentences(recording: Recording, split: str, bin_width: float = 0.02, pad_to: int = 64) -> Sentences:
    """The split's trials binned at ``bin_width`` with their phoneme sequences (``intervals["phonemes"]`` starting
    inside the trial), padded to a multiple of ``pad_to`` bins so train and test shapes compile a few times only."""
    trials = trials_in(recording, split)
    segments = binning.bin_recording(recording, trials, bin_width, "phoneme", "id")
    phonemes = recording.intervals["phonemes"]
    seqs = [
        phonemes.columns["phoneme"][(phonemes.start >= t0) & (phonemes.start < t1)]
        for t0, t1 in zip(trials.start, trials.end, strict=True)
    ]
    t = -(-max(len(s.times) for s in segments) // pad_to) * pad_to
    n, u, longest = len(segments), segments[0].counts.shape[1], max(len(q) for q in seqs)
    out = Sentences(
        np.zeros((n, t, u), np.float32),
        np.zeros((n, t), bool),
        np.zeros((n, longest), np.int32),
        np.zeros((n, longest), bool),
    )
    for i, (seg, seq) in enumerate(zip(segments, seqs, strict=True)):
        out.counts[i, : len(seg.times)], out.mask[i, : len(seg.times)] = seg.counts, True
        out.labels[i, : len(seq)], out.label_mask[i, : len(seq)] = seq, True
    return out


def sentence_batches(sentences: Sentences, batch_size: int, seed: int) -> Iterator[dict[str, np.ndarray]]:
    """Endless batches of random whole sentences: ``counts``, ``frame_mask``, ``labels``, ``label_mask``."""
    rng = np.random.default_rng(seed)
    while True:
        pick = rng.integers(len(sentences.counts), size=batch_size)
        yield {
            "counts": sentences.counts[pick],
            "frame_mask": sentences.mask[pick],
            "labels": sentences.labels[pick],
            "label_mask": sentences.label_mask[pick],
        }


def phoneme_ctc_loss(preds: Mapping[str, Array], batch: Mapping[str, Array]) -> tuple[Array, dict[str, Array]]:
    """CTC loss of the ``phoneme`` readout against the batch's label sequences (a ``fit`` loss hook)."""
    loss = ctc_loss(preds[PHONEME_TASK], batch["frame_mask"], batch["labels"], batch["label_mask"])
    return loss, {f"loss/{PHONEME_TASK}": loss}


def sentence_per(model: BinnedRNN, sentences: Sentences, batch_size: int = 32) -> float:
    """Phoneme error rate of greedy CTC decoding over the sentences (each decoded causally from its start)."""
    forward = _forward(model, PHONEME_TASK)
    hyps = []
    for i in range(0, len(sentences.counts), batch_size):
        logits = np.asarray(forward(sentences.counts[i : i + batch_size]))
        hyps += [ctc_greedy_decode(row, m) for row, m in zip(logits, sentences.mask[i : i + batch_size], strict=True)]
    return phoneme_error_rate(sentences.targets(), hyps)
