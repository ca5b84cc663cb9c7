"""``train_and_evaluate(config, workdir)``: pretraining, finetuning and evaluation of POSSM (SPEC 4–6).

The launchers in ``experiments/`` are thin wrappers around this module. One run:

1. data: recordings from ``config.data.dir`` (a directory of ``.h5`` sessions, optionally with the synthetic
   ``dataset.json`` that marks held-out sessions) or a synthetic preset generated in memory; sessions selected by
   ``config.data.sessions``; the train split optionally cut to its first ``config.data.train_fraction``.
2. vocabularies: from the data, from a pretrained checkpoint extended with the new ids (finetuning), or from the
   run's own checkpoint (resume). They are stored in the checkpoint's config item under ``vocab``.
3. model, LAMB with the reference schedules (LR linear in the global batch), a fixed-shape grain iterator (one
   compilation), data-parallel jitted step over a device mesh.
4. loop: TensorBoard + progress bar, validation R² on whole trials every ``eval.every`` steps, checkpoints (model,
   optimiser, data position, config; keep-N and best-by-validation R²), resume from the newest checkpoint, SIGTERM
   saves then returns, a non-finite step stops with the last good checkpoint kept.
5. end: the best-by-validation weights are evaluated on ``eval.final_split`` (chunk-causal and strictly causal);
   ``metrics.json`` and PNG plots are written to ``workdir``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx

from data_pipeline.buckets import BatchSizes
from data_pipeline.pipeline import make_train_iterator
from data_pipeline.tokenize import TokenizerConfig
from data_pipeline.unit_dropout import UnitDropoutConfig
from possm_jax.config import POSSMConfig, get_preset
from possm_jax.eval.evaluate import evaluate
from possm_jax.possm import POSSM, count_params
from possm_jax.train import corpus as corpus_lib
from possm_jax.train import transfer
from possm_jax.train.checkpoint import Checkpointer, PreemptionFlag, abstract_state
from possm_jax.train.logging import RunLogger, read_scalars, write_metrics_json
from possm_jax.train.loss import multitask_loss
from possm_jax.train.optim import hyperparams, lamb
from possm_jax.train.plots import plot_r2_per_session, plot_traces, plot_training_curves
from possm_jax.train.schedules import cycled_b1, flat_cosine_lr, peak_learning_rate
from possm_jax.train.sharding import data_shard, make_mesh, pack_host_batch, replicate, shard_batch
from possm_jax.train.state import TrainState, create_train_state, path_flags
from possm_jax.train.step import check_finite, make_train_step
from possm_jax.vocab import Vocab

BEST_METRIC = "valid_r2"


# ------------------------------------------------------------------------------------------------ configuration
def model_config(config: ml_collections.ConfigDict) -> POSSMConfig:
    """The :class:`~possm_jax.config.POSSMConfig` of ``config.model`` (preset + the overrides that are set)."""
    m = config.model
    overrides: dict[str, Any] = {"bin_width": config.tokenizer.bin_width}
    if m.dim > 0:
        overrides["dim"] = m.dim
    if m.ffn_dropout >= 0:
        overrides["ffn_dropout"] = m.ffn_dropout
    if m.lag >= 0:
        overrides["lag"] = m.lag
    base = get_preset(m.preset)
    backbone = {"hidden": m.hidden, "num_layers": m.num_layers}
    backbone = {k: v for k, v in backbone.items() if v > 0}
    if m.backbone:
        backbone["kind"] = m.backbone
    if backbone:
        overrides["backbone"] = dataclasses.replace(base.backbone, **backbone)
    return get_preset(m.preset, **overrides)


def tokenizer_config(config: ml_collections.ConfigDict) -> TokenizerConfig:
    """The tokenizer of ``config.tokenizer``."""
    t = config.tokenizer
    return TokenizerConfig(bin_width=t.bin_width, window=t.window, target=t.target, target_std=t.target_std)


def make_optimizer(config: ml_collections.ConfigDict):
    """Reference LAMB (SPEC 4): peak LR ``3.125e-5 × global batch × train.lr_scale``, flat then cosine; β1 cycled."""
    steps = config.train.num_steps
    peak = peak_learning_rate(config.train.batch_size) * config.train.lr_scale
    tables = ("unit_emb/", "session_emb/")
    return lamb(
        learning_rate=flat_cosine_lr(peak, steps),
        b1=cycled_b1(steps),
        sparse_rows=lambda params: path_flags(params, lambda path: path.startswith(tables)),
    )


def _saved_config(config: ml_collections.ConfigDict, units: Vocab, sessions: Vocab) -> dict[str, Any]:
    return {**config.to_dict(), "vocab": {"units": list(units.ids[1:]), "sessions": list(sessions.ids[1:])}}


def vocabs_from_saved(saved: dict[str, Any]) -> tuple[Vocab, Vocab]:
    """The ``(units, sessions)`` vocabularies stored in a checkpoint's config."""
    if "vocab" not in saved:
        raise ValueError("checkpoint config has no 'vocab' entry; was it written by possm_jax.train.loop?")
    return Vocab(saved["vocab"]["units"], "unit"), Vocab(saved["vocab"]["sessions"], "session")


# ---------------------------------------------------------------------------------------------------- the state
def _new_state(cfg, units: Vocab, sessions: Vocab, tx, seed: int, mask_fn) -> tuple[nnx.GraphDef, TrainState]:
    model = POSSM(cfg, len(units), len(sessions), rngs=nnx.Rngs(seed))
    params = nnx.state(model, nnx.Param)
    return create_train_state(model, tx, mask_fn(params))


def load_checkpoint(directory: str, step: int | None = None) -> tuple[POSSM, Vocab, Vocab, dict[str, Any], int]:
    """A trained model from a run's checkpoint directory (``<workdir>/checkpoints``).

    Args:
        directory: the checkpoint directory.
        step: the step to load; None: the best-by-validation step, else the newest.

    Returns:
        ``(model, units, sessions, saved_config, step)``.

    Raises:
        CheckpointError: the directory or step is missing, or the checkpoint cannot be read.
    """
    source = Checkpointer(directory, read_only=True, best_metric=BEST_METRIC)
    try:
        if step is None:
            step = source.best_step() or source.latest_step()
        saved = source.restore_config(step)
        cfg = POSSMConfig.from_dict(saved["model_config"])
        units, sessions = vocabs_from_saved(saved)
        graphdef, state = _new_state(
            cfg, units, sessions, make_optimizer(ml_collections.ConfigDict(saved)), 0, transfer.full_mask
        )
        state = source.restore(jax.tree.map(np.asarray, state), step=step)
    finally:
        source.close()
    return nnx.merge(graphdef, state.params, state.rest), units, sessions, saved, int(step)


def _pretrained(config, units, sessions, tx, seed, key):
    """The model of ``config.transfer.checkpoint`` carried to the new vocabularies: ``(cfg, graphdef, state)``."""
    pre_model, old_units, old_sessions, _, _ = load_checkpoint(config.transfer.checkpoint)
    cfg = pre_model.config
    graphdef, state = _new_state(cfg, units, sessions, tx, seed, transfer.full_mask)
    params, fresh_units, fresh_sessions = transfer.transfer_params(
        nnx.to_pure_dict(nnx.state(pre_model, nnx.Param)),
        nnx.to_pure_dict(state.params),
        (old_units, old_sessions),
        (units, sessions),
        key,
    )
    new_params = state.params
    nnx.replace_by_pure_dict(new_params, params)
    mask = transfer.transfer_mask(new_params, config.transfer.mode, fresh_units, fresh_sessions)
    return cfg, graphdef, TrainState(state.step, new_params, state.rest, tx.init(new_params), mask)


# ---------------------------------------------------------------------------------------------------- the run
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains (or finetunes, or resumes) and evaluates; returns the metrics also written to ``metrics.json``.

    Raises:
        ValueError: bad data directory, session selection or transfer mode (``DataError``), missing or corrupt
            checkpoints (``CheckpointError``), a resumed run whose model config differs (``ConfigMismatchError``).
        NonFiniteLossError: a step produced a NaN/Inf loss or gradient (the last good checkpoint is kept).
    """
    start = time.time()
    os.makedirs(workdir, exist_ok=True)
    tok = tokenizer_config(config)
    transfer.check_mode(config.transfer.mode)
    sessions_all = corpus_lib.load_corpus(config.data.dir, config.data.synthetic, config.data.seed)
    train_recs = corpus_lib.select(sessions_all, config.data.sessions)
    train_recs = [corpus_lib.restrict_train(r, config.data.train_fraction) for r in train_recs]

    ckpt = Checkpointer(
        os.path.join(workdir, "checkpoints"), keep=config.checkpoint.keep, best_metric=BEST_METRIC, best_mode="max"
    )
    tx = make_optimizer(config)
    key = jax.random.PRNGKey(config.train.seed)
    resume = ckpt.latest_step() is not None
    if resume:
        saved = ckpt.restore_config()
        units, sessions = vocabs_from_saved(saved)
        cfg = POSSMConfig.from_dict(saved["model_config"])
        graphdef, state = _new_state(cfg, units, sessions, tx, config.train.seed, transfer.full_mask)
    elif config.transfer.checkpoint:
        saved = Checkpointer(config.transfer.checkpoint, read_only=True).restore_config()
        units, sessions = transfer.transfer_vocabs(
            *vocabs_from_saved(saved),
            corpus_lib.unit_ids(train_recs),
            [r.session_key for r in train_recs],
            subset=config.transfer.subset,
        )
        cfg, graphdef, state = _pretrained(config, units, sessions, tx, config.train.seed, key)
    else:
        units, sessions = corpus_lib.build_vocabs(train_recs)
        cfg = model_config(config)
        graphdef, state = _new_state(cfg, units, sessions, tx, config.train.seed, transfer.full_mask)
    run_config = _saved_config(config, units, sessions) | {"model_config": cfg.to_dict()}
    maps = corpus_lib.vocab_maps(train_recs, units, sessions)

    mesh = make_mesh()
    shard_index, shard_count = data_shard()
    sizes = None
    if config.train.max_spikes > 0:
        sizes = BatchSizes(s=config.train.max_spikes, q=config.train.max_queries, c=tok.window_chunks)
    data = make_train_iterator(
        train_recs,
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
    state = replicate(state, mesh)
    if resume:
        # The model section and the model config must match the checkpoint's; the vocabulary came from it.
        state = ckpt.restore(
            abstract_state(state, mesh), config=run_config, compare=("model", "model_config"), data_iterator=data
        )
    loss_fn = functools.partial(multitask_loss, task_names=cfg.task_names)
    step_fn = make_train_step(graphdef, tx, loss_fn, mesh=mesh)
    unfreeze = replicate(transfer.full_mask(state.params), mesh) if config.transfer.mode == "ft" else None

    def model_view(s: TrainState) -> POSSM:
        return nnx.merge(graphdef, s.params, s.rest)

    eval_recs = corpus_lib.select(sessions_all, config.data.sessions)
    eval_maps = corpus_lib.vocab_maps(eval_recs, units, sessions)

    def validate(s: TrainState) -> dict[str, Any]:
        return evaluate(model_view(s), eval_recs, eval_maps, tok, "valid", config.eval.batch_size, strict=False)

    rng = replicate(key, mesh)
    step = int(state.step)
    timing = {"compile_seconds": None, "steady_steps": 0, "steady_seconds": 0.0}
    compiled: set[tuple[int, ...]] = set()
    packed_width = 0  # the widest packed batch so far (pack_host_batch never goes below it)
    logger = RunLogger(
        os.path.join(workdir, "tb"), config.train.num_steps, initial_step=step, enabled=jax.process_index() == 0
    )
    last = {}
    preempted = False
    with PreemptionFlag() as flag, logger:
        while step < config.train.num_steps:
            if unfreeze is not None and step == config.transfer.unfreeze_step:
                state = dataclasses.replace(state, trainable=unfreeze)
            batch = next(data)
            if config.train.pack_spikes:
                batch = pack_host_batch(batch, mesh, min_width=packed_width)
                packed_width = batch["spike_mask"].shape[1]
            batch = shard_batch(batch, mesh)
            t0 = time.perf_counter()
            state, metrics = step_fn(state, batch, rng)
            if not bool(metrics["finite"]):
                ckpt.wait()
                check_finite(metrics, step, ckpt.latest_step())
            dt = time.perf_counter() - t0
            shape = batch["spike_mask"].shape
            if shape not in compiled:  # the first step of each spike size compiles: kept out of the throughput
                compiled.add(shape)
                timing["compile_seconds"] = (timing["compile_seconds"] or 0.0) + dt
            else:
                timing["steady_steps"] += 1
                timing["steady_seconds"] += dt
            step += 1
            logger.advance()
            if step % config.train.log_every == 0 or step == config.train.num_steps:
                last = {k: float(v) for k, v in metrics.items() if k != "finite"}
                last["lr"] = float(hyperparams(state.opt_state)["learning_rate"])
                if timing["steady_steps"]:
                    last["windows_per_second"] = (
                        timing["steady_steps"] * config.train.batch_size / timing["steady_seconds"]
                    )
                logger.log(step, last, prefix="train/")
            evaluate_now = step % config.eval.every == 0 or step == config.train.num_steps
            if evaluate_now:
                valid = validate(state)
                logger.log(step, {"r2": valid["r2_mean"]}, prefix="valid/")
                ckpt.save(step, state, run_config, data, metrics={BEST_METRIC: _finite(valid["r2_mean"])})
            elif step % config.checkpoint.every == 0:
                ckpt.save(step, state, run_config, data)
            if flag.requested:
                if not evaluate_now and step % config.checkpoint.every:
                    ckpt.save(step, state, run_config, data)
                ckpt.wait()
                logger.message(f"{flag.signal_name}: saved step {step} to {ckpt.directory}; exiting")
                preempted = True
                break
    ckpt.wait()
    if preempted:
        ckpt.close()
        return {"preempted": True, "step": step}

    best = ckpt.best_step()
    if best is not None and best != step:
        state = ckpt.restore(abstract_state(state, mesh), step=best)
    ckpt.close()
    final = evaluate(
        model_view(state),
        eval_recs,
        eval_maps,
        tok,
        config.eval.final_split,
        config.eval.batch_size,
        strict=config.eval.strict,
        num_traces=3,
    )
    steady = timing["steady_seconds"]
    results = {
        "step": step,
        "best_step": best,
        "sessions": [r.session_key for r in eval_recs],
        "num_params": count_params(model_view(state)),
        "train": last,
        "compile_seconds": timing["compile_seconds"],
        "windows_per_second": timing["steady_steps"] * config.train.batch_size / steady if steady else None,
        "wall_seconds": time.time() - start,
        config.eval.final_split: {k: v for k, v in final.items() if k != "traces"},
    }
    write_metrics_json(os.path.join(workdir, "metrics.json"), results)
    _plots(workdir, final)
    return results


def _finite(x: float) -> float:
    return float(x) if np.isfinite(x) else -1e9


def _plots(workdir: str, final: dict[str, Any]) -> None:
    """Traces of a few trials of the first session, R² per session, training curves."""
    session, traces = next(iter(final["traces"].items()))
    if traces:
        titles = [f"{session} trial {i}" for i in range(len(traces))]
        plot_traces(traces, os.path.join(workdir, "traces.png"), titles=titles)
    r2 = {k: v for k, v in final["r2"].items() if np.isfinite(v)}
    if r2:
        plot_r2_per_session(r2, os.path.join(workdir, "r2_per_session.png"))
    scalars = read_scalars(os.path.join(workdir, "tb"))
    if scalars:
        plot_training_curves(scalars, os.path.join(workdir, "training_curves.png"))
