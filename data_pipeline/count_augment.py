"""Training augmentation of binned-count windows (handwriting): channel dropout and multiplicative count noise.

Binned windows are sparse: one token per non-zero (bin, channel) count, with value ``sqrt(count)``
(:mod:`data_pipeline.binned_tokens`). Additive white noise on dense features, as recurrent baselines on
threshold crossings use it, would make every (bin, channel) a token, so the noise here is multiplicative and keeps
the silent bins silent:

* ``channel_dropout``: each window draws a drop rate ``p ~ U[0, channel_dropout]`` and removes every token of each
  channel with probability ``p`` (the binned analogue of reaching's unit dropout: the decoder must not lean on a
  few channels, and real arrays lose channels from day to day);
* ``channel_gain``: every channel of a window scales its values by ``exp(channel_gain · N(0, 1))`` (slow drift of a
  channel's threshold-crossing rate; the analogue of a per-channel constant offset);
* ``token_noise``: every token's value is scaled by ``exp(token_noise · N(0, 1))`` (bin-to-bin noise).

Values stay positive, so the count bias of the encoder (``log`` of the squared value, ``docs/model.md``) stays
defined. All zero is no augmentation. Draws come from the batch's generator, itself a pure function of
``(seed, batch index)``, so augmented batches are reproducible and resume exactly.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class CountAugment:
    """How strongly training windows are perturbed (module docstring); all zero is none."""

    channel_dropout: float = 0.0
    channel_gain: float = 0.0
    token_noise: float = 0.0

    def __post_init__(self):
        if not 0.0 <= self.channel_dropout < 1.0:
            raise ValueError(f"channel_dropout={self.channel_dropout}: must be in [0, 1) (a maximum drop rate)")
        for name in ("channel_gain", "token_noise"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 0 (a log-scale standard deviation)")

    @property
    def active(self) -> bool:
        """Whether any augmentation is on."""
        return self.channel_dropout > 0 or self.channel_gain > 0 or self.token_noise > 0

    def apply(self, row: np.ndarray, value: np.ndarray, num_channels: int, rng: np.random.Generator):
        """Augments one window's tokens.

        Args:
            row: [n] channel row of each token (in ``[0, num_channels)``).
            value: [n] token values.
            num_channels: the session's channel count.
            rng: the batch's generator.

        Returns:
            ``(keep [n] bool, value [n] float32)``: which tokens stay and their new values.
        """
        keep = np.ones(len(row), bool)
        if self.channel_dropout > 0:
            rate = rng.uniform(0.0, self.channel_dropout)
            keep = (rng.random(num_channels) >= rate)[row]
        scale = np.zeros(len(row))
        if self.channel_gain > 0:
            scale += self.channel_gain * rng.standard_normal(num_channels)[row]
        if self.token_noise > 0:
            scale += self.token_noise * rng.standard_normal(len(row))
        return keep, (value * np.exp(scale)).astype(np.float32)
