"""Evaluation metrics: R² per session, classification accuracy (top-k, confusion matrix), phoneme error rate with
CTC greedy decoding or prefix beam search.

R² of a session is computed over *all* scored samples of that session concatenated (not averaged per trial): per
output dimension ``1 − SSE/SST`` with SST around the session mean, then the uniform mean over dimensions.
:class:`SessionR2` accumulates float64 sufficient statistics, so trials of any length can be streamed through it
without keeping predictions around. Sessions are then summarised as mean ± sd (population sd, ``ddof=0``).
"""

from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence

import numpy as np


def r2_score(pred: np.ndarray, target: np.ndarray) -> float:
    """Uniform mean over output dims of ``1 − SSE/SST``. pred, target: [n, y]. A constant dim (SST = 0) gives NaN."""
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    if pred.shape != target.shape or pred.ndim != 2:
        raise ValueError(f"pred and target must both be [n, y]; got {pred.shape} and {target.shape}")
    sse = np.sum((pred - target) ** 2, axis=0)
    sst = np.sum((target - target.mean(axis=0)) ** 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.mean(np.where(sst > 0, 1.0 - sse / sst, np.nan)))


class SessionR2:
    """Streams (prediction, target, mask) batches per session and reports R² per session.

    Sufficient statistics per session and dim (float64): n, Σy, Σy², Σ(ŷ−y)². SST = Σy² − (Σy)²/n.
    """

    def __init__(self) -> None:
        self._stats: dict[Hashable, np.ndarray] = {}

    def update(self, session: Hashable, pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Adds the scored samples of one trial/batch of ``session``.

        Args:
            session: session key (vocabulary id or string).
            pred: [..., y] predictions.
            target: [..., y] targets (same shape).
            mask: [...] True for scored samples (the eval intervals); None scores all.
        """
        pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
        if pred.shape != target.shape:
            raise ValueError(f"pred {pred.shape} and target {target.shape} must have the same shape")
        pred, target = pred.reshape(-1, pred.shape[-1]), target.reshape(-1, target.shape[-1])
        if mask is not None:
            mask = np.asarray(mask, bool).reshape(-1)
            if mask.shape[0] != pred.shape[0]:
                raise ValueError(f"mask has {mask.shape[0]} samples, pred has {pred.shape[0]}")
            pred, target = pred[mask], target[mask]
        stats = np.stack(
            [
                np.full(target.shape[1], target.shape[0], np.float64),
                target.sum(0),
                (target**2).sum(0),
                ((pred - target) ** 2).sum(0),
            ]
        )
        if session in self._stats:
            if self._stats[session].shape != stats.shape:
                raise ValueError(f"session {session!r}: output width changed from {self._stats[session].shape[1]}")
            self._stats[session] = self._stats[session] + stats
        else:
            self._stats[session] = stats

    def per_session(self) -> dict[Hashable, float]:
        """R² of every session with at least one scored sample."""
        out = {}
        for session, (n, s1, s2, sse) in self._stats.items():
            if n[0] == 0:
                continue
            sst = s2 - s1**2 / n
            with np.errstate(divide="ignore", invalid="ignore"):
                out[session] = float(np.mean(np.where(sst > 0, 1.0 - sse / sst, np.nan)))
        return out


def mean_sd(values: Iterable[float] | Mapping[Hashable, float]) -> tuple[float, float]:
    """Mean and population sd (ddof=0) of per-session values."""
    values = list(values.values()) if isinstance(values, Mapping) else list(values)
    if not values:
        raise ValueError("mean_sd: no values (no session had scored samples)")
    arr = np.asarray(values, np.float64)
    return float(arr.mean()), float(arr.std())


def accuracy(pred_labels: np.ndarray, labels: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Fraction of scored samples with ``pred == label``. Pass logits' ``argmax(-1)`` as ``pred_labels``."""
    pred_labels, labels = np.asarray(pred_labels), np.asarray(labels)
    if pred_labels.shape != labels.shape:
        raise ValueError(f"pred_labels {pred_labels.shape} and labels {labels.shape} must have the same shape")
    correct = pred_labels == labels
    if mask is not None:
        correct = correct[np.asarray(mask, bool)]
    if correct.size == 0:
        raise ValueError("accuracy: no scored samples")
    return float(correct.mean())


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of samples whose label is among the ``k`` highest scores (ties broken by class index).

    Args:
        scores: [n, c] class scores (logits or log-probabilities).
        labels: [n] int labels.
        k: how many top classes count as a hit.
    """
    scores, labels = np.asarray(scores), np.asarray(labels)
    if scores.ndim != 2 or labels.shape != scores.shape[:1]:
        raise ValueError(f"scores must be [n, c] and labels [n]; got {scores.shape} and {labels.shape}")
    if len(labels) == 0:
        raise ValueError("top_k_accuracy: no samples")
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def confusion_matrix(pred_labels: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """[c, c] int64 counts: row = true class, column = predicted class."""
    pred_labels, labels = np.asarray(pred_labels, np.int64), np.asarray(labels, np.int64)
    if pred_labels.shape != labels.shape:
        raise ValueError(f"pred_labels {pred_labels.shape} and labels {labels.shape} must have the same shape")
    out = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(out, (labels, pred_labels), 1)
    return out


def ctc_greedy_decode(logits: np.ndarray, mask: np.ndarray | None = None, blank_id: int = 0) -> list[int]:
    """Best path: argmax per step, merge repeats, drop blanks. logits: [t, k]; mask: [t] True for real steps."""
    path = np.asarray(logits).argmax(-1)
    if mask is not None:
        path = path[np.asarray(mask, bool)]
    out, prev = [], None
    for c in path.tolist():
        if c != prev and c != blank_id:
            out.append(c)
        prev = c
    return out


def edit_distance(ref: Sequence[Hashable], hyp: Sequence[Hashable]) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        diag, row[0] = row[0], i
        for j, h in enumerate(hyp, start=1):
            diag, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diag + (r != h))
    return row[-1]


def phoneme_error_rate(refs: Sequence[Sequence[Hashable]], hyps: Sequence[Sequence[Hashable]]) -> float:
    """Σ edit distance / Σ reference length over a corpus of utterances."""
    if len(refs) != len(hyps):
        raise ValueError(f"refs ({len(refs)}) and hyps ({len(hyps)}) must have one entry per utterance")
    total = sum(len(r) for r in refs)
    if total == 0:
        raise ValueError("phoneme_error_rate: references are empty")
    return sum(edit_distance(r, h) for r, h in zip(refs, hyps, strict=True)) / total


def _log_add(*xs: float) -> float:
    m = max(xs)
    return m if m == -np.inf else m + float(np.log(sum(np.exp(x - m) for x in xs)))


def ctc_prefix_beam_search(
    log_probs: np.ndarray, beam_width: int = 8, mask: np.ndarray | None = None, blank_id: int = 0
) -> list[int]:
    """The most probable label sequence under CTC, by prefix beam search (no language model).

    Each prefix keeps two log-probabilities: of the paths that end in a blank and of those that end in its last
    label. A label equal to the prefix's last one extends the prefix only after a blank; otherwise it merges into it.

    Args:
        log_probs: [t, k] per-step log-probabilities (log-softmax of the logits).
        beam_width: prefixes kept per step.
        mask: [t] True for real steps.
        blank_id: the blank class.

    Returns:
        The best prefix as a list of class ids.
    """
    lp = np.asarray(log_probs, np.float64)
    if mask is not None:
        lp = lp[np.asarray(mask, bool)]
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -np.inf)}
    for step in lp:
        nxt: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [-np.inf, -np.inf])
        for prefix, (p_blank, p_label) in beams.items():
            total = _log_add(p_blank, p_label)
            for c, p in enumerate(step.tolist()):
                if c == blank_id:
                    nxt[prefix][0] = _log_add(nxt[prefix][0], total + p)
                elif prefix and c == prefix[-1]:
                    nxt[prefix][1] = _log_add(nxt[prefix][1], p_label + p)  # the repeat merges
                    nxt[prefix + (c,)][1] = _log_add(nxt[prefix + (c,)][1], p_blank + p)  # a new label after a blank
                else:
                    nxt[prefix + (c,)][1] = _log_add(nxt[prefix + (c,)][1], total + p)
        ranked = sorted(nxt.items(), key=lambda kv: -_log_add(*kv[1]))[:beam_width]
        beams = {prefix: (pb, pl) for prefix, (pb, pl) in ranked}
    return list(max(beams.items(), key=lambda kv: _log_add(*kv[1]))[0])
