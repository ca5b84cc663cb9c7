"""A trained model from a run's checkpoints: the inference entry point, and what a run saves beside its state.

    model, units, sessions, saved_config, step = load_checkpoint("runs/pretrain/checkpoints")

Every checkpoint stores the run's config with two additions: ``vocab`` (the unit and session ids, in row order) and
``model_config`` (the :class:`~possm_jax.config.POSSMConfig` as a dict). They are all a model needs, so loading
builds no optimizer state: the restore target's optimizer leaves are shapes only (``jax.eval_shape``).

A LoRA run (``transfer.mode=lora``) saves only its adapters and the digest of its base; its config names the base
checkpoint (``transfer.checkpoint``). Loading one loads that base (or ``base=``), rebuilds the frozen model on it,
checks the digest (:class:`~possm_jax.lora.BaseMismatchError` naming both otherwise) and returns the merged model.
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx

from possm_jax.config import POSSMConfig
from possm_jax.lora import LoRAPOSSM, merge_lora
from possm_jax.possm import POSSM
from possm_jax.train import transfer
from possm_jax.train.checkpoint import Checkpointer
from possm_jax.train.run_config import make_optimizer
from possm_jax.train.state import TrainState, merge_model
from possm_jax.vocab import Vocab

BEST_METRIC = "valid_r2"
"""The validation metric that ranks a run's checkpoints (best-by-validation)."""


def saved_config(
    config: ml_collections.ConfigDict, units: Vocab, sessions: Vocab, model_config: POSSMConfig
) -> dict[str, Any]:
    """What a run stores as its checkpoint's config item: the run config, the vocabularies and the model config."""
    vocab = {"units": list(units.ids[1:]), "sessions": list(sessions.ids[1:])}
    return {**config.to_dict(), "vocab": vocab, "model_config": model_config.to_dict()}


def vocabs_from_saved(saved: dict[str, Any]) -> tuple[Vocab, Vocab]:
    """The ``(units, sessions)`` vocabularies stored in a checkpoint's config.

    Raises:
        ValueError: the config has no ``vocab`` entry (not written by a possm-jax training run).
    """
    if "vocab" not in saved:
        raise ValueError("checkpoint config has no 'vocab' entry; was it written by a possm-jax training run?")
    return Vocab(saved["vocab"]["units"], "unit"), Vocab(saved["vocab"]["sessions"], "session")


def model_from_saved(saved: dict[str, Any], seed: int = 0) -> tuple[POSSM, Vocab, Vocab]:
    """A freshly initialised model with the architecture and vocabularies of a saved config."""
    units, sessions = vocabs_from_saved(saved)
    cfg = POSSMConfig.from_dict(saved["model_config"])
    return POSSM(cfg, len(units), len(sessions), rngs=nnx.Rngs(seed)), units, sessions


def load_checkpoint(
    directory: str, step: int | None = None, base: str | None = None
) -> tuple[POSSM, Vocab, Vocab, dict[str, Any], int]:
    """A trained model from a run's checkpoint directory (``<workdir>/checkpoints``).

    Args:
        directory: the checkpoint directory.
        step: the step to load; None: the best-by-validation step, else the newest.
        base: for a LoRA run, the base checkpoint directory if not the one its config names (e.g. moved).

    Returns:
        ``(model, units, sessions, saved_config, step)``; a LoRA run's adapters come merged into a plain POSSM.

    Raises:
        CheckpointError: the directory or step is missing, or the checkpoint cannot be read.
        BaseMismatchError: a LoRA checkpoint whose base checkpoint now holds a different model.
    """
    source = Checkpointer(directory, read_only=True, best_metric=BEST_METRIC)
    try:
        if step is None:
            step = source.best_step() or source.latest_step()
        saved = source.restore_config(step)
        lora_base = (base or saved["transfer"]["checkpoint"]) if _is_lora(saved) else None
        if lora_base:
            model, mask, units, sessions = _lora_model(saved, lora_base)
        else:
            model, units, sessions = model_from_saved(saved)
            mask = transfer.full_mask(nnx.state(model, nnx.Param))
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        # The optimizer state's shapes come from jax.eval_shape: it is never initialised, only read and dropped.
        # Every leaf lands on this process's first device, whatever mesh (replicated or FSDP) the run saved from.
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        opt_shapes = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
            jax.eval_shape(make_optimizer(ml_collections.ConfigDict(saved)).init, params),
        )
        mask = jax.tree.map(np.asarray, mask)
        state = source.restore(TrainState(np.zeros((), np.int32), params, rest, opt_shapes, mask), step=step)
    finally:
        source.close()
    model = merge_model(graphdef, state)
    if isinstance(model, LoRAPOSSM):
        model.check_base(directory, lora_base, saved["transfer"]["checkpoint"])
        model = merge_lora(model)
    return model, units, sessions, saved, int(step)


def _is_lora(saved: dict[str, Any]) -> bool:
    return saved.get("transfer", {}).get("mode") == "lora"


def _lora_model(saved: dict[str, Any], base: str) -> tuple[LoRAPOSSM, Any, Vocab, Vocab]:
    """The LoRA model of a saved config on the base checkpoint ``base`` (adapters not yet restored) and its mask."""
    pretrained, old_units, old_sessions, _, _ = load_checkpoint(base)
    units, sessions = vocabs_from_saved(saved)
    t = saved["transfer"]
    model, mask = transfer.transfer_model(
        pretrained, (old_units, old_sessions), (units, sessions), saved["train"]["seed"], "lora", t["lora_rank"]
    )
    return model, mask, units, sessions
