"""Whole-trial evaluation (docs/training.md): every query of trials longer than 1 s is scored, on the right intervals.

The scored count and R² are checked against numpy computations straight from the recording (behaviour timestamps,
trial and reach intervals), independent of the tokenizer and the evaluation code.
"""

import numpy as np
import pytest
from flax import nnx

from data_pipeline.batch_layout import MODEL_INPUT_KEYS
from data_pipeline.tokenize import TokenizerConfig, tokenize_window
from data_pipeline.windows import eval_trials, trial_num_chunks
from possm_jax.config import get_preset
from possm_jax.eval.evaluate import evaluate, evaluate_session
from possm_jax.possm import POSSM
from tests.handmade_recordings import intervals, make_recording, vocab_map

DURATION = 40.0  # valid split: [24, 32) s


def _recording():
    # Trials of 2.3 s (longer than a 1 s window) tiling the recording, each with a reach period inside.
    starts = np.arange(0.0, DURATION - 2.3, 2.5)
    trials = intervals(*[(a, a + 2.3) for a in starts])
    reach = intervals(*[(a + 0.4, a + 1.7) for a in starts])
    return make_recording(
        seed=3,
        num_units=10,
        rate=20.0,
        duration=DURATION,
        trials=trials,
        phases={"movement_phases/reach_period": reach},
    )


def _expected(rec, split="valid"):
    """Behaviour samples inside trials that intersect the split and inside the reach period (numpy only)."""
    t = rec.behaviour["cursor"].timestamps
    dom = rec.splits[split]
    trials = rec.intervals["trials"]
    reach = rec.intervals["movement_phases/reach_period"]
    keep = np.zeros(len(t), bool)
    for a, b in zip(trials.start, trials.end, strict=True):
        if any(a < d1 and d0 < b for d0, d1 in zip(dom.start, dom.end, strict=True)):
            keep |= (t >= a) & (t < b)
    in_reach = np.zeros(len(t), bool)
    for a, b in zip(reach.start, reach.end, strict=True):
        in_reach |= (t >= a) & (t < b)
    return keep & in_reach


def test_every_query_of_long_trials_is_scored_with_concatenated_r2():
    # Given a recording with 2.3 s trials and a predictor that always outputs zero,
    rec = _recording()
    cfg = TokenizerConfig()

    def predict(batch):
        return {"vel": np.zeros(batch["query_mask"].shape + (2,), np.float32)}

    # When one session is evaluated,
    result = evaluate_session(predict, rec, vocab_map(rec, 1, 1), cfg, "vel", split="valid", batch_size=3)

    # Then every reach-period sample of every valid trial is scored, and R² is 1 - Σy²/Σ(y - ȳ)² over all of them.
    keep = _expected(rec)
    assert result.num_scored == keep.sum() > 100
    y = rec.behaviour["cursor"].values["vel"][keep] / 20.0
    want = np.mean(1.0 - (y**2).sum(0) / ((y - y.mean(0)) ** 2).sum(0))
    assert result.r2 == pytest.approx(want, abs=1e-6)


def test_model_evaluation_chunk_causal_and_strict():
    # Given a small untrained POSSM,
    rec = _recording()
    cfg = TokenizerConfig()
    model = POSSM(get_preset("possm_small", dim=32, ffn_dropout=0.0), 12, 2, rngs=nnx.Rngs(0))

    # When evaluated on whole test trials, chunk-causal and strictly causal,
    out = evaluate(model, [rec], [vocab_map(rec, 1, 1)], cfg, split="test", batch_size=4, strict=True, num_traces=2)

    # Then the count matches the independent one, both R² are finite and differ (the strict model sees less),
    key = rec.session_key
    assert out["num_scored"][key] == _expected(rec, "test").sum()
    assert np.isfinite(out["r2"][key]) and np.isfinite(out["strict_r2"][key])
    assert out["r2"][key] != out["strict_r2"][key]
    # and the first trace equals an unpadded eager forward of that trial alone (padding changes nothing).
    times, pred, _ = out["traces"][key][0]
    trial = eval_trials(rec, "test")
    a, b = float(trial.start[0]), float(trial.end[0])
    window = tokenize_window(rec, a, trial_num_chunks(b - a, cfg.bin_width), *vocab_map(rec, 1, 1), cfg)
    batch = {k: v[None] for k, v in window.items() if k in MODEL_INPUT_KEYS}
    direct = np.asarray(model(batch)[0]["cursor_velocity_2d"][0, : len(pred)]) * 20.0
    np.testing.assert_allclose(pred, direct, atol=1e-4)
    np.testing.assert_array_less(-1e-9, times)
