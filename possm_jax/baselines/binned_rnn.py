"""Recurrent baselines on binned spike counts (docs/benchmarks.md): GRU, S4D or Mamba over 50 ms count vectors.

``counts [b, t, u] -> sqrt -> Linear(u -> d) -> backbone -> Linear(h -> y)`` per bin. The square root stabilises
the Poisson variance of the counts. The backbone is any of :func:`possm_jax.backbones.build_backbone`'s, so these
baselines differ from POSSM only in their input stage (a dense count vector per bin instead of attention over
spike tokens) and output stage (one prediction per bin, at the bin's end time, instead of queries).

Batches are dicts (see :func:`binned_batches`): ``counts`` [b, t, u] float32, and for training ``query_task``
[b, t] int32 (all 0), ``target`` [b, t, y] and ``weight`` [b, t], so :func:`possm_jax.train.loss.multitask_loss`
and the shared train step apply unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.core import FrozenDict

from data_pipeline import binning
from data_pipeline.recording import Intervals, Recording
from data_pipeline.tokenize import TokenizerConfig, interval_weights
from possm_jax.backbones.registry import BackboneConfig, build_backbone
from possm_jax.nn.linear import torch_linear
from possm_jax.types import Array, PyTree


def split_outputs(y: Array, tasks: Mapping[str, int]) -> dict[str, Array]:
    """[..., Σ widths] -> {task: [..., width]} in task order."""
    out, first = {}, 0
    for name, width in tasks.items():
        out[name] = y[..., first : first + width]
        first += width
    return out


class BinnedRNN(nnx.Module):
    """A recurrent decoder of binned counts.

    Args:
        num_units: u, channels per bin.
        backbone: recurrent backbone hyper-parameters (kind gru / s4d / mamba).
        tasks: task name -> output width (one readout per task).
        rngs: parameter RNG streams.
        dim: d, width of the projected counts fed to the backbone.
    """

    def __init__(
        self, num_units: int, backbone: BackboneConfig, tasks: Mapping[str, int], *, rngs: nnx.Rngs, dim: int = 64
    ):
        if num_units < 1:
            raise ValueError(f"BinnedRNN: num_units must be >= 1, got {num_units}")
        self.num_units = num_units
        self.tasks = FrozenDict({str(k): int(v) for k, v in tasks.items()})
        self.input_proj = torch_linear(num_units, dim, rngs=rngs)
        self.backbone = build_backbone(backbone, dim, rngs=rngs)
        self.readout = torch_linear(self.backbone.out_dim, sum(self.tasks.values()), rngs=rngs)

    def init_state(self, batch_size: int) -> PyTree:
        """Zero backbone state for ``batch_size`` streams."""
        return self.backbone.init_state(batch_size)

    def __call__(
        self, batch: Mapping[str, Array], state: PyTree | None = None, *, rngs: nnx.Rngs | None = None
    ) -> tuple[dict[str, Array], PyTree]:
        """Windows: ``batch["counts"]`` [b, t, u] -> ({task: [b, t, y]}, backbone state after bin t-1)."""
        counts = jnp.asarray(batch["counts"], jnp.float32)
        if counts.shape[-1] != self.num_units:
            raise ValueError(f"counts: last axis must be num_units={self.num_units}, got shape {counts.shape}")
        if state is None:
            state = self.init_state(counts.shape[0])
        y, state = self.backbone(self.input_proj(jnp.sqrt(counts)), state, rngs=rngs)
        return split_outputs(self.readout(y), self.tasks), state

    def step(self, counts: Array, state: PyTree) -> tuple[dict[str, Array], PyTree]:
        """One bin: counts [b, u] -> ({task: [b, y]}, new state). Applied t times it equals the window call."""
        y, state = self.backbone.step(self.input_proj(jnp.sqrt(jnp.asarray(counts, jnp.float32))), state)
        return split_outputs(self.readout(y), self.tasks), state


def trials_in(recording: Recording, split: str) -> Intervals:
    """The trials lying entirely inside ``recording.splits[split]``, with their columns."""
    if split not in recording.splits:
        raise ValueError(f"split={split!r}: recording {recording.session_key} has splits {sorted(recording.splits)}")
    trials, domain = recording.intervals["trials"], recording.splits[split]
    inside = domain.contains(trials.start) & domain.contains(trials.end - 1e-9)
    return Intervals(trials.start[inside], trials.end[inside], {k: v[inside] for k, v in trials.columns.items()})


def binned_trials(
    recording: Recording, split: str, cfg: TokenizerConfig
) -> list[tuple[binning.BinnedSegment, np.ndarray]]:
    """Each trial of a split binned at ``cfg.bin_width``: (segment with z-scored target, [t] loss weights).

    Targets use the tokenizer's normalisation (``target_mean``/``target_std``) and weights its interval weights, so
    binned baselines see the same loss as POSSM. Bins with a NaN target get weight 0 and target 0.
    """
    behaviour, key = cfg.target.split(".")
    out = []
    for seg in binning.bin_recording(recording, trials_in(recording, split), cfg.bin_width, behaviour, key):
        # A bin belongs to the interval holding its last instant (its end time minus a hair).
        weight = interval_weights(seg.times - 1e-9, recording.intervals, cfg).astype(np.float64)
        target = (seg.target - np.asarray(cfg.target_mean)) / np.asarray(cfg.target_std)
        missing = np.isnan(target).any(axis=1)
        weight[missing], target[missing] = 0.0, 0.0
        out.append((binning.BinnedSegment(seg.counts, seg.times, target.astype(np.float32)), weight))
    return out


def binned_batches(
    segments: Sequence[tuple[binning.BinnedSegment, np.ndarray]], window_bins: int, batch_size: int, seed: int
) -> Iterator[dict[str, np.ndarray]]:
    """Endless random training windows of ``window_bins`` bins cut from the segments (shorter ones zero-padded).

    Yields:
        ``{"counts" [b, t, u], "query_task" [b, t], "target" [b, t, y], "weight" [b, t]}``; padding has weight 0.
    """
    if not segments:
        raise ValueError("segments: need at least one binned training segment")
    rng = np.random.default_rng(seed)
    u = segments[0][0].counts.shape[1]
    y = segments[0][0].target.shape[1]
    lengths = np.array([len(s.times) for s, _ in segments], dtype=np.float64)
    while True:
        out = {
            "counts": np.zeros((batch_size, window_bins, u), np.float32),
            "query_task": np.zeros((batch_size, window_bins), np.int32),
            "target": np.zeros((batch_size, window_bins, y), np.float32),
            "weight": np.zeros((batch_size, window_bins), np.float32),
        }
        for row, k in enumerate(rng.choice(len(segments), batch_size, p=lengths / lengths.sum())):
            seg, weight = segments[k]
            first = int(rng.integers(0, max(1, len(seg.times) - window_bins + 1)))
            take = slice(first, first + window_bins)
            n = len(seg.times[take])
            out["counts"][row, :n] = seg.counts[take]
            out["target"][row, :n] = seg.target[take]
            out["weight"][row, :n] = weight[take]
        yield out
