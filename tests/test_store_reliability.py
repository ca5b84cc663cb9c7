"""Store reader reliability: both RegularTimeSeries domain conventions, unused groups, duplicate sessions, target.

Given session files written here with h5py in the brainsets/temporaldata layout, when one carries regular series in
either temporaldata domain convention, a broken group the run does not use, a missing decoding target, or shares
its session id with another file, then the reader loads what it can, warns about what it skips and raises one
DataError naming the file(s) and the field for what the run needs.
"""

import pickle
import warnings

import h5py
import numpy as np
import pytest

from data_pipeline.errors import DataError, DataWarning
from data_pipeline.recording import Intervals, Recording, TimeSeries
from data_pipeline.store_reader import open_directory, open_recording
from data_pipeline.store_writer import write_recording
from data_pipeline.tokenize import QueryTable, TokenizerConfig
from possm_jax.train.corpus import load_corpus


def base_recording(session_id: str = "s", behaviour: dict | None = None) -> Recording:
    rng = np.random.default_rng(0)
    times = np.sort(rng.uniform(0.0, 6.0, 100))
    cursor_t = np.arange(0.0, 6.0, 0.01)
    if behaviour is None:
        behaviour = {"cursor": TimeSeries(cursor_t, {"vel": rng.normal(size=(600, 2))})}
    return Recording(
        brainset_id="b",
        session_id=session_id,
        subject_id="m",
        unit_ids=np.array(["u0", "u1"]),
        spike_times=times,
        spike_units=rng.integers(0, 2, 100),
        domain=Intervals(np.array([0.0]), np.array([6.0])),
        splits={
            "train": Intervals(np.array([0.0]), np.array([4.0])),
            "test": Intervals(np.array([4.0]), np.array([6.0])),
        },
        behaviour=behaviour,
        intervals={"trials": Intervals(np.array([0.5, 2.5]), np.array([2.0, 4.0]))},
    )


def add_regular(f: h5py.File, name: str, start: float, end: float, rate: float, n: int) -> None:
    """A temporaldata RegularTimeSeries group with ``n`` samples and domain ``[start, end)``, written by hand."""
    group = f.create_group(name)
    group.attrs["object"] = "RegularTimeSeries"
    group.attrs["sampling_rate"] = rate
    group.attrs["_unicode_keys"] = np.array([], dtype="S")
    group["data"] = np.arange(n, dtype=np.float64)
    domain = group.create_group("domain")
    domain.attrs["object"] = "Interval"
    domain.attrs["_unicode_keys"] = np.array([], dtype="S")
    domain["start"] = np.array([start])
    domain["end"] = np.array([end])


def add_interval(f: h5py.File, name: str, start, end) -> None:
    group = f.create_group(name)
    group.attrs["object"] = "Interval"
    group.attrs["_unicode_keys"] = np.array([], dtype="S")
    group["start"] = np.asarray(start, dtype=np.float64)
    group["end"] = np.asarray(end, dtype=np.float64)


def regular_cases(count: int = 24, seed: int = 0) -> list[tuple[float, float, int]]:
    """(start, rate, n): random 2-decimal starts, rates in 20–1000 Hz (round and odd ones), 50–3000 samples."""
    rng = np.random.default_rng(seed)
    rates = np.r_[[20.0, 100.0, 250.0, 1000.0, 30.0, 60.0], rng.uniform(20.0, 1000.0, count - 6)]
    starts = np.round(rng.uniform(0.0, 50.0, count), 2)
    sizes = rng.integers(50, 3000, count)
    cases = [(float(s), float(r), int(n)) for s, r, n in zip(starts, rates, sizes, strict=True)]
    return [(7.87, 100.0, 481), *cases]  # the sample that a user reported


def test_regular_series_load_in_both_domain_conventions(tmp_path):
    path = tmp_path / "s.h5"
    write_recording(path, base_recording())
    written = {}
    with h5py.File(path, "r+") as f:
        for i, (start, rate, n) in enumerate(regular_cases()):
            add_regular(f, f"new{i}", start, start + n / rate, rate, n)  # temporaldata >= 0.1.4
            add_regular(f, f"old{i}", start, start + (n - 1) / rate, rate, n)  # temporaldata <= 0.1.3
            written[f"new{i}"] = written[f"old{i}"] = (start, rate, n)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # every series loads: none is skipped
        rec = open_recording(path)
    assert set(written) <= set(rec.behaviour) and rec.skipped == {}
    for name, (start, rate, n) in written.items():
        series = rec.behaviour[name]
        assert series.sampling_rate == rate
        np.testing.assert_allclose(series.timestamps, start + np.arange(n) / rate, rtol=0, atol=1e-9)
        np.testing.assert_array_equal(series.values["data"], np.arange(n, dtype=np.float64))
        expected = "0.1.3" if name.startswith("old") else "0.1.4"
        assert expected in rec.domain_conventions[name], (name, rec.domain_conventions[name])
    assert "0.1.3" in repr(rec) and "0.1.4" in repr(rec)


def test_regular_domain_far_from_either_convention_is_rejected_when_used(tmp_path):
    path = tmp_path / "s.h5"
    write_recording(path, base_recording(behaviour={}))
    with h5py.File(path, "r+") as f:
        add_regular(f, "cursor", 1.0, 1.0 + 481.5 / 100.0, 100.0, 481)  # half a sample off both conventions
    with pytest.warns(UserWarning, match="cursor"):
        rec = open_recording(path)
    with pytest.raises(DataError, match="481 samples") as info:
        QueryTable.from_recording(rec, TokenizerConfig(target="cursor.data"))
    assert str(path) in str(info.value) and info.value.field == "cursor"


def test_broken_unused_groups_warn_and_are_skipped(tmp_path):
    path = tmp_path / "s.h5"
    write_recording(path, base_recording())
    with h5py.File(path, "r+") as f:
        add_regular(f, "lfp", 7.87, 27.0, 100.0, 481)  # an LFP the decoder ignores, with a bad domain
        add_interval(f, "epochs", [1.0, 3.0], [0.5, 4.0])  # an interval set nobody uses, end < start
    with pytest.warns(UserWarning) as caught:
        rec = open_recording(path)
    messages = [str(w.message) for w in caught]
    for field in ("lfp", "epochs"):
        assert any(str(path) in m and f"'{field}'" in m for m in messages), messages
    assert "lfp" not in rec.behaviour and "epochs" not in rec.intervals
    assert set(rec.skipped) == {"lfp", "epochs"}
    table = QueryTable.from_recording(rec, TokenizerConfig())  # the run still gets its target
    np.testing.assert_array_equal(table.times, np.arange(0.0, 6.0, 0.01))


def test_broken_target_is_reported_when_used(tmp_path):
    path = tmp_path / "s.h5"
    write_recording(path, base_recording())
    with h5py.File(path, "r+") as f:
        del f["cursor/vel"]
        f["cursor/vel"] = np.zeros((599, 2))
    with pytest.warns(UserWarning, match="cursor/vel"):
        rec = open_recording(path)
    for source in (rec, rec.load_in_memory()):
        with pytest.raises(DataError, match="599 rows") as info:
            QueryTable.from_recording(source, TokenizerConfig())
        assert str(path) in str(info.value) and info.value.field == "cursor/vel"


def test_missing_target_names_the_file(tmp_path):
    path = tmp_path / "no_cursor.h5"
    rng = np.random.default_rng(1)
    hand = TimeSeries(np.arange(0.0, 6.0, 0.02), {"vel": rng.normal(size=(300, 2))}, 50.0)
    write_recording(path, base_recording(behaviour={"hand": hand}))
    rec = open_recording(path)
    for source in (rec, rec.load_in_memory()):
        with pytest.raises(DataError) as info:
            QueryTable.from_recording(source, TokenizerConfig(target="cursor.vel"))
        message = str(info.value)
        assert str(path) in message and info.value.field == "cursor" and "hand" in message, message
    with pytest.raises(DataError, match="'hand/pos'") as info:
        QueryTable.from_recording(rec, TokenizerConfig(target="hand.pos"))
    assert str(path) in str(info.value)


def test_in_memory_recording_without_target_names_the_session():
    rec = base_recording(behaviour={})
    with pytest.raises(DataError, match="b/s") as info:
        QueryTable.from_recording(rec, TokenizerConfig())
    assert info.value.field == "cursor"


def test_two_files_with_one_session_id_are_refused(tmp_path):
    write_recording(tmp_path / "day1.h5", base_recording("monday"))
    write_recording(tmp_path / "day1_copy.h5", base_recording("monday"))
    write_recording(tmp_path / "day2.h5", base_recording("tuesday"))
    for load in (open_directory, lambda d: load_corpus(str(d))):
        with pytest.raises(DataError, match="b/monday") as info:
            load(tmp_path)
        message = str(info.value)
        assert str(tmp_path / "day1.h5") in message and str(tmp_path / "day1_copy.h5") in message, message
    (tmp_path / "day1_copy.h5").unlink()
    assert [s.recording.session_id for s in load_corpus(str(tmp_path))] == ["monday", "tuesday"]


def test_recording_with_a_skipped_field_pickles(tmp_path):
    """Data-loader workers receive pickled recordings, skipped fields' errors included."""
    path = tmp_path / "s.h5"
    write_recording(path, base_recording())
    with h5py.File(path, "r+") as f:
        add_regular(f, "lfp", 0.0, 99.0, 100.0, 481)
    with pytest.warns(DataWarning):
        rec = open_recording(path)
    copy = pickle.loads(pickle.dumps(rec))
    error = copy.skipped["lfp"]
    assert isinstance(error, DataError) and str(error) == str(rec.skipped["lfp"]) and error.field == "lfp"
    with pytest.raises(DataError, match="481 samples"):
        QueryTable.from_recording(copy, TokenizerConfig(target="lfp.data"))
