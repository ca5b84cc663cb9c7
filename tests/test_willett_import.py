"""Willett handwriting/speech readers: tiny files in the public MATLAB layout, imported and read back from the store.

Every expected value is recomputed here with plain numpy from the arrays written into the .mat file.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io

from data_pipeline.errors import DataError
from data_pipeline.store_reader import open_recording
from data_pipeline.willett_handwriting import read_handwriting
from data_pipeline.willett_import import NO_PHONEMES, main
from data_pipeline.willett_speech import read_speech

# ---------------------------------------------------------------------------------------------------- handwriting
CUES = {"a": 0, "b": 1, "comma": 27}  # cue name -> index in synth.handwriting.CHARACTERS
BLOCKS = np.array([4, 9])  # block ids (not 0..n-1, to catch index/id confusion)


def cell(items: list) -> np.ndarray:
    """A MATLAB cell array (savemat writes an object array as a cell)."""
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def handwriting_fields(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """3 characters x 9 trials x 201 x 192 (+ 2 doNothing trials), cued in random order over 2 blocks."""
    cues = [c for c in CUES for _ in range(9)] + ["doNothing"] * 2
    cues = [cues[i] for i in rng.permutation(len(cues))]
    n = len(cues)
    fields = {f"neuralActivityCube_{c}": rng.poisson(0.05, (cues.count(c), 201, 192)).astype(np.uint8) for c in CUES}
    fields["neuralActivityCube_doNothing"] = rng.poisson(0.05, (2, 201, 192)).astype(np.uint8)
    cue_cell = np.empty((n, 1), dtype=object)
    cue_cell[:, 0] = cues
    fields["characterCues"] = cue_cell
    fields["goPeriodOnsetTimeBin"] = (np.arange(n) * 100 + 30).reshape(n, 1)  # bin of the continuous recording
    fields["delayPeriodOnsetTimeBin"] = (np.arange(n) * 100 + 10).reshape(n, 1)
    series = np.where(np.arange(n * 100) < 14 * 100, BLOCKS[0], BLOCKS[1])  # trials 0-13 block 4, the rest block 9
    fields["blockNumsTimeSeries"] = series.reshape(-1, 1)
    fields["blockList"] = BLOCKS.reshape(-1, 1)
    fields["meansPerBlock"] = rng.uniform(0.0, 0.2, (2, 192))
    fields["stdAcrossAllData"] = rng.uniform(0.1, 0.5, (1, 192))
    return fields


def expected_handwriting(fields: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Trials in cue order without doNothing: label, cube row, block, raw counts, normalised values, split code."""
    out = {k: [] for k in ("label", "row", "block", "counts", "values", "split")}
    seen = dict.fromkeys(CUES, 0)
    for i, cue in enumerate(fields["characterCues"][:, 0]):
        if cue == "doNothing":
            continue
        row = seen[cue]
        seen[cue] += 1
        block = fields["blockNumsTimeSeries"][fields["goPeriodOnsetTimeBin"][i, 0], 0]
        counts = fields[f"neuralActivityCube_{cue}"][row].astype(np.float64)
        mean = fields["meansPerBlock"][list(BLOCKS).index(block)]
        out["values"].append((counts - mean) / fields["stdAcrossAllData"][0])
        out["counts"].append(counts)
        out["label"].append(CUES[cue])
        out["row"].append(row)
        out["block"].append(block)
        out["split"].append({2: "valid", 5: "test"}.get(row % 9, "train"))
    return {k: np.array(v) for k, v in out.items()}


def binned_counts(rec, num_bins: int, bin_width: float) -> np.ndarray:
    """[t, u] spike counts per bin, from the stored spikes."""
    counts = np.zeros((num_bins, len(rec.unit_ids)))
    np.add.at(counts, (np.floor(rec.spike_times / bin_width).astype(int), rec.spike_units), 1)
    return counts


def test_handwriting_round_trip(tmp_path):
    fields = handwriting_fields(np.random.default_rng(0))
    folder = tmp_path / "t5.2019.05.08"
    folder.mkdir()
    scipy.io.savemat(folder / "singleLetters.mat", fields)
    out = tmp_path / "hw.h5"
    main(["handwriting", str(folder / "singleLetters.mat"), str(out)])
    rec = open_recording(out).load_in_memory()
    want = expected_handwriting(fields)
    n = len(want["label"])
    assert n == 27 and rec.session_id == "t5.2019.05.08" and len(rec.unit_ids) == 192
    trials = rec.intervals["trials"]
    np.testing.assert_allclose(trials.start, np.arange(n) * 2.01, atol=1e-9)
    np.testing.assert_allclose(trials.end, (np.arange(n) + 1) * 2.01, atol=1e-9)
    np.testing.assert_array_equal(trials.columns["label"], want["label"])
    np.testing.assert_array_equal(trials.columns["block"], want["block"])
    np.testing.assert_allclose(trials.columns["go_cue_time"], np.arange(n) * 2.01 + 0.5, atol=1e-9)
    series = rec.behaviour["binned"]
    np.testing.assert_allclose(series.timestamps, (np.arange(n * 201) + 0.5) * 0.01, atol=1e-9)
    np.testing.assert_allclose(series.values["normalised"], want["values"].reshape(-1, 192), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(binned_counts(rec, n * 201, 0.01), want["counts"].reshape(-1, 192))
    centres = (trials.start + trials.end) / 2
    for split in ("train", "valid", "test"):
        np.testing.assert_array_equal(rec.splits[split].contains(centres), want["split"] == split)
    assert (want["split"] == "valid").sum() == 3 and (want["split"] == "test").sum() == 3
    np.testing.assert_array_equal(rec.intervals["blocks"].columns["block"], BLOCKS)
    np.testing.assert_allclose(rec.intervals["blocks"].columns["mean"], fields["meansPerBlock"], rtol=1e-6)


def test_handwriting_go_bin_sets_go_cue_time(tmp_path):
    scipy.io.savemat(tmp_path / "s.mat", handwriting_fields(np.random.default_rng(1)))
    rec = read_handwriting(tmp_path / "s.mat", go_bin=60)
    trials = rec.intervals["trials"]
    np.testing.assert_allclose(trials.columns["go_cue_time"] - trials.start, 0.6, atol=1e-9)
    assert rec.session_id == "s"


def drop(fields: dict, key: str) -> dict:
    return {k: v for k, v in fields.items() if k != key}


def narrow_cube(fields: dict) -> dict:
    return {**fields, "neuralActivityCube_b": fields["neuralActivityCube_b"][:, :, :191]}


def short_cube(fields: dict) -> dict:
    return {**fields, "neuralActivityCube_comma": fields["neuralActivityCube_comma"][:8]}


def narrow_means(fields: dict) -> dict:
    return {**fields, "meansPerBlock": fields["meansPerBlock"][:, :96]}


# --------------------------------------------------------------------------------------------------------- speech
TEXTS = ["hi there.", "ok", "hi ok", "there, hi"]
LENGTHS = [20, 33, 27, 40]
BLOCK_IDX = [2, 2, 5, 5]
DICTIONARY = ";;; test dictionary\nHI  HH AY1\nTHERE  DH EH1 R\nTHERE(2)  DH ER0\nOK  OW0 K EY1\n"
PHONE_ID = {"HH": 16, "AY": 6, "DH": 10, "EH": 11, "R": 28, "OW": 25, "K": 20, "EY": 13, "SIL": 40}
WORD = {"hi": ["HH", "AY"], "there": ["DH", "EH", "R"], "ok": ["OW", "K", "EY"]}


def speech_fields(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """4 sentences of 20-40 bins x 256 channels in 2 blocks, in the competition layout."""
    fields = {
        f"tx{k}": cell([rng.poisson(0.3 / k, (t, 256)).astype(np.float64) for t in LENGTHS]) for k in (1, 2, 3, 4)
    }
    fields["spikePow"] = cell([rng.gamma(2.0, 50.0, (t, 256)) for t in LENGTHS])
    width = max(map(len, TEXTS)) + 3
    fields["sentenceText"] = np.array([t.ljust(width) for t in TEXTS])  # a space-padded char matrix
    fields["blockIdx"] = np.array(BLOCK_IDX).reshape(-1, 1)
    return fields


def expected_speech(fields: dict) -> np.ndarray:
    """[sum T_i, 256] baseline features concat(tx1[:, :128], spikePow[:, :128]) z-scored per block."""
    feats = [np.concatenate([fields["tx1"][i][:, :128], fields["spikePow"][i][:, :128]], 1) for i in range(4)]
    out = []
    for i, b in enumerate(BLOCK_IDX):
        block = np.concatenate([feats[j] for j in range(4) if BLOCK_IDX[j] == b])
        out.append((feats[i] - block.mean(0)) / (block.std(0) + 1e-8))
    return np.concatenate(out)


def test_speech_round_trip_with_phonemes(tmp_path):
    fields = speech_fields(np.random.default_rng(3))
    (tmp_path / "train").mkdir()
    path = tmp_path / "train" / "t12.2022.06.14.mat"
    scipy.io.savemat(path, fields)
    (tmp_path / "dict.txt").write_text(DICTIONARY)
    out = tmp_path / "speech.h5"
    main(["speech", str(path), str(out), f"--phoneme_dict={tmp_path / 'dict.txt'}"])
    rec = open_recording(out).load_in_memory()
    assert rec.session_id == "t12.2022.06.14"
    assert list(rec.unit_ids[:2]) == ["tx1_000", "tx1_001"] and rec.unit_ids[128] == "spikePow_000"
    trials = rec.intervals["trials"]
    edges = np.concatenate([[0], np.cumsum(LENGTHS)]) * 0.02
    np.testing.assert_allclose(trials.start, edges[:-1], atol=1e-9)
    np.testing.assert_allclose(trials.end, edges[1:], atol=1e-9)
    assert list(trials.columns["text"]) == TEXTS
    np.testing.assert_array_equal(trials.columns["block"], BLOCK_IDX)
    values = rec.behaviour["binned"].values["normalised"]
    np.testing.assert_allclose(values, expected_speech(fields), rtol=1e-5, atol=1e-5)
    tx1 = np.concatenate([fields["tx1"][i][:, :128] for i in range(4)])
    counts = binned_counts(rec, sum(LENGTHS), 0.02)
    np.testing.assert_array_equal(counts, np.concatenate([tx1, np.zeros_like(tx1)], axis=1))
    phonemes = rec.intervals["phonemes"]
    for i, text in enumerate(TEXTS):
        words = text.replace(".", "").replace(",", "").split()
        want = [PHONE_ID[p] for w in words for p in [*WORD[w], "SIL"]]
        inside = (phonemes.start >= trials.start[i] - 1e-9) & (phonemes.end <= trials.end[i] + 1e-9)
        np.testing.assert_array_equal(phonemes.columns["phoneme"][inside], want)
    assert rec.splits["train"].total_duration() == pytest.approx(edges[-1])
    assert len(rec.splits["valid"]) == 0 and len(rec.splits["test"]) == 0


def test_speech_without_dictionary_says_ctc_needs_phonemes(tmp_path, capsys):
    (tmp_path / "test").mkdir()
    path = tmp_path / "test" / "t12.2022.06.14.mat"
    scipy.io.savemat(path, speech_fields(np.random.default_rng(4)))
    main(["speech", str(path), str(tmp_path / "s.h5"), "--features=tx2", "--channels=128:256"])
    assert NO_PHONEMES in capsys.readouterr().out
    rec = open_recording(tmp_path / "s.h5")
    assert "phonemes" not in rec.intervals and rec.unit_ids[0] == "tx2_128" and len(rec.unit_ids) == 128
    assert rec.splits["test"].total_duration() == pytest.approx(sum(LENGTHS) * 0.02)


def test_speech_files_of_one_session_merge_with_their_splits(tmp_path):
    fields = speech_fields(np.random.default_rng(5))
    for folder in ("train", "test"):
        (tmp_path / folder).mkdir()
        scipy.io.savemat(tmp_path / folder / "t12.2022.06.14.mat", fields)
    paths = [tmp_path / "train" / "t12.2022.06.14.mat", tmp_path / "test" / "t12.2022.06.14.mat"]
    rec = read_speech(paths)
    total = sum(LENGTHS) * 0.02
    assert rec.splits["train"].start.tolist() == [0.0] and rec.splits["train"].end[0] == pytest.approx(total)
    assert rec.splits["test"].start[0] == pytest.approx(total) and rec.splits["test"].end[0] == pytest.approx(2 * total)
    assert len(rec.intervals["blocks"]) == 4


def ragged(fields: dict) -> dict:
    cells = fields["tx1"].copy()
    cells[2] = cells[2][:, :255]
    return {**fields, "tx1": cells}


def wrong_width(fields: dict) -> dict:
    return {**fields, "spikePow": cell([x[:, :128] for x in fields["spikePow"]])}


def short_power(fields: dict) -> dict:
    cells = fields["spikePow"].copy()
    cells[1] = cells[1][:-1]
    return {**fields, "spikePow": cells}


def test_speech_missing_word_names_the_dictionary(tmp_path):
    path = tmp_path / "t12.2022.06.14.mat"
    scipy.io.savemat(path, speech_fields(np.random.default_rng(7)))
    (tmp_path / "dict.txt").write_text("HI  HH AY1\n")
    with pytest.raises(DataError, match="word 'there'") as info:
        read_speech([path], split="train", phoneme_dict=tmp_path / "dict.txt")
    assert info.value.path == str(tmp_path / "dict.txt")


def test_speech_unknown_folder_needs_a_split(tmp_path):
    path = tmp_path / "t12.2022.06.14.mat"
    scipy.io.savemat(path, speech_fields(np.random.default_rng(8)))
    with pytest.raises(ValueError, match="--split"):
        read_speech([path])


@pytest.mark.parametrize(
    "kind, corrupt, field",
    [
        ("handwriting", lambda f: drop(f, "meansPerBlock"), "meansPerBlock"),
        ("handwriting", lambda f: drop(f, "neuralActivityCube_a"), "neuralActivityCube_a"),
        ("handwriting", narrow_cube, "neuralActivityCube_b"),
        ("handwriting", short_cube, "characterCues"),
        ("handwriting", narrow_means, "meansPerBlock"),
        ("speech", lambda f: drop(f, "spikePow"), "spikePow"),
        ("speech", lambda f: drop(f, "sentenceText"), "sentenceText"),
        ("speech", ragged, "tx1[2]"),
        ("speech", wrong_width, "spikePow[0]"),
        ("speech", short_power, "spikePow[1]"),
        ("speech", lambda f: {**f, "blockIdx": np.array([[1], [2]])}, "blockIdx"),
    ],
)
def test_bad_files_name_file_and_field(tmp_path, kind, corrupt, field):
    """A missing field, a cube or cell with other channels or lengths: a DataError naming the file and the field."""
    path = tmp_path / "t12.2022.06.14.mat"
    make = handwriting_fields if kind == "handwriting" else speech_fields
    scipy.io.savemat(path, corrupt(make(np.random.default_rng(2))))
    with pytest.raises(DataError) as info:
        read_handwriting(path) if kind == "handwriting" else read_speech([path], split="train")
    assert info.value.field == field and info.value.path == str(path)
