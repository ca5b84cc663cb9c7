"""Bad NWB input: one one-line DataError naming the NWB file and field, and the file left exactly as it was.

Given a minimal NWB-shaped file written here with h5py (units, trials, one timestamped and one rate-sampled
behaviour series), when one field is broken and the file is imported, then the importer raises a DataError whose
single-line message names the file, the NWB field and a fix; the intact file imports with every value.
"""

import os
import warnings

import h5py
import numpy as np
import pytest

from data_pipeline.errors import DataError, DataWarning
from data_pipeline.nwb_import import read_nwb


def valid_source() -> dict[str, np.ndarray]:
    """NWB fields by path. Unit 0 fires at 0.1, 0.5, 0.9 s and unit 7 at 0.2, 0.3 s (stored unit by unit)."""
    rng = np.random.default_rng(0)
    cursor = rng.normal(size=(200, 2))
    cursor[50:60] = np.nan  # a tracking gap: tolerated
    return {
        "units/id": np.array([0, 7]),
        "units/spike_times": np.array([0.1, 0.5, 0.9, 0.2, 0.3]),
        "units/spike_times_index": np.array([3, 5]),
        "intervals/trials/id": np.array([0, 1]),
        "intervals/trials/start_time": np.array([0.0, 1.0]),
        "intervals/trials/stop_time": np.array([0.8, 1.8]),
        "processing/behavior/cursor_vel/data": cursor,
        "processing/behavior/cursor_vel/timestamps": np.arange(200) / 100.0,
        "processing/behavior/hand_vel/data": rng.normal(size=(100, 2)),
        "processing/behavior/hand_vel/starting_time": np.float64(0.0),
    }


def write_nwb(path, fields: dict[str, np.ndarray], rate: float = 50.0) -> None:
    with h5py.File(path, "w") as f:
        for key, value in fields.items():
            f[key] = value
        if "processing/behavior/hand_vel/starting_time" in f:
            f["processing/behavior/hand_vel/starting_time"].attrs["rate"] = rate


def snapshot(path) -> tuple[bytes, int]:
    return path.read_bytes(), os.stat(path).st_mtime_ns


def test_valid_file_imports_every_value(tmp_path):
    src = valid_source()
    write_nwb(tmp_path / "ok.nwb", src)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        rec = read_nwb(tmp_path / "ok.nwb", brainset_id="b")
    got = list(zip(rec.unit_ids[rec.spike_units].tolist(), rec.spike_times.tolist(), strict=True))  # time order
    assert got == [("0", 0.1), ("7", 0.2), ("7", 0.3), ("0", 0.5), ("0", 0.9)]
    np.testing.assert_array_equal(rec.intervals["trials"].start, [0.0, 1.0])
    np.testing.assert_array_equal(rec.behaviour["cursor"].values["vel"], src["processing/behavior/cursor_vel/data"])
    np.testing.assert_allclose(rec.behaviour["hand"].timestamps, np.arange(100) / 50.0, rtol=0, atol=1e-12)


def changed(**edits) -> dict[str, np.ndarray]:
    """The valid source with fields replaced (``a__b`` stands for ``a/b``); None deletes a field."""
    src = valid_source()
    for key, value in edits.items():
        key = key.replace("__", "/")
        if value is None:
            del src[key]
        else:
            src[key] = value
    return src


NAN = np.nan
CASES = [
    ("NaN spike time", changed(units__spike_times=np.array([0.1, NAN, 0.9, 0.2, 0.3])), "units/spike_times", "NaN"),
    (
        "unsorted spikes of a unit",
        changed(units__spike_times=np.array([0.5, 0.1, 0.9, 0.2, 0.3])),
        "units/spike_times",
        "unit '0'",
    ),
    ("no spike times", changed(units__spike_times=None), "units/spike_times", "missing"),
    (
        "no spikes",
        changed(units__spike_times=np.zeros(0), units__spike_times_index=np.array([0, 0])),
        "units/spike_times",
        "no spikes",
    ),
    ("index past the end", changed(units__spike_times_index=np.array([3, 6])), "units/spike_times_index", "not at 5"),
    ("index decreasing", changed(units__spike_times_index=np.array([5, 3])), "units/spike_times_index", "shape"),
    (
        "NaN trial start",
        changed(intervals__trials__start_time=np.array([NAN, 1.0])),
        "intervals/trials/start_time",
        "NaN",
    ),
    ("NaN trial stop", changed(intervals__trials__stop_time=np.array([0.8, NAN])), "intervals/trials/stop_time", "NaN"),
    (
        "trial stop before start",
        changed(intervals__trials__stop_time=np.array([0.8, 0.9])),
        "intervals/trials",
        "stop_time < start_time",
    ),
    (
        "overlapping trials",
        changed(intervals__trials__stop_time=np.array([1.2, 1.8])),
        "intervals/trials",
        "overlapping",
    ),
    (
        "trial column length",
        changed(intervals__trials__stop_time=np.array([0.8, 1.8, 2.0])),
        "intervals/trials/stop_time",
        "rows",
    ),
    (
        "NaN behaviour timestamp",
        changed(processing__behavior__cursor_vel__timestamps=np.r_[np.arange(199) / 100.0, NAN]),
        "processing/behavior/cursor_vel/timestamps",
        "NaN",
    ),
    (
        "behaviour data and timestamps differ in length",
        changed(processing__behavior__cursor_vel__timestamps=np.arange(190) / 100.0),
        "processing/behavior/cursor_vel/data",
        "190",
    ),
    (
        "infinite behaviour value",
        changed(processing__behavior__cursor_vel__data=np.full((200, 2), np.inf)),
        "processing/behavior/cursor_vel/data",
        "inf",
    ),
    (
        "NaN starting time",
        changed(processing__behavior__hand_vel__starting_time=np.float64(NAN)),
        "processing/behavior/hand_vel/starting_time",
        "nan",
    ),
    (
        "unknown split label",
        changed(intervals__trials__split=np.array([b"train", b"holdout"])),
        "intervals/trials/split",
        "'holdout'",
    ),
]


@pytest.mark.parametrize("case, fields, field, words", CASES, ids=[c[0] for c in CASES])
def test_broken_nwb_field(tmp_path, case, fields, field, words):
    path = tmp_path / "bad.nwb"
    write_nwb(path, fields)
    before = snapshot(path)
    with pytest.raises(DataError) as info:
        read_nwb(path, brainset_id="b")
    message = str(info.value)
    assert info.value.field == field, message
    assert str(path) in message and words in message and "Fix:" in message and "\n" not in message, message
    assert snapshot(path) == before


@pytest.mark.parametrize("rate", [0.0, -50.0, np.nan])
def test_bad_sampling_rate(tmp_path, rate):
    path = tmp_path / "bad.nwb"
    write_nwb(path, valid_source(), rate=rate)
    with pytest.raises(DataError) as info:
        read_nwb(path, brainset_id="b")
    assert info.value.field == "processing/behavior/hand_vel/starting_time.attrs[rate]", str(info.value)
    assert str(path) in str(info.value)


def test_interval_column_of_wrong_length_is_skipped_with_a_warning(tmp_path):
    path = tmp_path / "odd.nwb"
    write_nwb(path, changed(intervals__trials__target=np.array([1, 2, 3])))
    with pytest.warns(DataWarning, match="intervals/trials/target"):
        rec = read_nwb(path, brainset_id="b")
    assert "target" not in rec.intervals["trials"].columns
