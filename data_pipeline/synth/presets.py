"""Named sizes of the synthetic reaching corpus (docs/synthetic.md): ``tiny`` for tests, ``demo`` for a laptop,
``bench``, ``single`` (one long centre-out session for single-session models, POSSM-SS) and ``transfer`` (a
held-out session of a seen subject and a held-out subject, small enough for the CPU transfer study)."""

from __future__ import annotations

import dataclasses

from data_pipeline.synth.units import TuningConfig


@dataclasses.dataclass(frozen=True)
class ReachingPreset:
    """Everything that shapes a synthetic multi-session reaching corpus.

    Sessions of a subject form a chain (think: recording days); neighbours share 50–90 % of their units and tuning
    drifts slowly along the chain. ``num_heldout`` extra sessions per subject continue the chain after the
    pretraining sessions and are meant for transfer experiments. The last ``heldout_subjects`` subjects are never
    seen in pretraining: they have only ``max(1, num_heldout)`` sessions, all held out, their own neurons, and
    latent rotational dynamics at ``heldout_rotation_freq`` instead of ``rotation_freq``.
    """

    name: str
    num_subjects: int = 1
    sessions_per_subject: int = 3
    num_heldout: int = 0
    duration: float = 60.0  # s per session
    random_target_every: int = 0  # every k-th session is random-target (0: all centre-out)
    pool_size: tuple[int, int] = (300, 500)
    units_per_session: tuple[int, int] = (60, 250)
    overlap: tuple[float, float] = (0.5, 0.9)  # |A ∩ B| / min(|A|, |B|) for neighbouring sessions
    lead: tuple[float, float] = (0.10, 0.15)  # s, latent ahead of kinematics
    rotation_freq: tuple[float, float] = (1.0, 2.0)  # Hz
    heldout_subjects: int = 0
    heldout_rotation_freq: tuple[float, float] = (2.5, 3.0)  # Hz, for held-out subjects
    num_private: tuple[int, int] = (2, 3)  # inclusive range
    private_tau: tuple[float, float] = (0.3, 1.0)  # s
    tuning: TuningConfig = TuningConfig()
    session_gain_sd: float = 0.08  # log-space sd of the per-session gain change
    session_baseline_sd: float = 0.2  # log-space sd of per-session, per-unit baseline changes
    weight_drift_sd: float = 0.03  # per-session random-walk step of the tuning weights
    slow_drift_sd: float = 0.15  # amplitude (log space) of within-session baseline drift
    slow_drift_period: tuple[float, float] = (120.0, 600.0)  # s
    split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)  # train / valid / test, by whole trials
    truth_rate_hz: float = 20.0  # sampling rate of the stored ground-truth rates

    @property
    def brainset_id(self) -> str:
        return f"synthetic_reaching_{self.name}"

    def is_heldout_subject(self, subject: int) -> bool:
        """Whether ``subject`` is one of the last ``heldout_subjects`` (never seen in pretraining)."""
        return subject >= self.num_subjects - self.heldout_subjects

    def chain_length(self, subject: int) -> int:
        """Sessions of ``subject``: pretraining plus held-out ones, or only held-out ones for a held-out subject."""
        if self.is_heldout_subject(subject):
            return max(1, self.num_heldout)
        return self.sessions_per_subject + self.num_heldout


PRESETS: dict[str, ReachingPreset] = {
    "tiny": ReachingPreset("tiny", sessions_per_subject=3, duration=60.0),
    "demo": ReachingPreset("demo", sessions_per_subject=10, num_heldout=1, duration=300.0, random_target_every=5),
    # One 15 min session of 188 units (the neurons of demo's subject_00_session_000): single-session
    # models are data-limited on 5 min sessions (README, "Single-session POSSM-SS").
    "single": ReachingPreset("single", sessions_per_subject=1, duration=900.0),
    # Two pretraining subjects (3 sessions each, 1 held out each) and a third subject held out whole: the CPU
    # transfer study (experiments/transfer_study.py) pretrains on 6 sessions and transfers to both kinds.
    "transfer": ReachingPreset(
        "transfer",
        num_subjects=3,
        sessions_per_subject=3,
        num_heldout=1,
        heldout_subjects=1,
        duration=150.0,
        pool_size=(150, 250),
        units_per_session=(60, 120),
    ),
    "bench": ReachingPreset(
        "bench", num_subjects=4, sessions_per_subject=20, num_heldout=1, duration=300.0, random_target_every=4
    ),
}


def get_preset(name: str) -> ReachingPreset:
    """The preset called ``name``; raises ValueError listing the valid names."""
    if name not in PRESETS:
        raise ValueError(f"preset={name!r}: expected one of {sorted(PRESETS)}")
    return PRESETS[name]
