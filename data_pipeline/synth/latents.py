"""Low-dimensional latent state that leads the kinematics (docs/synthetic.md).

The latent ``z`` [t, d] (d = 8 + ``num_private``) lives on the behaviour's 100 Hz grid and is what the units'
log-rates are linear in. Its task part is a function of the kinematics ``lead`` seconds in the future, so neural
activity precedes movement by 100–150 ms as in motor cortex:

====  ==============  =========================================================================================
rows  name            definition at time t (kinematics read at t + lead)
====  ==============  =========================================================================================
0–1   ``vel``         velocity / 20 cm/s
2     ``speed``       |velocity| / 20 cm/s (enters log-rates linearly, so counts are not linear in velocity)
3–4   ``pos``         position / 8 cm
5     ``bump``        condition-independent Gaussian bump (σ 80 ms) peaking 100 ms before each movement onset
6–7   ``rotation``    damped 1–2 Hz rotation kicked 150 ms before each movement, phase = movement direction
8–    ``private``     Ornstein–Uhlenbeck processes (τ 0.3–1 s, unit variance), independent of behaviour
====  ==============  =========================================================================================

The private latents are shared by the population but unrelated to behaviour: a linear decoder cannot subtract them
from the counts, a nonlinear decoder that infers the latent state can.
"""

from __future__ import annotations

import numpy as np

from data_pipeline.synth.reaching import SAMPLING_RATE, Behaviour

LATENT_NAMES = ("vel_x", "vel_y", "speed", "pos_x", "pos_y", "bump", "rot_a", "rot_b")
NUM_TASK_LATENTS = len(LATENT_NAMES)
VEL_SCALE = 20.0  # cm/s
POS_SCALE = 8.0  # cm


def ornstein_uhlenbeck(rng: np.random.Generator, num_steps: int, taus: np.ndarray, dt: float) -> np.ndarray:
    """Stationary unit-variance OU processes sampled every ``dt``.

    Args:
        rng: source of randomness.
        num_steps: number of samples t.
        taus: [p] time constants in seconds.
        dt: sampling interval in seconds.

    Returns:
        [t, p] samples with x[0] ~ N(0, 1).
    """
    a = np.exp(-dt / taus)
    noise = rng.standard_normal((num_steps, len(taus))) * np.sqrt(1 - a**2)
    out = np.empty_like(noise)
    out[0] = rng.standard_normal(len(taus))
    for k in range(1, num_steps):  # AR(1) recursion; vector ops over p, ~30 k steps per 5 min session
        out[k] = a * out[k - 1] + noise[k]
    return out


def event_bump(times: np.ndarray, events: np.ndarray, centre: float, width: float) -> np.ndarray:
    """Sum of Gaussian bumps ``exp(-(t - e - centre)² / 2 width²)`` over events e.

    Args:
        times: [t] seconds.
        events: [k] event times in seconds.
        centre: bump peak relative to each event (s).
        width: bump standard deviation (s).

    Returns:
        [t] summed bumps.
    """
    out = np.zeros_like(times)
    for e in events:  # a few hundred events per session; each touches only its ±4σ neighbourhood
        i0, i1 = np.searchsorted(times, [e + centre - 4 * width, e + centre + 4 * width])
        out[i0:i1] += np.exp(-0.5 * ((times[i0:i1] - e - centre) / width) ** 2)
    return out


def damped_rotation(
    times: np.ndarray, kicks: np.ndarray, phases: np.ndarray, freq: float, rise: float, decay: float
) -> np.ndarray:
    """Rotational transients: each kick at time k with phase φ adds ``env(t - k) [cos, sin](2π f (t - k) + φ)``.

    The envelope ``env(s) = (s / rise) exp(1 - s / rise) exp(-s / decay)`` starts at 0 (rates never jump at a kick),
    peaks near ``rise`` and is damped with time constant ``decay``.

    Args:
        times: [t] seconds.
        kicks: [k] kick times.
        phases: [k] initial phases (radians), e.g. the movement direction.
        freq: rotation frequency in Hz.
        rise: envelope rise time (s).
        decay: damping time constant (s).

    Returns:
        [t, 2] summed rotations.
    """
    out = np.zeros((len(times), 2))
    for k, phi in zip(kicks, phases, strict=True):
        i0, i1 = np.searchsorted(times, [k, k + rise + 6 * decay])
        s = times[i0:i1] - k
        env = (s / rise) * np.exp(1 - s / rise) * np.exp(-s / decay)
        angle = 2 * np.pi * freq * s + phi
        out[i0:i1, 0] += env * np.cos(angle)
        out[i0:i1, 1] += env * np.sin(angle)
    return out


def reaching_latents(
    rng: np.random.Generator,
    behaviour: Behaviour,
    lead: float,
    rotation_freq: float,
    private_taus: np.ndarray,
) -> np.ndarray:
    """The latent state of a reaching session (see the module table).

    Args:
        rng: source of randomness (private OU latents only).
        behaviour: the session's kinematics and movements.
        lead: how far the latent leads the kinematics, seconds (0.10–0.15).
        rotation_freq: rotational dynamics frequency in Hz (1–2).
        private_taus: [p] time constants of the private OU latents (2–3 of them).

    Returns:
        z: [t, 8 + p] on ``behaviour.timestamps``.
    """
    times = behaviour.timestamps
    shift = int(round(lead * SAMPLING_RATE))
    # Kinematics ``lead`` into the future; the last samples repeat the final (resting) state.
    ahead = np.minimum(np.arange(len(times)) + shift, len(times) - 1)
    vel, pos = behaviour.vel[ahead], behaviour.pos[ahead]
    onsets = np.array([m.onset for m in behaviour.movements]) - lead
    directions = np.array([m.direction for m in behaviour.movements])
    z = np.concatenate(
        [
            vel / VEL_SCALE,
            np.linalg.norm(vel, axis=1, keepdims=True) / VEL_SCALE,
            pos / POS_SCALE,
            event_bump(times, onsets, centre=-0.1, width=0.08)[:, None],
            damped_rotation(times, onsets - 0.15, directions, rotation_freq, rise=0.15, decay=0.4),
            ornstein_uhlenbeck(rng, len(times), private_taus, 1 / SAMPLING_RATE),
        ],
        axis=1,
    )
    return z
