"""Speech-like task (after Willett et al. 2023; docs/synthetic.md): attempted speech decoded as phonemes with CTC.

40 phonemes (ids 1–40; 0 is the CTC blank) and a random lexicon of 2–6-phoneme words (no phoneme repeats itself
back to back, so frame labels collapse to the exact sequence). A trial is a 0.5–1 s delay, a sentence of 3–7 words
(phonemes last 60–160 ms, 0–60 ms pauses between words) and a 0.3 s rest. Each phoneme has a random pattern in a
16-d articulatory latent; the latent is the phoneme pattern sequence smoothed with a 40 ms Gaussian (coarticulation),
read 60 ms ahead, plus 3 private OU latents. 256 channels give Poisson counts in 20 ms bins, stored as spikes at bin
centres (see :mod:`data_pipeline.synth.binned`).

CTC targets: ``intervals["phonemes"]`` holds one interval per spoken phoneme with column ``phoneme`` (1–40); a
trial's target is the phonemes inside it, in order. ``behaviour["phoneme"]`` has the frame label ``id`` (0 in
silence) at the bin centres.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from data_pipeline.recording import Intervals, Recording, TimeSeries
from data_pipeline.synth import binned
from data_pipeline.synth.latents import ornstein_uhlenbeck
from data_pipeline.synth.sessions import SessionSpec

NUM_PHONEMES = 40  # plus blank = 41 CTC classes
BLANK = 0
BIN_WIDTH = 0.02
NUM_SESSIONS = 2
LATENT_DIM = 16
LEAD_BINS = 3
TRIALS_PER_SESSION = 400


@dataclasses.dataclass(frozen=True)
class SpeechConfig:
    """The knobs that set how hard the task is (calibrated against the paper's baselines, see the module docstring)."""

    # gain 1.0: a binned GRU reaches test PER ≈ 0.3 after 1000 steps (0.9: 0.34, 1.2: 0.20; docs/human_bci.md).
    channels: binned.ChannelConfig = binned.ChannelConfig(num_channels=256, gain=1.0)
    phoneme_bins: tuple[int, int] = (3, 8)  # inclusive range of a phoneme's duration in 20 ms bins
    coarticulation: float = 0.04  # s, sd of the Gaussian smoothing the phoneme pattern sequence
    private_sd: float = 1.0  # sd of the private (speech-unrelated) OU latents


CONFIG = SpeechConfig()
CHANNELS = CONFIG.channels


def random_lexicon(rng: np.random.Generator, num_words: int = 300) -> list[np.ndarray]:
    """Words of 2–6 phoneme ids in 1–40 with no immediate repeats."""
    words = []
    for _ in range(num_words):
        word, length = [int(rng.integers(1, NUM_PHONEMES + 1))], int(rng.integers(2, 7))
        while len(word) < length:
            nxt = int(rng.integers(1, NUM_PHONEMES))
            word.append(nxt + (nxt >= word[-1]))  # uniform over the 39 phonemes other than the previous one
        words.append(np.array(word))
    return words


def _sentence(rng: np.random.Generator, lexicon: list[np.ndarray]) -> list[int]:
    out: list[int] = []
    for _ in range(int(rng.integers(3, 8))):
        word = lexicon[int(rng.integers(len(lexicon)))]
        while out and word[0] == out[-1]:  # keep the no-immediate-repeat rule across word boundaries
            word = lexicon[int(rng.integers(len(lexicon)))]
        out += [int(p) for p in word] + [BLANK] * int(rng.integers(0, 4))  # BLANK here marks a pause
    return out


def generate_speech(
    seed: int = 0,
    num_sessions: int = NUM_SESSIONS,
    trials_per_session: int = TRIALS_PER_SESSION,
    config: SpeechConfig = CONFIG,
) -> Iterator[tuple[SessionSpec, Recording]]:
    """Yields speech sessions; lexicon, phoneme patterns and channel tuning are shared, the rest is per session."""
    shared = np.random.default_rng([seed, 2000, 0])
    lexicon = random_lexicon(shared)
    patterns = np.concatenate([np.zeros((1, LATENT_DIM)), shared.standard_normal((NUM_PHONEMES, LATENT_DIM))])
    channels = config.channels
    log_r0, weights = binned.channel_tuning(shared, channels, LATENT_DIM + 3)
    half = int(np.ceil(3 * config.coarticulation / BIN_WIDTH))
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) * BIN_WIDTH / config.coarticulation) ** 2)
    kernel /= kernel.sum()
    for index in range(num_sessions):
        rng = np.random.default_rng([seed, 2000, index + 1])
        frames, starts, ends = [], [], []
        for _ in range(trials_per_session):
            starts.append(sum(len(f) for f in frames))
            frames.append(np.zeros(int(rng.uniform(0.5, 1.0) / BIN_WIDTH), dtype=np.int64))
            for p in _sentence(rng, lexicon):
                length = int(rng.integers(config.phoneme_bins[0], config.phoneme_bins[1] + 1)) if p else 1
                frames.append(np.full(length, p, dtype=np.int64))
            frames.append(np.zeros(int(0.3 / BIN_WIDTH), dtype=np.int64))
            ends.append(sum(len(f) for f in frames))
        label = np.concatenate(frames)
        times = np.arange(len(label)) * BIN_WIDTH
        smooth = np.stack([np.convolve(col, kernel, mode="same") for col in patterns[label].T], axis=1)
        ahead = np.minimum(np.arange(len(label)) + LEAD_BINS, len(label) - 1)
        private = config.private_sd * ornstein_uhlenbeck(rng, len(label), rng.uniform(0.3, 1.0, 3), BIN_WIDTH)
        z = np.concatenate([smooth[ahead], private], 1)
        offset = channels.session_offset_sd * rng.standard_normal(channels.num_channels)
        log_rate = log_r0 + offset + channels.gain * z @ weights.T
        # One interval per phoneme occurrence: runs of equal non-blank frame labels.
        change = np.flatnonzero(np.diff(label, prepend=-1, append=-1))
        run_start, run_end = change[:-1], change[1:]
        spoken = label[run_start] != BLANK
        phonemes = Intervals(
            times[run_start[spoken]], run_end[spoken] * BIN_WIDTH, {"phoneme": label[run_start[spoken]]}
        )
        trials = Intervals(np.array(starts) * BIN_WIDTH, np.array(ends) * BIN_WIDTH)
        frame = TimeSeries(times + BIN_WIDTH / 2, {"id": label}, sampling_rate=1.0 / BIN_WIDTH)
        spec = SessionSpec(0, index, f"speech_session_{index:03d}", "subject_00", "speech", False)
        truth = {"latents": z.astype(np.float32), "weights": weights, "log_r0": log_r0 + offset}
        rec = binned.binned_recording(
            rng,
            ("synthetic_speech", spec.session_id, spec.subject_id),
            log_rate,
            BIN_WIDTH,
            trials,
            {"phoneme": frame},
            {"phonemes": phonemes},
            truth,
        )
        yield spec, rec
