"""Training losses (docs/training.md): weighted multi-task MSE, plus cross-entropy and CTC hooks.

Every query of a batch belongs to one task (``query_task`` indexes the model's task list) and carries a loss weight
(``weight``: interval membership, 0 for padding). Per task,

    L_task = Σ_q w_q · mean_dim((ŷ_q − y_q)²) / Σ_q w_q        over the queries of that task,

and the loss is the sum over tasks. A task with no weighted query in the batch contributes 0.

Classification tasks (handwriting) store the class index in ``target[..., 0]`` and use the same weighting with
cross-entropy in place of the squared error. CTC tasks (speech) have label sequences, not per-query targets, so
:func:`ctc_loss` takes them explicitly. :func:`weighted_poisson_nll` scores predicted log-rates against counts (the
speech task's reconstruction phase, :mod:`possm_jax.tasks.speech`).
"""

from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import optax

from possm_jax.types import Array

LOSS_KINDS = ("mse", "ce")
"""Per-query loss kinds :func:`multitask_loss` understands."""


def _weighted_mean(per_query: Array, weight: Array) -> Array:
    """Σ w·l / Σ w over all queries; 0 when Σ w = 0. per_query, weight: [b, q]."""
    total = jnp.sum(weight)
    return jnp.where(total > 0, jnp.sum(weight * per_query) / jnp.where(total > 0, total, 1.0), 0.0)


def weighted_mse(pred: Array, target: Array, weight: Array) -> Array:
    """``Σ w·mean_dim((ŷ−y)²) / Σ w``.

    Args:
        pred: [b, q, y_task] predictions.
        target: [b, q, y] targets; only the first y_task columns are used (narrower tasks are padded).
        weight: [b, q] loss weights (0 excludes a query).

    Returns:
        Scalar loss (0 if every weight is 0).
    """
    err = jnp.square(pred.astype(jnp.float32) - target[..., : pred.shape[-1]].astype(jnp.float32))
    return _weighted_mean(jnp.mean(err, axis=-1), weight)


def weighted_cross_entropy(logits: Array, labels: Array, weight: Array) -> Array:
    """``Σ w·CE(logits, label) / Σ w``. logits: [b, q, k]; labels: [b, q] int; weight: [b, q]."""
    ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels.astype(jnp.int32))
    return _weighted_mean(ce, weight)


MAX_LOG_RATE = 8.0
"""Log-rates are clipped here (e^8 ≈ 3000 counts per bin) so one wild output cannot overflow ``exp``."""


def weighted_poisson_nll(log_rate: Array, counts: Array, weight: Array) -> Array:
    """``Σ_q w_q · mean_k(exp(r) − y·r) / Σ w``: Poisson negative log-likelihood without the ``log y!`` constant.

    Args:
        log_rate: [b, q, k] predicted log expected counts per channel.
        counts: [b, q, k] observed counts.
        weight: [b, q] loss weights.

    Returns:
        Scalar loss (0 if every weight is 0).
    """
    r = jnp.minimum(log_rate.astype(jnp.float32), MAX_LOG_RATE)
    nll = jnp.exp(r) - counts.astype(jnp.float32) * r
    return _weighted_mean(jnp.mean(nll, axis=-1), weight)


def multitask_loss(
    preds: Mapping[str, Array],
    batch: Mapping[str, Array],
    task_names: Sequence[str],
    kinds: Mapping[str, str] | None = None,
) -> tuple[Array, dict[str, Array]]:
    """Sum over tasks of the per-task weighted loss, selecting each task's queries with ``query_task``.

    Args:
        preds: task name -> [b, q, y_task] outputs for every query (the model's readouts).
        batch: a batch with ``query_task`` [b, q], ``target`` [b, q, y], ``weight`` [b, q] (see batch_layout).
        task_names: task names in ``query_task`` order.
        kinds: task name -> "mse" (default) or "ce".

    Returns:
        ``(loss, {"loss/<task>": per-task loss})``.
    """
    kinds = dict(kinds or {})
    unknown = sorted(set(kinds) - set(task_names))
    if unknown:
        raise ValueError(f"kinds: tasks {unknown} are not in task_names {list(task_names)}")
    bad = {k: v for k, v in kinds.items() if v not in LOSS_KINDS}
    if bad:
        raise ValueError(f"kinds: unsupported loss kinds {bad}; use one of {LOSS_KINDS} (CTC: use ctc_loss)")
    missing = [t for t in task_names if t not in preds]
    if missing:
        raise ValueError(f"preds: no outputs for tasks {missing}; the model's tasks are {sorted(preds)}")
    per_task = {}
    for index, name in enumerate(task_names):
        weight = jnp.where(batch["query_task"] == index, batch["weight"], 0.0)
        if kinds.get(name, "mse") == "ce":
            per_task[name] = weighted_cross_entropy(preds[name], batch["target"][..., 0], weight)
        else:
            per_task[name] = weighted_mse(preds[name], batch["target"], weight)
    total = sum(per_task.values(), start=jnp.zeros((), jnp.float32))
    return total, {f"loss/{name}": value for name, value in per_task.items()}


def ctc_loss(logits: Array, logit_mask: Array, labels: Array, label_mask: Array, blank_id: int = 0) -> Array:
    """Mean over sequences of the CTC negative log-likelihood divided by the label length.

    Args:
        logits: [b, t, k] per-step class logits (k includes the blank).
        logit_mask: [b, t] True for real steps.
        labels: [b, l] int label sequences (no blanks).
        label_mask: [b, l] True for real labels.
        blank_id: index of the blank class.

    Returns:
        Scalar loss.
    """
    nll = optax.ctc_loss(
        logits.astype(jnp.float32),
        1.0 - logit_mask.astype(jnp.float32),
        labels.astype(jnp.int32),
        1.0 - label_mask.astype(jnp.float32),
        blank_id=blank_id,
    )
    lengths = jnp.maximum(jnp.sum(label_mask, axis=-1), 1).astype(jnp.float32)
    return jnp.mean(nll / lengths)
