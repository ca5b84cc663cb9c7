"""Losses against numpy: per-task weighted MSE / CE summed over tasks, and CTC by brute-force path enumeration."""

import itertools

import numpy as np
import pytest

from possm_jax.train.loss import ctc_loss, multitask_loss, weighted_mse

RNG = np.random.default_rng(0)
B, Q, Y = 3, 7, 4


def _batch():
    return {
        "query_task": RNG.integers(0, 3, size=(B, Q)).astype(np.int32),
        "target": RNG.normal(size=(B, Q, Y)).astype(np.float32),
        "weight": RNG.choice([0.0, 0.1, 1.0, 5.0], size=(B, Q)).astype(np.float32),
    }


def _numpy_multitask(preds, batch, names, kinds):
    total = 0.0
    for t, name in enumerate(names):
        num = den = 0.0
        for b, q in itertools.product(range(B), range(Q)):
            if batch["query_task"][b, q] != t:
                continue
            w = float(batch["weight"][b, q])
            p = preds[name][b, q].astype(np.float64)
            if kinds.get(name) == "ce":
                logz = np.log(np.sum(np.exp(p - p.max()))) + p.max()
                err = logz - p[int(batch["target"][b, q, 0])]
            else:
                err = np.mean((p - batch["target"][b, q, : p.shape[0]]) ** 2)
            num += w * err
            den += w
        total += num / den if den > 0 else 0.0
    return total


def test_multitask_mse_and_ce_match_numpy():
    batch = _batch()
    batch["target"][batch["query_task"] == 2, 0] = RNG.integers(0, 5, size=int((batch["query_task"] == 2).sum()))
    names = ["vel", "pos3", "char"]
    preds = {
        "vel": RNG.normal(size=(B, Q, 2)).astype(np.float32),
        "pos3": RNG.normal(size=(B, Q, 3)).astype(np.float32),
        "char": RNG.normal(size=(B, Q, 5)).astype(np.float32),
    }
    kinds = {"char": "ce"}
    loss, parts = multitask_loss(preds, batch, names, kinds)
    np.testing.assert_allclose(float(loss), _numpy_multitask(preds, batch, names, kinds), rtol=1e-5)
    assert set(parts) == {"loss/vel", "loss/pos3", "loss/char"}


def test_task_without_weight_contributes_zero():
    batch = _batch()
    batch["weight"][:] = 0.0
    pred = RNG.normal(size=(B, Q, 2)).astype(np.float32)
    assert float(weighted_mse(pred, batch["target"], batch["weight"])) == 0.0


def test_multitask_bad_input():
    batch = _batch()
    preds = {"vel": np.zeros((B, Q, 2), np.float32)}
    with pytest.raises(ValueError, match="preds: no outputs for tasks \\['acc'\\]"):
        multitask_loss(preds, batch, ["vel", "acc"])
    with pytest.raises(ValueError, match="unsupported loss kinds"):
        multitask_loss(preds, batch, ["vel"], {"vel": "ctc"})


def _brute_force_ctc_nll(log_probs, labels, blank=0):
    """-log Σ over all paths that collapse (merge repeats, drop blanks) to ``labels``."""
    total = 0.0
    for path in itertools.product(range(log_probs.shape[1]), repeat=log_probs.shape[0]):
        collapsed = [c for i, c in enumerate(path) if c != blank and (i == 0 or c != path[i - 1])]
        if collapsed == list(labels):
            total += np.exp(sum(log_probs[t, c] for t, c in enumerate(path)))
    return -np.log(total)


def test_ctc_matches_brute_force_with_padding():
    t_max, k = 5, 3
    logits = RNG.normal(size=(2, t_max, k)).astype(np.float32)
    logit_mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]], bool)
    labels = np.array([[1, 1, 2], [2, 1, 0]], np.int32)
    label_mask = np.array([[1, 1, 1], [1, 1, 0]], bool)
    want = []
    for b in range(2):
        x = logits[b, logit_mask[b]].astype(np.float64)
        log_probs = x - np.log(np.sum(np.exp(x), axis=-1, keepdims=True))
        want.append(_brute_force_ctc_nll(log_probs, labels[b, label_mask[b]]) / label_mask[b].sum())
    got = ctc_loss(logits, logit_mask, labels, label_mask)
    np.testing.assert_allclose(float(got), np.mean(want), rtol=1e-5)
