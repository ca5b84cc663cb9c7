"""``train_and_evaluate(config, workdir)``: pretraining, finetuning and evaluation of POSSM.

The launchers in ``experiments/`` are thin wrappers around this module. :func:`~possm_jax.train.setup.setup` builds
the run (data, vocabularies, state, mesh, step, checkpointer; resuming if the workdir has checkpoints); then:

1. :func:`train`: TensorBoard + progress bar, validation on whole trials every ``eval.every`` steps, checkpoints
   (model, optimiser, data position, config; keep-N and best-by-validation) every ``checkpoint.every`` steps and at
   each validation, SIGTERM saves then returns, a non-finite step stops with the last good checkpoint kept.
2. :func:`report`: the best-by-validation weights are evaluated on ``eval.final_split``; ``metrics.json`` and PNG
   plots are written to ``workdir``.

The run's objective (:mod:`possm_jax.train.objectives`, ``config.task.name``) sets what validation scores and ranks
(reaching: R², chunk-causal and strictly causal; handwriting: accuracy; speech: -PER), the train step of each phase
and the report's files.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from possm_jax.possm import count_params
from possm_jax.train import transfer
from possm_jax.train.checkpoint import PreemptionFlag
from possm_jax.train.logging import RunLogger, read_scalars, write_metrics_json
from possm_jax.train.model_io import BEST_METRIC
from possm_jax.train.optim import hyperparams
from possm_jax.train.plots import plot_training_curves
from possm_jax.train.setup import Run, setup
from possm_jax.train.sharding import pack_host_batch, replicate, shard_batch
from possm_jax.train.state import TrainState
from possm_jax.train.step import check_finite


@dataclasses.dataclass
class StepTimer:
    """Wall time of the train steps; the first step of each batch shape compiles and is kept out of windows/s."""

    compile_seconds: float | None = None
    steady_steps: int = 0
    steady_seconds: float = 0.0
    shapes: set = dataclasses.field(default_factory=set)

    def add(self, shape: tuple[int, ...], seconds: float) -> None:
        """Records one step of a batch whose spike arrays have ``shape``."""
        if shape not in self.shapes:
            self.shapes.add(shape)
            self.compile_seconds = (self.compile_seconds or 0.0) + seconds
        else:
            self.steady_steps += 1
            self.steady_seconds += seconds

    def windows_per_second(self, batch_size: int) -> float | None:
        """Steady-state training throughput, or None before any steady step."""
        return self.steady_steps * batch_size / self.steady_seconds if self.steady_seconds else None


@dataclasses.dataclass
class TrainOutcome:
    """What :func:`train` ends with: the state, the step, the last logged metrics, timing, and whether it was
    preempted (SIGTERM)."""

    state: TrainState
    step: int
    last: dict[str, float]
    timer: StepTimer
    preempted: bool


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains (or finetunes, or resumes) and evaluates; returns the metrics also written to ``metrics.json``.

    Raises:
        ValueError: bad data directory, session selection or transfer mode (``DataError``), missing or corrupt
            checkpoints (``CheckpointError``), a resumed run whose model config differs (``ConfigMismatchError``).
        NonFiniteLossError: a step produced a NaN/Inf loss or gradient (the last good checkpoint is kept).
    """
    start = time.time()
    run = setup(config, workdir)
    outcome = train(run)
    if outcome.preempted:
        return {"preempted": True, "step": outcome.step}
    return report(run, outcome, started=start)


def _save(run: Run, state: TrainState, step: int, score: float | None) -> None:
    """Checkpoints ``state`` with the data position and config (and the validation score that ranks it, if any).

    The score is stored under ``BEST_METRIC`` whatever the objective (R², accuracy or -PER), so
    :func:`~possm_jax.train.model_io.load_checkpoint` finds the best step of any run.
    """
    metrics = {BEST_METRIC: _finite(score)} if score is not None else None
    run.checkpointer.save(step, state, run.saved_config, run.data, metrics=metrics)


def _next_batch(run: Run, min_width: int) -> dict[str, Any]:
    """The next training batch, packed (if configured and the objective allows it, never narrower than ``min_width``)
    and sharded."""
    batch = next(run.data)
    if run.config.train.pack_spikes and run.objective.packs_spikes:
        batch = pack_host_batch(batch, run.mesh, min_width=min_width)
    return shard_batch(batch, run.mesh)


def train(run: Run) -> TrainOutcome:
    """Runs the train steps from the run's current step to ``train.num_steps`` (or until SIGTERM)."""
    config, ckpt = run.config, run.checkpointer
    state, step, timer, last = run.state, int(run.state.step), StepTimer(), {}
    unfreeze = replicate(transfer.full_mask(state.params), run.mesh) if config.transfer.mode == "ft" else None
    packed_width = 0  # the widest packed batch so far: packing never goes below it (a handful of compilations)
    logger = RunLogger(
        os.path.join(run.workdir, "tb"), config.train.num_steps, initial_step=step, enabled=jax.process_index() == 0
    )
    preempted = False
    with PreemptionFlag() as flag, logger:
        while step < config.train.num_steps:
            if unfreeze is not None and step == config.transfer.unfreeze_step:
                state = dataclasses.replace(state, trainable=unfreeze)
            batch = _next_batch(run, packed_width)
            packed_width = batch["spike_mask"].shape[1]
            t0 = time.perf_counter()
            state, metrics = run.step_fn_at(step)(state, batch, run.rng)
            if not bool(metrics["finite"]):
                ckpt.wait()
                check_finite(metrics, step, ckpt.latest_step())
            timer.add(batch["spike_mask"].shape, time.perf_counter() - t0)
            step += 1
            logger.advance()
            if step % config.train.log_every == 0 or step == config.train.num_steps:
                last = _train_scalars(metrics, state, timer, config.train.batch_size)
                logger.log(step, last, prefix="train/")
            validate = step % config.eval.every == 0 or step == config.train.num_steps
            score = _validate(run, logger, state, step) if validate else None
            stop = flag.requested  # read once: a signal between two reads would stop without saving
            if validate or step % config.checkpoint.every == 0 or stop:
                _save(run, state, step, score)
            if stop:
                ckpt.wait()
                logger.message(f"{flag.signal_name}: saved step {step} to {ckpt.directory}; exiting")
                preempted = True
                break
    ckpt.wait()
    if preempted:
        ckpt.close()
    return TrainOutcome(state, step, last, timer, preempted)


def _validate(run: Run, logger: RunLogger, state: TrainState, step: int) -> float | None:
    """Evaluates ``state`` on the validation split and logs it; returns the score that ranks it (None: unranked)."""
    scalars, score = run.objective.score(run.evaluate(state, "valid"), run.config, step)
    logger.log(step, scalars, prefix="valid/")
    return score


def _train_scalars(metrics: dict[str, Any], state: TrainState, timer: StepTimer, batch_size: int) -> dict[str, float]:
    """The logged training scalars: the step's metrics, the learning rate and, once known, windows/s."""
    out = {k: float(v) for k, v in metrics.items() if k != "finite"}
    out["lr"] = float(hyperparams(state.opt_state)["learning_rate"])
    rate = timer.windows_per_second(batch_size)
    if rate is not None:
        out["windows_per_second"] = rate
    return out


def report(run: Run, outcome: TrainOutcome, started: float) -> dict[str, Any]:
    """Evaluates the best-by-validation state on ``eval.final_split``; writes ``metrics.json`` and the plots.

    Args:
        run: the run.
        outcome: what :func:`train` ended with.
        started: ``time.time()`` when the run started (for ``wall_seconds``).
    """
    config, ckpt = run.config, run.checkpointer
    state = outcome.state
    best = ckpt.best_step()
    if best is not None and best != outcome.step:
        state = ckpt.restore(state, step=best)  # onto the state's own shardings (replicated or FSDP)
    ckpt.close()
    split = config.eval.final_split
    final = run.evaluate(state, split, strict=config.eval.strict, num_traces=3)
    results = {
        "step": outcome.step,
        "best_step": best,
        "sessions": [r.session_key for r in run.recordings],
        "num_params": count_params(run.model(state)),
        "train": outcome.last,
        "compile_seconds": outcome.timer.compile_seconds,
        "windows_per_second": outcome.timer.windows_per_second(config.train.batch_size),
        "wall_seconds": time.time() - started,
        split: run.objective.summary(final),
    }
    if jax.process_index() == 0:  # one writer for the files every process would write alike
        write_metrics_json(os.path.join(run.workdir, "metrics.json"), results)
        run.objective.write_report(final, run.workdir)
        scalars = read_scalars(os.path.join(run.workdir, "tb"))
        if scalars:
            plot_training_curves(scalars, os.path.join(run.workdir, "training_curves.png"))
    return results


def _finite(x: float) -> float:
    return float(x) if np.isfinite(x) else -1e9
