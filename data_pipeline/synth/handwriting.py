"""Handwriting-like task (after Willett et al. 2021; docs/synthetic.md): attempted handwriting of 31 characters.

Each character is a stroke template: a pen-velocity trajectory made of 3–5 Gaussian velocity bumps over 0.6–1 s,
fixed per seed. A trial is a 0.5–0.8 s delay, the character written with a random time warp (overall speed
0.9–1.1× and a smooth monotone distortion) and at least 0.3 s of rest (each trial holds its 201-bin go-aligned
cube). Characters come in rounds of all 31; trials are split per character (valid: i % 9 == 2, test: i % 9 == 5).
192 channels are log-linear in the latent ``[pen velocity / 10, speed / 10, go bump, 3 private OU]`` read 100 ms
ahead; their 10 ms threshold-crossing counts are stored as spikes at bin centres (see
:mod:`data_pipeline.synth.binned`). Difficulty knobs and their calibration: :class:`HandwritingConfig`,
``docs/human_bci.md``.

Targets: ``intervals["trials"].columns["label"]`` (0–30, index into :data:`CHARACTERS`) for classification and
``behaviour["pen"]`` (``vel`` [t, 2], 100 Hz, arbitrary units) for regression.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from data_pipeline.recording import Intervals, Recording, TimeSeries
from data_pipeline.synth import binned
from data_pipeline.synth.latents import event_bump, ornstein_uhlenbeck
from data_pipeline.synth.sessions import SessionSpec

CHARACTERS = tuple("abcdefghijklmnopqrstuvwxyz") + (">", ",", "'", "~", "?")  # > space, ~ period (Willett et al.)
BIN_WIDTH = 0.01


@dataclasses.dataclass(frozen=True)
class HandwritingConfig:
    """The knobs that set how hard the task is (calibrated against the paper's baselines, see the module docstring)."""

    # Calibrated in docs/human_bci.md: PCA-KNN ≈ 0.8 and a binned GRU ≈ 0.93 test accuracy.
    channels: binned.ChannelConfig = binned.ChannelConfig(num_channels=192, gain=3.0)
    stretch: tuple[float, float] = (0.9, 1.1)  # overall writing speed per trial
    warp: float = 0.2  # |a| bound of the smooth clock distortion
    bump_width: float = 0.06  # s, width of a template's velocity bumps
    private_sd: float = 0.5  # sd of the private (behaviour-unrelated) OU latents
    family_size: int = 3  # characters per family: a family's templates share length and most of their strokes
    distinct: float = 0.6  # weight of a character's own strokes against its family's shared ones (1: unrelated)
    slip: float = 0.04  # chance that a trial writes another character of the cued one's family (label unchanged)


CONFIG = HandwritingConfig()
CHANNELS = CONFIG.channels
NUM_SESSIONS = 2
LEAD_BINS = 10  # latent leads the pen by 100 ms
REST_BINS = 30  # at least 0.3 s of rest after the stroke
GO_BIN, CUBE_BINS = 50, 201  # go-aligned trial cube of the single-letter datasets: 201 bins, the go cue in bin 50
TRIALS_PER_SESSION = 27 * len(CHARACTERS)  # 27 trials per character, as in a single-letter session
MIN_TRIALS = 6 * len(CHARACTERS)


def _random_template(rng: np.random.Generator, length: int, bump_width: float) -> np.ndarray:
    """Pen velocity [length, 2] made of 3–5 Gaussian velocity bumps."""
    t = np.arange(length) * BIN_WIDTH
    k = int(rng.integers(3, 6))
    centres = np.sort(rng.uniform(0.1, 0.9, k)) * t[-1]
    amps = rng.normal(0.0, 8.0, (k, 2))
    return np.exp(-0.5 * ((t[:, None] - centres) / bump_width) ** 2) @ amps


def stroke_templates(
    rng: np.random.Generator,
    bump_width: float = CONFIG.bump_width,
    family_size: int = CONFIG.family_size,
    distinct: float = CONFIG.distinct,
) -> list[np.ndarray]:
    """One pen-velocity template [t_c, 2] per character, on the 10 ms grid.

    Characters come in families of ``family_size`` (in :data:`CHARACTERS` order). A family's templates have one
    length and are ``sqrt(1 - d²) · shared + d · own`` (``d = distinct``) of two random stroke patterns, so a small
    ``distinct`` makes its characters look alike (as 'a', 'd' and 'g' do), while the stroke energy stays the same.
    """
    templates: list[np.ndarray] = []
    while len(templates) < len(CHARACTERS):
        length = int(rng.uniform(0.6, 1.0) / BIN_WIDTH)
        shared = _random_template(rng, length, bump_width)
        for _ in range(min(family_size, len(CHARACTERS) - len(templates))):
            own = _random_template(rng, length, bump_width)
            templates.append(np.sqrt(1.0 - distinct**2) * shared + distinct * own)
    return templates


def _slipped(rng: np.random.Generator, label: int, config: HandwritingConfig) -> int:
    """A character of ``label``'s family other than ``label`` (any other character when families are singletons)."""
    first = label - label % config.family_size
    family = [c for c in range(first, min(first + config.family_size, len(CHARACTERS))) if c != label]
    others = family or [c for c in range(len(CHARACTERS)) if c != label]
    return int(others[int(rng.integers(len(others)))])


def time_warp(
    rng: np.random.Generator,
    template: np.ndarray,
    stretch: tuple[float, float] = CONFIG.stretch,
    warp: float = CONFIG.warp,
) -> np.ndarray:
    """The template resampled on a randomly warped clock: ``s → s + a sin(π s)/π`` (|a| < ``warp``, monotone),
    stretched by a factor drawn from ``stretch``; velocities are scaled so the drawn shape (the integral) stays the
    same."""
    n = max(2, int(round(len(template) * rng.uniform(*stretch))))
    s = np.linspace(0.0, 1.0, n)
    a = rng.uniform(-warp, warp)
    warped = (s + a * np.sin(np.pi * s) / np.pi) * (len(template) - 1)
    rate = (1 + a * np.cos(np.pi * s)) * (len(template) - 1) / (n - 1)  # d(template index)/d(output bin)
    grid = np.arange(len(template))
    return np.stack([np.interp(warped, grid, template[:, j]) for j in range(2)], axis=1) * rate[:, None]


def character_splits(labels: np.ndarray) -> np.ndarray:
    """Split code per trial (0 train, 1 valid, 2 test): the i-th trial of its character (in trial order) is valid if
    i % 9 == 2 and test if i % 9 == 5, as the single-letter datasets of Willett et al. are split."""
    rep = np.zeros(len(labels), np.int64)
    for label in np.unique(labels):
        rep[labels == label] = np.arange(np.sum(labels == label))
    return np.where(rep % 9 == 2, 1, np.where(rep % 9 == 5, 2, 0))


def generate_handwriting(
    seed: int = 0,
    num_sessions: int = NUM_SESSIONS,
    trials_per_session: int = TRIALS_PER_SESSION,
    config: HandwritingConfig = CONFIG,
) -> Iterator[tuple[SessionSpec, Recording]]:
    """Yields handwriting sessions; templates and channel tuning are shared, offsets and trials differ per session.

    Characters come in rounds (each round a random order of all 31), so every character gets about
    ``trials_per_session / 31`` trials; at least 6 rounds (186 trials) give each character a valid and a test trial.

    Raises:
        ValueError: ``trials_per_session`` < 186.
    """
    if trials_per_session < MIN_TRIALS:
        raise ValueError(
            f"trials_per_session={trials_per_session}: need at least {MIN_TRIALS} (6 trials of each of the "
            f"{len(CHARACTERS)} characters, so every character has a valid and a test trial)"
        )
    shared = np.random.default_rng([seed, 1000, 0])
    templates = stroke_templates(shared, config.bump_width, config.family_size, config.distinct)
    channels = config.channels
    log_r0, weights = binned.channel_tuning(shared, channels, 7)
    for index in range(num_sessions):
        rng = np.random.default_rng([seed, 1000, index + 1])
        rounds = -(-trials_per_session // len(CHARACTERS))
        labels = np.concatenate([rng.permutation(len(CHARACTERS)) for _ in range(rounds)])[:trials_per_session]
        pieces, starts, gos, ends, t = [], [], [], [], 0
        for label in labels:
            delay = int(rng.uniform(0.5, 0.8) / BIN_WIDTH)
            written = _slipped(rng, label, config) if rng.uniform() < config.slip else label
            stroke = time_warp(rng, templates[written], config.stretch, config.warp)
            # The trial holds its whole go-aligned cube (CUBE_BINS - GO_BIN bins from the go cue).
            piece = np.zeros((delay + max(len(stroke) + REST_BINS, CUBE_BINS - GO_BIN), 2))
            piece[delay : delay + len(stroke)] = stroke
            pieces.append(piece)
            starts.append(t)
            gos.append(t + delay)
            t += len(piece)
            ends.append(t)
        vel = np.concatenate(pieces)
        times = np.arange(len(vel)) * BIN_WIDTH
        ahead = np.minimum(np.arange(len(vel)) + LEAD_BINS, len(vel) - 1)
        go_times = np.array(gos) * BIN_WIDTH
        z = np.concatenate(
            [
                vel[ahead] / 10.0,
                np.linalg.norm(vel[ahead], axis=1, keepdims=True) / 10.0,
                event_bump(times, go_times - LEAD_BINS * BIN_WIDTH, centre=0.0, width=0.08)[:, None],
                config.private_sd * ornstein_uhlenbeck(rng, len(vel), rng.uniform(0.3, 1.0, 3), BIN_WIDTH),
            ],
            axis=1,
        )
        offset = channels.session_offset_sd * rng.standard_normal(channels.num_channels)
        log_rate = log_r0 + offset + channels.gain * z @ weights.T
        trials = Intervals(
            np.array(starts) * BIN_WIDTH,
            np.array(ends) * BIN_WIDTH,
            {"label": labels.astype(np.int64), "go_cue_time": go_times},
        )
        # Pen velocity on the 100 Hz grid: each 10 ms bin's value, timestamped at the bin centre.
        pen = TimeSeries(times + BIN_WIDTH / 2, {"vel": vel}, sampling_rate=1.0 / BIN_WIDTH)
        spec = SessionSpec(0, index, f"handwriting_session_{index:03d}", "subject_00", "handwriting", False)
        truth = {"latents": z.astype(np.float32), "weights": weights, "log_r0": log_r0 + offset}
        rec = binned.binned_recording(
            rng,
            ("synthetic_handwriting", spec.session_id, spec.subject_id),
            log_rate,
            BIN_WIDTH,
            trials,
            {"pen": pen},
            {},
            truth,
            split_codes=character_splits(labels),
        )
        yield spec, rec
