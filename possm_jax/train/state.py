"""The functional train state: an nnx model split into a static graph and array pytrees, plus the optimiser state.

Only ``nnx.Param`` variables are differentiated and optimised; every other variable (RNG counters, statistics) rides
along in ``rest``. Freezing is a ``trainable`` mask with the structure of ``params``: each leaf is a bool array that
broadcasts against its parameter — a scalar freezes or trains a whole tensor, a ``[v, 1, ...]`` array selects rows
(unit identification trains only the new unit and session rows). See :func:`trainable_mask`.
"""

import dataclasses
import difflib
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from possm_jax.types import Array, PyTree


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TrainState:
    """Everything a train step reads and writes (a pytree; the model's graph lives outside).

    Attributes:
        step: int32 scalar, number of updates applied.
        params: ``nnx.Param`` state of the model.
        rest: every other model variable.
        opt_state: the optax state of ``params``.
        trainable: None (everything trains) or a bool mask pytree shaped like ``params`` (see module docstring).
    """

    step: Array
    params: nnx.State
    rest: nnx.State
    opt_state: optax.OptState
    trainable: PyTree | None = None


def create_train_state(
    model: nnx.Module, tx: optax.GradientTransformation, trainable: PyTree | None = None
) -> tuple[nnx.GraphDef, TrainState]:
    """Splits ``model`` and initialises ``tx`` on its parameters.

    Returns:
        ``(graphdef, state)``; rebuild the model with :func:`merge_model`.
    """
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    if trainable is not None:
        jax.tree.map(_check_broadcast, params, trainable)
    state = TrainState(
        step=jnp.zeros((), jnp.int32), params=params, rest=rest, opt_state=tx.init(params), trainable=trainable
    )
    return graphdef, state


def merge_model(graphdef: nnx.GraphDef, state: TrainState) -> nnx.Module:
    """The nnx model holding ``state``'s variables."""
    return nnx.merge(graphdef, state.params, state.rest)


def param_paths(params: nnx.State) -> list[str]:
    """'/'-joined paths of every parameter (e.g. ``"unit_emb/embedding"``), in pytree order."""
    return [_path_str(path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def _path_str(path: Sequence) -> str:
    parts = []
    for entry in path:
        if isinstance(entry, jax.tree_util.DictKey):
            parts.append(str(entry.key))
        elif isinstance(entry, jax.tree_util.SequenceKey):
            parts.append(str(entry.idx))
    return "/".join(parts)


def path_flags(params: nnx.State, predicate: Callable[[str], bool]) -> PyTree:
    """A pytree shaped like ``params`` holding ``predicate(path)`` as Python bools.

    E.g. LAMB's ``sparse_rows`` for the embedding tables:
    ``lamb(lr, sparse_rows=lambda p: path_flags(p, lambda path: path.startswith(("unit_emb/", "session_emb/"))))``.
    """
    return jax.tree_util.tree_map_with_path(lambda path, _: bool(predicate(_path_str(path))), params)


def _check_broadcast(param: Array, mask: Array) -> None:
    mask = np.asarray(mask)
    if mask.dtype != np.bool_ or np.broadcast_shapes(mask.shape, param.shape) != param.shape:
        raise ValueError(
            f"trainable: each mask leaf must be a bool array broadcasting to its parameter {param.shape}, "
            f"got {mask.dtype}{list(mask.shape)}; build masks with trainable_mask()"
        )


def trainable_mask(
    params: nnx.State,
    rows: Mapping[str, Sequence[int] | np.ndarray] | None = None,
    train: bool | Callable[[str], bool] = False,
) -> PyTree:
    """A ``trainable`` mask for :class:`TrainState`.

    Args:
        params: the parameter state (``TrainState.params``).
        rows: parameter path (see :func:`param_paths`) -> rows (indices along axis 0) to train; the other rows of
            those tensors are frozen.
        train: for tensors not in ``rows``: True/False for all, or a predicate on the path.

    Returns:
        A pytree shaped like ``params`` with bool leaves (scalar, or [v, 1, ...] for row-wise tensors).

    Raises:
        ValueError: a path in ``rows`` names no parameter (the message suggests the closest), or a row is out of range.
    """
    rows = dict(rows or {})
    paths = param_paths(params)
    for name in rows:
        if name not in paths:
            near = difflib.get_close_matches(name, paths, n=1)
            hint = f" Did you mean {near[0]!r}?" if near else f" Parameters: {paths}"
            raise ValueError(f"rows: no parameter at path {name!r}.{hint}")

    def leaf(path: Sequence, param: Array) -> np.ndarray:
        name = _path_str(path)
        if name in rows:
            idx = np.asarray(rows[name], dtype=np.int64)
            if idx.size and (idx.min() < 0 or idx.max() >= param.shape[0]):
                raise ValueError(f"rows[{name!r}]: row indices must be in [0, {param.shape[0]}), got {idx.tolist()}")
            mask = np.zeros((param.shape[0],) + (1,) * (param.ndim - 1), dtype=bool)
            mask[idx] = True
            return mask
        return np.asarray(train(name) if callable(train) else train, dtype=bool)

    return jax.tree_util.tree_map_with_path(leaf, params)
