"""Session store: our reader/writer against the real ``temporaldata`` package, and lazy slicing against numpy masks.

Given a session built here from plain numpy arrays, when it goes through a file written by one side (temporaldata or
us) and is read by the other, then every array comes back exactly.
"""

import os
import pickle

import h5py
import numpy as np
import pytest
from temporaldata import ArrayDict, Data, Interval, IrregularTimeSeries, RegularTimeSeries

from data_pipeline.errors import DataError
from data_pipeline.recording import Intervals, Recording, TimeSeries
from data_pipeline.store_reader import open_directory, open_recording
from data_pipeline.store_writer import write_recording

PHASES = ("hold_period", "reach_period", "return_period")


def make_session(seed: int = 0, n_units: int = 7, duration: float = 12.5) -> dict:
    """Plain arrays of a small session; spikes from a few units with random rates, domain [0.3, duration)."""
    rng = np.random.default_rng(seed)
    t0 = 0.3
    per_unit = [np.sort(rng.uniform(t0, duration, rng.integers(5, 60))) for _ in range(n_units)]
    times = np.concatenate(per_unit)
    units = np.concatenate([np.full(len(t), u) for u, t in enumerate(per_unit)])
    order = np.argsort(times, kind="stable")
    cursor_t = np.sort(rng.uniform(t0, duration, 400))
    hand = rng.normal(size=(int((duration - t0) * 50), 2))
    hand[100:130] = np.nan  # a gap, as in NLB files
    edges = np.linspace(t0, duration, 9)
    return dict(
        times=times[order],
        units=units[order],
        unit_ids=np.array([f"elec{u}" for u in range(n_units)]),
        domain=(np.array([t0]), np.array([duration])),
        cursor_t=cursor_t,
        cursor_pos=rng.normal(size=(400, 2)),
        cursor_vel=rng.normal(size=(400, 2)),
        hand=hand,
        hand_t0=t0,
        trials=(edges[:-1] + 0.1, edges[1:] - 0.1),
        target=rng.integers(0, 8, 8),
        cond=np.array([f"c{i % 3}" for i in range(8)]),
        phases={p: (edges[:-1] + 0.2 + 0.3 * i, edges[:-1] + 0.45 + 0.3 * i) for i, p in enumerate(PHASES)},
        outliers=(np.array([2.0, 7.5]), np.array([2.4, 7.6])),
        splits={"train": (edges[:6], edges[1:7]), "valid": (edges[6:7], edges[7:8]), "test": (edges[7:8], edges[8:])},
        latents=rng.normal(size=(50, 3)),
        weights=rng.normal(size=(n_units, 3)),
    )


def as_recording(s: dict) -> Recording:
    return Recording(
        brainset_id="synthetic",
        session_id="monkey_a_2024",
        subject_id="monkey_a",
        unit_ids=s["unit_ids"],
        spike_times=s["times"],
        spike_units=s["units"],
        domain=Intervals(*s["domain"]),
        splits={k: Intervals(*v) for k, v in s["splits"].items()},
        behaviour={
            "cursor": TimeSeries(s["cursor_t"], {"pos": s["cursor_pos"], "vel": s["cursor_vel"]}),
            "hand": TimeSeries(s["hand_t0"] + np.arange(len(s["hand"])) / 50.0, {"vel": s["hand"]}, 50.0),
        },
        intervals={
            "trials": Intervals(*s["trials"], columns={"target": s["target"], "cond": s["cond"]}),
            **{f"movement_phases/{p}": Intervals(*v) for p, v in s["phases"].items()},
            "cursor_outlier_segments": Intervals(*s["outliers"]),
        },
        truth={"latents": s["latents"], "tuning/weights": s["weights"]},
    )


def as_temporaldata(s: dict) -> Data:
    domain = Interval(*s["domain"])
    return Data(
        brainset=Data(id="synthetic"),
        session=Data(id="monkey_a_2024"),
        subject=Data(id="monkey_a", species=3),
        device=Data(id="utah_array"),
        spikes=IrregularTimeSeries(timestamps=s["times"], unit_index=s["units"], domain=domain),
        units=ArrayDict(id=s["unit_ids"], brain_region=np.array(["M1"] * len(s["unit_ids"]))),
        cursor=IrregularTimeSeries(timestamps=s["cursor_t"], pos=s["cursor_pos"], vel=s["cursor_vel"], domain=domain),
        hand=RegularTimeSeries(vel=s["hand"], sampling_rate=50.0, domain_start=s["hand_t0"]),
        trials=Interval(*s["trials"], target=s["target"], cond=s["cond"]),
        movement_phases=Data(**{p: Interval(*v) for p, v in s["phases"].items()}, domain=domain),
        cursor_outlier_segments=Interval(*s["outliers"]),
        train_domain=Interval(*s["splits"]["train"]),
        valid_domain=Interval(*s["splits"]["valid"]),
        test_domain=Interval(*s["splits"]["test"]),
        channels=ArrayDict(gain=np.ones(3)),  # a group the reader does not know
        domain=domain,
    )


def assert_intervals(got: Intervals, start: np.ndarray, end: np.ndarray, **columns) -> None:
    np.testing.assert_array_equal(got.start, start)
    np.testing.assert_array_equal(got.end, end)
    assert set(got.columns) == set(columns)
    for key, value in columns.items():
        np.testing.assert_array_equal(got.columns[key], value)


def assert_session(rec, s: dict) -> None:
    """Every field of ``rec`` equals the arrays ``s`` it was built from."""
    assert (rec.brainset_id, rec.session_id, rec.subject_id) == ("synthetic", "monkey_a_2024", "monkey_a")
    assert rec.unit_keys == [f"synthetic/monkey_a_2024/elec{u}" for u in range(len(s["unit_ids"]))]
    np.testing.assert_array_equal(rec.unit_ids, s["unit_ids"])
    assert rec.unit_ids.dtype.kind == "U"
    np.testing.assert_array_equal(rec.spike_times, s["times"])
    np.testing.assert_array_equal(rec.spike_units, s["units"])
    assert_intervals(rec.domain, *s["domain"])
    assert set(rec.splits) == {"train", "valid", "test"}
    for split, (start, end) in s["splits"].items():
        assert_intervals(rec.splits[split], start, end)
    assert set(rec.intervals) == {"trials", "cursor_outlier_segments", *(f"movement_phases/{p}" for p in PHASES)}
    assert_intervals(rec.intervals["trials"], *s["trials"], target=s["target"], cond=s["cond"])
    for p, (start, end) in s["phases"].items():
        assert_intervals(rec.intervals[f"movement_phases/{p}"], start, end)
    assert_intervals(rec.intervals["cursor_outlier_segments"], *s["outliers"])
    assert set(rec.behaviour) == {"cursor", "hand"}
    cursor, hand = rec.behaviour["cursor"], rec.behaviour["hand"]
    assert cursor.sampling_rate is None and hand.sampling_rate == 50.0
    np.testing.assert_array_equal(cursor.timestamps, s["cursor_t"])
    assert set(cursor.values) == {"pos", "vel"}
    np.testing.assert_array_equal(cursor.values["pos"], s["cursor_pos"])
    np.testing.assert_array_equal(cursor.values["vel"], s["cursor_vel"])
    np.testing.assert_allclose(hand.timestamps, s["hand_t0"] + np.arange(len(s["hand"])) / 50.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(hand.values["vel"], s["hand"])  # NaN gap included


def test_reads_what_temporaldata_writes(tmp_path):
    s = make_session()
    with h5py.File(tmp_path / "td.h5", "w") as f:
        as_temporaldata(s).to_hdf5(f)
        f.attrs["lab_note"] = "an attribute nobody knows"
        f.create_group("scratch").create_dataset("junk", data=np.arange(3))  # a foreign group without attrs
    rec = open_recording(tmp_path / "td.h5")
    assert_session(rec, s)
    assert rec.truth == {}
    assert_session(rec.load_in_memory(), s)


def test_reads_gappy_regular_series_from_temporaldata(tmp_path):
    """A regular series with a gap: temporaldata fills it with NaN and splits the domain in two."""
    s = make_session(seed=8)
    sample_times = np.r_[np.arange(0, 50), np.arange(60, 100)] / 10.0 + 0.3
    pos = np.stack([np.arange(90.0), -np.arange(90.0)], axis=1)
    data = as_temporaldata(s)
    data.eye = RegularTimeSeries.from_gappy_timeseries(sample_times, sampling_rate=10.0, pos=pos)
    with h5py.File(tmp_path / "td.h5", "w") as f:
        data.to_hdf5(f)
    eye = open_recording(tmp_path / "td.h5").behaviour["eye"]
    assert eye.sampling_rate == 10.0
    np.testing.assert_allclose(eye.timestamps, 0.3 + np.arange(100) / 10.0, rtol=0, atol=1e-12)
    expected = np.full((100, 2), np.nan)
    expected[np.r_[0:50, 60:100]] = pos
    np.testing.assert_array_equal(eye.values["pos"], expected)


def test_temporaldata_reads_what_we_write(tmp_path):
    s = make_session(seed=1)
    write_recording(tmp_path / "ours.h5", as_recording(s))
    with h5py.File(tmp_path / "ours.h5", "r") as f:
        data = Data.from_hdf5(f, lazy=False)
    assert (data.brainset.id, data.session.id, data.subject.id) == ("synthetic", "monkey_a_2024", "monkey_a")
    np.testing.assert_array_equal(data.units.id, s["unit_ids"])
    np.testing.assert_array_equal(data.spikes.timestamps, s["times"])
    np.testing.assert_array_equal(data.spikes.unit_index, s["units"])
    np.testing.assert_array_equal(data.domain.start, s["domain"][0])
    np.testing.assert_array_equal(data.cursor.timestamps, s["cursor_t"])
    np.testing.assert_array_equal(data.cursor.vel, s["cursor_vel"])
    np.testing.assert_array_equal(data.hand.vel, s["hand"])
    np.testing.assert_allclose(data.hand.timestamps, s["hand_t0"] + np.arange(len(s["hand"])) / 50.0, atol=1e-12)
    np.testing.assert_array_equal(data.trials.start, s["trials"][0])
    np.testing.assert_array_equal(data.trials.cond, s["cond"])
    np.testing.assert_array_equal(data.trials.target, s["target"])
    np.testing.assert_array_equal(data.movement_phases.reach_period.end, s["phases"]["reach_period"][1])
    np.testing.assert_array_equal(data.cursor_outlier_segments.start, s["outliers"][0])
    np.testing.assert_array_equal(data.valid_domain.start, s["splits"]["valid"][0])
    np.testing.assert_array_equal(data.test_domain.end, s["splits"]["test"][1])
    np.testing.assert_array_equal(data.truth.latents, s["latents"])
    np.testing.assert_array_equal(data.truth.tuning.weights, s["weights"])


def test_temporaldata_lazy_slicing_uses_our_coarse_index(tmp_path):
    """temporaldata's lazy slice reads our ``timestamp_indices_1s``; a wrong index would drop or add spikes."""
    s = make_session(seed=2)
    write_recording(tmp_path / "ours.h5", as_recording(s))
    with h5py.File(tmp_path / "ours.h5", "r") as f:
        data = Data.from_hdf5(f, lazy=True)
        for t0, t1 in [(0.3, 1.0), (2.0, 5.7), (4.95, 5.05), (11.2, 12.5)]:
            got = data.spikes.slice(t0, t1, reset_origin=False).timestamps
            np.testing.assert_array_equal(got, s["times"][(s["times"] >= t0) & (s["times"] < t1)])


def test_write_read_round_trip(tmp_path):
    s = make_session(seed=3)
    write_recording(tmp_path / "ours.h5", as_recording(s))
    rec = open_recording(tmp_path / "ours.h5")
    assert rec.num_spikes == len(s["times"])
    assert_session(rec, s)
    assert set(rec.truth) == {"latents", "tuning/weights"}
    np.testing.assert_array_equal(rec.truth["latents"], s["latents"])
    np.testing.assert_array_equal(rec.truth["tuning/weights"], s["weights"])
    memory = rec.load_in_memory()
    assert isinstance(memory, Recording)
    assert_session(memory, s)


def windows(rng: np.random.Generator, duration: float) -> list[tuple[float, float]]:
    """Random windows, windows on whole-second grid points and spike times, empty and out-of-range ones."""
    out = [(a, a + w) for a, w in zip(rng.uniform(-2, duration + 2, 200), rng.uniform(0, 3, 200), strict=True)]
    out += [(float(a), float(a) + 1.0) for a in range(-1, int(duration) + 2)]  # exactly on the coarse grid
    out += [(1.3, 2.3), (0.3, 0.3), (5.0, 4.0), (-10.0, -5.0), (duration + 1, duration + 9), (-1e3, 1e3)]
    return out


def test_spikes_between_matches_numpy_mask(tmp_path):
    s = make_session(seed=4, duration=20.0)
    write_recording(tmp_path / "ours.h5", as_recording(s))
    rec = open_recording(tmp_path / "ours.h5")
    rng = np.random.default_rng(0)
    spike_edges = [(float(t), float(t) + 0.5) for t in s["times"][::25]]  # windows starting on a spike
    for t0, t1 in windows(rng, 20.0) + spike_edges:
        times, units = rec.spikes_between(t0, t1)
        keep = (s["times"] >= t0) & (s["times"] < t1)
        np.testing.assert_array_equal(times, s["times"][keep], err_msg=f"window [{t0}, {t1})")
        np.testing.assert_array_equal(units, s["units"][keep], err_msg=f"window [{t0}, {t1})")
        assert times.dtype == np.float64 and units.dtype == np.int64


def test_pickled_recording_reopens_in_the_copy(tmp_path):
    """Data-loader workers receive pickled recordings; the copy reopens the file itself."""
    s = make_session(seed=5)
    write_recording(tmp_path / "ours.h5", as_recording(s))
    rec = open_recording(tmp_path / "ours.h5")
    rec.spikes_between(1.0, 2.0)  # the original holds an open handle now
    copy = pickle.loads(pickle.dumps(rec))
    times, units = copy.spikes_between(3.0, 6.5)
    keep = (s["times"] >= 3.0) & (s["times"] < 6.5)
    np.testing.assert_array_equal(times, s["times"][keep])
    np.testing.assert_array_equal(units, s["units"][keep])
    copy.close()
    rec.close()


def test_writer_refuses_to_overwrite_and_leaves_no_temporaries(tmp_path):
    s = make_session(seed=6)
    path = tmp_path / "ours.h5"
    write_recording(path, as_recording(s))
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_recording(path, as_recording(make_session(seed=7)))
    assert path.read_bytes() == before
    write_recording(path, as_recording(make_session(seed=7)), overwrite=True)
    np.testing.assert_array_equal(open_recording(path).spike_times, make_session(seed=7)["times"])
    bad = as_recording(s)
    bad.spike_times = bad.spike_times[::-1].copy()
    with pytest.raises(DataError, match="spike_times"):
        write_recording(tmp_path / "bad.h5", bad)
    assert sorted(os.listdir(tmp_path)) == ["ours.h5"]


def test_open_directory_sorted_and_empty(tmp_path):
    for name, seed in (("b.h5", 0), ("a.h5", 1)):
        rec = as_recording(make_session(seed=seed))
        rec.session_id = name[0]
        write_recording(tmp_path / name, rec)
    (tmp_path / "notes.txt").write_text("not a session")
    assert [r.session_id for r in open_directory(tmp_path)] == ["a", "b"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no \\*.h5"):
        open_directory(tmp_path / "empty")
