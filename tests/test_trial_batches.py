"""Binned tokens and trial batches of the human-BCI tasks (numpy only): values against independent computations."""

import numpy as np
import pytest

from data_pipeline import binned_tokens as bt
from data_pipeline.binning import bin_spikes, counts_to_spikes
from data_pipeline.recording import Intervals, Recording
from data_pipeline.synth.speech import generate_speech
from data_pipeline.trial_batches import BinnedSession, handwriting_batch, speech_batch
from possm_jax.tasks import common, handwriting, speech

BW = 0.01


def _recording(counts: np.ndarray, trials: Intervals, intervals=None) -> Recording:
    """A binned recording with the given counts [t, u] from time 0 (every trial in the train split)."""
    times, units = counts_to_spikes(counts, 0.0, BW)
    end = len(counts) * BW
    domain = Intervals(np.array([0.0]), np.array([end]))
    return Recording(
        "b", "s", "subj", np.array([f"ch{i}" for i in range(counts.shape[1])]), times, units, domain,
        {"train": domain, "valid": domain, "test": domain}, {}, {"trials": trials, **(intervals or {})},
    )  # fmt: skip


def test_window_tokens_match_independent_binning():
    rng = np.random.default_rng(0)
    counts = rng.poisson(0.4, (50, 7))
    rec = _recording(counts, Intervals(np.array([0.0]), np.array([0.5])))
    unit_index = np.arange(11, 18)
    chunk, row, count = bt.window_counts(rec, 0.1, 20, BW)
    tok = bt.tokens(chunk, row, count, unit_index, BW)
    expected = bin_spikes(rec.spike_times, rec.spike_units, 7, 0.1, 20, BW)
    np.testing.assert_array_equal(expected, counts[10:30])
    k, u = np.nonzero(expected)  # row-major: sorted by (chunk, unit)
    np.testing.assert_array_equal(tok["spike_chunk"], k)
    np.testing.assert_array_equal(tok["spike_unit"], unit_index[u])
    np.testing.assert_allclose(tok["spike_value"], np.sqrt(expected[k, u]), rtol=1e-6)
    np.testing.assert_array_equal(tok["spike_time"], np.float32(BW / 2))


def test_handwriting_rows_window_and_queries():
    counts = np.random.default_rng(1).poisson(0.3, (300, 5))
    go = np.array([0.503, 1.8])  # the first go cue is off the bin grid by 0.3 bin: the window snaps to 0.40
    trials = Intervals(np.array([0.0, 1.5]), np.array([1.5, 3.0]), {"label": np.array([3, 7]), "go_cue_time": go})
    rec = _recording(counts, trials)
    cfg = handwriting.HandwritingConfig(window=0.2, before_go=0.1, pool=0.05, jitter=0.0, num_classes=8)
    examples = handwriting.examples(cfg, [rec], "train")
    assert [e.t0 for e in examples] == pytest.approx([0.40, 1.70])
    session = BinnedSession.build(rec, (np.arange(1, 6), 2))
    batch = handwriting_batch([session], examples, cfg.layout, {"b": 3, "s": 256})
    np.testing.assert_array_equal(batch["label"], [3, 7, 0])
    np.testing.assert_array_equal(batch["query_chunk"][0], np.arange(15, 20))
    np.testing.assert_array_equal(batch["weight"][2], 0)  # padding row
    total = batch["spike_mask"][0].sum()
    assert counts[40:60].sum() == pytest.approx((batch["spike_value"][0, :total] ** 2).sum())  # bins of [0.40, 0.60)


def test_speech_rows_labels_counts_and_ctc_layout():
    _, rec = next(generate_speech(num_sessions=1, trials_per_session=12))
    cfg = speech.SpeechConfig(ctc_stride=2, chunk_step=64)
    ex = speech.examples(cfg, [rec], "valid")[0]
    phon = rec.intervals["phonemes"]
    trial_end = ex.t0 + ex.num_chunks * cfg.bin_width
    inside = (phon.start >= ex.t0) & (phon.start < trial_end)
    np.testing.assert_array_equal(ex.labels, phon.columns["phoneme"][inside])
    session = BinnedSession.build(rec, (np.arange(1, 257), 1))
    c = bt.round_up(ex.num_chunks, 64)
    batch = speech_batch([session], [ex], cfg.layout, {"b": 1, "s": 16384, "c": c, "l": 64})
    dense = bin_spikes(rec.spike_times, rec.spike_units, 256, ex.t0, ex.num_chunks, cfg.bin_width)
    t = c // 2
    np.testing.assert_array_equal(batch["query_chunk"][0, :t], np.arange(t) * 2 + 1)
    np.testing.assert_array_equal(batch["query_task"][0], np.r_[np.zeros(t), np.ones(c)])
    np.testing.assert_array_equal(batch["counts_target"][0, t : t + ex.num_chunks - 1], dense[1:])
    np.testing.assert_array_equal(batch["weight"][0, t:], np.arange(1, c + 1) < ex.num_chunks)
    np.testing.assert_array_equal(batch["ctc_mask"][0], np.arange(t) * 2 + 1 < ex.num_chunks)
    np.testing.assert_array_equal(batch["labels"][0, : len(ex.labels)], ex.labels)
    assert batch["label_mask"][0].sum() == len(ex.labels)


def test_training_batches_are_deterministic_and_resume_exactly():
    _, rec = next(generate_speech(num_sessions=1, trials_per_session=12))
    cfg = speech.SpeechConfig(chunk_step=128)
    maps = [(np.arange(1, 257), 1)]
    a, b = (speech.train_dataset(cfg, [rec], maps, 2, seed=5) for _ in range(2))
    for i in (0, 3, a.per_epoch + 1):
        for key in a[i]:
            np.testing.assert_array_equal(a[i][key], b[i][key])
    assert any(not np.array_equal(a[0]["labels"], a[k]["labels"]) for k in range(1, 4))
    it = common.make_iterator(a, prefetch=0)
    next(it)
    state = it.get_state()
    expected = next(it)
    resumed = common.make_iterator(b, prefetch=0)
    resumed.set_state(state)
    got = next(resumed)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: handwriting.HandwritingConfig(window=0.015), "window"),
        (lambda: handwriting.HandwritingConfig(pool=2.0), "pool"),
        (lambda: speech.SpeechConfig(phase="pretrain"), "phase"),
        (lambda: speech.SpeechConfig(chunk_step=3, ctc_stride=2), "chunk_step"),
        (lambda: speech.SpeechConfig(blank_id=41), "blank_id"),
        (lambda: handwriting.model_config(handwriting.HandwritingConfig(depth=0)), "depth"),
    ],
)
def test_bad_task_config_names_the_field(build, field):
    with pytest.raises(ValueError, match=field):
        build()


def test_missing_columns_and_labels_out_of_range_are_explained():
    trials = Intervals(np.array([0.0]), np.array([1.0]), {"label": np.array([40])})
    rec = _recording(np.zeros((100, 2), int), trials)
    with pytest.raises(ValueError, match="go_cue_time"):
        handwriting.examples(handwriting.HandwritingConfig(), [rec], "train")
    rec.intervals["trials"].columns["go_cue_time"] = np.array([0.5])
    with pytest.raises(ValueError, match="num_classes"):
        handwriting.examples(handwriting.HandwritingConfig(), [rec], "train")
    with pytest.raises(ValueError, match="phonemes"):
        speech.examples(speech.SpeechConfig(), [rec], "train")
