"""Evaluation metrics against closed forms and hand-computed cases."""

import numpy as np
import pytest

from possm_jax.eval.metrics import (
    SessionR2,
    accuracy,
    ctc_greedy_decode,
    edit_distance,
    mean_sd,
    phoneme_error_rate,
    r2_score,
)


def test_r2_hand_computed():
    # Dim 0: y = [1, 2, 3], ŷ = [1, 2, 4]: SSE 1, SST 2 -> 0.5. Dim 1: perfect -> 1. Mean 0.75.
    target = np.array([[1.0, 0.0], [2.0, 1.0], [3.0, 5.0]])
    pred = np.array([[1.0, 0.0], [2.0, 1.0], [4.0, 5.0]])
    assert r2_score(pred, target) == pytest.approx(0.75)
    assert r2_score(np.full_like(target, target.mean(0)), target) == pytest.approx(0.0)


def test_session_r2_concatenates_trials_not_averages():
    """Streaming trials with masks equals the closed form over the concatenated scored samples."""
    rng = np.random.default_rng(0)
    acc = SessionR2()
    scored = {"a": ([], []), "b": ([], [])}
    for trial in range(6):
        session = "a" if trial % 2 else "b"
        n = int(rng.integers(5, 40))
        target = rng.normal(size=(n, 2)) + trial  # trial-specific offsets: per-trial R² would differ
        pred = target + 0.5 * rng.normal(size=(n, 2))
        mask = rng.random(n) > 0.3
        acc.update(session, pred, target, mask)
        scored[session][0].append(pred[mask])
        scored[session][1].append(target[mask])
    got = acc.per_session()
    for session, (preds, targets) in scored.items():
        p, t = np.concatenate(preds), np.concatenate(targets)
        want = np.mean(1 - ((p - t) ** 2).sum(0) / ((t - t.mean(0)) ** 2).sum(0))
        assert got[session] == pytest.approx(want, rel=1e-10)
    per_trial_mean = np.mean([r2_score(p, t) for p, t in zip(*scored["a"], strict=True)])
    assert got["a"] != pytest.approx(per_trial_mean, rel=1e-3)


def test_session_r2_skips_unscored_sessions_and_checks_shapes():
    acc = SessionR2()
    acc.update("x", np.zeros((3, 2)), np.ones((3, 2)), np.zeros(3, bool))
    assert acc.per_session() == {}
    with pytest.raises(ValueError, match="same shape"):
        acc.update("x", np.zeros((3, 2)), np.ones((3, 1)))


def test_mean_sd():
    assert mean_sd({"a": 0.9, "b": 0.7}) == pytest.approx((0.8, 0.1))
    with pytest.raises(ValueError, match="no values"):
        mean_sd([])


def test_accuracy():
    assert accuracy(np.array([1, 2, 3, 4]), np.array([1, 0, 3, 0])) == 0.5
    assert accuracy(np.array([1, 2, 3]), np.array([1, 0, 3]), mask=np.array([1, 0, 1])) == 1.0


def test_ctc_greedy_decode():
    # argmax path: 1 1 0 1 2 2 0 0 (last two masked) -> collapse repeats -> 1 0 1 2 -> drop blanks -> 1 1 2
    path = [1, 1, 0, 1, 2, 2, 0, 3]
    logits = np.eye(4)[path]
    assert ctc_greedy_decode(logits, mask=np.array([1] * 7 + [0], bool)) == [1, 1, 2]
    assert ctc_greedy_decode(logits) == [1, 1, 2, 3]


@pytest.mark.parametrize(
    ("ref", "hyp", "dist"),
    [("kitten", "sitting", 3), ("", "abc", 3), ("abc", "", 3), ("flaw", "lawn", 2), ("same", "same", 0)],
)
def test_edit_distance(ref, hyp, dist):
    assert edit_distance(list(ref), list(hyp)) == dist


def test_phoneme_error_rate():
    refs = [[1, 2, 3, 4], [5, 6]]
    hyps = [[1, 3, 4], [5, 7, 6]]  # one deletion, one insertion
    assert phoneme_error_rate(refs, hyps) == pytest.approx(2 / 6)
