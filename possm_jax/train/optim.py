"""LAMB with the reference's semantics (docs/training.md), as an optax ``GradientTransformation``.

Per tensor ``w`` with gradient ``g`` (no bias correction; ``eps`` outside the square root)::

    m ← β1·m + (1−β1)·g
    v ← β2·v + (1−β2)·g²
    u ← m / (√v + eps) + wd·w
    r ← clip(‖w‖, 0, max_param_norm) / ‖u‖      (r = 1 if either norm is 0)
    w ← w − lr·r·u

``optax.lamb`` differs (it bias-corrects the moments and does not clip ‖w‖) and ``optax.scale_by_trust_ratio`` does
not clip ‖w‖ either, so the moment and trust-ratio steps are small transforms here, chained with optax's
``add_decayed_weights`` and ``scale_by_learning_rate``. The learning rate and β1 are injectable hyperparameters:
pass floats or schedules (:mod:`possm_jax.train.schedules`), and read the values in use from ``opt_state.hyperparams``.

Embedding-row policy. The reference resets the Adam moments of embedding rows that received no gradient in a step. We
keep that behaviour, opt-in per tensor through ``sparse_rows``: for those tensors, a row (index along axis 0) whose
gradient is entirely zero has ``m`` and ``v`` set to zero, so its Adam term is zero and only weight decay moves it.
Why: in multi-session pretraining a batch holds a few sessions, so most unit rows get no gradient; with dense moments
they would keep drifting on stale momentum long after their session was last seen. The trainer marks unit and session
embedding tables as sparse; every other tensor uses dense moments.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from possm_jax.train.schedules import cycled_b1, flat_cosine_lr, peak_learning_rate
from possm_jax.types import Array, PyTree

SparseRows = PyTree | Callable[[PyTree], PyTree] | None
"""A pytree of bools with the structure of the parameters (True: reset moments of untouched rows), a callable
params -> such a pytree, or None (all tensors dense)."""


class LambMomentsState(NamedTuple):
    """First and second moments, one array per parameter."""

    mu: PyTree
    nu: PyTree


def _untouched_rows(g: Array) -> Array:
    """[v, ...] -> [v, 1, ...]: True where a row's gradient is entirely zero."""
    if g.ndim == 0:
        return g == 0
    axes = tuple(range(1, g.ndim))
    return jnp.all(g == 0, axis=axes, keepdims=True)


def scale_by_lamb_moments(
    b1: float | Array, b2: float | Array, eps: float | Array, sparse_rows: SparseRows = None
) -> optax.GradientTransformation:
    """Replaces gradients by ``m / (√v + eps)`` with un-bias-corrected moments (see module docstring)."""

    def init(params: PyTree) -> LambMomentsState:
        zeros = optax.tree_utils.tree_zeros_like(params)
        return LambMomentsState(mu=zeros, nu=optax.tree_utils.tree_zeros_like(params))

    def update(grads: PyTree, state: LambMomentsState, params: PyTree = None) -> tuple[PyTree, LambMomentsState]:
        sparse = sparse_rows(params) if callable(sparse_rows) else sparse_rows
        if sparse is None:
            sparse = jax.tree.map(lambda _: False, grads)

        def moments(g: Array, m: Array, v: Array, is_sparse: bool) -> tuple[Array, Array]:
            m = b1 * m + (1.0 - b1) * g
            v = b2 * v + (1.0 - b2) * g * g
            if is_sparse:
                untouched = _untouched_rows(g)
                m = jnp.where(untouched, 0.0, m)
                v = jnp.where(untouched, 0.0, v)
            return m, v

        mv = jax.tree.map(moments, grads, state.mu, state.nu, sparse)
        is_pair = lambda x: isinstance(x, tuple)  # noqa: E731
        mu = jax.tree.map(lambda p: p[0], mv, is_leaf=is_pair)
        nu = jax.tree.map(lambda p: p[1], mv, is_leaf=is_pair)
        updates = jax.tree.map(lambda m, v: m / (jnp.sqrt(v) + eps), mu, nu)
        return updates, LambMomentsState(mu=mu, nu=nu)

    return optax.GradientTransformation(init, update)


def clipped_trust_ratio(param_norm: Array, update_norm: Array, max_param_norm: float) -> Array:
    """``clip(‖w‖, 0, max) / ‖u‖``, or 1 where either norm is zero (scalars)."""
    w = jnp.clip(param_norm, 0.0, max_param_norm)
    degenerate = (w == 0) | (update_norm == 0)
    return jnp.where(degenerate, 1.0, w / jnp.where(degenerate, 1.0, update_norm))


def scale_by_clipped_trust_ratio(max_param_norm: float = 10.0) -> optax.GradientTransformation:
    """Scales each tensor's update by :func:`clipped_trust_ratio` of its parameter and update norms."""

    def update(updates: PyTree, state: optax.EmptyState, params: PyTree = None) -> tuple[PyTree, optax.EmptyState]:
        if params is None:
            raise ValueError("scale_by_clipped_trust_ratio needs params: call tx.update(grads, state, params)")

        def scale(u: Array, w: Array) -> Array:
            ratio = clipped_trust_ratio(jnp.linalg.norm(w.ravel()), jnp.linalg.norm(u.ravel()), max_param_norm)
            return u * ratio.astype(u.dtype)

        return jax.tree.map(scale, updates, params), state

    return optax.GradientTransformation(lambda _: optax.EmptyState(), update)


def _lamb(
    learning_rate: float | Array,
    b1: float | Array,
    b2: float | Array,
    eps: float | Array,
    weight_decay: float | Array,
    max_param_norm: float,
    sparse_rows: SparseRows,
    weight_decay_mask: Any,
) -> optax.GradientTransformation:
    return optax.chain(
        scale_by_lamb_moments(b1, b2, eps, sparse_rows),
        optax.add_decayed_weights(weight_decay, mask=weight_decay_mask),
        scale_by_clipped_trust_ratio(max_param_norm),
        optax.scale_by_learning_rate(learning_rate),
    )


def lamb(
    learning_rate: float | optax.Schedule,
    b1: float | optax.Schedule = 0.9,
    b2: float = 0.999,
    eps: float = 1e-6,
    weight_decay: float = 1e-4,
    max_param_norm: float = 10.0,
    sparse_rows: SparseRows = None,
    weight_decay_mask: Any = None,
) -> optax.GradientTransformation:
    """The reference LAMB (module docstring) with injectable ``learning_rate`` and ``b1`` (floats or schedules).

    Args:
        learning_rate: step size or schedule of the step count.
        b1: first-moment decay or schedule.
        b2: second-moment decay.
        eps: added to √v (outside the square root).
        weight_decay: decoupled weight decay added to the Adam term before the trust ratio.
        max_param_norm: ‖w‖ is clipped to this in the trust ratio.
        sparse_rows: tensors whose untouched rows get their moments reset (module docstring).
        weight_decay_mask: optax mask (pytree or callable) of the tensors that are decayed; None decays all.

    Returns:
        A transformation whose state exposes ``hyperparams["learning_rate"]`` and ``hyperparams["b1"]``.
    """
    factory = optax.inject_hyperparams(_lamb, static_args=("max_param_norm", "sparse_rows", "weight_decay_mask"))
    return factory(
        learning_rate=learning_rate,
        b1=b1,
        b2=b2,
        eps=eps,
        weight_decay=weight_decay,
        max_param_norm=max_param_norm,
        sparse_rows=sparse_rows,
        weight_decay_mask=weight_decay_mask,
    )


def reference_lamb(
    global_batch: int, total_steps: int, sparse_rows: SparseRows = None, lr_scale: float = 1.0, **kwargs: Any
) -> optax.GradientTransformation:
    """LAMB with the reference schedules: peak LR ``3.125e-5 × global_batch × lr_scale``, flat for the first half of
    ``total_steps`` then cosine to peak / 1e4; β1 cycles 0.95 → 0.85 → 0.95 over the same span.

    Args:
        global_batch: windows per update over all devices and processes (the LR is linear in it).
        total_steps: the run's length, which sets both schedules.
        sparse_rows: see :func:`lamb`.
        lr_scale: a factor on the peak learning rate.
        **kwargs: further :func:`lamb` arguments.
    """
    return lamb(
        learning_rate=flat_cosine_lr(peak_learning_rate(global_batch) * lr_scale, total_steps),
        b1=cycled_b1(total_steps),
        sparse_rows=sparse_rows,
        **kwargs,
    )


def hyperparams(opt_state: Any) -> dict[str, Array]:
    """The injected hyperparameters (learning rate, β1, ...) used by the last update, for logging."""
    for state in jax.tree.leaves(opt_state, is_leaf=lambda s: hasattr(s, "hyperparams")):
        if hasattr(state, "hyperparams"):
            return dict(state.hyperparams)
    raise ValueError("opt_state has no injected hyperparameters; build the optimizer with possm_jax.train.optim.lamb")
