"""The jitted functional train step, with freezing and a NaN/Inf guard.

Works for any nnx model whose ``__call__(batch, *, rngs)`` returns ``(preds, state)`` (the POSSM API): the model is
rebuilt from the static graph inside the traced function, so one ``jax.jit`` compiles the whole update and the state
buffers are donated. Dropout keys are ``fold_in(rng, state.step)``: a resumed run draws the same keys as an
uninterrupted one.

Freezing (``TrainState.trainable``): gradients of frozen entries are zeroed and the optimiser sees frozen entries as
zeros (so they add nothing to the moments, weight decay or LAMB's norms: LAMB acts on the trainable part of each
tensor), and the new parameter is selected with ``where``, so frozen entries stay bit-identical.

Mixed precision (``compute_dtype=jnp.bfloat16``): the forward and backward passes run on a copy of the parameters
and of the batch's float inputs cast to ``compute_dtype``; the master weights, the optimiser state and the gradients
(the cast's transpose casts them back) stay float32, and the predictions are cast to float32 before the loss. Batch
keys in ``FLOAT32_KEYS`` are never cast: spike and query times are offsets within a 50 ms chunk that RoPE resolves
to 0.1 ms, finer than bfloat16's 8-bit mantissa, and targets and weights only enter the float32 loss.

NaN/Inf guard: when the loss or the gradient norm is not finite, the step returns the *input* state unchanged and
``metrics["finite"] = False``; the loop then calls :func:`check_finite`, which names the step, and stops without
saving, so the last good checkpoint is kept.
"""

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh

from possm_jax.train.sharding import data_sharded, replicated
from possm_jax.train.state import TrainState
from possm_jax.types import Array, PyTree
from possm_jax.xla_options import train_compiler_options

LossFn = Callable[[Mapping[str, Array], Mapping[str, Array]], tuple[Array, Mapping[str, Array]]]
"""``loss_fn(preds, batch) -> (loss, metrics)``, e.g. ``functools.partial(multitask_loss, task_names=...)``."""


FLOAT32_KEYS = ("spike_time", "query_time", "target", "weight")
"""Batch keys kept in float32 under mixed precision (see the module docstring)."""


class NonFiniteLossError(RuntimeError):
    """The loss or gradient became NaN/Inf; the state was not updated."""


def _mask(tree: PyTree, trainable: PyTree | None) -> PyTree:
    if trainable is None:
        return tree
    return jax.tree.map(lambda x, m: jnp.where(m, x, jnp.zeros_like(x)), tree, trainable)


def _select(pred: Array, new: PyTree, old: PyTree) -> PyTree:
    return jax.tree.map(lambda n, o: jnp.where(pred, n, o), new, old)


def cast_floating(tree: PyTree, dtype: jnp.dtype) -> PyTree:
    """``tree`` with its floating-point leaves cast to ``dtype`` (integer, bool and key leaves untouched)."""
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def _compute_inputs(batch: Mapping[str, Array], dtype: jnp.dtype) -> dict[str, Array]:
    """The batch the forward pass reads: float inputs in ``dtype`` except :data:`FLOAT32_KEYS`."""
    return {k: v if k in FLOAT32_KEYS else cast_floating(v, dtype) for k, v in batch.items()}


def train_step(
    state: TrainState,
    batch: Mapping[str, Array],
    rng: Array,
    *,
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    loss_fn: LossFn,
    compute_dtype: jnp.dtype = jnp.float32,
) -> tuple[TrainState, dict[str, Array]]:
    """One optimiser update (pure; jit it with :func:`make_train_step`).

    Args:
        state: the train state.
        batch: a batch (``data_pipeline.batch_layout``); the model and ``loss_fn`` read what they need.
        rng: base PRNG key of the run; the step's dropout key is ``fold_in(rng, state.step)``.
        graphdef: the model's static graph.
        tx: the optimiser.
        loss_fn: ``(preds, batch) -> (loss, metrics)``.
        compute_dtype: dtype of the forward/backward pass (see the module docstring); float32 computes as stored.

    Returns:
        ``(new_state, metrics)`` with ``loss``, ``grad_norm``, ``finite`` and the loss function's metrics.
    """
    key = jax.random.fold_in(rng, state.step)
    mixed = jnp.dtype(compute_dtype) != jnp.float32
    inputs = _compute_inputs(batch, compute_dtype) if mixed else batch

    def compute_loss(params: nnx.State) -> tuple[Array, tuple[Mapping[str, Array], nnx.State]]:
        model = nnx.merge(graphdef, cast_floating(params, compute_dtype) if mixed else params, state.rest)
        preds, _ = model(inputs, rngs=nnx.Rngs(key))
        if mixed:
            preds = cast_floating(preds, jnp.float32)
        loss, metrics = loss_fn(preds, batch)
        return loss, (metrics, nnx.state(model, nnx.Not(nnx.Param)))

    (loss, (metrics, rest)), grads = jax.value_and_grad(compute_loss, has_aux=True)(state.params)
    grads = _mask(grads, state.trainable)
    grad_norm = optax.global_norm(grads)
    updates, opt_state = tx.update(grads, state.opt_state, _mask(state.params, state.trainable))
    params = optax.apply_updates(state.params, updates)
    if state.trainable is not None:
        params = jax.tree.map(jnp.where, state.trainable, params, state.params)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    new_state = TrainState(
        step=state.step + 1, params=params, rest=rest, opt_state=opt_state, trainable=state.trainable
    )
    out = {**metrics, "loss": loss, "grad_norm": grad_norm, "finite": finite}
    return _select(finite, new_state, state), out


def make_train_step(
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    loss_fn: LossFn,
    mesh: Mesh | None = None,
    donate: bool = True,
    compute_dtype: jnp.dtype = jnp.float32,
    state_sharding: PyTree | None = None,
) -> Callable[[TrainState, Mapping[str, Array], Array], tuple[TrainState, dict[str, Array]]]:
    """``jax.jit`` of :func:`train_step`: ``step_fn(state, batch, rng) -> (state, metrics)``.

    With a ``mesh``, the rng is replicated, the batch is split over ``data`` and the state is replicated, or placed
    by ``state_sharding`` (FSDP: :func:`~possm_jax.train.sharding.state_shardings`); place them with
    :func:`~possm_jax.train.sharding.place_state` / :func:`~possm_jax.train.sharding.shard_batch`. With ``donate``,
    the input state's buffers are reused for the output: do not read ``state`` after the call. ``compute_dtype``:
    see :func:`train_step`.
    """

    def step(state: TrainState, batch: Mapping[str, Array], rng: Array) -> tuple[TrainState, dict[str, Array]]:
        return train_step(state, batch, rng, graphdef=graphdef, tx=tx, loss_fn=loss_fn, compute_dtype=compute_dtype)

    kwargs = {"donate_argnums": (0,) if donate else (), "compiler_options": train_compiler_options()}
    if mesh is not None:
        repl = replicated(mesh)
        placed = repl if state_sharding is None else state_sharding
        kwargs |= {"in_shardings": (placed, data_sharded(mesh), repl), "out_shardings": (placed, repl)}
    return jax.jit(step, **kwargs)


def check_finite(metrics: Mapping[str, Array], step: int, last_checkpoint: int | None = None) -> None:
    """Raises :class:`NonFiniteLossError` naming ``step`` if ``metrics["finite"]`` is False.

    Args:
        metrics: the metrics of the step that just ran.
        step: the step number of that update (the state's step before it).
        last_checkpoint: the newest saved step, named in the message so the user knows what survives.
    """
    if bool(metrics["finite"]):
        return
    kept = (
        f"the last good checkpoint (step {last_checkpoint}) is kept"
        if last_checkpoint is not None
        else ("no checkpoint had been saved yet")
    )
    raise NonFiniteLossError(
        f"non-finite loss or gradient at step {step} (loss={float(metrics['loss'])}, "
        f"grad_norm={float(metrics['grad_norm'])}); the update was skipped and training stopped; {kept}. "
        f"Lower the learning rate, check the batch for NaN targets, or enable gradient clipping."
    )
