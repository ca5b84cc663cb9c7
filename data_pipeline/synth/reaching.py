"""Reaching behaviour: centre-out trials and random-target chains built from minimum-jerk movements (docs/synthetic.md).

A session's behaviour is a list of :class:`Movement` s (straight minimum-jerk reaches between two points) laid out
on a timeline of back-to-back trials, then evaluated on a 100 Hz grid. Positions are in cm, velocities in cm/s and
accelerations in cm/s².

Centre-out trial (times from the trial start)::

    [centre hold 0.5–1 s][reaction 0.2–0.35 s][reach 0.35–0.6 s][target hold 0.3–0.6 s][return 0.35–0.6 s]
    |---- hold_period ---|------------ reach_period ------------|---- hold_period -----|-- return_period --|

``reach_period`` runs from the go cue (end of the centre hold) to the end of the reach, as in the brainsets
reaching datasets. Random-target trials hold 0.3–0.6 s and then chain four reaches to random points of the 10 cm
workspace, each after a 0.2–0.35 s reaction time; everything after the first hold is ``random_period``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from data_pipeline.recording import Intervals

SAMPLING_RATE = 100.0  # Hz, behaviour sampling rate
NUM_TARGETS = 8
CENTRE_OUT = "center_out"
RANDOM_TARGET = "random_target"
TASKS = (CENTRE_OUT, RANDOM_TARGET)


@dataclasses.dataclass(frozen=True)
class Movement:
    """One straight minimum-jerk movement from ``p0`` to ``p1`` starting at ``onset`` and lasting ``duration``."""

    onset: float
    duration: float
    p0: tuple[float, float]
    p1: tuple[float, float]

    @property
    def direction(self) -> float:
        """Angle of the movement in radians."""
        return float(np.arctan2(self.p1[1] - self.p0[1], self.p1[0] - self.p0[0]))


@dataclasses.dataclass
class Behaviour:
    """A session's cursor kinematics on the 100 Hz grid, with the trial structure that produced them.

    Attributes:
        timestamps: [t] seconds, ``arange(t) / 100``.
        pos, vel, acc: [t, 2] cm, cm/s, cm/s².
        movements: every movement, sorted by onset.
        trials: one interval per trial with columns ``target_id`` (0–7, -1 for random-target), ``go_cue_time`` and
          ``move_onset_time`` (first movement of the trial).
        phases: ``hold_period``, ``reach_period``, ``return_period``, ``random_period`` intervals (some may be empty).
    """

    timestamps: np.ndarray
    pos: np.ndarray
    vel: np.ndarray
    acc: np.ndarray
    movements: list[Movement]
    trials: Intervals
    phases: dict[str, Intervals]


def minimum_jerk(s: np.ndarray, delta: np.ndarray, duration: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimum-jerk displacement and its derivatives (Flash & Hogan 1985).

    Args:
        s: [t] normalised time in [0, 1].
        delta: [2] total displacement (cm).
        duration: movement duration (s).

    Returns:
        (displacement, velocity, acceleration), each [t, 2].
    """
    s = s[:, None]
    shape = 10 * s**3 - 15 * s**4 + 6 * s**5
    dshape = (30 * s**2 - 60 * s**3 + 30 * s**4) / duration
    ddshape = (60 * s - 180 * s**2 + 120 * s**3) / duration**2
    return shape * delta, dshape * delta, ddshape * delta


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(*bounds))


def _centre_out_trial(rng: np.random.Generator, t0: float, radius: tuple[float, float]):
    """One centre-out trial starting at ``t0`` at the centre. Returns (movements, trial row, phase rows, end)."""
    target_id = int(rng.integers(NUM_TARGETS))
    angle = 2 * np.pi * target_id / NUM_TARGETS + rng.normal(0.0, 0.05)
    r = _uniform(rng, radius)
    target = (r * np.cos(angle), r * np.sin(angle))
    go = t0 + _uniform(rng, (0.5, 1.0))
    onset = go + _uniform(rng, (0.2, 0.35))
    reach = Movement(onset, _uniform(rng, (0.35, 0.6)), (0.0, 0.0), target)
    back_onset = reach.onset + reach.duration + _uniform(rng, (0.3, 0.6))
    back = Movement(back_onset, _uniform(rng, (0.35, 0.6)), target, (0.0, 0.0))
    end = back.onset + back.duration
    phases = {
        "hold_period": [(t0, go), (onset + reach.duration, back_onset)],
        "reach_period": [(go, onset + reach.duration)],
        "return_period": [(back_onset, end)],
    }
    return [reach, back], (t0, end, target_id, go, onset), phases, end, (0.0, 0.0)


def _random_point(rng: np.random.Generator, start: tuple[float, float], workspace: float) -> tuple[float, float]:
    """A point inside the workspace disk, 4–12 cm away from ``start`` (rejection sampling, a few draws)."""
    while True:
        r = workspace * np.sqrt(rng.uniform())
        a = rng.uniform(0, 2 * np.pi)
        p = (r * np.cos(a), r * np.sin(a))
        if 4.0 <= np.hypot(p[0] - start[0], p[1] - start[1]) <= 12.0:
            return p


def _random_target_trial(rng: np.random.Generator, t0: float, start: tuple[float, float], workspace: float):
    """A chain of four reaches to random targets, starting at ``t0`` from ``start``."""
    t = t0 + _uniform(rng, (0.3, 0.6))
    go, movements, p = t, [], start
    for _ in range(4):
        t += _uniform(rng, (0.2, 0.35))
        q = _random_point(rng, p, workspace)
        dist = np.hypot(q[0] - p[0], q[1] - p[1])
        duration = float(np.clip(0.25 + 0.03 * dist, 0.35, 0.6))
        movements.append(Movement(t, duration, p, q))
        t, p = t + duration, q
    end = t + _uniform(rng, (0.1, 0.3))
    phases = {"hold_period": [(t0, go)], "random_period": [(go, end)]}
    return movements, (t0, end, -1, go, movements[0].onset), phases, end, p


def _intervals(rows: list[tuple[float, float]]) -> Intervals:
    rows = sorted(rows)
    return Intervals(np.array([a for a, _ in rows], dtype=np.float64), np.array([b for _, b in rows], dtype=np.float64))


def simulate_reaching(
    rng: np.random.Generator,
    duration: float,
    task: str = CENTRE_OUT,
    target_radius: tuple[float, float] = (8.0, 10.0),
) -> Behaviour:
    """Back-to-back trials of one task until ``duration`` seconds are filled (the last trial ends before it).

    Args:
        rng: source of randomness.
        duration: session length in seconds (at least one trial, ~3 s).
        task: ``"center_out"`` or ``"random_target"``.
        target_radius: centre-out target distance range in cm; also the random-target workspace radius (upper bound).

    Returns:
        The session's :class:`Behaviour`.
    """
    if task not in TASKS:
        raise ValueError(f"task={task!r}: expected one of {TASKS}")
    movements: list[Movement] = []
    trial_rows, phase_rows = [], {k: [] for k in ("hold_period", "reach_period", "return_period", "random_period")}
    t, p = 0.0, (0.0, 0.0)
    while True:
        if task == CENTRE_OUT:
            moves, row, phases, end, p_next = _centre_out_trial(rng, t, target_radius)
        else:
            moves, row, phases, end, p_next = _random_target_trial(rng, t, p, target_radius[1])
        if end > duration:
            break
        movements += moves
        trial_rows.append(row)
        for key, rows in phases.items():
            phase_rows[key] += rows
        t, p = end, p_next
    if not trial_rows:
        raise ValueError(f"duration={duration} s is too short for one {task} trial; use at least 4 s")

    n = int(np.ceil(t * SAMPLING_RATE))
    timestamps = np.arange(n) / SAMPLING_RATE
    pos, vel, acc = np.zeros((n, 2)), np.zeros((n, 2)), np.zeros((n, 2))
    # Between movements the cursor rests where the previous movement ended.
    for m in movements:
        i0 = int(np.ceil(m.onset * SAMPLING_RATE))
        pos[i0:] = m.p0
        i1 = min(int(np.ceil((m.onset + m.duration) * SAMPLING_RATE)), n)
        s = (timestamps[i0:i1] - m.onset) / m.duration
        d, v, a = minimum_jerk(s, np.subtract(m.p1, m.p0), m.duration)
        pos[i0:i1] += d
        vel[i0:i1], acc[i0:i1] = v, a
        pos[i1:] = m.p1
    rows = np.array(trial_rows)
    trials = Intervals(
        rows[:, 0],
        rows[:, 1],
        {"target_id": rows[:, 2].astype(np.int64), "go_cue_time": rows[:, 3], "move_onset_time": rows[:, 4]},
    )
    return Behaviour(timestamps, pos, vel, acc, movements, trials, {k: _intervals(v) for k, v in phase_rows.items()})
