"""Attempted-handwriting character classification (Willett et al. 2021; POSSM-GRU 95.8 %, GRU 93.6 % in the paper).

Inputs: binned threshold crossings (10 ms bins, 192 channels), one token per non-zero (bin, channel) count
(:mod:`data_pipeline.binned_tokens`); chunks are bins, ``HandwritingConfig.bin_width`` sets both.

Examples are fixed windows of ``window`` seconds starting ``before_go`` seconds before each trial's go cue
(training windows shift by up to ``jitter`` seconds). The character's logits are read by ``pool`` seconds of
queries at the end of the window, one per bin end (:mod:`data_pipeline.trial_batches`):

* training: cross-entropy of every pooled query against the trial's class, averaged over queries. Pooling gives
  several readouts of one trial a gradient (the backbone state has seen the whole character by then; a single end
  query learns the same thing with fewer signals);
* evaluation: the class scores of a trial are the mean log-softmax over its pooled queries (the product of the
  per-query probabilities), argmax for accuracy, ranked for top-3;
* streaming: the same readout answers a query at the end of every chunk, so a real-time decoder emits class logits
  per chunk (:func:`possm_jax.tasks.common.stream_chunk_logits`).

API for a launcher: :func:`model_config`, :func:`train_dataset` (+ :func:`possm_jax.tasks.common.make_iterator`),
:func:`loss_fn` (``make_train_step(graphdef, tx, functools.partial(loss_fn, cfg=cfg))``), :func:`evaluate`,
:func:`write_report`. See ``docs/tasks.md``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from data_pipeline.count_augment import CountAugment
from data_pipeline.recording import Recording
from data_pipeline.synth.handwriting import CHARACTERS
from data_pipeline.trial_batches import (
    EpochBatches,
    HandwritingLayout,
    eval_batches,
    go_windows,
    handwriting_train_dataset,
)
from possm_jax.config import POSSMConfig
from possm_jax.eval import metrics
from possm_jax.eval.task_plots import plot_confusion
from possm_jax.possm import POSSM
from possm_jax.tasks import common
from possm_jax.train.loss import weighted_cross_entropy
from possm_jax.types import Array

TASK = "handwriting_character"


@dataclasses.dataclass(frozen=True)
class HandwritingConfig:
    """The handwriting task.

    Attributes:
        bin_width: bin and chunk length in seconds (the only chunk-length setting: model, data and evaluation read it).
        num_classes: characters (the readout width; labels must lie in ``[0, num_classes)``).
        before_go: seconds of the window before the go cue.
        window: window length in seconds (a multiple of ``bin_width``).
        pool: seconds at the end of the window whose queries read the class (a multiple of ``bin_width``).
        jitter: training windows shift by a random whole number of bins in ``[-jitter, jitter]`` seconds.
        channel_dropout: training windows drop each channel with a probability drawn from ``U[0, channel_dropout]``.
        channel_gain: training windows scale each channel's values by ``exp(channel_gain · N(0, 1))``.
        token_noise: training windows scale each token's value by ``exp(token_noise · N(0, 1))``
            (the three augmentations: :mod:`data_pipeline.count_augment`).
        augment_from_epoch: training epochs (passes over the training trials) before the augmentation starts; the
            model first leaves the chance plateau on clean windows (``docs/tasks.md``).
        num_latents: M latents per chunk.
        depth: in-chunk self-attention layers over the latents (>= 1).
        go_column: column of ``intervals["trials"]`` holding the go-cue time.
        label_column: column of ``intervals["trials"]`` holding the class.
    """

    bin_width: float = 0.01
    num_classes: int = len(CHARACTERS)
    before_go: float = 0.1
    window: float = 1.5
    pool: float = 0.3
    jitter: float = 0.05
    channel_dropout: float = 0.0
    channel_gain: float = 0.0
    token_noise: float = 0.0
    augment_from_epoch: int = 0
    num_latents: int = 4
    depth: int = 1
    go_column: str = "go_cue_time"
    label_column: str = "label"

    def __post_init__(self):
        checks = [
            (self.bin_width > 0, "bin_width", "must be > 0 seconds"),
            (self.num_classes >= 2, "num_classes", "must be >= 2"),
            (_whole(self.window, self.bin_width) >= 1, "window", "must be a positive multiple of bin_width"),
            (
                1 <= _whole(self.pool, self.bin_width) <= _whole(self.window, self.bin_width),
                "pool",
                "must be a positive multiple of bin_width no longer than window",
            ),  # fmt: skip
            (self.jitter >= 0, "jitter", "must be >= 0 seconds"),
            (self.augment_from_epoch >= 0, "augment_from_epoch", "must be >= 0 epochs"),
        ]
        for ok, field, problem in checks:
            if not ok:
                raise ValueError(f"HandwritingConfig.{field}={getattr(self, field)!r}: {problem}.")
        try:
            CountAugment(self.channel_dropout, self.channel_gain, self.token_noise)
        except ValueError as e:
            raise ValueError(f"HandwritingConfig.{e}") from None

    @property
    def layout(self) -> HandwritingLayout:
        """The data layout these settings give."""
        w = self.bin_width
        augment = CountAugment(self.channel_dropout, self.channel_gain, self.token_noise)
        chunks = _whole(self.window, w), _whole(self.pool, w), int(round(self.jitter / w))
        return HandwritingLayout(w, self.before_go, *chunks, augment, self.augment_from_epoch)


def _whole(seconds: float, bin_width: float) -> int:
    """``seconds / bin_width`` if it is a whole number (to 1e-6), else -1."""
    ratio = seconds / bin_width
    return int(round(ratio)) if abs(ratio - round(ratio)) < 1e-6 and ratio > 0 else -1


def model_config(cfg: HandwritingConfig, base: POSSMConfig | None = None) -> POSSMConfig:
    """``base`` (default ``possm_small`` with the count read-in) with binned inputs, ``cfg.bin_width`` chunks and the
    class readout."""
    return common.binned_model_config(
        base, bin_width=cfg.bin_width, tasks={TASK: cfg.num_classes}, num_latents=cfg.num_latents, depth=cfg.depth
    )


def examples(cfg: HandwritingConfig, recordings: Sequence[Recording], split: str) -> list:
    """Go-aligned windows of every ``split`` trial of ``recordings`` (session positions follow the list)."""
    out = []
    for i, rec in enumerate(recordings):
        out += go_windows(rec, split, i, cfg.layout, go_column=cfg.go_column, label_column=cfg.label_column)
    labels = np.array([int(e.labels[0]) for e in out])
    if len(labels) and (labels.min() < 0 or labels.max() >= cfg.num_classes):
        raise ValueError(
            f"HandwritingConfig.num_classes={cfg.num_classes}: the {split} trials have labels up to {labels.max()}; "
            f"set num_classes to at least {labels.max() + 1}"
        )
    return out


def train_dataset(
    cfg: HandwritingConfig,
    recordings: Sequence[Recording],
    vocab_maps: Sequence[tuple[np.ndarray, int]],
    batch_size: int,
    seed: int,
) -> EpochBatches:
    """Infinite, deterministic training batches (a grain ``MapDataset``; iterate with ``common.make_iterator``)."""
    sessions = common.binned_sessions(recordings, vocab_maps)
    return handwriting_train_dataset(sessions, examples(cfg, recordings, "train"), cfg.layout, batch_size, seed)


def loss_fn(preds: Mapping[str, Array], batch: Mapping[str, Array]) -> tuple[Array, dict[str, Array]]:
    """Cross-entropy of the pooled queries against ``label`` (module docstring); metrics: loss and accuracy."""
    logits = preds[TASK]
    labels = jnp.broadcast_to(batch["label"][:, None], logits.shape[:2])
    loss = weighted_cross_entropy(logits, labels, batch["weight"])
    scores = class_scores(logits, batch["weight"])
    real = jnp.any(batch["weight"] > 0, axis=1)
    correct = (jnp.argmax(scores, -1) == batch["label"]) & real
    accuracy = jnp.sum(correct) / jnp.maximum(jnp.sum(real), 1)
    return loss, {f"loss/{TASK}": loss, "accuracy": accuracy}


def class_scores(logits: Array, weight: Array) -> Array:
    """Per-trial class scores [b, k]: the weighted mean over queries of the log-softmax of ``logits`` [b, q, k]."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    w = weight.astype(jnp.float32)[..., None]
    return jnp.sum(w * logp, axis=1) / jnp.maximum(jnp.sum(w, axis=1), 1e-9)


def evaluate(
    model: POSSM,
    cfg: HandwritingConfig,
    recordings: Sequence[Recording],
    vocab_maps: Sequence[tuple[np.ndarray, int]],
    split: str = "valid",
    batch_size: int = 32,
) -> dict[str, Any]:
    """Accuracy, top-3 accuracy and confusion matrix per session (and over all sessions) on ``split`` trials.

    Returns:
        ``{"accuracy": {session: a}, "top3": {session: a}, "accuracy_mean", "top3_mean", "confusion": {session:
        [[...]]}, "confusion_all": [[...]], "num_trials": {session: n}}`` (JSON-ready).
    """
    common.check_model(model.config, model_config(cfg, model.config), "handwriting")
    sessions = common.binned_sessions(recordings, vocab_maps)
    chosen = examples(cfg, recordings, split)
    scores, labels, owner = [], [], []
    for batch, ids, logits in common.predict_batches(
        model, eval_batches(sessions, chosen, cfg.layout, batch_size), TASK
    ):
        scores.append(np.asarray(class_scores(logits, batch["weight"]))[: len(ids)])
        labels += [int(chosen[i].labels[0]) for i in ids]
        owner += [chosen[i].session for i in ids]
    return summarise(np.concatenate(scores), np.array(labels), np.array(owner), recordings, cfg.num_classes)


def summarise(scores: np.ndarray, labels: np.ndarray, owner: np.ndarray, recordings: Sequence[Recording],
              num_classes: int) -> dict[str, Any]:  # fmt: skip
    """The :func:`evaluate` dict from per-trial scores [n, k], labels [n] and session positions [n]."""
    out: dict[str, Any] = {"accuracy": {}, "top3": {}, "confusion": {}, "num_trials": {}}
    pred = scores.argmax(-1)
    for i, rec in enumerate(recordings):
        mine = owner == i
        if not mine.any():
            continue
        key = rec.session_key
        out["accuracy"][key] = metrics.accuracy(pred[mine], labels[mine])
        out["top3"][key] = metrics.top_k_accuracy(scores[mine], labels[mine], 3)
        out["confusion"][key] = metrics.confusion_matrix(pred[mine], labels[mine], num_classes).tolist()
        out["num_trials"][key] = int(mine.sum())
    out["accuracy_mean"] = metrics.mean_sd(out["accuracy"])[0]
    out["top3_mean"] = metrics.mean_sd(out["top3"])[0]
    out["confusion_all"] = metrics.confusion_matrix(pred, labels, num_classes).tolist()
    return out


def write_report(results: Mapping[str, Any], workdir: str, class_names: Sequence[str] = CHARACTERS) -> None:
    """``handwriting_eval.json`` and ``handwriting_confusion.png`` (all sessions) in ``workdir``."""
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "handwriting_eval.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
    title = f"accuracy {results['accuracy_mean']:.3f}, top-3 {results['top3_mean']:.3f}"
    plot_confusion(np.array(results["confusion_all"]), class_names, os.path.join(workdir, "handwriting_confusion.png"),
                   title=title)  # fmt: skip
