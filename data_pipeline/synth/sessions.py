"""Multi-session assembly: subjects, unit pools, session chains with partial overlap and drift, splits.

Determinism: a subject's plan (pool, which pool neurons each session sees, tuning drift along the chain) comes from
``default_rng([seed, subject, 0])``; a session's behaviour, latents and spikes from
``default_rng([seed, subject, session + 1])``. Generating one session never needs another session's spikes.

Ground truth under ``Recording.truth``:

==================  =========  ==============================================================================
key                 shape      meaning
==================  =========  ==============================================================================
``latents``         [t, d]     latent state on the cursor timestamps (rows: ``latents.LATENT_NAMES`` + private)
``rates``           [r, u]     firing rates (Hz) at ``rate_timestamps`` (``truth_rate_hz``, lags applied)
``rate_timestamps`` [r]        seconds
``weights``         [u, d]     the session's tuning weights (after drift)
``log_r0``          [u]        the session's log baseline rate (after its baseline change, before slow drift)
``gain``            [1]        the session's gain g
``lag``             [u]        per-unit lag behind the latent (s)
``refractory``      [u]        per-unit refractory period (s)
``tuned``           [u]        False for untuned units
``pool_index``      [u]        which neuron of the subject's pool each unit row is
``lead``            [1]        how far the latent leads the kinematics (s)
==================  =========  ==============================================================================
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from data_pipeline.recording import Intervals, Recording, TimeSeries
from data_pipeline.synth import latents as latents_lib
from data_pipeline.synth import reaching, units
from data_pipeline.synth.presets import ReachingPreset


@dataclasses.dataclass(frozen=True)
class SessionSpec:
    """Where a session sits in the corpus."""

    subject: int
    index: int  # position in the subject's chain
    session_id: str
    subject_id: str
    task: str
    heldout: bool


@dataclasses.dataclass
class SubjectPlan:
    """Everything shared by a subject's sessions: the pool and, per session, the units seen and the tuning drift."""

    pool: units.UnitPool
    rotation_freq: float
    unit_sets: list[np.ndarray]  # per session: pool indices, in the session's row order
    weight_drift: np.ndarray  # [sessions, pool, d] cumulative random walk added to the pool weights


def _subject_id(subject: int) -> str:
    return f"subject_{subject:02d}"


def session_specs(preset: ReachingPreset) -> list[SessionSpec]:
    """All sessions of a preset in order: per subject, the pretraining chain then the held-out sessions."""
    specs = []
    for s in range(preset.num_subjects):
        for k in range(preset.chain_length(s)):
            rt = preset.random_target_every and (k + 1) % preset.random_target_every == 0
            heldout = k >= preset.sessions_per_subject or preset.is_heldout_subject(s)
            task = reaching.RANDOM_TARGET if rt and not heldout else reaching.CENTRE_OUT
            specs.append(SessionSpec(s, k, f"{_subject_id(s)}_session_{k:03d}", _subject_id(s), task, heldout))
    return specs


def chain_unit_sets(
    rng: np.random.Generator,
    pool_size: int,
    num_sessions: int,
    units_per_session: tuple[int, int],
    overlap: tuple[float, float],
) -> list[np.ndarray]:
    """Which pool neurons each session of a chain sees.

    Session k+1 keeps ``round(f · min(n_k, n_{k+1}))`` of session k's units (f ~ U(overlap)) and fills up with
    neurons session k did not see; sizes are redrawn until the pool has enough unseen neurons.

    Returns:
        per session, pool indices in a random (session-local) row order.
    """
    if units_per_session[1] > pool_size:
        raise ValueError(f"units_per_session={units_per_session} exceeds pool_size={pool_size}")
    sets = [rng.permutation(pool_size)[: rng.integers(units_per_session[0], units_per_session[1] + 1)]]
    while len(sets) < num_sessions:
        prev = sets[-1]
        while True:
            n = int(rng.integers(units_per_session[0], units_per_session[1] + 1))
            shared = int(round(rng.uniform(*overlap) * min(len(prev), n)))
            if n - shared <= pool_size - len(prev):
                break
        unseen = np.setdiff1d(np.arange(pool_size), prev)
        chosen = np.concatenate(
            [rng.choice(prev, shared, replace=False), rng.choice(unseen, n - shared, replace=False)]
        )
        sets.append(rng.permutation(chosen))
    return sets


def plan_subject(preset: ReachingPreset, seed: int, subject: int) -> SubjectPlan:
    """The subject-level structure of a corpus (cheap: no spikes)."""
    rng = np.random.default_rng([seed, subject, 0])
    num_sessions = preset.chain_length(subject)
    pool_size = int(rng.integers(preset.pool_size[0], preset.pool_size[1] + 1))
    num_private = int(rng.integers(preset.num_private[0], preset.num_private[1] + 1))
    pool = units.make_pool(rng, pool_size, num_private, preset.tuning)
    unit_sets = chain_unit_sets(rng, pool_size, num_sessions, preset.units_per_session, preset.overlap)
    steps = rng.standard_normal((num_sessions, *pool.weights.shape)) * preset.weight_drift_sd
    steps[:, ~pool.tuned, : latents_lib.NUM_TASK_LATENTS] = 0.0  # untuned units stay untuned
    freq = preset.heldout_rotation_freq if preset.is_heldout_subject(subject) else preset.rotation_freq
    return SubjectPlan(pool, float(rng.uniform(*freq)), unit_sets, np.cumsum(steps, axis=0))


def split_trials(
    rng: np.random.Generator, trials: Intervals, fractions: tuple[float, float, float]
) -> dict[str, Intervals]:
    """Assigns whole trials to train/valid/test and merges touching trials of a split into domain intervals.

    Stratified by ``trials.columns["target_id"]`` when present: trials are grouped by target (in random order) and
    dealt to the splits in an interleaved pattern that tracks ``fractions``, so even a small test split covers many
    reach directions (otherwise a 5-trial test set can have almost no variance along one axis and a meaningless R²).
    """
    n = len(trials)
    group = trials.columns.get("target_id", np.zeros(n, dtype=np.int64))
    order = np.lexsort((rng.permutation(n), rng.permutation(np.max(group) + 2)[group + 1]))
    which, dealt = np.zeros(n, dtype=np.int64), np.zeros(3)
    for i, trial in enumerate(order):  # deal to the split furthest below its share so far
        code = int(np.argmax(np.asarray(fractions) * (i + 1) - dealt))
        which[trial], dealt[code] = code, dealt[code] + 1
    if np.any(dealt == 0):
        raise ValueError(f"{n} trials cannot fill train/valid/test with fractions {fractions}; lengthen the session")
    return split_domains(trials, which)


def split_domains(trials: Intervals, which: np.ndarray) -> dict[str, Intervals]:
    """Split domains from a per-trial assignment ``which`` [i] (0 train, 1 valid, 2 test); touching trials merge."""
    splits = {}
    for code, name in enumerate(("train", "valid", "test")):
        start, end = trials.start[which == code], trials.end[which == code]
        # Merge trials that touch (trial i ends where trial i+1 starts) into one domain interval.
        new = np.concatenate([[True], start[1:] > end[:-1]])
        last = np.concatenate([np.flatnonzero(new)[1:] - 1, [len(start) - 1]])
        splits[name] = Intervals(start[new], end[last])
    return splits


def _slow_drift(rng: np.random.Generator, times: np.ndarray, num_units: int, preset: ReachingPreset) -> np.ndarray:
    """[t, u] within-session baseline drift: one slow sinusoid per unit with random amplitude, period and phase."""
    amplitude = rng.standard_normal(num_units) * preset.slow_drift_sd
    period = rng.uniform(*preset.slow_drift_period, num_units)
    phase = rng.uniform(0, 2 * np.pi, num_units)
    return amplitude * np.sin(2 * np.pi * times[:, None] / period + phase)


def generate_session(preset: ReachingPreset, seed: int, spec: SessionSpec, plan: SubjectPlan) -> Recording:
    """One synthetic reaching session with its ground truth."""
    rng = np.random.default_rng([seed, spec.subject, spec.index + 1])
    behaviour = reaching.simulate_reaching(rng, preset.duration, spec.task)
    lead = rng.uniform(*preset.lead)
    num_private = plan.pool.weights.shape[1] - latents_lib.NUM_TASK_LATENTS
    taus = rng.uniform(*preset.private_tau, num_private)
    z = latents_lib.reaching_latents(rng, behaviour, lead, plan.rotation_freq, taus)

    rows = plan.unit_sets[spec.index]
    weights = plan.pool.weights[rows] + plan.weight_drift[spec.index, rows]
    gain = preset.tuning.gain * np.exp(preset.session_gain_sd * rng.standard_normal())
    log_r0 = plan.pool.log_r0[rows] + preset.session_baseline_sd * rng.standard_normal(len(rows))
    times = behaviour.timestamps
    log_rate = log_r0 + _slow_drift(rng, times, len(rows), preset) + gain * (z @ weights.T)
    log_rate = units.saturate(log_rate, preset.tuning.max_rate)
    lag, refractory = plan.pool.lag[rows], plan.pool.refractory[rows]
    spike_times, spike_units = units.sample_spikes(rng, log_rate, reaching.SAMPLING_RATE, lag, refractory)
    end = float(behaviour.trials.end[-1])
    inside = spike_times < end  # the 100 Hz grid runs up to one sample past the last trial
    spike_times, spike_units = spike_times[inside], spike_units[inside]

    rate_times = np.arange(0.0, end, 1.0 / preset.truth_rate_hz)
    rates = np.exp(units.sample_lagged(log_rate, reaching.SAMPLING_RATE, rate_times, lag))
    intervals = {"trials": behaviour.trials}
    intervals.update({f"movement_phases/{k}": v for k, v in behaviour.phases.items() if len(v)})
    return Recording(
        brainset_id=preset.brainset_id,
        session_id=spec.session_id,
        subject_id=spec.subject_id,
        unit_ids=np.array([f"unit_{i:03d}" for i in range(len(rows))]),
        spike_times=spike_times,
        spike_units=spike_units,
        domain=Intervals(np.array([0.0]), np.array([end])),
        splits=split_trials(rng, behaviour.trials, preset.split_fractions),
        behaviour={
            "cursor": TimeSeries(
                times, {"pos": behaviour.pos, "vel": behaviour.vel, "acc": behaviour.acc}, reaching.SAMPLING_RATE
            )
        },
        intervals=intervals,
        truth={
            "latents": z.astype(np.float32),
            "rates": rates.astype(np.float32),
            "rate_timestamps": rate_times,
            "weights": weights,
            "log_r0": log_r0,
            "gain": np.array([gain]),
            "lag": lag,
            "refractory": refractory,
            "tuned": plan.pool.tuned[rows],
            "pool_index": rows.astype(np.int64),
            "lead": np.array([lead]),
        },
    )


def generate(preset: ReachingPreset, seed: int = 0) -> Iterator[tuple[SessionSpec, Recording]]:
    """Yields every session of the corpus in :func:`session_specs` order, one at a time."""
    plans: dict[int, SubjectPlan] = {}
    for spec in session_specs(preset):
        if spec.subject not in plans:
            plans = {spec.subject: plan_subject(preset, seed, spec.subject)}  # keep one subject in memory
        yield spec, generate_session(preset, seed, spec, plans[spec.subject])
