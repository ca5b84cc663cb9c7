"""Shared pieces of the binned-channel generators (handwriting-like and speech-like tasks).

Binned threshold-crossing counts are stored as spikes at bin centres: ``counts[k, c]`` spikes of channel ``c`` at
``(k + 0.5) · bin_width``, so the usual spike pipeline (tokenizer, store, binning) applies unchanged and
:func:`data_pipeline.binning.bin_spikes` on the same grid gives the counts back exactly.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from data_pipeline.binning import counts_to_spikes
from data_pipeline.recording import Intervals, Recording, TimeSeries
from data_pipeline.synth.sessions import split_domains, split_trials


@dataclasses.dataclass(frozen=True)
class ChannelConfig:
    """Log-linear channels: ``log λ_c = log r0_c + offset_c + gain · w_cᵀ z`` (the offset changes per session)."""

    num_channels: int
    median_rate: float = 10.0  # Hz; threshold crossings are denser than sorted units
    rate_sigma: float = 0.5
    gain: float = 1.2
    modulation_sd: float = 0.6  # sd of wᵀz for unit-variance latents (weights are scaled by 1/sqrt(d))
    session_offset_sd: float = 0.2


def channel_tuning(rng: np.random.Generator, cfg: ChannelConfig, num_latents: int) -> tuple[np.ndarray, np.ndarray]:
    """(log r0 [c], weights [c, d]) of a channel array."""
    log_r0 = np.log(cfg.median_rate) + cfg.rate_sigma * rng.standard_normal(cfg.num_channels)
    scale = cfg.modulation_sd / np.sqrt(num_latents)
    return log_r0, scale * rng.standard_normal((cfg.num_channels, num_latents))


def binned_recording(
    rng: np.random.Generator,
    ids: tuple[str, str, str],
    log_rate: np.ndarray,
    bin_width: float,
    trials: Intervals,
    behaviour: dict[str, TimeSeries],
    intervals: dict[str, Intervals],
    truth: dict[str, np.ndarray],
    split_codes: np.ndarray | None = None,
) -> Recording:
    """Draws Poisson counts from ``log_rate`` [t, c] (bins from time 0) and wraps them in a :class:`Recording`.

    Args:
        rng: source of randomness (counts and, without ``split_codes``, the train/valid/test split: 70/10/20 by trials).
        ids: (brainset_id, session_id, subject_id).
        log_rate: [t, c] log rates (log Hz) per bin.
        bin_width: seconds.
        trials: the session's trials (they tile or lie inside ``[0, t · bin_width)``).
        behaviour, intervals, truth: extra fields; ``trials`` is added to ``intervals``.
        split_codes: [i] split of each trial (0 train, 1 valid, 2 test), replacing the random split.
    """
    counts = rng.poisson(np.exp(log_rate) * bin_width)
    times, channels = counts_to_spikes(counts, 0.0, bin_width)
    end = len(log_rate) * bin_width
    return Recording(
        brainset_id=ids[0],
        session_id=ids[1],
        subject_id=ids[2],
        unit_ids=np.array([f"ch_{c:03d}" for c in range(log_rate.shape[1])]),
        spike_times=times,
        spike_units=channels,
        domain=Intervals(np.array([0.0]), np.array([end])),
        splits=split_trials(rng, trials, (0.7, 0.1, 0.2))
        if split_codes is None
        else split_domains(trials, split_codes),
        behaviour=behaviour,
        intervals={"trials": trials, **intervals},
        truth=truth,
    )
