"""NWB import: files written by pynwb (test-only dependency) arrive in the store with every spike and trial.

Given spikes, trials and behaviour drawn here with numpy and written to NWB by pynwb, when the importer converts the
file with h5py alone, then the store holds exactly those spikes (as (unit id, time) pairs), trials and samples, and
the train/valid/test domains are disjoint, cover the session and give whole trials to valid/test.
"""

import datetime
import subprocess
import sys

import numpy as np
import pytest

from data_pipeline import nwb_import
from data_pipeline.errors import DataError
from data_pipeline.recording import Intervals
from data_pipeline.store_reader import open_recording

UNIT_IDS = [3, 11, 42, 7, 100]


def make_source(seed: int = 0, n_trials: int = 20, overlapping: bool = False) -> dict:
    rng = np.random.default_rng(seed)
    spikes = {u: np.sort(rng.uniform(0.5, 40.0, rng.integers(0, 300))) for u in UNIT_IDS}
    spikes[42] = np.zeros(0)  # a unit that never fired
    starts = np.sort(rng.uniform(1.0, 38.0, n_trials))
    stops = starts + rng.uniform(0.3, 1.5, n_trials)  # some trials overlap their successor
    if not overlapping:
        stops = np.minimum(stops, np.r_[starts[1:], np.inf])
    return dict(
        spikes=spikes,
        starts=starts,
        stops=stops,
        target=rng.integers(0, 8, n_trials),
        cond=np.array([f"cond{i % 4}" for i in range(n_trials)]),
        go=starts + 0.2,
        cursor_t=np.sort(rng.uniform(0.0, 41.0, 500)),
        cursor_pos=rng.normal(size=(500, 2)),
        cursor_vel=rng.normal(size=(500, 2)),
        hand_raw=rng.normal(size=(2000, 2)),  # stored in cm with conversion 0.01 -> metres
    )


def write_nwb(path, src: dict, *, trials: bool = True, split: np.ndarray | None = None) -> None:
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries
    from pynwb.behavior import Position
    from pynwb.file import Subject

    nwb = NWBFile(
        session_description="centre-out",
        identifier="abc",
        session_start_time=datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
        session_id="jenkins_2024_01_01",
        subject=Subject(subject_id="jenkins", species="Macaca mulatta"),
    )
    for u in UNIT_IDS:
        nwb.add_unit(spike_times=src["spikes"][u], id=u)
    if trials:
        nwb.add_trial_column("target", "reach target")
        nwb.add_trial_column("cond", "condition label")
        nwb.add_trial_column("go_cue_time", "go cue")
        if split is not None:
            nwb.add_trial_column("split", "NLB split")
        for i in range(len(src["starts"])):
            extra = {} if split is None else {"split": split[i]}
            nwb.add_trial(
                start_time=src["starts"][i],
                stop_time=src["stops"][i],
                target=src["target"][i],
                cond=src["cond"][i],
                go_cue_time=src["go"][i],
                **extra,
            )
    module = nwb.create_processing_module("behavior", "processed behaviour")
    position = Position(name="Position")
    position.create_spatial_series(
        name="cursor_pos", data=src["cursor_pos"], timestamps=src["cursor_t"], reference_frame="screen centre"
    )
    module.add(position)
    module.add(TimeSeries(name="cursor_vel", data=src["cursor_vel"], unit="m/s", timestamps=src["cursor_t"]))
    module.add(
        TimeSeries(name="hand_vel", data=src["hand_raw"], unit="m/s", rate=50.0, starting_time=0.25, conversion=0.01)
    )
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)


def pairs(unit_ids, times, rows) -> list[tuple[str, float]]:
    return sorted(zip(np.asarray(unit_ids)[rows].tolist(), times.tolist(), strict=True))


def source_pairs(src: dict) -> list[tuple[str, float]]:
    return sorted((str(u), float(t)) for u, ts in src["spikes"].items() for t in ts)


def inside(iv: Intervals, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Which [start, end) spans lie wholly inside one interval of ``iv`` (naive double loop)."""
    return np.array(
        [any(s >= a and e <= b for a, b in zip(iv.start, iv.end, strict=True)) for s, e in zip(start, end, strict=True)]
    )


def overlap(a: Intervals, b: Intervals) -> float:
    spans = zip(a.start, a.end, strict=True)
    return sum(max(0.0, min(e1, e2) - max(s1, s2)) for s1, e1 in spans for s2, e2 in zip(b.start, b.end, strict=True))


def test_every_spike_trial_and_sample_survives(tmp_path):
    src = make_source()
    write_nwb(tmp_path / "s.nwb", src)
    nwb_import.import_nwb(tmp_path / "s.nwb", tmp_path / "s.h5", brainset_id="perich")
    rec = open_recording(tmp_path / "s.h5")
    assert (rec.session_key, rec.subject_id) == ("perich/jenkins_2024_01_01", "jenkins")
    np.testing.assert_array_equal(rec.unit_ids, [str(u) for u in UNIT_IDS])
    assert pairs(rec.unit_ids, rec.spike_times, rec.spike_units) == source_pairs(src)
    assert np.all(np.diff(rec.spike_times) >= 0)
    assert rec.domain.contains(rec.spike_times).all()
    order = np.argsort(src["starts"])
    trials = rec.intervals["trials"]
    np.testing.assert_array_equal(trials.start, src["starts"][order])
    np.testing.assert_array_equal(trials.end, src["stops"][order])
    np.testing.assert_array_equal(trials.columns["target"], src["target"][order])
    np.testing.assert_array_equal(trials.columns["cond"], src["cond"][order])
    np.testing.assert_array_equal(trials.columns["go_cue_time"], src["go"][order])
    cursor, hand = rec.behaviour["cursor"], rec.behaviour["hand"]
    assert set(rec.behaviour) == {"cursor", "hand"}
    np.testing.assert_array_equal(cursor.timestamps, src["cursor_t"])
    np.testing.assert_array_equal(cursor.values["pos"], src["cursor_pos"])
    np.testing.assert_array_equal(cursor.values["vel"], src["cursor_vel"])
    assert hand.sampling_rate == 50.0
    np.testing.assert_allclose(hand.timestamps, 0.25 + np.arange(2000) / 50.0, rtol=0, atol=1e-9)
    np.testing.assert_allclose(hand.values["vel"], src["hand_raw"] * 0.01, rtol=1e-12)


def test_splits_give_whole_trials_to_valid_and_test(tmp_path):
    src = make_source(seed=1, n_trials=30, overlapping=False)
    write_nwb(tmp_path / "s.nwb", src)
    rec = nwb_import.read_nwb(tmp_path / "s.nwb", brainset_id="b", fractions=(0.6, 0.2, 0.2), seed=3)
    again = nwb_import.read_nwb(tmp_path / "s.nwb", brainset_id="b", fractions=(0.6, 0.2, 0.2), seed=3)
    other = nwb_import.read_nwb(tmp_path / "s.nwb", brainset_id="b", fractions=(0.6, 0.2, 0.2), seed=4)
    for k in ("train", "valid", "test"):
        np.testing.assert_array_equal(rec.splits[k].start, again.splits[k].start)
        np.testing.assert_array_equal(rec.splits[k].end, again.splits[k].end)
    assert not np.array_equal(rec.splits["test"].start, other.splits["test"].start)
    in_valid = inside(rec.splits["valid"], src["starts"], src["stops"])
    in_test = inside(rec.splits["test"], src["starts"], src["stops"])
    in_train = inside(rec.splits["train"], src["starts"], src["stops"])
    assert in_valid.sum() == in_test.sum() == 6
    assert np.all(in_valid.astype(int) + in_test + in_train == 1)  # every trial wholly in exactly one split


@pytest.mark.parametrize("overlapping", [False, True])
def test_splits_are_disjoint_and_cover_the_session(overlapping):
    src = make_source(seed=1, n_trials=30, overlapping=overlapping)
    domain = Intervals(np.array([0.0]), np.array([41.0]))
    trials = Intervals(src["starts"], src["stops"])
    splits = nwb_import.make_splits(domain, trials, (0.6, 0.2, 0.2), seed=3)
    train, valid, test = (splits[k] for k in ("train", "valid", "test"))
    assert overlap(train, valid) == overlap(train, test) == overlap(valid, test) == 0.0
    total = train.total_duration() + valid.total_duration() + test.total_duration()
    np.testing.assert_allclose(total, domain.total_duration(), rtol=1e-12)
    assert len(test) > 0 and len(valid) > 0


def test_nlb_split_column_gives_val_trials_to_test_and_every_tenth_train_trial_to_valid(tmp_path):
    src = make_source(seed=5, n_trials=40, overlapping=False)
    labels = np.where(np.random.default_rng(9).uniform(size=40) < 0.25, "val", "train")
    write_nwb(tmp_path / "s.nwb", src, split=labels)
    rec = nwb_import.read_nwb(tmp_path / "s.nwb", brainset_id="nlb", fractions=(0.4, 0.3, 0.3), seed=1)
    starts, stops = src["starts"], src["stops"]  # already in time order
    is_val = labels == "val"
    train_rank = np.cumsum(~is_val) - 1  # position of each train trial among the train trials
    to_valid = ~is_val & (train_rank % 10 == 0)
    to_train = ~is_val & ~to_valid
    assert to_valid.sum() == -(-(~is_val).sum() // 10) >= 3 and is_val.sum() > 5  # ceil(train trials / 10)
    for split, chosen in (("test", is_val), ("valid", to_valid), ("train", to_train)):
        got = inside(rec.splits[split], starts, stops)
        np.testing.assert_array_equal(got, chosen, err_msg=split)
    np.testing.assert_allclose(rec.splits["test"].total_duration(), np.sum((stops - starts)[is_val]), rtol=1e-12)
    np.testing.assert_allclose(rec.splits["valid"].total_duration(), np.sum((stops - starts)[to_valid]), rtol=1e-12)
    total = sum(rec.splits[k].total_duration() for k in ("train", "valid", "test"))
    np.testing.assert_allclose(total, rec.domain.total_duration(), rtol=1e-12)
    np.testing.assert_array_equal(rec.intervals["trials"].columns["split"], labels)


def test_overlapping_trials_are_refused(tmp_path):
    src = make_source(seed=1, n_trials=30, overlapping=True)
    write_nwb(tmp_path / "s.nwb", src)
    with pytest.raises(DataError, match="overlapping") as info:
        nwb_import.read_nwb(tmp_path / "s.nwb", brainset_id="b")
    assert info.value.field == "intervals/trials" and str(tmp_path / "s.nwb") in str(info.value)


def test_without_trials_splits_time_into_blocks(tmp_path):
    src = make_source(seed=2)
    write_nwb(tmp_path / "s.nwb", src, trials=False)
    rec = nwb_import.read_nwb(tmp_path / "s.nwb", brainset_id="b", fractions=(0.5, 0.25, 0.25))
    assert "trials" not in rec.intervals
    length = rec.domain.total_duration()
    for split, share in (("train", 0.5), ("valid", 0.25), ("test", 0.25)):
        np.testing.assert_allclose(rec.splits[split].total_duration(), share * length, rtol=1e-9)
    assert rec.splits["train"].end[-1] == rec.splits["valid"].start[0]


def test_rename_and_unshared_time_axes(tmp_path):
    src = make_source(seed=3)
    write_nwb(tmp_path / "s.nwb", src)
    rec = nwb_import.read_nwb(tmp_path / "s.nwb", brainset_id="b", rename={"Position/cursor_pos": "hand/pos"})
    # hand/pos (irregular) and hand/vel (50 Hz) cannot share a time axis: both keep their NWB names
    assert set(rec.behaviour) == {"cursor", "cursor_pos", "hand_vel"}
    np.testing.assert_array_equal(rec.behaviour["cursor_pos"].values["data"], src["cursor_pos"])
    np.testing.assert_array_equal(rec.behaviour["cursor"].values["vel"], src["cursor_vel"])


def test_cli_writes_a_readable_store(tmp_path, capsys):
    src = make_source(seed=4)
    write_nwb(tmp_path / "s.nwb", src)
    argv = [str(tmp_path / "s.nwb"), str(tmp_path / "s.h5"), "--brainset=nlb", "--session=day1", "--split=0.8,0.1,0.1"]
    nwb_import.main(argv)
    assert "5 units" in capsys.readouterr().out
    rec = open_recording(tmp_path / "s.h5")
    assert rec.session_key == "nlb/day1"
    assert pairs(rec.unit_ids, rec.spike_times, rec.spike_units) == source_pairs(src)
    with pytest.raises(SystemExit, match="overwrite"):
        nwb_import.main(argv)
    with pytest.raises(SystemExit):
        nwb_import.main([*argv, "--overwrite", "--split=0.8,0.1"])


def test_runtime_needs_neither_pynwb_nor_jax():
    """The importer and the store run on h5py + numpy alone (pynwb is a test-only dependency)."""
    code = (
        "import sys, data_pipeline.nwb_import, data_pipeline.store_reader, data_pipeline.store_writer; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pynwb', 'hdmf', 'jax', 'temporaldata'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
