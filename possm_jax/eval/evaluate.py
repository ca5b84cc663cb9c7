"""Evaluation of whole trials: every query of every valid/test trial, streamed causally, R² per session.

A trial of any length is one window that starts at the trial start with zero recurrent state; the windowed forward
equals running ``model.step`` chunk by chunk (tested in ``tests/test_streaming.py``), so it *is* the causal stream,
computed in one jitted call per batch. Batches are re-padded to power-of-two sizes so a whole evaluation compiles a
handful of times, not once per spike bucket.

Scored samples: queries inside the trial ``[start, end)``, inside the session's scoring intervals
(centre-out: ``movement_phases/reach_period``; random-target: ``movement_phases/random_period``; a recording with
neither scores whole trials), outside ``cursor_outlier_segments`` and with a finite behaviour value.

Two figures per session: *chunk-causal* (the reference: a query also sees the chunk containing it, up to one bin
after it) and *strictly causal* (``lag = bin_width``: only chunks that ended at least one bin before the query).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx

from data_pipeline.batch_layout import MODEL_INPUT_KEYS
from data_pipeline.buckets import next_pow2
from data_pipeline.pipeline import iterate_eval_trials
from data_pipeline.recording import Intervals, Recording
from data_pipeline.tokenize import QueryTable, TokenizerConfig
from possm_jax.eval.metrics import SessionR2, mean_sd
from possm_jax.lora import plain_model
from possm_jax.possm import POSSM

SCORING_INTERVALS = ("movement_phases/reach_period", "movement_phases/random_period")
"""Interval sets scored for regression, first non-empty one wins (centre-out: reach; random-target: random period)."""

EXCLUDED_INTERVALS = ("cursor_outlier_segments",)

Trace = tuple[np.ndarray, np.ndarray, np.ndarray]
"""``(time [n], pred [n, y], target [n, y])`` of one trial, in target units."""


def scoring_intervals(recording: Recording) -> Intervals | None:
    """The interval set scored in ``recording`` (see module docstring); None scores every query of a trial."""
    for name in SCORING_INTERVALS:
        found = recording.intervals.get(name)
        if found is not None and len(found) > 0:
            return found
    return None


def scored_mask(recording: Recording, times: np.ndarray, trial: tuple[float, float], finite: np.ndarray) -> np.ndarray:
    """Which of a trial's query ``times`` are scored.

    Args:
        recording: the session.
        times: [n] float64 absolute query times.
        trial: ``(start, end)`` of the trial.
        finite: [n] bool, the behaviour value is finite.

    Returns:
        [n] bool.
    """
    keep = (times >= trial[0]) & (times < trial[1]) & finite
    scoring = scoring_intervals(recording)
    if scoring is not None:
        keep &= scoring.contains(times)
    for name in EXCLUDED_INTERVALS:
        excluded = recording.intervals.get(name)
        if excluded is not None and len(excluded) > 0:
            keep &= ~excluded.contains(times)
    return keep


def pad_batch(batch: Mapping[str, np.ndarray], b: int, s: int, q: int) -> dict[str, np.ndarray]:
    """Pads the model inputs of a batch to ``b`` rows, ``s`` spikes and ``q`` queries (masks False, edge chunks).

    Padded spikes repeat the last chunk index (the batch layout's rule); padded rows have no real chunk, spike or
    query, so their outputs are ignored.
    """
    sizes = {"b": b, "s": s, "q": q}
    axes = {"spike_": "s", "query_": "q"}
    out = {}
    for key in MODEL_INPUT_KEYS:
        x = np.asarray(batch[key])
        widths = [(0, b - x.shape[0])]
        if x.ndim > 1:
            axis = next((a for p, a in axes.items() if key.startswith(p)), None)
            widths.append((0, sizes[axis] - x.shape[1]) if axis else (0, 0))
        mode = "edge" if key == "spike_chunk" and x.size else "constant"
        out[key] = np.pad(x, widths, mode=mode)
    return out


@functools.lru_cache(maxsize=8)
def _jitted_forward(graphdef: nnx.GraphDef) -> Callable[..., dict[str, jax.Array]]:
    """One jitted forward per model graph, so repeated evaluations (validation, test) reuse its compilations."""

    @jax.jit
    def forward(state: nnx.State, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        preds, _ = nnx.merge(graphdef, state)(batch)
        return preds

    return forward


def make_predict(model: POSSM) -> Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]:
    """A jitted ``predict(batch) -> {task: [b, q, y]}`` over the model's current weights (no dropout)."""
    graphdef, state = nnx.split(model)
    forward = _jitted_forward(graphdef)

    def predict(batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return jax.tree.map(np.asarray, forward(state, {k: batch[k] for k in MODEL_INPUT_KEYS}))

    return predict


def strictly_causal(model: POSSM) -> POSSM:
    """The same weights with ``lag = bin_width`` (queries see only chunks that ended one bin before them)."""
    config = dataclasses.replace(model.config, lag=model.config.bin_width)
    lagged = nnx.eval_shape(lambda: POSSM(config, model.num_units, model.num_sessions, rngs=nnx.Rngs(0)))
    nnx.update(lagged, nnx.state(model))
    return lagged


@dataclasses.dataclass
class SessionResult:
    """Evaluation of one session: R², number of scored samples and a few trial traces."""

    r2: float
    num_scored: int
    traces: list[Trace]


def evaluate_session(
    predict: Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]],
    recording: Recording,
    vocab_map: tuple[np.ndarray, int],
    cfg: TokenizerConfig,
    task: str,
    split: str = "valid",
    batch_size: int = 16,
    num_traces: int = 0,
) -> SessionResult:
    """Streams every ``split`` trial of one session through ``predict`` and scores it.

    Args:
        predict: from :func:`make_predict`.
        recording: the session.
        vocab_map: ``(unit_index, session_index)``.
        cfg: tokenizer config (the training one).
        task: the regression task name (a key of the model's ``config.tasks``).
        split: ``"valid"`` or ``"test"``.
        batch_size: trials per forward call.
        num_traces: how many of the first trials to return as traces for plotting.
    """
    name, field = cfg.target.split(".")
    queries = QueryTable.from_recording(recording, cfg)
    values = np.asarray(recording.behaviour[name].values[field], np.float64).reshape(len(queries.times), -1)
    finite = np.isfinite(values).all(axis=1)
    scale = np.asarray(cfg.target_std, np.float64)
    acc = SessionR2()
    traces: list[Trace] = []
    num_scored = 0
    for batch, trials in iterate_eval_trials(recording, vocab_map, cfg, split=split, batch_size=batch_size):
        b = batch["query_mask"].shape[0]
        padded = pad_batch(
            batch, batch_size, next_pow2(batch["spike_unit"].shape[1]), next_pow2(batch["query_mask"].shape[1])
        )
        pred = predict(padded)[task][:b, : batch["query_mask"].shape[1]]
        counts = batch["query_mask"].sum(axis=1)
        for i in range(b):
            start, end = float(trials.start[i]), float(trials.end[i])
            k0 = int(np.searchsorted(queries.times, start, side="left"))
            rows = slice(k0, k0 + int(counts[i]))  # the tokenizer's queries of this trial, in time order
            times = queries.times[rows]
            keep = scored_mask(recording, times, (start, end), finite[rows])
            p, y = pred[i, : counts[i]], batch["target"][i, : counts[i], : pred.shape[-1]]
            acc.update(recording.session_key, p, y, keep)
            num_scored += int(keep.sum())
            if len(traces) < num_traces:
                traces.append((times - start, p * scale, y * scale))
    r2 = acc.per_session().get(recording.session_key, float("nan"))
    return SessionResult(r2=r2, num_scored=num_scored, traces=traces)


def evaluate(
    model: POSSM,
    recordings: Sequence[Recording],
    vocab_maps: Sequence[tuple[np.ndarray, int]],
    cfg: TokenizerConfig,
    split: str = "valid",
    batch_size: int = 16,
    strict: bool = True,
    num_traces: int = 0,
) -> dict[str, Any]:
    """R² per session on whole ``split`` trials, chunk-causal and (if ``strict``) strictly causal.

    Returns:
        ``{"r2": {session: r2}, "r2_mean", "r2_sd", "num_scored": {session: n}, "traces": {session: [Trace]}}``
        plus ``"strict_r2"``, ``"strict_r2_mean"``, ``"strict_r2_sd"`` when ``strict``.
    """
    model = plain_model(model)  # a LoRA model is evaluated through its merged tables
    task = model.config.task_names[0]
    out: dict[str, Any] = {}
    variants = [("", model)] + ([("strict_", strictly_causal(model))] if strict else [])
    for prefix, variant in variants:
        predict = make_predict(variant)
        results = {
            rec.session_key: evaluate_session(
                predict, rec, vmap, cfg, task, split, batch_size, num_traces if not prefix else 0
            )
            for rec, vmap in zip(recordings, vocab_maps, strict=True)
        }
        r2 = {k: r.r2 for k, r in results.items()}
        mean, sd = mean_sd(r2)
        out |= {f"{prefix}r2": r2, f"{prefix}r2_mean": mean, f"{prefix}r2_sd": sd}
        if not prefix:
            out["num_scored"] = {k: r.num_scored for k, r in results.items()}
            out["traces"] = {k: r.traces for k, r in results.items()}
    return out
