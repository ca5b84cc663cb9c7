"""Units: log-linear tuning to the latent state and inhomogeneous Poisson spiking with a refractory period.

Unit ``i`` fires with rate ``λ_i(t) = exp(log r0_i + b_i(t) + g · w_iᵀ z(t − δ_i))``: baseline ``r0``
~ LogNormal(median 5.5 Hz), slow baseline drift ``b_i(t)``, gain ``g`` ≈ 1.2, tuning weights ``w_i`` and a lag
``δ_i`` ∈ [0, 50] ms. One deviation from the pure exponential: log-rates are softly saturated at 200 Hz
(:func:`saturate`), which only touches rare extreme conjunctions.

Spikes are drawn as one Bernoulli per unit per 1 ms bin with probability ``1 − exp(−λ dt)`` (vectorised over
bins × units, a few seconds of bins at a time), jittered uniformly inside the bin, and then thinned to respect each
unit's absolute refractory period (1.5–2 ms) exactly as a sequential dead-time process would.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from data_pipeline.synth.latents import NUM_TASK_LATENTS

SPIKE_DT = 1e-3  # s, Bernoulli bin
_CHUNK_BINS = 4000  # 1 ms bins per vectorised block (bounds memory at ~250 units)


@dataclasses.dataclass(frozen=True)
class TuningConfig:
    """How strongly units load on each latent block (standard deviations of the weights ``w``)."""

    median_rate: float = 5.5  # Hz, median of the LogNormal baseline
    rate_sigma: float = 0.6  # log-space sd of the baseline
    gain: float = 1.2
    untuned_fraction: tuple[float, float] = (0.1, 0.3)
    vel: float = 0.35
    speed: float = 0.3
    pos: float = 0.2
    bump: float = 0.4
    rotation: float = 0.3
    private: float = 0.25
    common_gain: float = 0.6  # mean loading on the first private latent (shared by every unit)
    max_lag: float = 0.05  # s
    max_rate: float = 200.0  # Hz, soft saturation of the rate (see ``saturate``)
    refractory: tuple[float, float] = (1.5e-3, 2e-3)  # s


@dataclasses.dataclass
class UnitPool:
    """A subject's pool of neurons.

    Attributes:
        log_r0: [p] log baseline rate (log Hz).
        weights: [p, d] tuning weights on the latent rows (see ``latents``).
        lag: [p] seconds by which each unit lags the latent.
        refractory: [p] absolute refractory period in seconds.
        tuned: [p] False for units with no task tuning (they still load on the private latents).
    """

    log_r0: np.ndarray
    weights: np.ndarray
    lag: np.ndarray
    refractory: np.ndarray
    tuned: np.ndarray


def make_pool(rng: np.random.Generator, num_units: int, num_private: int, cfg: TuningConfig) -> UnitPool:
    """Draws a pool of ``num_units`` neurons tuned to an ``8 + num_private``-dimensional latent."""
    block_sd = [cfg.vel] * 2 + [cfg.speed] + [cfg.pos] * 2 + [cfg.bump] + [cfg.rotation] * 2
    sd = np.array(block_sd + [cfg.private] * num_private)
    weights = rng.standard_normal((num_units, len(sd))) * sd
    # The first private latent is a common gain (all loadings positive): it scales every unit's rate together,
    # which a nonlinear decoder can normalise away (e.g. by the population rate) and a linear one cannot.
    weights[:, NUM_TASK_LATENTS] = cfg.common_gain * np.exp(0.3 * rng.standard_normal(num_units))
    tuned = rng.uniform(size=num_units) >= rng.uniform(*cfg.untuned_fraction)
    weights[~tuned, :NUM_TASK_LATENTS] = 0.0
    return UnitPool(
        log_r0=np.log(cfg.median_rate) + cfg.rate_sigma * rng.standard_normal(num_units),
        weights=weights,
        lag=rng.uniform(0.0, cfg.max_lag, num_units),
        refractory=rng.uniform(*cfg.refractory, num_units),
        tuned=tuned,
    )


def saturate(log_rate: np.ndarray, max_rate: float) -> np.ndarray:
    """Soft ceiling on log-rates: ``c − softplus(c − x)`` with ``c = log max_rate``.

    Identity well below the ceiling and smoothly bounded by it, so a rare conjunction of strong tuning, a high
    baseline and a gain excursion cannot make a unit fire at kHz rates (which per-1 ms Bernoulli draws would clip).
    """
    c = np.log(max_rate)
    return c - np.logaddexp(0.0, c - log_rate)


def sample_lagged(grid_values: np.ndarray, grid_rate: float, times: np.ndarray, lag: np.ndarray) -> np.ndarray:
    """Linear interpolation of per-unit series at ``times − lag`` (clamped to the grid ends).

    Args:
        grid_values: [t, u] values on the grid ``arange(t) / grid_rate``.
        grid_rate: grid sampling rate in Hz.
        times: [m] query times in seconds.
        lag: [u] per-unit lag in seconds.

    Returns:
        [m, u] interpolated values.
    """
    pos = np.clip((times[:, None] - lag[None, :]) * grid_rate, 0.0, len(grid_values) - 1)
    i0 = np.minimum(pos.astype(np.int64), len(grid_values) - 2)
    frac = pos - i0
    cols = np.arange(grid_values.shape[1])
    return grid_values[i0, cols] * (1.0 - frac) + grid_values[i0 + 1, cols] * frac


def refractory_keep(times: np.ndarray, units: np.ndarray, refractory: np.ndarray) -> np.ndarray:
    """Which spikes a sequential dead-time process keeps: a spike survives iff it comes ``refractory[unit]`` or more
    after the unit's previous *surviving* spike.

    Vectorised by rounds: a spike too close to its predecessor whose predecessor is itself not too close is surely
    dropped (the predecessor survives, because removing spikes only widens gaps); repeat until no violations.

    Args:
        times: [n] spike times, any order.
        units: [n] unit rows.
        refractory: [u] dead time per unit (s).

    Returns:
        [n] bool mask, aligned with the inputs.
    """
    order = np.lexsort((times, units))
    t, u = times[order], units[order]
    keep = np.ones(len(t), dtype=bool)
    while True:
        idx = np.flatnonzero(keep)
        tt, uu = t[idx], u[idx]
        bad = np.zeros(len(idx), dtype=bool)
        bad[1:] = (uu[1:] == uu[:-1]) & (tt[1:] - tt[:-1] < refractory[uu[1:]])
        if not bad.any():
            break
        bad[1:] &= ~bad[:-1]
        keep[idx[bad]] = False
    out = np.empty_like(keep)
    out[order] = keep
    return out


def sample_spikes(
    rng: np.random.Generator,
    log_rate: np.ndarray,
    grid_rate: float,
    lag: np.ndarray,
    refractory: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Inhomogeneous Poisson spikes with per-unit lag and refractory period.

    Args:
        rng: source of randomness.
        log_rate: [t, u] log-rate (log Hz) on the grid ``arange(t) / grid_rate``, before the units' lags.
        grid_rate: grid sampling rate in Hz.
        lag: [u] per-unit lag (s): the unit's rate at time τ is the grid's value at τ − lag.
        refractory: [u] absolute refractory period (s).

    Returns:
        (times f8 [n] sorted, unit rows i8 [n]) over ``[0, t / grid_rate)``.
    """
    num_bins = int(round(len(log_rate) / grid_rate / SPIKE_DT))
    times, units = [], []
    for b0 in range(0, num_bins, _CHUNK_BINS):
        b = np.arange(b0, min(b0 + _CHUNK_BINS, num_bins))
        rate = np.exp(sample_lagged(log_rate, grid_rate, (b + 0.5) * SPIKE_DT, lag))
        hit_bin, hit_unit = np.nonzero(rng.random(rate.shape) < -np.expm1(-rate * SPIKE_DT))
        times.append((b[hit_bin] + rng.random(len(hit_bin))) * SPIKE_DT)
        units.append(hit_unit.astype(np.int64))
    times, units = np.concatenate(times), np.concatenate(units)
    keep = refractory_keep(times, units, refractory)
    times, units = times[keep], units[keep]
    order = np.argsort(times, kind="stable")
    return times[order], units[order]
