"""Bad input: one clear DataError naming file and field, and the file left exactly as it was.

Given a valid session file, when one field is broken (with h5py, by the test) and the file is opened, then opening
raises a DataError whose message names the file, the field and a fix, and the file's bytes and mtime are unchanged.
"""

import os
import shutil

import h5py
import numpy as np
import pytest

from data_pipeline.errors import DataError
from data_pipeline.recording import Intervals, Recording, TimeSeries
from data_pipeline.store_reader import open_recording
from data_pipeline.store_writer import write_recording
from data_pipeline.tokenize import QueryTable, TokenizerConfig


def small_recording() -> Recording:
    rng = np.random.default_rng(0)
    times = np.sort(rng.uniform(0.0, 6.0, 200))
    cursor_t = np.arange(0.0, 6.0, 0.01)
    return Recording(
        brainset_id="b",
        session_id="s",
        subject_id="m",
        unit_ids=np.array(["u0", "u1", "u2"]),
        spike_times=times,
        spike_units=rng.integers(0, 3, 200),
        domain=Intervals(np.array([0.0]), np.array([6.0])),
        splits={
            "train": Intervals(np.array([0.0, 2.5]), np.array([2.5, 4.0])),
            "valid": Intervals(np.array([4.0]), np.array([6.0])),
        },
        behaviour={
            "cursor": TimeSeries(cursor_t, {"vel": rng.normal(size=(600, 2))}),
            "hand": TimeSeries(cursor_t, {"vel": rng.normal(size=(600, 2))}, sampling_rate=100.0),
        },
        intervals={
            "trials": Intervals(np.array([0.5, 2.5]), np.array([2.0, 4.0])),
            "movement_phases/reach_period": Intervals(np.array([1.0, 3.0]), np.array([1.5, 3.5])),
            "cursor_outlier_segments": Intervals(np.array([1.2, 5.0]), np.array([1.3, 5.5])),
        },
    )


@pytest.fixture(scope="module")
def valid_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("base") / "session.h5"
    write_recording(path, small_recording())
    return path


def replace(f: h5py.File, key: str, value) -> None:
    del f[key]
    f[key] = value


def swap_two(f):
    t = f["spikes/timestamps"][()]
    t[[10, 11]] = t[[11, 10]] + [0.0, -0.5]
    f["spikes/timestamps"][...] = t


def nan_spike(f):
    t = f["spikes/timestamps"][()]
    t[50] = np.nan
    f["spikes/timestamps"][...] = t


def set_unit(value):
    def edit(f):
        u = f["spikes/unit_index"][()]
        u[7] = value
        f["spikes/unit_index"][...] = u

    return edit


def no_spikes(f):
    replace(f, "spikes/timestamps", np.zeros(0))
    replace(f, "spikes/unit_index", np.zeros(0, np.int64))
    f["spikes/timestamp_indices_1s"][...] = 0


def interval_backwards(f):
    f["trials/end"][0] = f["trials/start"][0] - 1.0


def overlapping_domain(f):
    replace(f, "domain/start", np.array([0.0, 3.0]))
    replace(f, "domain/end", np.array([4.0, 6.0]))


def empty_domain(f):
    replace(f, "domain/start", np.zeros(0))
    replace(f, "domain/end", np.zeros(0))


def set_rows(group: str, start, end):
    """Replace the rows of Interval group ``group``."""

    def edit(f):
        replace(f, f"{group}/start", np.asarray(start, dtype=np.float64))
        replace(f, f"{group}/end", np.asarray(end, dtype=np.float64))

    return edit


def stale_coarse_index(f):
    idx = f["spikes/timestamp_indices_1s"][()]
    idx[3] += 5
    f["spikes/timestamp_indices_1s"][...] = idx


# (case, edit of the open file, field named in the message, words of the problem)
CASES = [
    ("missing spikes", lambda f: f.__delitem__("spikes"), "spikes", "missing"),
    ("missing units", lambda f: f.__delitem__("units"), "units", "missing"),
    ("missing domain", lambda f: f.__delitem__("domain"), "domain", "missing"),
    ("empty domain", empty_domain, "domain", "empty"),
    ("missing unit_index", lambda f: f.__delitem__("spikes/unit_index"), "spikes/unit_index", "missing"),
    ("unsorted spike times", swap_two, "spikes/timestamps", "not sorted"),
    ("NaN spike time", nan_spike, "spikes/timestamps", "NaN"),
    ("unit_index too large", set_unit(3), "spikes/unit_index", "outside the 3 valid rows"),
    ("unit_index negative", set_unit(-1), "spikes/unit_index", "outside the 3 valid rows"),
    ("unit_index float", lambda f: replace(f, "spikes/unit_index", np.zeros(200)), "spikes/unit_index", "dtype"),
    ("unit_index short", lambda f: replace(f, "spikes/unit_index", np.zeros(199, int)), "spikes/unit_index", "rows"),
    ("empty session", no_spikes, "spikes/timestamps", "no spikes"),
    ("string times", lambda f: replace(f, "spikes/timestamps", np.full(200, b"1.0")), "spikes/timestamps", "dtype"),
    ("interval end < start", interval_backwards, "trials", "end < start"),
    ("overlapping domain", overlapping_domain, "domain", "overlapping"),
    ("stale coarse index", stale_coarse_index, "spikes/timestamp_indices_1s", "does not match"),
    ("spikes not a series", lambda f: f["spikes"].attrs.__setitem__("object", "ArrayDict"), "spikes", "expected"),
    ("duplicate unit ids", lambda f: replace(f, "units/id", np.array([b"u0", b"u0", b"u2"])), "units/id", "duplicate"),
    ("trial start string", lambda f: replace(f, "trials/start", np.array([b"a", b"b"])), "trials/start", "dtype"),
    ("unsorted trials", set_rows("trials", [2.5, 0.5], [4.0, 2.0]), "trials", "not sorted"),
    ("overlapping trials", set_rows("trials", [0.5, 2.5], [3.0, 4.0]), "trials", "overlapping"),
    ("trial end < start", set_rows("trials", [0.5, 2.5], [2.0, 2.4]), "trials", "end < start"),
    (
        "overlapping reach periods",
        set_rows("movement_phases/reach_period", [1.0, 1.2], [1.5, 3.5]),
        "movement_phases/reach_period",
        "overlapping",
    ),
    (
        "unsorted outliers",
        set_rows("cursor_outlier_segments", [5.0, 1.2], [5.5, 1.3]),
        "cursor_outlier_segments",
        "not sorted",
    ),
    ("unsorted train domain", set_rows("train_domain", [2.5, 0.0], [4.0, 2.5]), "train_domain", "not sorted"),
    ("overlapping valid domain", set_rows("valid_domain", [4.0, 4.5], [5.0, 6.0]), "valid_domain", "overlapping"),
]

# (case, edit of the open file, decoding target, field named in the message, words of the problem): a broken
# behaviour series is skipped with a warning when the file is opened, and is an error once a run decodes it
TARGET_CASES = [
    ("behaviour rows", lambda f: replace(f, "cursor/vel", np.zeros((599, 2))), "cursor.vel", "cursor/vel", "599 rows"),
    ("regular rows", lambda f: replace(f, "hand/vel", np.zeros((500, 2))), "hand.vel", "hand", "500 samples"),
    (
        "no sampling rate",
        lambda f: f["hand"].attrs.__delitem__("sampling_rate"),
        "hand.vel",
        "hand.attrs[sampling_rate]",
        "missing",
    ),
]


def snapshot(path) -> tuple[bytes, int]:
    return path.read_bytes(), os.stat(path).st_mtime_ns


def expect_error(path, field: str, words: str) -> None:
    """Opening ``path`` raises one DataError naming file and field, and leaves the file untouched."""
    before = snapshot(path)
    with pytest.raises(DataError) as info:
        open_recording(path)
    message = str(info.value)
    assert info.value.field == field, message
    assert str(path) in message and f"'{field}'" in message and "Fix:" in message, message
    assert words in message, message
    assert snapshot(path) == before


@pytest.mark.parametrize("case, edit, field, words", CASES, ids=[c[0] for c in CASES])
def test_broken_field(tmp_path, valid_file, case, edit, field, words):
    path = tmp_path / "broken.h5"
    shutil.copy(valid_file, path)
    with h5py.File(path, "r+") as f:
        edit(f)
    expect_error(path, field, words)


@pytest.mark.parametrize("case, edit, target, field, words", TARGET_CASES, ids=[c[0] for c in TARGET_CASES])
def test_broken_target(tmp_path, valid_file, case, edit, target, field, words):
    path = tmp_path / "broken.h5"
    shutil.copy(valid_file, path)
    with h5py.File(path, "r+") as f:
        edit(f)
    before = snapshot(path)
    with pytest.warns(UserWarning, match=field.split(".")[0]):
        rec = open_recording(path)
    with pytest.raises(DataError) as info:
        QueryTable.from_recording(rec, TokenizerConfig(target=target))
    message = str(info.value)
    assert info.value.field == field and str(path) in message and words in message and "Fix:" in message, message
    assert snapshot(path) == before


def test_valid_file_opens_and_stays_untouched(valid_file):
    before = snapshot(valid_file)
    rec = open_recording(valid_file)
    rec.spikes_between(1.0, 3.0)
    _ = rec.truth, rec.spike_times
    rec.close()
    assert snapshot(valid_file) == before


def test_truncated_file(tmp_path, valid_file):
    path = tmp_path / "half.h5"
    data = valid_file.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    expect_error(path, "<file>", "not a readable HDF5 file")


def test_not_an_hdf5_file(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("session notes, not data\n")
    expect_error(path, "<file>", "not a readable HDF5 file")


def test_writer_rejects_bad_recording_and_writes_nothing(tmp_path):
    rec = small_recording()
    rec.behaviour["cursor"].values["vel"] = rec.behaviour["cursor"].values["vel"][:-1]
    with pytest.raises(DataError, match="behaviour\\['cursor'\\].values\\['vel'\\]"):
        write_recording(tmp_path / "out.h5", rec)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "name, start, end, words",
    [
        ("trials", [2.5, 0.5], [4.0, 2.0], "not sorted"),
        ("trials", [0.5, 2.5], [3.0, 4.0], "overlapping"),
        ("movement_phases/reach_period", [1.0, 1.2], [1.5, 3.5], "overlapping"),
    ],
)
def test_writer_refuses_interval_sets_the_reader_would_refuse(tmp_path, name, start, end, words):
    rec = small_recording()
    rec.intervals[name] = Intervals(np.array(start), np.array(end))
    with pytest.raises(DataError, match=words) as info:
        write_recording(tmp_path / "out.h5", rec)
    assert info.value.field == f"recording.intervals[{name!r}]"
    assert os.listdir(tmp_path) == []
