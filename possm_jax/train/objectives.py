"""What a run trains and reports, chosen by ``config.task.name``: ``reaching`` (default), ``handwriting``, ``speech``.

:mod:`possm_jax.train.setup`, :mod:`possm_jax.train.loop` and ``experiments/evaluate.py`` ask the run's
:class:`Objective` for everything that differs between tasks:

- the model config (reaching: ``config.model``; a task: the same with binned inputs and the task's readouts);
- the corpus (a data directory, or a synthetic preset: the reaching presets, ``handwriting`` or ``speech``);
- the training iterator (grain; its position is checkpointed) and whether the loop may pack its spike tokens;
- the loss of each phase as ``(first step, loss_fn)`` pairs (speech: count reconstruction for
  ``task.reconstruct_steps`` steps, then CTC), so the phase is a function of the step and resuming is exact;
- evaluation, the validation score that ranks checkpoints (R², accuracy, -PER) and the final report.

A config without a ``task`` section is a reaching run. A task's ``config.task`` holds the fields of its task config
(:class:`~possm_jax.tasks.handwriting.HandwritingConfig`, :class:`~possm_jax.tasks.speech.SpeechConfig`) except the
ones read elsewhere: ``bin_width`` is ``tokenizer.bin_width``, ``num_latents`` / ``depth`` are
``model.num_latents`` / ``model.depth``, and the speech ``phase`` follows from the step. See ``docs/tasks.md``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np

from data_pipeline.buckets import BatchSizes
from data_pipeline.pipeline import make_train_iterator
from data_pipeline.recording import Recording
from data_pipeline.synth.handwriting import generate_handwriting
from data_pipeline.synth.speech import generate_speech
from data_pipeline.unit_dropout import UnitDropoutConfig
from possm_jax.config import POSSMConfig
from possm_jax.eval.evaluate import evaluate as evaluate_reaching
from possm_jax.possm import POSSM
from possm_jax.tasks import common, handwriting, speech
from possm_jax.train import corpus as corpus_lib
from possm_jax.train.loss import multitask_loss
from possm_jax.train.plots import plot_r2_per_session, plot_traces
from possm_jax.train.run_config import model_config, tokenizer_config
from possm_jax.train.sharding import data_shard

TASK_NAMES = ("reaching", "handwriting", "speech")
SHARED_FIELDS = ("bin_width", "num_latents", "depth", "phase")
"""Task config fields that ``config.task`` does not hold (module docstring)."""
RUN_FIELDS = {"handwriting": ("name",), "speech": ("name", "reconstruct_steps", "beam_width")}
"""``config.task`` fields that are not task config fields: the task name, speech's phase-1 length and beam width."""
SYNTHETIC = {"handwriting": generate_handwriting, "speech": generate_speech}

LossFn = Callable[[Mapping[str, Any], Mapping[str, Any]], tuple[Any, dict[str, Any]]]


@dataclasses.dataclass(frozen=True)
class EvalOptions:
    """How to evaluate: trials per forward call, the strictly causal variant too (reaching), traces to keep."""

    batch_size: int = 16
    strict: bool = False
    num_traces: int = 0


def task_name(config: Mapping[str, Any]) -> str:
    """``config.task.name`` (``"reaching"`` without a ``task`` section).

    Raises:
        ValueError: an unknown name.
    """
    name = config["task"]["name"] if "task" in config else "reaching"
    if name not in TASK_NAMES:
        raise ValueError(
            f"task.name={name!r} is not a task; use one of {TASK_NAMES} (experiments/configs/handwriting.py and "
            "speech.py set it; see docs/tasks.md)"
        )
    return name


def get(config: Mapping[str, Any]) -> Objective:
    """The objective of a run config (a ConfigDict, or the dict a checkpoint saved)."""
    return {"reaching": Objective, "handwriting": Handwriting, "speech": Speech}[task_name(config)]()


def load_corpus(data: Mapping[str, Any]) -> list[corpus_lib.Session]:
    """The sessions of a ``data`` section: ``data.dir``, or the synthetic preset ``data.synthetic`` in memory."""
    if not data["dir"] and data["synthetic"] in SYNTHETIC:
        sessions = SYNTHETIC[data["synthetic"]](int(data["seed"]))
        return [corpus_lib.Session(rec, spec.heldout) for spec, rec in sessions]
    return corpus_lib.load_corpus(data["dir"], data["synthetic"], data["seed"])


class Objective:
    """Reaching (and the base of the task objectives): regression over the model's readouts, R² on whole trials."""

    name = "reaching"
    packs_spikes = True  # the loop may pack a batch's spike tokens across rows

    def model_config(self, config: ml_collections.ConfigDict) -> POSSMConfig:
        """The model config of a fresh run."""
        return model_config(config)

    def train_data(
        self, config: ml_collections.ConfigDict, recordings: list[Recording], maps: list
    ) -> Iterator[dict[str, Any]]:
        """This process's share of the training batches (grain; its position is checkpointed)."""
        shard_index, shard_count = data_shard()
        tok, sizes = tokenizer_config(config), None
        if config.train.max_spikes > 0:
            sizes = BatchSizes(s=config.train.max_spikes, q=config.train.max_queries, c=tok.window_chunks)
        return make_train_iterator(
            recordings,
            maps,
            tok,
            config.train.batch_size // shard_count,
            config.train.seed,
            num_workers=config.train.num_workers,
            shard_index=shard_index,
            shard_count=shard_count,
            unit_dropout=UnitDropoutConfig() if config.train.unit_dropout else None,
            sizes=sizes,
        )

    def loss_phases(self, config: ml_collections.ConfigDict, cfg: POSSMConfig) -> tuple[tuple[int, LossFn], ...]:
        """``(first step, loss_fn)`` per training phase, in step order."""
        del config
        return ((0, functools.partial(multitask_loss, task_names=cfg.task_names)),)

    def evaluate(
        self, model: POSSM, config: ml_collections.ConfigDict, recordings: Sequence[Recording], maps: list,
        split: str, options: EvalOptions,
    ) -> dict[str, Any]:  # fmt: skip
        """Evaluation of ``model`` on ``split`` of ``recordings`` (JSON-ready but for reaching's ``traces``)."""
        tok = tokenizer_config(config)
        opts = options
        return evaluate_reaching(model, recordings, maps, tok, split, opts.batch_size, opts.strict, opts.num_traces)

    def score(self, results: Mapping[str, Any], config: ml_collections.ConfigDict, step: int):
        """``(scalars logged under valid/, the score that ranks the checkpoint or None)`` of a validation."""
        del config, step
        return {"r2": results["r2_mean"]}, results["r2_mean"]

    def summary(self, results: Mapping[str, Any]) -> dict[str, Any]:
        """What ``metrics.json`` keeps of an evaluation (the report files hold the rest)."""
        return {k: v for k, v in results.items() if k != "traces"}

    def write_report(self, results: Mapping[str, Any], workdir: str) -> None:
        """Traces of a few trials of the first session and R² per session (PNG)."""
        session, traces = next(iter(results["traces"].items()))
        if traces:
            titles = [f"{session} trial {i}" for i in range(len(traces))]
            plot_traces(traces, os.path.join(workdir, "traces.png"), titles=titles)
        r2 = {k: v for k, v in results["r2"].items() if np.isfinite(v)}
        if r2:
            plot_r2_per_session(r2, os.path.join(workdir, "r2_per_session.png"))


class Handwriting(Objective):
    """Handwriting: character classification of go-aligned windows, accuracy (``possm_jax.tasks.handwriting``)."""

    name = "handwriting"
    module: Any = handwriting
    config_class: type = handwriting.HandwritingConfig
    packs_spikes = False  # task batches carry per-row labels and query layouts that packing does not know

    def task_config(self, config: Mapping[str, Any], step: int | None = None):
        """The task config of a run config (the speech phase of ``step``; phase 2 without one).

        Raises:
            ValueError: ``config.task`` has a field the task config does not know.
        """
        del step
        known = {f.name for f in dataclasses.fields(self.config_class)} - set(SHARED_FIELDS)
        fields = {k: v for k, v in dict(config["task"]).items() if k not in RUN_FIELDS[self.name]}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(
                f"task: unknown fields {unknown} for task {self.name!r}; the task section takes {sorted(known)} "
                f"and {list(RUN_FIELDS[self.name])} (see docs/tasks.md)"
            )
        model, bin_width = config["model"], config["tokenizer"]["bin_width"]
        shared = dict(bin_width=bin_width, num_latents=model["num_latents"], depth=model["depth"])
        return self.config_class(**fields, **shared)

    def model_config(self, config: ml_collections.ConfigDict) -> POSSMConfig:
        """``config.model`` with binned inputs and the task's readouts (``model.tasks`` follows the task section)."""
        return self.module.model_config(self.task_config(config), model_config(config))

    def train_data(
        self, config: ml_collections.ConfigDict, recordings: list[Recording], maps: list
    ) -> Iterator[dict[str, Any]]:
        """This process's batches of the task's training examples (grain; each batch a pure function of its index)."""
        shard_index, shard_count = data_shard()
        batch_size = config.train.batch_size // shard_count
        dataset = self.module.train_dataset(self.task_config(config), recordings, maps, batch_size, config.train.seed)
        return common.make_iterator(dataset, shard_index=shard_index, shard_count=shard_count)

    def loss_phases(self, config: ml_collections.ConfigDict, cfg: POSSMConfig) -> tuple[tuple[int, LossFn], ...]:
        """One phase: cross-entropy of the pooled queries."""
        del config, cfg
        return ((0, handwriting.loss_fn),)

    def evaluate(
        self, model: POSSM, config: ml_collections.ConfigDict, recordings: Sequence[Recording], maps: list,
        split: str, options: EvalOptions,
    ) -> dict[str, Any]:  # fmt: skip
        """Accuracy, top-3 accuracy and confusion matrices per session."""
        cfg = self.task_config(config)
        return handwriting.evaluate(model, cfg, recordings, maps, split, options.batch_size)

    def score(self, results: Mapping[str, Any], config: ml_collections.ConfigDict, step: int):
        """Accuracy ranks the checkpoints."""
        del config, step
        return {"accuracy": results["accuracy_mean"], "top3": results["top3_mean"]}, results["accuracy_mean"]

    def summary(self, results: Mapping[str, Any]) -> dict[str, Any]:
        """Accuracies and trial counts (the confusion matrices are in ``handwriting_eval.json``)."""
        return {k: v for k, v in results.items() if not k.startswith("confusion")}

    def write_report(self, results: Mapping[str, Any], workdir: str) -> None:
        """``handwriting_eval.json`` and ``handwriting_confusion.png``."""
        handwriting.write_report(results, workdir)


class Speech(Handwriting):
    """Speech: phase 1 reconstructs next-bin counts, phase 2 trains CTC; PER (``possm_jax.tasks.speech``)."""

    name = "speech"
    module: Any = speech
    config_class: type = speech.SpeechConfig

    def task_config(self, config: Mapping[str, Any], step: int | None = None):
        """The task config; ``phase`` is ``reconstruct`` before step ``task.reconstruct_steps``, else ``ctc``."""
        cfg = super().task_config(config)
        reconstruct = step is not None and step < int(config["task"]["reconstruct_steps"])
        return dataclasses.replace(cfg, phase="reconstruct" if reconstruct else "ctc")

    def loss_phases(self, config: ml_collections.ConfigDict, cfg: POSSMConfig) -> tuple[tuple[int, LossFn], ...]:
        """Count reconstruction from step 0 (if ``task.reconstruct_steps`` > 0), CTC from ``reconstruct_steps``."""
        del cfg
        first, total = int(config.task.reconstruct_steps), int(config.train.num_steps)
        if not 0 <= first <= total:
            raise ValueError(
                f"task.reconstruct_steps={first}: must lie in [0, train.num_steps={total}] (0 skips the reconstruction "
                "phase, train.num_steps trains it alone); set --config.task.reconstruct_steps"
            )
        starts = (0, first) if first > 0 else (0,)
        return tuple((s, functools.partial(speech.loss_fn, cfg=self.task_config(config, s))) for s in starts)

    def evaluate(
        self, model: POSSM, config: ml_collections.ConfigDict, recordings: Sequence[Recording], maps: list,
        split: str, options: EvalOptions,
    ) -> dict[str, Any]:  # fmt: skip
        """Phoneme error rate per session, greedy (``task.beam_width`` 0) or beam-search CTC decoding."""
        cfg, beam = self.task_config(config), int(config["task"]["beam_width"])
        return speech.evaluate(model, cfg, recordings, maps, split, options.batch_size, beam_width=beam)

    def score(self, results: Mapping[str, Any], config: ml_collections.ConfigDict, step: int):
        """-PER ranks the checkpoints of phase 2; phase-1 checkpoints (untrained CTC readout) are not ranked."""
        ranked = step > int(config.task.reconstruct_steps)
        return {"per": results["per_mean"]}, -results["per_mean"] if ranked else None

    def summary(self, results: Mapping[str, Any]) -> dict[str, Any]:
        """PER and sentence counts (decoded examples are in ``speech_eval.json``)."""
        return {k: v for k, v in results.items() if k != "examples"}

    def write_report(self, results: Mapping[str, Any], workdir: str) -> None:
        """``speech_eval.json`` and ``speech_examples.png``."""
        speech.write_report(results, workdir)


def task_section(name: str) -> ml_collections.ConfigDict:
    """The ``task`` section of a launcher config: the task config's defaults (module docstring) and run fields."""
    objective = get({"task": {"name": name}})
    defaults = objective.config_class()
    section = {"name": name}
    section |= {f.name: getattr(defaults, f.name) for f in dataclasses.fields(defaults) if f.name not in SHARED_FIELDS}
    if name == "speech":
        section |= {"reconstruct_steps": 0, "beam_width": 0}
    return ml_collections.ConfigDict(section)
