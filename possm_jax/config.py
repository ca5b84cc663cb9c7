"""POSSM hyper-parameters and named presets (docs/model.md).

``get_preset("possm_small")`` returns a frozen :class:`POSSMConfig`; override fields with
``dataclasses.replace(cfg, ...)`` or ``get_preset(name, lag=0.05)``. Configs are hashable (they are static
attributes of the model, so they must be) and round-trip through JSON with :meth:`POSSMConfig.to_dict` /
:meth:`POSSMConfig.from_dict`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from flax.core import FrozenDict

from possm_jax.backbones.registry import BackboneConfig

INPUT_KINDS = ("spikes", "binned")
DEFAULT_TASKS = FrozenDict({"cursor_velocity_2d": 2})


@dataclasses.dataclass(frozen=True)
class POSSMConfig:
    """Model hyper-parameters.

    Attributes:
        dim: d, token / latent / query width.
        num_latents: M latents per chunk; the backbone reads M * d per chunk.
        depth: in-chunk self-attention layers over the M latents (0 in the reference).
        bin_width: chunk length in seconds (0.05; 0.02 and 0.01 also work).
        head_dim: attention head width e (64; the first 32 dims carry RoPE).
        ffn_mult: GEGLU FFN multiplier (hidden 2 * mult * d in, mult * d out).
        ffn_dropout: dropout inside the encoder and decoder FFNs (training only).
        backbone: recurrent backbone hyper-parameters.
        tasks: task name -> output width. Readouts exist for these only; ``query_task`` indexes this order.
        context_chunks: k, backbone outputs each query attends to (3).
        lag: None: chunk-causal (the reference: a query also sees the chunk that contains it, which ends up to one
          bin width after the query). A number >= 0: strictly causal, only chunks that ended at or before t - lag.
        input_kind: "spikes" (one token per spike) or "binned" (one token per channel and bin; ``spike_value``
          carries the normalised count through a learned value embedding).
        count_readin: binned inputs only: add a linear read-in of each chunk's counts to its latents (the layer-normed
          mean over the chunk's tokens of ``value * unit_emb[unit]``, projected to M * d), so that at initialisation
          the encoder's output already is a random linear map of the counts (docs/tasks.md).
        task_embedding: add a learned per-task vector to the decoder queries.
        rope_t_min: shortest RoPE period in seconds.
        rope_t_max: longest RoPE period in seconds.
    """

    dim: int = 64
    num_latents: int = 1
    depth: int = 0
    bin_width: float = 0.05
    head_dim: int = 64
    ffn_mult: int = 4
    ffn_dropout: float = 0.2
    backbone: BackboneConfig = BackboneConfig(kind="gru", hidden=256, num_layers=1)
    tasks: Mapping[str, int] = DEFAULT_TASKS
    context_chunks: int = 3
    lag: float | None = None
    input_kind: str = "spikes"
    count_readin: bool = False
    task_embedding: bool = True
    rope_t_min: float = 1e-4
    rope_t_max: float = 10.0

    def __post_init__(self):
        # A hashable mapping keeps the config usable as a static (jit-cached) model attribute.
        object.__setattr__(self, "tasks", FrozenDict({str(k): int(v) for k, v in dict(self.tasks).items()}))
        checks = [
            (self.dim >= 1, "dim must be >= 1"),
            (self.num_latents >= 1, "num_latents must be >= 1"),
            (self.depth >= 0, "depth must be >= 0"),
            (self.bin_width > 0, "bin_width must be > 0 seconds"),
            (self.head_dim >= 32 and self.head_dim % 2 == 0, "head_dim must be even and >= 32 (RoPE uses 32 dims)"),
            (self.ffn_mult >= 1, "ffn_mult must be >= 1"),
            (0.0 <= self.ffn_dropout < 1.0, "ffn_dropout must be in [0, 1)"),
            (len(self.tasks) >= 1, "tasks must name at least one task"),
            (all(v >= 1 for v in self.tasks.values()), "every task output width must be >= 1"),
            (self.context_chunks >= 1, "context_chunks must be >= 1"),
            (self.lag is None or self.lag >= 0, "lag must be None (chunk-causal) or >= 0 seconds"),
            (self.input_kind in INPUT_KINDS, f"input_kind must be one of {INPUT_KINDS}"),
            (not self.count_readin or self.input_kind == "binned", "count_readin needs input_kind='binned'"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"POSSMConfig: {message}.")

    @property
    def task_names(self) -> tuple[str, ...]:
        """Task names in ``query_task`` order."""
        return tuple(self.tasks)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (for checkpoints)."""
        d = dataclasses.asdict(self)
        d["tasks"] = dict(self.tasks)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> POSSMConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"POSSMConfig.from_dict: unknown fields {unknown}; valid fields: {sorted(known)}.")
        d = dict(d)
        if isinstance(d.get("backbone"), Mapping):
            d["backbone"] = BackboneConfig(**d["backbone"])
        return cls(**d)


_PRESETS: dict[str, POSSMConfig] = {
    # ref possm_small.yaml; paper POSSM-GRU-SS.
    "possm_small": POSSMConfig(dim=64, backbone=BackboneConfig(kind="gru", hidden=256, num_layers=1)),
    # ref possm.yaml; paper o-POSSM-GRU.
    "possm": POSSMConfig(dim=256, backbone=BackboneConfig(kind="gru", hidden=512, num_layers=4, dropout=0.2)),
    # S4D / Mamba variants sized near the paper's totals (docs/model.md; see tests/test_param_counts.py):
    # 0.43 M / 4.25 M (paper S4D 0.41 M / 4.56 M), 0.69 M / 9.25 M (paper Mamba 0.68 M / 8.96 M).
    "possm_small_s4d": POSSMConfig(dim=64, backbone=BackboneConfig(kind="s4d", hidden=224, num_layers=2)),
    "possm_s4d": POSSMConfig(dim=256, backbone=BackboneConfig(kind="s4d", hidden=512, num_layers=4, dropout=0.2)),
    "possm_small_mamba": POSSMConfig(dim=64, backbone=BackboneConfig(kind="mamba", hidden=256, num_layers=1)),
    "possm_mamba": POSSMConfig(dim=256, backbone=BackboneConfig(kind="mamba", hidden=512, num_layers=4, dropout=0.2)),
}


def preset_names() -> tuple[str, ...]:
    """Names accepted by :func:`get_preset`."""
    return tuple(_PRESETS)


def get_preset(name: str, **overrides: Any) -> POSSMConfig:
    """A named preset, optionally with fields replaced.

    Args:
        name: one of :func:`preset_names`.
        **overrides: POSSMConfig fields to replace (e.g. ``lag=0.05``, ``tasks={"cursor_velocity_2d": 2}``).

    Raises:
        ValueError: unknown preset name or field.
    """
    if name not in _PRESETS:
        raise ValueError(f"get_preset: unknown preset {name!r}; valid presets: {list(_PRESETS)}.")
    known = {f.name for f in dataclasses.fields(POSSMConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"get_preset: unknown POSSMConfig fields {unknown}; valid fields: {sorted(known)}.")
    return dataclasses.replace(_PRESETS[name], **overrides)
