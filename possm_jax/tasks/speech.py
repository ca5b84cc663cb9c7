"""Attempted-speech phoneme decoding with CTC (Willett et al. 2023; causal PER: POSSM-GRU 27.3 %, GRU 30.1 %).

Inputs: binned threshold crossings (20 ms bins, 256 channels) as binned tokens; ``SpeechConfig.bin_width`` sets the
bin and chunk length everywhere. Examples are whole sentences (trials), padded to multiples of ``chunk_step`` chunks,
labelled with their phoneme sequence (:mod:`data_pipeline.trial_batches`).

Readouts (both per query, so :meth:`POSSM.step` and the window forward share them and streaming needs no extra
state):

* ``speech_phoneme`` (``num_classes`` = phonemes + blank): a query at the end of every ``ctc_stride``-th chunk. Its
  decoder cross-attention over the k most recent backbone outputs, the FFN and the linear head form a strided 1-D
  convolution over the backbone sequence (kernel k = ``context_chunks`` chunks, stride ``ctc_stride``) whose weights
  depend on the content (attention) rather than being fixed taps; its outputs are the CTC frames
  (``optax.ctc_loss``). A streaming decoder may query every chunk; the frames at the stride positions equal the
  batched ones.
* ``speech_counts`` (``num_channels``): a query at the end of every chunk predicts the log expected counts of every
  channel in the *next* bin (Poisson likelihood).

Two-phase training (``phase``): ``"reconstruct"`` trains on next-bin counts only, shaping the encoder and backbone
on the neural data; ``"ctc"`` trains the phoneme CTC loss (plus ``reconstruct_weight`` × the count loss). Run phase
1, then continue the same state with a phase-2 loss (the parameters are the same in both phases).

Evaluation: PER per session (edit distance / reference length) from greedy CTC decoding, or prefix beam search
with ``beam_width > 0``; decoded-vs-true strings of a few sentences (JSON + PNG).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from data_pipeline.recording import Recording
from data_pipeline.synth.speech import BLANK, NUM_PHONEMES
from data_pipeline.trial_batches import EpochBatches, SpeechLayout, eval_batches, sentences, speech_train_dataset
from possm_jax.config import POSSMConfig
from possm_jax.eval import metrics
from possm_jax.eval.task_plots import plot_phoneme_examples
from possm_jax.possm import POSSM
from possm_jax.tasks import common
from possm_jax.train.loss import ctc_loss, weighted_poisson_nll
from possm_jax.types import Array

PHONEME_TASK = "speech_phoneme"
COUNT_TASK = "speech_counts"
PHASES = ("reconstruct", "ctc")


@dataclasses.dataclass(frozen=True)
class SpeechConfig:
    """The speech task.

    Attributes:
        bin_width: bin and chunk length in seconds (the only chunk-length setting).
        num_classes: CTC classes including the blank (41: 40 phonemes + blank in the synthetic data; 39 phonemes +
          silence + blank on the real data).
        blank_id: the blank's class index (phoneme ids are the other indices).
        ctc_stride: chunks per CTC frame.
        chunk_step: sentences are padded to a multiple of this many chunks (one compilation per padded length).
        num_channels: width of the next-bin count readout (>= every session's channel count).
        phase: ``"reconstruct"`` (phase 1) or ``"ctc"`` (phase 2).
        reconstruct_weight: weight of the count loss in phase 2.
        num_latents: M latents per chunk.
        depth: in-chunk self-attention layers over the latents (>= 1).
        phoneme_interval: interval set with one interval per spoken phoneme.
        phoneme_column: its column of phoneme ids.
    """

    bin_width: float = 0.02
    num_classes: int = NUM_PHONEMES + 1
    blank_id: int = BLANK
    ctc_stride: int = 2
    chunk_step: int = 64
    num_channels: int = 256
    phase: str = "ctc"
    reconstruct_weight: float = 0.0
    num_latents: int = 4
    depth: int = 1
    phoneme_interval: str = "phonemes"
    phoneme_column: str = "phoneme"

    def __post_init__(self):
        checks = [
            (self.bin_width > 0, "bin_width", "must be > 0 seconds"),
            (self.num_classes >= 2, "num_classes", "must be >= 2 (phonemes + blank)"),
            (0 <= self.blank_id < self.num_classes, "blank_id", f"must lie in [0, num_classes={self.num_classes})"),
            (self.ctc_stride >= 1, "ctc_stride", "must be >= 1 chunk"),
            (
                self.chunk_step >= self.ctc_stride and self.chunk_step % self.ctc_stride == 0,
                "chunk_step",
                "must be a positive multiple of ctc_stride",
            ),  # fmt: skip
            (self.num_channels >= 1, "num_channels", "must be >= 1"),
            (self.phase in PHASES, "phase", f"must be one of {PHASES}"),
            (self.reconstruct_weight >= 0, "reconstruct_weight", "must be >= 0"),
        ]
        for ok, field, problem in checks:
            if not ok:
                raise ValueError(f"SpeechConfig.{field}={getattr(self, field)!r}: {problem}.")

    @property
    def layout(self) -> SpeechLayout:
        """The data layout these settings give."""
        return SpeechLayout(self.bin_width, self.ctc_stride, self.chunk_step, self.num_channels)


def model_config(cfg: SpeechConfig, base: POSSMConfig | None = None) -> POSSMConfig:
    """``base`` (default ``possm_small`` with the count read-in) with binned inputs, ``cfg.bin_width`` chunks,
    phoneme and count readouts."""
    tasks = {PHONEME_TASK: cfg.num_classes, COUNT_TASK: cfg.num_channels}
    return common.binned_model_config(
        base, bin_width=cfg.bin_width, tasks=tasks, num_latents=cfg.num_latents, depth=cfg.depth
    )


def examples(cfg: SpeechConfig, recordings: Sequence[Recording], split: str) -> list:
    """Whole sentences of every ``split`` trial of ``recordings`` with their phoneme sequences.

    Raises:
        ValueError: a phoneme id is outside ``[0, num_classes)`` or equals the blank.
    """
    out = []
    for i, rec in enumerate(recordings):
        out += sentences(rec, split, i, cfg.bin_width, interval=cfg.phoneme_interval, column=cfg.phoneme_column)
    ids = np.concatenate([e.labels for e in out]) if out else np.zeros(0, int)
    if np.any((ids < 0) | (ids >= cfg.num_classes) | (ids == cfg.blank_id)):
        raise ValueError(
            f"SpeechConfig: {split} phoneme ids span [{ids.min()}, {ids.max()}] but must lie in [0, num_classes="
            f"{cfg.num_classes}) and differ from blank_id={cfg.blank_id}; fix num_classes / blank_id"
        )
    return out


def train_dataset(
    cfg: SpeechConfig,
    recordings: Sequence[Recording],
    vocab_maps: Sequence[tuple[np.ndarray, int]],
    batch_size: int,
    seed: int,
) -> EpochBatches:
    """Infinite, deterministic training batches (a grain ``MapDataset``; iterate with ``common.make_iterator``)."""
    sessions = common.binned_sessions(recordings, vocab_maps)
    return speech_train_dataset(sessions, examples(cfg, recordings, "train"), cfg.layout, batch_size, seed)


def ctc_logits(preds: Mapping[str, Array], batch: Mapping[str, Array]) -> Array:
    """[b, t, k] phoneme logits of the CTC frames (the first ``t`` queries of a speech batch)."""
    return preds[PHONEME_TASK][:, : batch["ctc_mask"].shape[1]]


def loss_fn(
    preds: Mapping[str, Array], batch: Mapping[str, Array], cfg: SpeechConfig
) -> tuple[Array, dict[str, Array]]:
    """The loss of ``cfg.phase``: count reconstruction (phase 1) or CTC (+ weighted reconstruction, phase 2)."""
    counts = weighted_poisson_nll(preds[COUNT_TASK], batch["counts_target"], batch["weight"])
    out = {f"loss/{COUNT_TASK}": counts}
    if cfg.phase == "reconstruct":
        return counts, out
    ctc = ctc_loss(ctc_logits(preds, batch), batch["ctc_mask"], batch["labels"], batch["label_mask"], cfg.blank_id)
    out[f"loss/{PHONEME_TASK}"] = ctc
    return ctc + cfg.reconstruct_weight * counts, out


def decode(logits: np.ndarray, mask: np.ndarray, cfg: SpeechConfig, beam_width: int = 0) -> list[int]:
    """One sentence's phonemes from its CTC frames [t, k]: greedy, or prefix beam search if ``beam_width > 0``."""
    if beam_width > 0:
        logp = np.asarray(jax.nn.log_softmax(np.asarray(logits, np.float32), axis=-1))
        return metrics.ctc_prefix_beam_search(logp, beam_width, mask, cfg.blank_id)
    return metrics.ctc_greedy_decode(logits, mask, cfg.blank_id)


def evaluate(
    model: POSSM,
    cfg: SpeechConfig,
    recordings: Sequence[Recording],
    vocab_maps: Sequence[tuple[np.ndarray, int]],
    split: str = "valid",
    batch_size: int = 8,
    beam_width: int = 0,
    num_examples: int = 4,
) -> dict[str, Any]:
    """Phoneme error rate per session on whole ``split`` sentences.

    Returns:
        ``{"per": {session: per}, "per_mean", "num_sentences": {session: n}, "examples": [{"session", "true",
        "decoded", "per"}, ...]}`` (JSON-ready; phoneme strings are space-separated ids).
    """
    common.check_model(model.config, model_config(cfg, model.config), "speech")
    sessions = common.binned_sessions(recordings, vocab_maps)
    chosen = examples(cfg, recordings, split)
    refs: dict[int, list] = {i: [] for i in range(len(recordings))}
    hyps: dict[int, list] = {i: [] for i in range(len(recordings))}
    batches = eval_batches(sessions, chosen, cfg.layout, batch_size)
    for batch, ids, logits in common.predict_batches(model, batches, PHONEME_TASK):
        frames = logits[:, : batch["ctc_mask"].shape[1]]
        for row, i in enumerate(ids):
            refs[chosen[i].session].append(chosen[i].labels.tolist())
            hyps[chosen[i].session].append(decode(frames[row], batch["ctc_mask"][row], cfg, beam_width))
    out: dict[str, Any] = {"per": {}, "num_sentences": {}, "examples": []}
    for i, rec in enumerate(recordings):
        if refs[i]:
            out["per"][rec.session_key] = metrics.phoneme_error_rate(refs[i], hyps[i])
            out["num_sentences"][rec.session_key] = len(refs[i])
            for ref, hyp in list(zip(refs[i], hyps[i], strict=True))[:num_examples]:
                per = metrics.edit_distance(ref, hyp) / max(len(ref), 1)
                out["examples"].append(
                    {"session": rec.session_key, "true": _text(ref), "decoded": _text(hyp), "per": per}
                )
    out["per_mean"] = metrics.mean_sd(out["per"])[0]
    return out


def _text(ids: Sequence[int]) -> str:
    return " ".join(str(int(i)) for i in ids)


def write_report(results: Mapping[str, Any], workdir: str) -> None:
    """``speech_eval.json`` and ``speech_examples.png`` (decoded vs true strings) in ``workdir``."""
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "speech_eval.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
    if results["examples"]:
        plot_phoneme_examples(results["examples"], os.path.join(workdir, "speech_examples.png"))
