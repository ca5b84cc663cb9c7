"""Human-BCI calibration paths on tiny sessions (PCA-KNN, binned GRU with cross-entropy and with CTC), and the
binned-task data helpers against independent reads of the generated recordings."""

import numpy as np
import pytest

from data_pipeline.synth import handwriting, speech
from experiments.calibrate import calibrate_bci, format_bci_table
from possm_jax.baselines.binned_tasks import character_batches, character_cubes, speech_sentences


@pytest.fixture(scope="module")
def speech_rec():
    return next(speech.generate_speech(seed=0, num_sessions=1, trials_per_session=20))[1]


def test_speech_sentences_hold_each_trials_phonemes(speech_rec):
    sentences = speech_sentences(speech_rec, "test")
    frames = speech_rec.behaviour["phoneme"]
    trials = speech_rec.intervals["trials"]
    test = speech_rec.splits["test"]
    inside = test.contains(trials.start) & test.contains(trials.end - 1e-9)
    for row, (t0, t1) in enumerate(zip(trials.start[inside], trials.end[inside], strict=True)):
        ids = frames.values["id"][(frames.timestamps >= t0) & (frames.timestamps < t1)]
        runs = ids[np.flatnonzero(np.diff(ids, prepend=-1))]  # runs of equal frame labels, blanks dropped below
        assert sentences.targets()[row] == runs[runs != 0].tolist()
        n = int(round((t1 - t0) / speech.BIN_WIDTH))
        assert sentences.mask[row].sum() == n and sentences.counts.shape[1] % 64 == 0
    assert sentences.counts[~sentences.mask].sum() == 0


def test_character_batches_score_the_last_bins():
    cubes = np.arange(4 * 6 * 2, dtype=np.float32).reshape(4, 6, 2)
    batch = next(character_batches(cubes, np.array([3, 1, 4, 1]), 5, seed=0, scored_bins=2))
    np.testing.assert_array_equal(batch["weight"], np.tile([0, 0, 0, 0, 1, 1], (5, 1)))
    rows = [int(np.flatnonzero((cubes == c).all(axis=(1, 2)))[0]) for c in batch["counts"]]
    np.testing.assert_array_equal(batch["target"][:, 0, 0], np.array([3, 1, 4, 1])[rows])


def test_character_cubes_merge_sums_bins():
    rec = next(handwriting.generate_handwriting(seed=0, num_sessions=1, trials_per_session=186))[1]
    fine, labels = character_cubes(rec, "valid")
    coarse, _ = character_cubes(rec, "valid", merge=5)
    np.testing.assert_array_equal(coarse, fine.reshape(len(fine), 32, 5, -1).sum(2))
    assert fine.shape == (31, 160, 192) and sorted(labels.tolist()) == list(range(31))


@pytest.mark.parametrize("preset, metric", [("handwriting", "accuracy_test_gru"), ("speech", "per_test_gru")])
def test_calibrate_bci_reports_binned_scores(preset, metric):
    trials = 186 if preset == "handwriting" else 20
    rows = calibrate_bci(preset, binned={"gru": 2}, trials=trials, sessions=1)
    assert len(rows) == 1 and 0.0 <= rows[0][metric] <= (1.0 if preset == "handwriting" else 10.0)
    table = format_bci_table(preset, rows)
    assert f"{preset} {metric} mean" in table and "target" in table
    if preset == "handwriting":
        assert 0.0 <= rows[0]["accuracy_test"] <= 1.0 and rows[0]["trials"]["test"] == 31
