"""Load a PyTorch reference POSSM checkpoint (torch_brain ``POSSM.state_dict()``, GRU backbone) into our model.

The reference stores Linear weights as ``[out, in]`` (``y = x W^T + b``); ours are ``[in, out]`` kernels, so every
weight is transposed. The mapping (fixtures README 2.1)::

    unit_emb.weight, session_emb.weight     -> unit_emb, session_emb tables (row 0 = reserved)
    token_type_emb.weight[0]                -> encoder.token_type (the vector added to every spike)
    latent_emb.weight                       -> encoder.latents
    task_emb.weight[task_ids[name]]         -> decoder.task_emb[i] for our i-th task
    rotary_emb.omega[:16]                   -> rope.omega (exact float32 values; omega[16:] must be 0)
    enc_atn.*, dec_atn.*                    -> encoder.attn, decoder.attn (norm, norm_context, to_q, to_kv, to_out)
    enc_ffn.0 / .1.net.0 / .1.net.3         -> encoder.ffn.norm / proj_in / proj_out (same for dec_ffn)
    backbone.net.*                          -> backbone (torch nn.GRU layout)
    readout.projections.<task>.*            -> decoder.readouts[<task>] (heads of unconfigured tasks are ignored)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from flax import nnx

from possm_jax.backbones.gru import GRU, load_torch_gru_weights
from possm_jax.nn.attention import RotaryCrossAttention
from possm_jax.nn.ffn import FeedForward
from possm_jax.possm import POSSM

REFERENCE_TASK_IDS = {"cursor_velocity_2d": 1}
"""Registry ids (rows of the reference ``task_emb``) of the tasks whose id we know; pass others explicitly."""

_IGNORED_PREFIXES = ("readout.projections.",)


class _Loader:
    """Collects (variable, array) pairs, checking names and shapes, and assigns them only when all are valid."""

    def __init__(self, tensors: Mapping[str, np.ndarray]):
        self.tensors = tensors
        self.used: set[str] = set()
        self.pending: list[tuple[nnx.Variable, np.ndarray]] = []

    def get(self, key: str) -> np.ndarray:
        if key not in self.tensors:
            raise ValueError(f"load_reference_state_dict: tensor {key!r} is missing from the state dict.")
        self.used.add(key)
        return np.asarray(self.tensors[key], dtype=np.float32)

    def put(self, var: nnx.Variable, value: np.ndarray, key: str) -> None:
        if tuple(var[...].shape) != value.shape:
            raise ValueError(
                f"load_reference_state_dict: {key!r} gives shape {value.shape}, but the model expects "
                f"{tuple(var[...].shape)}; build the model with the checkpoint's sizes (dim, vocabularies, hidden)."
            )
        self.pending.append((var, value))

    def linear(self, layer: nnx.Linear, key: str) -> None:
        self.put(layer.kernel, self.get(f"{key}.weight").T, f"{key}.weight")
        if layer.bias is not None:
            self.put(layer.bias, self.get(f"{key}.bias"), f"{key}.bias")

    def layer_norm(self, norm: nnx.LayerNorm, key: str) -> None:
        self.put(norm.scale, self.get(f"{key}.weight"), f"{key}.weight")
        self.put(norm.bias, self.get(f"{key}.bias"), f"{key}.bias")

    def attention(self, attn: RotaryCrossAttention, key: str) -> None:
        self.layer_norm(attn.norm, f"{key}.norm")
        self.layer_norm(attn.norm_context, f"{key}.norm_context")
        self.linear(attn.to_q, f"{key}.to_q")
        self.linear(attn.to_kv, f"{key}.to_kv")
        self.linear(attn.to_out, f"{key}.to_out")

    def ffn(self, ffn: FeedForward, key: str) -> None:
        self.layer_norm(ffn.norm, f"{key}.0")
        self.linear(ffn.proj_in, f"{key}.1.net.0")
        self.linear(ffn.proj_out, f"{key}.1.net.3")


def load_reference_state_dict(
    model: POSSM, tensors: Mapping[str, np.ndarray], *, task_ids: Mapping[str, int] | None = None
) -> None:
    """Copy a reference state dict into ``model`` in place (all-or-nothing).

    Args:
        model: a POSSM with a GRU backbone, ``num_latents``/``depth``/sizes matching the checkpoint.
        tensors: state-dict name -> array (torch tensors converted with ``.numpy()``, or :func:`load_reference_npz`).
        task_ids: our task name -> row of the reference ``task_emb`` (its registry id); defaults to
          :data:`REFERENCE_TASK_IDS`.

    Raises:
        ValueError: a tensor is missing, has the wrong shape, is not understood, or the model is not convertible.
    """
    cfg = model.config
    if not isinstance(model.backbone, GRU):
        raise ValueError(f"load_reference_state_dict: the reference backbone is a GRU, not {cfg.backbone.kind!r}.")
    if cfg.depth != 0:
        raise ValueError("load_reference_state_dict: self-attention layers (depth > 0) are not mapped; use depth=0.")
    ids = dict(REFERENCE_TASK_IDS if task_ids is None else task_ids)
    load = _Loader(tensors)

    load.put(model.unit_emb.embedding, load.get("unit_emb.weight"), "unit_emb.weight")
    load.put(model.session_emb.embedding, load.get("session_emb.weight"), "session_emb.weight")
    load.put(model.encoder.token_type, load.get("token_type_emb.weight")[0], "token_type_emb.weight")
    load.put(model.encoder.latents, load.get("latent_emb.weight"), "latent_emb.weight")
    omega = load.get("rotary_emb.omega")
    n = model.rope.omega[...].shape[0]
    if omega.shape[0] < n or np.any(omega[n:] != 0):
        raise ValueError(f"load_reference_state_dict: 'rotary_emb.omega' must hold {n} frequencies then zeros.")
    load.put(model.rope.omega, omega[:n], "rotary_emb.omega")
    if model.decoder.task_emb is not None:
        missing = [t for t in cfg.task_names if t not in ids]
        if missing:
            raise ValueError(
                f"load_reference_state_dict: no task_emb row known for tasks {missing}; pass task_ids={{name: id}}."
            )
        table = load.get("task_emb.weight")
        rows = [ids[t] for t in cfg.task_names]
        if max(rows) >= table.shape[0]:
            raise ValueError(f"load_reference_state_dict: task_ids {ids} exceed task_emb rows ({table.shape[0]}).")
        load.put(model.decoder.task_emb, table[rows], "task_emb.weight")

    load.attention(model.encoder.attn, "enc_atn")
    load.ffn(model.encoder.ffn, "enc_ffn")
    load.attention(model.decoder.attn, "dec_atn")
    load.ffn(model.decoder.ffn, "dec_ffn")
    for name, head in model.decoder.readouts.items():
        load.linear(head, f"readout.projections.{name}")

    backbone_keys = {k for k in tensors if k.startswith("backbone.net.")}
    unknown = sorted(set(tensors) - load.used - backbone_keys - {"task_emb.weight"})
    unknown = [k for k in unknown if not k.startswith(_IGNORED_PREFIXES)]
    if unknown:
        raise ValueError(f"load_reference_state_dict: tensors not understood (different architecture?): {unknown}.")
    # The GRU loader validates everything before writing, so a failure here still leaves the model untouched.
    load_torch_gru_weights(model.backbone, tensors, prefix="backbone.net.")
    for var, value in load.pending:
        var[...] = value


def load_reference_npz(path: str | Path, prefix: str = "param/") -> dict[str, np.ndarray]:
    """Read the state-dict arrays stored under ``prefix`` in an ``.npz`` (no pickle), with the prefix removed.

    Raises:
        ValueError: the file holds no arrays under ``prefix``.
    """
    with np.load(path, allow_pickle=False) as z:
        tensors = {k[len(prefix) :]: z[k] for k in z.files if k.startswith(prefix)}
    if not tensors:
        raise ValueError(f"load_reference_npz: {str(path)!r} holds no arrays named {prefix!r}*.")
    return tensors
