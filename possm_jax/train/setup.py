"""``setup(config, workdir)``: the pieces of one training run, built once and shared by every caller.

A run is a fresh model, a finetuning of a pretrained checkpoint, or the resumption of the run's own newest
checkpoint. :func:`setup` settles which, and returns a :class:`Run`: the data, the vocabularies, the train
state, the device mesh, the jitted step and the checkpointer. :mod:`possm_jax.train.loop` runs it; the benchmark and
the baselines' trainer build their state with :func:`init_training`, the same constructor :func:`setup` uses.

What goes in (``experiments/configs/pretrain.py`` documents every field):

- ``data``: recordings from ``data.dir`` (a directory of ``.h5`` sessions, optionally with the synthetic
  ``dataset.json`` that marks held-out sessions) or a synthetic preset generated in memory; ``data.sessions`` selects;
  the train split is cut to its first ``data.train_fraction``.
- ``model`` + ``tokenizer.bin_width``: the :class:`~possm_jax.config.POSSMConfig` (see :mod:`run_config`).
- ``train``: LAMB with the reference schedules (peak LR linear in the global batch), data-parallel over all devices.
- ``transfer``: a pretrained checkpoint whose vocabularies are extended with the new ids, and what trains.
- ``task`` (optional): the objective, reaching by default, else handwriting or speech (:mod:`objectives`, whose
  :class:`~possm_jax.train.objectives.Objective` gives the model config, batches, losses and evaluation).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx
from jax.sharding import Mesh

from data_pipeline.recording import Recording
from data_pipeline.tokenize import TokenizerConfig
from possm_jax.config import POSSMConfig
from possm_jax.possm import POSSM
from possm_jax.train import corpus as corpus_lib
from possm_jax.train import objectives, transfer
from possm_jax.train.checkpoint import Checkpointer
from possm_jax.train.model_io import BEST_METRIC, load_checkpoint, saved_config, vocabs_from_saved
from possm_jax.train.run_config import make_optimizer, tokenizer_config
from possm_jax.train.sharding import make_mesh, place_state, replicate, state_shardings
from possm_jax.train.state import TrainState, create_train_state, merge_model
from possm_jax.train.step import make_train_step
from possm_jax.types import Array, PyTree
from possm_jax.vocab import Vocab

StepFn = Callable[[TrainState, Mapping[str, Array], Array], tuple[TrainState, dict[str, Array]]]


def init_training(
    model: nnx.Module,
    tx: optax.GradientTransformation,
    loss_fn: Callable,
    *,
    trainable: PyTree | None = None,
    mesh: Mesh | None = None,
    donate: bool = True,
    compute_dtype: jnp.dtype = jnp.float32,
) -> tuple[nnx.GraphDef, TrainState, StepFn]:
    """The train state of ``model`` and its jitted step: ``(graphdef, state, step_fn)``.

    Args:
        model: any nnx model whose ``__call__(batch, rngs=...)`` returns ``(predictions, state)``.
        tx: the optimizer.
        loss_fn: ``loss_fn(predictions, batch) -> (loss, metrics)``.
        trainable: a mask (see :func:`possm_jax.train.state.trainable_mask`); None trains everything.
        mesh: a device mesh: the state is placed on it (replicated, or split over its ``model`` axis: FSDP) and the
            step splits batches over ``data``.
        donate: reuse the input state's buffers for the output.
        compute_dtype: the dtype of the forward and backward pass (bfloat16: mixed precision with float32 master
            weights and optimizer state).
    """
    graphdef, state = create_train_state(model, tx, trainable)
    if mesh is not None:
        state = place_state(state, mesh)
    return graphdef, state, step_for(graphdef, tx, loss_fn, state, mesh, donate, compute_dtype)


def step_for(
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    loss_fn: Callable,
    state: TrainState,
    mesh: Mesh | None = None,
    donate: bool = True,
    compute_dtype: jnp.dtype = jnp.float32,
) -> StepFn:
    """The jitted train step of ``loss_fn`` for ``state`` as placed on ``mesh`` (see :func:`init_training`)."""
    sharding = state_shardings(state, mesh) if mesh is not None else None
    return make_train_step(
        graphdef, tx, loss_fn, mesh=mesh, donate=donate, compute_dtype=compute_dtype, state_sharding=sharding
    )


@dataclasses.dataclass
class Run:
    """Everything one training run needs, built by :func:`setup`.

    Attributes:
        config: the run config.
        workdir: output directory (``checkpoints/``, ``tb/``, ``metrics.json``, plots).
        tokenizer: windows and queries.
        model_config: the model's hyper-parameters.
        units: unit vocabulary (rows of the unit table).
        sessions: session vocabulary.
        mesh: the device mesh (``data`` axis).
        graphdef: the model's static graph.
        state: the train state, placed on ``mesh`` (restored when the run resumes).
        step_fn: the jitted train step (of the first phase; :meth:`step_fn_at` gives each step's).
        rng: the dropout key, replicated.
        data: the training batch iterator (grain; its position is checkpointed).
        checkpointer: the run's checkpoints.
        saved_config: the config item every checkpoint stores (run config + vocabularies + model config).
        recordings: the selected sessions, whole (validation and the final evaluation read these).
        vocab_maps: per recording, its units' and session's vocabulary indices.
        objective: what the run trains and reports (reaching, handwriting or speech).
        phases: ``(first step, jitted train step)`` per training phase, in step order (speech has two).
    """

    config: ml_collections.ConfigDict
    workdir: str
    tokenizer: TokenizerConfig
    model_config: POSSMConfig
    units: Vocab
    sessions: Vocab
    mesh: Mesh
    graphdef: nnx.GraphDef
    state: TrainState
    step_fn: StepFn
    rng: Array
    data: Iterator[dict[str, Any]]
    checkpointer: Checkpointer
    saved_config: dict[str, Any]
    recordings: list[Recording]
    vocab_maps: list
    objective: objectives.Objective = dataclasses.field(default_factory=objectives.Objective)
    phases: tuple[tuple[int, StepFn], ...] = ()

    def step_fn_at(self, step: int) -> StepFn:
        """The train step of the phase that ``step`` (the state's step before the update) belongs to."""
        return next((fn for first, fn in reversed(self.phases) if step >= first), self.step_fn)

    def model(self, state: TrainState | None = None) -> POSSM:
        """The model holding ``state``'s variables (default: the run's current state)."""
        return merge_model(self.graphdef, self.state if state is None else state)

    def evaluate(self, state: TrainState, split: str, strict: bool = False, num_traces: int = 0) -> dict[str, Any]:
        """Whole-trial evaluation of ``state`` on ``split`` of every selected session (the objective's metrics)."""
        options = objectives.EvalOptions(self.config.eval.batch_size, strict, num_traces)
        return self.objective.evaluate(self.model(state), self.config, self.recordings, self.vocab_maps, split, options)


def setup(config: ml_collections.ConfigDict, workdir: str) -> Run:
    """Builds the run described by ``config`` in ``workdir``; resumes from its newest checkpoint if it has one.

    Raises:
        ValueError: bad data directory or session selection (``DataError``), transfer mode or ``task.name``, missing
            or corrupt checkpoints (``CheckpointError``), a resumed run whose model config differs
            (``ConfigMismatchError``).
    """
    os.makedirs(workdir, exist_ok=True)
    transfer.check_mode(config.transfer.mode)
    objective = objectives.get(config)
    recordings = corpus_lib.select(objectives.load_corpus(config.data), config.data.sessions)
    train_recs = [corpus_lib.restrict_train(r, config.data.train_fraction) for r in recordings]
    ckpt = Checkpointer(
        os.path.join(workdir, "checkpoints"), keep=config.checkpoint.keep, best_metric=BEST_METRIC, best_mode="max"
    )
    tx = make_optimizer(config)
    resume = ckpt.latest_step() is not None
    cfg, units, sessions, model, trainable = _initial_model(config, ckpt if resume else None, train_recs, objective)
    mesh = make_mesh(model=config.train.model_shards)
    tok = tokenizer_config(config)
    data = objective.train_data(config, train_recs, corpus_lib.vocab_maps(train_recs, units, sessions))
    (_, loss_fn), *later = objective.loss_phases(config, cfg)
    dtype = jnp.dtype(config.train.dtype)
    graphdef, state, step_fn = init_training(model, tx, loss_fn, trainable=trainable, mesh=mesh, compute_dtype=dtype)
    phases = ((0, step_fn), *((first, step_for(graphdef, tx, fn, state, mesh, True, dtype)) for first, fn in later))
    saved = saved_config(config, units, sessions, cfg)
    if resume:
        # The model section and the model config must match the checkpoint's; the vocabulary came from it.
        # Restored onto the state's own shardings (replicated, or FSDP), whatever the saving run's mesh was.
        state = ckpt.restore(state, config=saved, compare=("model", "model_config"), data_iterator=data)
    rng = replicate(jax.random.PRNGKey(config.train.seed), mesh)
    maps = corpus_lib.vocab_maps(recordings, units, sessions)
    return Run(
        config, workdir, tok, cfg, units, sessions, mesh, graphdef, state, step_fn, rng, data, ckpt, saved,
        recordings, maps, objective, phases,
    )  # fmt: skip


def _initial_model(
    config: ml_collections.ConfigDict,
    resume_from: Checkpointer | None,
    train_recs: list[Recording],
    objective: objectives.Objective,
) -> tuple[POSSMConfig, Vocab, Vocab, POSSM, PyTree]:
    """``(model config, units, sessions, model, trainable mask)`` before any checkpoint of this run is restored.

    Resuming takes the vocabularies and model config from the run's own checkpoint; finetuning carries the pretrained
    weights over to vocabularies extended with the new ids; otherwise a fresh model is built from ``config.model``.
    """
    seed = config.train.seed
    if resume_from is not None and config.transfer.mode != "lora":  # a LoRA run is rebuilt on its base, then restored
        saved = resume_from.restore_config()
        units, sessions = vocabs_from_saved(saved)
        cfg = POSSMConfig.from_dict(saved["model_config"])
        model = POSSM(cfg, len(units), len(sessions), rngs=nnx.Rngs(seed))
        return cfg, units, sessions, model, transfer.full_mask(nnx.state(model, nnx.Param))
    if config.transfer.checkpoint:
        return _pretrained_model(config, train_recs, objective)
    units, sessions = corpus_lib.build_vocabs(train_recs)
    cfg = objective.model_config(config)
    model = POSSM(cfg, len(units), len(sessions), rngs=nnx.Rngs(seed))
    return cfg, units, sessions, model, transfer.full_mask(nnx.state(model, nnx.Param))


def _pretrained_model(
    config: ml_collections.ConfigDict, train_recs: list[Recording], objective: objectives.Objective
) -> tuple[POSSMConfig, Vocab, Vocab, POSSM, PyTree]:
    """The model of ``config.transfer.checkpoint`` carried over to vocabularies extended with ``train_recs``' ids
    (a :class:`~possm_jax.lora.LoRAPOSSM` for ``transfer.mode=lora``), and its trainable mask. With
    ``transfer.partial`` the model is this run's (``config.model`` and task) and only the pretrained parameters that
    fit it are carried."""
    pretrained, old_units, old_sessions, _, _ = load_checkpoint(config.transfer.checkpoint)
    units, sessions = transfer.transfer_vocabs(
        old_units,
        old_sessions,
        corpus_lib.unit_ids(train_recs),
        [r.session_key for r in train_recs],
        subset=config.transfer.subset,
    )
    model, mask = transfer.transfer_model(
        pretrained,
        (old_units, old_sessions),
        (units, sessions),
        config.train.seed,
        config.transfer.mode,
        config.transfer.lora_rank,
        objective.model_config(config) if config.transfer.get("partial", False) else None,
    )
    return model.config, units, sessions, model, mask
