"""Transfer to new sessions (docs/training.md): vocabulary extend/subset, carrying weights over, and what trains.

A pretrained model knows the units and sessions of its vocabularies. Finetuning on a session it has never seen adds
that session's units and the session itself as new rows (N(0, 0.02)); every known row is copied by string id, so
the order of recordings never matters. Modes:

- ``ui`` (unit identification): only the new unit and session rows train; every other parameter, the latent query
  included, stays bit-identical.
- ``ft``: ``ui`` for the first ``unfreeze_step`` steps, then everything trains (gradual unfreezing).
- ``full``: everything trains from the first step.
- ``lora``: the model is frozen whole and the new rows are low-rank adapters ``A @ B`` (:mod:`possm_jax.lora`,
  rank ``transfer.lora_rank``); the adapters are the model's only parameters, so its checkpoints hold only them
  plus the base's digest.

Transferring to another task (reaching -> handwriting) builds the run's own model and carries every pretrained
parameter whose path and shape match (``transfer.partial``); the others (the new readout, a binned encoder's value
vector, a backbone input sized for another number of latents) are fresh and train in every mode, with the new rows.

Masks always have the same structure and shapes (row masks for the two tables, scalars elsewhere), so switching
from ``ui`` to full training at ``unfreeze_step`` changes only values: no recompilation, and checkpoints of any
mode restore into any other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set
from typing import Any

import jax
import numpy as np
from absl import logging
from flax import nnx

from possm_jax.config import POSSMConfig
from possm_jax.lora import LoRAPOSSM, params_digest
from possm_jax.possm import POSSM
from possm_jax.train.state import trainable_mask
from possm_jax.types import PyTree
from possm_jax.vocab import Vocab, remap_embedding

UNIT_TABLE = "unit_emb/embedding"
SESSION_TABLE = "session_emb/embedding"
MODES = ("ui", "ft", "full", "lora")


def check_mode(mode: str) -> str:
    """Returns ``mode`` or raises ValueError naming the valid modes."""
    if mode not in MODES:
        raise ValueError(f"transfer.mode: expected one of {MODES}, got {mode!r}")
    return mode


def transfer_vocabs(
    units: Vocab, sessions: Vocab, unit_ids: Iterable[str], session_ids: Iterable[str], subset: bool = False
) -> tuple[Vocab, Vocab]:
    """The vocabularies of a finetuning run.

    Args:
        units, sessions: the pretrained vocabularies.
        unit_ids, session_ids: the ids of the finetuning data (may be known or new).
        subset: keep only the finetuning data's ids (a smaller model); otherwise the pretrained ids are kept too.

    Returns:
        ``(units, sessions)`` extended (and optionally subset) vocabularies.
    """
    unit_ids, session_ids = list(dict.fromkeys(unit_ids)), list(dict.fromkeys(session_ids))
    new_units, _ = units.extend(unit_ids)
    new_sessions, _ = sessions.extend(session_ids)
    if subset:
        new_units, _ = new_units.subset(unit_ids)
        new_sessions, _ = new_sessions.subset(session_ids)
    return new_units, new_sessions


def transfer_params(
    pretrained: Mapping[str, Any],
    target: Mapping[str, Any],
    old: tuple[Vocab, Vocab],
    new: tuple[Vocab, Vocab],
    key: jax.Array,
    partial: bool = False,
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Pretrained parameters re-indexed for new vocabularies.

    Args:
        pretrained: pure dict (``nnx.to_pure_dict``) of the pretrained ``nnx.Param`` state.
        target: pure dict of the new model's params (same structure, tables sized for ``new``).
        old: the pretrained ``(units, sessions)`` vocabularies.
        new: the new ``(units, sessions)`` vocabularies.
        key: PRNG key for the fresh rows.
        partial: the target is a different model (another task or input kind): parameters whose path and shape
            match are carried, the others keep the target's values (:func:`fresh_paths` names them).

    Returns:
        ``(params, fresh_unit_rows, fresh_session_rows)``: a pure dict to load into the new model, and the rows that
        were freshly initialised (those that ``ui`` trains).

    Raises:
        ValueError: without ``partial``, the two models differ in something other than the table sizes; with it,
            no parameter but the tables fits.
    """
    flat_pre, flat_new = _flatten(pretrained), _flatten(target)
    if not partial and set(flat_pre) != set(flat_new):
        raise ValueError(
            f"pretrained checkpoint parameters differ from the model's: {sorted(set(flat_pre) ^ set(flat_new))}"
        )
    fresh = fresh_paths(pretrained, target)
    if partial and len(fresh) == len(flat_new) - 2:
        raise ValueError(
            "transfer.partial: no pretrained parameter fits the run's model (the tables aside), so nothing would be "
            "carried; give the run the checkpoint's sizes (model.dim, model.backbone.hidden, model.ffn_mult)"
        )
    out = {}
    for path, value in flat_new.items():
        if path in (UNIT_TABLE, SESSION_TABLE):
            continue
        if path in fresh and not partial:
            raise ValueError(
                f"pretrained parameter {path} has shape {np.shape(flat_pre[path])}, model {np.shape(value)}"
            )
        out[path] = value if path in fresh else flat_pre[path]
    k_units, k_sessions = jax.random.split(key)
    out[UNIT_TABLE], fresh_units = remap_embedding(flat_pre[UNIT_TABLE], old[0], new[0], k_units)
    out[SESSION_TABLE], fresh_sessions = remap_embedding(flat_pre[SESSION_TABLE], old[1], new[1], k_sessions)
    return _unflatten(out), fresh_units, fresh_sessions


def transfer_model(
    pretrained: POSSM,
    old: tuple[Vocab, Vocab],
    new: tuple[Vocab, Vocab],
    seed: int,
    mode: str,
    lora_rank: int = 0,
    config: POSSMConfig | None = None,
) -> tuple[nnx.Module, PyTree]:
    """The model of a finetuning run and its ``trainable`` mask at the start.

    Args:
        pretrained: the pretrained model (on the ``old`` vocabularies).
        old, new: the pretrained and the run's ``(units, sessions)`` vocabularies.
        seed: draws the fresh rows (and the LoRA adapters).
        mode: one of :data:`MODES`.
        lora_rank: the adapters' rank (``lora`` only).
        config: a different model to transfer to (another task, e.g. reaching -> handwriting): only the pretrained
            parameters whose path and shape match are carried, and the rest (a new readout, a binned encoder's value
            vector, ...) train from the start with the new rows. None: the pretrained model's config.

    Returns:
        ``(model, mask)``: a :class:`~possm_jax.possm.POSSM`, or for ``lora`` a :class:`~possm_jax.lora.LoRAPOSSM`.

    Raises:
        ValueError: ``lora`` with a ``config`` other than the pretrained one (LoRA keeps the whole base model).
    """
    partial = config is not None and config != pretrained.config
    if partial and check_mode(mode) == "lora":
        raise ValueError(
            "transfer.mode=lora: LoRA keeps the pretrained model whole, so the run's model must be the checkpoint's; "
            "use ui, ft or full to transfer to a different task"
        )
    model = POSSM(config or pretrained.config, len(new[0]), len(new[1]), rngs=nnx.Rngs(seed))
    params = nnx.state(model, nnx.Param)
    pre, target = nnx.to_pure_dict(nnx.state(pretrained, nnx.Param)), nnx.to_pure_dict(params)
    carried, fresh_units, fresh_sessions = transfer_params(pre, target, old, new, jax.random.PRNGKey(seed), partial)
    nnx.replace_by_pure_dict(params, carried)
    nnx.update(model, params)
    if check_mode(mode) == "lora":
        digest = params_digest(pretrained)
        model = LoRAPOSSM(model, fresh_units, fresh_sessions, lora_rank, digest, rngs=nnx.Rngs(seed))
        return model, trainable_mask(nnx.state(model, nnx.Param), train=True)
    fresh = set()
    if partial:
        fresh = fresh_paths(pre, target)
        logging.info("transfer.partial: %d parameter tensors are fresh: %s", len(fresh), sorted(fresh))
    return model, transfer_mask(params, mode, fresh_units, fresh_sessions, fresh)


def fresh_paths(pretrained: Mapping[str, Any], target: Mapping[str, Any]) -> set[str]:
    """Parameter paths of ``target`` (a pure dict) that ``pretrained`` lacks or holds in another shape, the two
    embedding tables excepted (their rows are remapped by id)."""
    flat_pre, flat_new = _flatten(pretrained), _flatten(target)
    return {
        path
        for path, value in flat_new.items()
        if path not in (UNIT_TABLE, SESSION_TABLE)
        and (path not in flat_pre or np.shape(flat_pre[path]) != np.shape(value))
    }


def trainable_count(params: nnx.State, mask: PyTree | None) -> int:
    """How many parameter entries ``mask`` trains (None: all)."""
    if mask is None:
        return sum(int(np.size(x)) for x in jax.tree.leaves(params))
    sizes = jax.tree.map(lambda x, m: int(np.sum(np.broadcast_to(np.asarray(m), np.shape(x)))), params, mask)
    return sum(jax.tree.leaves(sizes))


def transfer_mask(
    params: nnx.State,
    mode: str,
    unit_rows: Sequence[int] | np.ndarray,
    session_rows: Sequence[int] | np.ndarray,
    fresh: Set[str] = frozenset(),
) -> PyTree:
    """The ``trainable`` mask at the start of training in ``mode`` (see module docstring).

    Args:
        params: the model's parameter state.
        mode: ``ui``, ``ft`` or ``full`` (``lora`` models: see :func:`transfer_model`).
        unit_rows, session_rows: the new rows (from :func:`transfer_params`); ignored for ``full``.
        fresh: paths of parameters that were not carried over (:func:`fresh_paths`); they train in every mode.
    """
    if check_mode(mode) == "full":
        return full_mask(params)
    rows = {UNIT_TABLE: np.asarray(unit_rows, np.int64), SESSION_TABLE: np.asarray(session_rows, np.int64)}
    return trainable_mask(params, rows=rows, train=lambda path: path in fresh)


def full_mask(params: nnx.State) -> PyTree:
    """Everything trains except the reserved row 0 of the tables (same structure as a ``ui`` mask)."""
    sizes = {path: np.shape(value)[0] for path, value in _flatten(nnx.to_pure_dict(params)).items()}
    rows = {name: np.arange(1, sizes[name]) for name in (UNIT_TABLE, SESSION_TABLE)}
    return trainable_mask(params, rows=rows, train=True)


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in tree.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out |= _flatten(v, f"{name}/")
        else:
            out[name] = v
    return out


def _unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[Any, Any] = {}
    for path, value in flat.items():
        node = out
        *parents, leaf = path.split("/")
        for part in parents:
            node = node.setdefault(_key(part), {})
        node[_key(leaf)] = value
    return out


def _key(part: str) -> str | int:
    # nnx pure dicts key list entries (layers) by int.
    return int(part) if part.isdigit() else part
