"""Small hand-built recordings with known spikes, behaviour and intervals for the data pipeline tests."""

from __future__ import annotations

import numpy as np

from data_pipeline.recording import Intervals, Recording, TimeSeries


def intervals(*pairs: tuple[float, float]) -> Intervals:
    """Intervals from ``(start, end)`` pairs."""
    arr = np.asarray(pairs, dtype=np.float64).reshape(-1, 2)
    return Intervals(arr[:, 0].copy(), arr[:, 1].copy())


def make_recording(
    seed: int = 0,
    num_units: int = 12,
    rate: float = 30.0,
    duration: float = 20.0,
    name: str = "s0",
    extra_spikes: np.ndarray | None = None,
    behaviour_rate: float = 100.0,
    trials: Intervals | None = None,
    phases: dict[str, Intervals] | None = None,
) -> Recording:
    """A recording with Poisson spikes of ``num_units`` units at ``rate`` Hz over ``[0, duration)``.

    ``extra_spikes`` (times) are added on unit 0, to place spikes exactly on window and chunk edges. Splits: train
    ``[0, 0.6 d)``, valid ``[0.6 d, 0.8 d)``, test ``[0.8 d, d)``. Behaviour ``cursor`` has ``vel`` (2-D) sampled
    at ``behaviour_rate`` from a fixed sinusoid, so targets are known in closed form.
    """
    rng = np.random.default_rng(seed)
    n = rng.poisson(num_units * rate * duration)
    times = rng.uniform(0.0, duration, n)
    units = rng.integers(0, num_units, n)
    if extra_spikes is not None:
        times = np.concatenate([times, extra_spikes])
        units = np.concatenate([units, np.zeros(len(extra_spikes), np.int64)])
    order = np.argsort(times, kind="stable")
    ts = np.arange(0.0, duration, 1.0 / behaviour_rate)
    vel = np.stack([30.0 * np.sin(2 * np.pi * 0.5 * ts), 10.0 * np.cos(2 * np.pi * 0.3 * ts) + 5.0], axis=1)
    d = duration
    named = dict(phases or {})
    if trials is not None:
        named["trials"] = trials
    return Recording(
        brainset_id="hand",
        session_id=name,
        subject_id="m",
        unit_ids=np.array([f"u{i}" for i in range(num_units)]),
        spike_times=times[order],
        spike_units=units[order],
        domain=intervals((0.0, d)),
        splits={
            "train": intervals((0.0, 0.6 * d)),
            "valid": intervals((0.6 * d, 0.8 * d)),
            "test": intervals((0.8 * d, d)),
        },
        behaviour={"cursor": TimeSeries(ts, {"vel": vel}, sampling_rate=behaviour_rate)},
        intervals=named,
    )


def vocab_map(recording: Recording, first_unit: int, session_index: int) -> tuple[np.ndarray, int]:
    """A vocabulary map giving the recording's units consecutive global indices from ``first_unit``."""
    return np.arange(first_unit, first_unit + len(recording.unit_ids), dtype=np.int32), session_index
