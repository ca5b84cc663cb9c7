"""The run config's sections and what they describe: model section <-> :class:`POSSMConfig`, tokenizer, optimizer.

A launcher config (``experiments/configs/pretrain.py``) holds every model field with its real value, so each one is
visible, settable as ``--config.model.<field>`` and saved with the checkpoint:

    c.model = model_section(get_preset("possm_small"))      # every POSSMConfig field, backbone included
    cfg = model_config(c)                                   # back to a POSSMConfig

The chunk length is the one exception: it lives in ``config.tokenizer.bin_width`` alone, and the model, the
tokenizer and evaluation all read it from there.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import ml_collections
import optax
from ml_collections import config_dict

from data_pipeline.tokenize import TokenizerConfig
from possm_jax.config import POSSMConfig
from possm_jax.train.optim import reference_lamb
from possm_jax.train.state import path_flags

EMBEDDING_TABLES = ("unit_emb/", "session_emb/")
"""Parameters whose untouched rows get their LAMB moments reset (sparse rows)."""

SHARED_FIELDS = ("bin_width",)
"""POSSMConfig fields that come from another config section (``tokenizer.bin_width``), not ``config.model``."""


def _optional_type(annotation: Any) -> type | None:
    """``float`` for ``float | None`` (the type an optional field takes when set), else None."""
    if isinstance(annotation, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return None


def _section(obj: Any, skip: tuple[str, ...] = ()) -> ml_collections.ConfigDict:
    """A ConfigDict of a frozen dataclass's fields; ``None`` fields become typed placeholders (settable later)."""
    hints = typing.get_type_hints(type(obj))
    out = ml_collections.ConfigDict()
    for field in dataclasses.fields(obj):
        if field.name in skip:
            continue
        value = getattr(obj, field.name)
        if dataclasses.is_dataclass(value):
            out[field.name] = _section(value)
        elif value is None:
            out[field.name] = config_dict.placeholder(_optional_type(hints[field.name]))
        elif isinstance(value, typing.Mapping):
            out[field.name] = ml_collections.ConfigDict(dict(value))
        else:
            out[field.name] = value
    return out


def model_section(cfg: POSSMConfig) -> ml_collections.ConfigDict:
    """Every field of ``cfg`` (a preset) except the chunk length, as a config section."""
    return _section(cfg, skip=SHARED_FIELDS)


def model_config(config: ml_collections.ConfigDict) -> POSSMConfig:
    """The :class:`POSSMConfig` described by ``config.model`` and ``config.tokenizer.bin_width``.

    Raises:
        ValueError: an invalid field value (the message names the field).
    """
    fields = config.model.to_dict()
    return POSSMConfig.from_dict({**fields, "bin_width": config.tokenizer.bin_width})


def tokenizer_config(config: ml_collections.ConfigDict) -> TokenizerConfig:
    """The tokenizer of ``config.tokenizer``."""
    t = config.tokenizer
    return TokenizerConfig(
        bin_width=t.bin_width,
        window=t.window,
        target=t.target,
        target_std=t.target_std,
        query_rate=t.get("query_rate", 0.0),  # configs saved before the field existed used every sample
    )


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Reference LAMB for ``config.train`` (peak LR ``3.125e-5 × batch_size × lr_scale``), sparse embedding rows."""
    return reference_lamb(
        config.train.batch_size,
        config.train.num_steps,
        sparse_rows=lambda params: path_flags(params, lambda path: path.startswith(EMBEDDING_TABLES)),
        lr_scale=config.train.lr_scale,
    )
