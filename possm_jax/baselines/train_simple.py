"""A minimal single-process trainer shared by the benchmark's models (POSSM, binned RNNs, POYO).

It is the project's training infrastructure in a loop and nothing more: :func:`~possm_jax.train.optim.reference_lamb`
(the reference schedules), :func:`~possm_jax.train.loss.multitask_loss` and
:func:`~possm_jax.train.setup.init_training` (the state and jitted step every trainer builds).
Any nnx model whose ``__call__(batch, *, rngs)`` returns ``({task: [b, q, y]}, state)`` and any iterator of batches
holding what that model and the loss read (``query_task``, ``target``, ``weight``) can be trained with it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from possm_jax.train.loss import multitask_loss
from possm_jax.train.optim import reference_lamb
from possm_jax.train.setup import init_training
from possm_jax.train.step import LossFn, check_finite


def fit(
    model: nnx.Module,
    batches: Iterator[Mapping[str, np.ndarray]],
    steps: int,
    *,
    task_names: Sequence[str],
    batch_size: int,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
    loss_fn: LossFn | None = None,
    lr_scale: float = 1.0,
) -> dict[str, list[float] | float]:
    """Trains ``model`` in place for ``steps`` updates of LAMB with the reference schedules.

    Args:
        model: the nnx model (its parameters are replaced by the trained ones).
        batches: endless iterator of host batches.
        steps: number of updates (>= 1).
        task_names: the model's tasks in ``query_task`` order.
        batch_size: windows per batch (sets the LAMB peak learning rate).
        seed: dropout seed.
        log: optional progress printer (called about 5 times).
        loss_fn: ``(preds, batch) -> (loss, metrics)``; default :func:`multitask_loss` (MSE) over ``task_names``
          (classification: ``multitask_loss`` with ``kinds``; CTC: a wrapper of :func:`~possm_jax.train.loss.ctc_loss`).
        lr_scale: multiplies the peak learning rate (CTC needs a larger one to leave the all-blank plateau).

    Returns:
        ``{"loss": per-step losses, "compile_s": first step incl. compilation, "seconds": total wall time}``.
    """
    if steps < 1:
        raise ValueError(f"steps: need at least 1 training step, got {steps}")
    loss_fn = loss_fn or functools.partial(multitask_loss, task_names=tuple(task_names))
    _, state, step_fn = init_training(model, reference_lamb(batch_size, steps, lr_scale=lr_scale), loss_fn)
    rng = jax.random.key(seed)
    losses: list[float] = []
    start = time.perf_counter()
    compile_s = 0.0
    for i in range(steps):
        batch = {k: jnp.asarray(v) for k, v in next(batches).items()}
        state, metrics = step_fn(state, batch, rng)
        check_finite(metrics, i)
        losses.append(float(metrics["loss"]))
        if i == 0:
            compile_s = time.perf_counter() - start
        if log is not None and (i + 1) % max(1, steps // 5) == 0:
            log(f"step {i + 1}/{steps} loss {np.mean(losses[-max(1, steps // 5) :]):.4f}")
    nnx.update(model, state.params, state.rest)
    return {"loss": losses, "compile_s": compile_s, "seconds": time.perf_counter() - start}
