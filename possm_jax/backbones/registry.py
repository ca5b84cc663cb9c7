"""Backbones chosen by name from a config: ``build_backbone(BackboneConfig(kind="s4d", ...), in_dim, rngs=...)``.

Sizes that land near the paper's totals (backbone parameters for in_dim 64 / 256):

======================  ======  ======  =====  ======  =======================
kind                    hidden  layers  state  expand  params (in 64 / in 256)
======================  ======  ======  =====  ======  =======================
gru (possm_small)       256     1                      247,296 / 394,752
gru (possm)             512     4                      5,615,616 / 5,910,528
s4d small               144     4       64             252,432 / 280,080
s4d large               448     6       64             2,797,760 / 2,883,776
mamba small             160     3       16     2       543,840 / 574,560
mamba large             512     4       16     2       6,814,720 / 6,913,024
======================  ======  ======  =====  ======  =======================
"""

import dataclasses
from collections.abc import Callable

from flax import nnx

from possm_jax.backbones.base import Backbone
from possm_jax.backbones.gru import GRU
from possm_jax.backbones.mamba import Mamba
from possm_jax.backbones.s4d import S4D


@dataclasses.dataclass(frozen=True)
class BackboneConfig:
    """Backbone hyper-parameters; each kind reads the fields it needs.

    Attributes:
        kind: ``"gru"``, ``"s4d"`` or ``"mamba"``.
        hidden: GRU hidden width H; S4D / Mamba model width d. Always the backbone's ``out_dim``.
        num_layers: stacked layers.
        dropout: GRU: between layers; S4D / Mamba: on each layer's output before the residual. Training only.
        state_size: SSM state size N (S4D: 64 = 32 complex-conjugate pairs; Mamba: 16 is the usual choice).
        expand: Mamba inner width E = expand · hidden.
        conv_width: Mamba causal depthwise conv width.
        s4d_mode: S4D recurrence, ``"scan"`` (sequential) or ``"parallel"`` (associative scan).
        dt_rank: Mamba Δ projection rank; ``None`` means ⌈hidden / 16⌉.
    """

    kind: str = "gru"
    hidden: int = 256
    num_layers: int = 1
    dropout: float = 0.0
    state_size: int = 64
    expand: int = 2
    conv_width: int = 4
    s4d_mode: str = "scan"
    dt_rank: int | None = None


def _build_gru(cfg: BackboneConfig, in_dim: int, rngs: nnx.Rngs) -> Backbone:
    return GRU(in_dim, cfg.hidden, cfg.num_layers, cfg.dropout, rngs=rngs)


def _build_s4d(cfg: BackboneConfig, in_dim: int, rngs: nnx.Rngs) -> Backbone:
    return S4D(in_dim, cfg.hidden, cfg.num_layers, cfg.state_size, cfg.dropout, cfg.s4d_mode, rngs=rngs)


def _build_mamba(cfg: BackboneConfig, in_dim: int, rngs: nnx.Rngs) -> Backbone:
    return Mamba(
        in_dim,
        cfg.hidden,
        cfg.num_layers,
        cfg.state_size,
        cfg.expand,
        cfg.conv_width,
        cfg.dt_rank,
        cfg.dropout,
        rngs=rngs,
    )


_BUILDERS: dict[str, Callable[[BackboneConfig, int, nnx.Rngs], Backbone]] = {
    "gru": _build_gru,
    "s4d": _build_s4d,
    "mamba": _build_mamba,
}


def build_backbone(cfg: BackboneConfig, in_dim: int, *, rngs: nnx.Rngs) -> Backbone:
    """Build the backbone named by ``cfg.kind``.

    Args:
        cfg: hyper-parameters.
        in_dim: width of the chunk latents fed to the backbone (M · D).
        rngs: initialisation randomness.

    Returns:
        An ``nnx.Module`` implementing :class:`~possm_jax.backbones.base.Backbone` with ``out_dim == cfg.hidden``.

    Raises:
        ValueError: unknown ``cfg.kind``.
    """
    if cfg.kind not in _BUILDERS:
        raise ValueError(f"BackboneConfig.kind={cfg.kind!r} is unknown; valid kinds: {sorted(_BUILDERS)}.")
    return _BUILDERS[cfg.kind](cfg, in_dim, rngs)
