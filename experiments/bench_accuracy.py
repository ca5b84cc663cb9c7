r"""Accuracy on the synthetic centre-out benchmark for POSSM and the baselines, same sessions, splits and scoring.

Per centre-out session of the ``demo`` corpus (single-session models): train POSSM-small, the POYO-style
transformer (both on the same 1 s token windows), GRU / S4D / Mamba on 50 ms counts (1 s windows of the same train
trials), as many of them as the mode's :data:`BUDGETS` entry names, and fit a Wiener filter (5 taps, ridge chosen on
validation trials). Every model is trained with the project's LAMB, schedules, loss and train step
(:func:`possm_jax.baselines.train_simple.fit`). Scoring (docs/training.md): R² of 2-D
cursor velocity over the test trials' reach periods, concatenated per session; each model decodes a trial causally
from its start: POSSM and the RNNs carry state from the trial start, POYO re-runs its last-1 s window for every chunk
(exactly as it would stream), the Wiener filter reads 5 bins of history. POSSM and POYO are scored at the behaviour's
100 Hz samples, binned models at bin ends.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple

import jax
import numpy as np
from flax import nnx

from data_pipeline.buckets import next_pow2
from data_pipeline.packing import pack_stream, trim_stream
from data_pipeline.pipeline import iterate_eval_trials, make_train_iterator
from data_pipeline.recording import Recording
from data_pipeline.synth import generate
from data_pipeline.synth import get_preset as get_synth_preset
from data_pipeline.tokenize import TokenizerConfig
from possm_jax import quantize
from possm_jax.baselines.binned_rnn import BinnedRNN, binned_batches, binned_trials
from possm_jax.baselines.poyo import POYO, POYOConfig
from possm_jax.baselines.train_simple import fit
from possm_jax.baselines.wiener import fit_wiener
from possm_jax.config import get_preset
from possm_jax.eval.metrics import r2_score
from possm_jax.possm import POSSM
from possm_jax.train.step import LossFn

EVAL_INTERVAL = "movement_phases/reach_period"


class Budget(NamedTuple):
    """Training budget of one accuracy mode: which models train for how many steps (all at ``batch_size``)."""

    sessions: int
    batch_size: int
    token_steps: dict[str, int]  # token model -> steps; a POYO step costs ~3x a POSSM step (one padded window a row)
    binned_steps: dict[str, int]  # binned model -> steps; S4D / Mamba steps cost 20-40x a binned GRU's


BUDGETS = {
    "full": Budget(1, 64, {"possm_small": 300, "poyo_d64": 200}, {"gru": 600, "s4d": 200, "mamba": 120}),
    "quick": Budget(1, 32, {"possm_small": 120}, {"gru": 300}),
    "smoke": Budget(1, 8, {"possm_small": 3, "poyo_d64": 3}, {"gru": 5}),
}
BINNED_MODELS = {"gru": "possm_small", "s4d": "possm_small_s4d", "mamba": "possm_small_mamba"}
"""Binned baseline -> the POSSM preset whose backbone it uses."""


@functools.cache
def centre_out_sessions(count: int, seed: int = 0) -> tuple[Recording, ...]:
    """The first ``count`` non-held-out centre-out sessions of the synthetic ``demo`` corpus (generated once, in
    memory, and shared by every section of the suite: treat them as read-only)."""
    chosen = (rec for spec, rec in generate(get_synth_preset("demo"), seed) if spec.task == "center_out")
    return tuple(itertools.islice(chosen, count))


def _forward(model: nnx.Module) -> Callable:
    graphdef, params = nnx.split(model)
    return jax.jit(lambda batch: nnx.merge(graphdef, params)(batch)[0])


def _score(rows: list[tuple[np.ndarray, np.ndarray]]) -> float:
    pred, target = (np.concatenate(x) for x in zip(*rows, strict=True))
    return r2_score(pred, target)


def eval_token_model(model: nnx.Module, rec: Recording, cfg: TokenizerConfig, windowed: bool) -> float:
    """Test R² (reach period) of POSSM (``windowed=False``: whole trials) or POYO (``True``: last 1 s per chunk)."""
    forward, reach, scored = _forward(model), rec.intervals[EVAL_INTERVAL], []
    vocab_map = (np.arange(1, len(rec.unit_ids) + 1, dtype=np.int32), 1)
    name = next(iter(model.config.tasks))
    for batch, trials in iterate_eval_trials(rec, vocab_map, cfg, split="test", batch_size=8):
        t_abs = trials.start[:, None] + batch["query_chunk"] * cfg.bin_width + batch["query_time"]
        keep = batch["query_mask"] & reach.contains(t_abs)
        if windowed:
            pred = _poyo_trial_predictions(forward, batch, cfg.window_chunks, name)
        else:
            pred = np.asarray(forward(batch)[name])
        scored.append((pred[keep], batch["target"][..., :2][keep]))
    return _score(scored)


def _poyo_trial_predictions(forward: Callable, batch: dict, window_chunks: int, task: str) -> np.ndarray:
    """For every (trial, chunk), POYO on that chunk's last-1 s window; returns [b, q, y] predictions."""
    windows, where = [], []
    for row in range(batch["session"].shape[0]):
        for j in np.unique(batch["query_chunk"][row][batch["query_mask"][row]]):
            pos = batch["spike_chunk"][row] - (j - window_chunks + 1)
            sel = batch["spike_mask"][row] & (pos >= 0) & (batch["spike_chunk"][row] <= j)
            qsel = batch["query_mask"][row] & (batch["query_chunk"][row] == j)
            windows.append((pos[sel], batch["spike_unit"][row][sel], batch["spike_time"][row][sel], row, qsel))
            where.append((row, qsel))
    pred = np.zeros((*batch["query_time"].shape, 2), np.float32)
    s = next_pow2(max(len(w[0]) for w in windows))
    q = batch["query_time"].shape[1]
    for first in range(0, len(windows), 32):
        group = windows[first : first + 32]
        b = len(group)
        win = {
            "spike_unit": np.zeros((32, s), np.int32),
            "spike_chunk": np.full((32, s), window_chunks - 1, np.int32),
            "spike_time": np.zeros((32, s), np.float32),
            "spike_value": np.ones((32, s), np.float32),
            "spike_mask": np.zeros((32, s), bool),
            "chunk_mask": np.ones((32, window_chunks), bool),
            "session": np.ones(32, np.int32),
            "query_chunk": np.full((32, q), window_chunks - 1, np.int32),
            "query_time": np.zeros((32, q), np.float32),
            "query_task": np.zeros((32, q), np.int32),
            "query_mask": np.zeros((32, q), bool),
        }
        for i, (pos, unit, t, row, qsel) in enumerate(group):
            n = len(pos)
            win["spike_chunk"][i, :n], win["spike_unit"][i, :n], win["spike_time"][i, :n] = pos, unit, t
            win["spike_mask"][i, :n] = True
            win["session"][i] = batch["session"][row]
            win["query_time"][i] = batch["query_time"][row]
            win["query_mask"][i] = qsel
        out = np.asarray(forward(win)[task])
        for i in range(b):
            row, qsel = group[i][3], group[i][4]
            pred[row, qsel] = out[i, qsel]
    return pred


def eval_binned(model: BinnedRNN, segments: list, reach) -> float:
    """Test R² of a binned RNN: every trial decoded from its start (zero-padded at the end to one length)."""
    longest = max(len(seg.times) for seg, _ in segments)
    counts = np.zeros((len(segments), longest, segments[0][0].counts.shape[1]), np.float32)
    for i, (seg, _) in enumerate(segments):
        counts[i, : len(seg.times)] = seg.counts
    pred = np.asarray(next(iter(_forward(model)({"counts": counts}).values())))
    return _score([(pred[i, : len(s.times)][m], s.target[m]) for i, (s, m) in enumerate(_masks(segments, reach))])


def train_binned(
    kind: str, train: list, num_units: int, window_bins: int, steps: int, batch_size: int, seed: int = 0
) -> tuple[BinnedRNN, dict]:
    """A binned baseline (``kind``, a key of :data:`BINNED_MODELS`) trained for ``steps`` updates on random
    ``window_bins`` windows of ``train`` (from ``binned_trials``); returns the model and :func:`fit`'s info."""
    batches = binned_batches(train, window_bins, batch_size, seed)
    return train_binned_on(kind, batches, num_units, {"cursor_velocity_2d": 2}, steps, batch_size, seed)


def train_binned_on(
    kind: str,
    batches: Iterator[dict[str, np.ndarray]],
    num_units: int,
    tasks: dict[str, int],
    steps: int,
    batch_size: int,
    seed: int = 0,
    loss_fn: LossFn | None = None,
    lr_scale: float = 1.0,
) -> tuple[BinnedRNN, dict]:
    """A binned baseline (``kind``, a key of :data:`BINNED_MODELS`) with readouts ``tasks`` (name -> width) trained
    on ``batches`` for ``steps`` updates with ``loss_fn`` (:func:`fit`'s default: MSE) and the peak learning rate
    times ``lr_scale``; returns model and info."""
    backbone = get_preset(BINNED_MODELS[kind]).backbone
    model = BinnedRNN(num_units, backbone, tasks, rngs=nnx.Rngs(seed))
    info = fit(
        model,
        batches,
        steps,
        task_names=tuple(tasks),
        batch_size=batch_size,
        seed=seed,
        loss_fn=loss_fn,
        lr_scale=lr_scale,
    )
    return model, info


def _masks(segments: list, reach) -> list:
    return [(seg, reach.contains(seg.times - 1e-9)) for seg, _ in segments]


def run_session(rec: Recording, mode: str, log: Callable[[str], None] = print, seed: int = 0) -> dict[str, dict]:
    """Trains and scores every model on one session; {model: {"r2", "train_s", "final_loss"}}."""
    budget = BUDGETS[mode]
    batch_size = budget.batch_size
    cfg = TokenizerConfig()
    u = len(rec.unit_ids)
    vocab_map = (np.arange(1, u + 1, dtype=np.int32), 1)
    reach = rec.intervals[EVAL_INTERVAL]
    results = {}

    def report(name: str, score: Callable[[], float], info: dict) -> None:
        t = time.perf_counter()
        r2 = score()
        row = {"r2": r2, "train_s": info.get("seconds", 0.0), "eval_s": time.perf_counter() - t}
        results[name] = {**row, "final_loss": info.get("final_loss")}
        log(f"  {rec.session_id} {name:<12} R2 {r2:.3f}  (train {row['train_s']:.0f} s, eval {row['eval_s']:.0f} s)")

    token_models = {
        "possm_small": lambda: POSSM(get_preset("possm_small"), u + 1, 2, rngs=nnx.Rngs(seed)),
        "poyo_d64": lambda: POYO(POYOConfig(dim=64), u + 1, 2, rngs=nnx.Rngs(seed)),
    }
    for name, steps in budget.token_steps.items():
        model = token_models[name]()
        batches = make_train_iterator([rec], [vocab_map], cfg, batch_size, seed, prefetch=0)
        # POSSM packs tokens as the training loop does; POYO reads one window per row, so only the padding is cut.
        batches = pack_stream(batches) if name.startswith("possm") else trim_stream(batches)
        info = fit(model, batches, steps, task_names=model.config.task_names, batch_size=batch_size, seed=seed)
        info["final_loss"] = float(np.mean(info["loss"][-5:]))
        report(name, functools.partial(eval_token_model, model, rec, cfg, windowed=name.startswith("poyo")), info)
        if name == "possm_small":  # accuracy cost of weight-only quantisation, same trained model and test data
            results[name]["weights"] = quantize.r2_costs(model, lambda m: eval_token_model(m, rec, cfg, windowed=False))

    train, valid, test = (binned_trials(rec, split, cfg) for split in ("train", "valid", "test"))
    for kind, steps in budget.binned_steps.items():
        model, info = train_binned(kind, train, u, cfg.window_chunks, steps, batch_size, seed)
        info["final_loss"] = float(np.mean(info["loss"][-5:]))
        report(f"binned_{kind}", functools.partial(eval_binned, model, test, reach), info)

    start = time.perf_counter()
    filt, _ = fit_wiener(
        [(s.counts.astype(np.float64), s.target) for s, _ in train],
        [(s.counts.astype(np.float64), s.target) for s, _ in valid],
        taps=5,
        train_weight=[w for _, w in train],
        valid_mask=[m for _, m in _masks(valid, reach)],
    )
    fitted = {"seconds": time.perf_counter() - start}
    report(
        "wiener",
        lambda: _score([(filt.predict(s.counts.astype(np.float64))[m], s.target[m]) for s, m in _masks(test, reach)]),
        fitted,
    )
    return results


def run(mode: str, log: Callable[[str], None] = print) -> dict:
    """The accuracy suite: per-session results and each model's mean ± sd R² over sessions."""
    if mode not in BUDGETS:
        raise ValueError(f"mode: expected one of {sorted(BUDGETS)}, got {mode!r}")
    budget = BUDGETS[mode]
    per_session = {}
    for rec in centre_out_sessions(budget.sessions):
        per_session[rec.session_key] = run_session(rec, mode, log)
    names = list(next(iter(per_session.values())))
    summary = {}
    for name in names:
        r2 = np.array([s[name]["r2"] for s in per_session.values()])
        summary[name] = {"r2_mean": float(r2.mean()), "r2_sd": float(r2.std())}
    return {"budget": budget._asdict(), "per_session": per_session, "summary": summary}
