"""Shared driver of the replay launchers: resolve a condition, train it, run it awake and quiescent, score it.

A launcher config has base blocks (``hidden_dim``, ``cell``, ``task``, ``train``, ``quiescence``, ``eval``) and a
``conditions`` dict whose entries override any of them; ``only`` restricts a run to one condition.
"""

import json
import os
from typing import NamedTuple

import jax
import ml_collections
import numpy as np

from possm_jax.replay import metrics
from possm_jax.replay.paths import tmaze_routes, triangle_vertices
from possm_jax.replay.quiescence import Rollout, run_active, run_quiescence
from possm_jax.replay.tasks import Task, make_task
from possm_jax.replay.train import build_model, train

BLOCKS = ("hidden_dim", "cell", "task", "train", "quiescence", "eval")


class ConditionResult(NamedTuple):
    """Everything a launcher needs from one condition (arrays are numpy).

    Attributes:
        task: The task.
        history: Training history (``step``, ``loss``, ``seconds_per_step``).
        active: Waking rollout.
        true_states: True states of the waking rollout ``[b, t, k]``.
        quiescent: Quiescent rollout.
    """

    task: Task
    history: dict
    active: Rollout
    true_states: np.ndarray
    quiescent: Rollout


def condition_names(config: ml_collections.ConfigDict) -> list[str]:
    """Conditions to run: all of ``config.conditions`` or just ``config.only``.

    Raises:
        ValueError: If ``config.only`` names no condition.
    """
    names = list(config.conditions.keys())
    if config.only:
        if config.only not in names:
            raise ValueError(f"config.only={config.only!r} is not a condition; choose one of {names}.")
        return [config.only]
    return names


def resolve(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
    """The base blocks with condition ``name``'s overrides applied."""
    full = config.copy_and_resolve_references()
    out = ml_collections.ConfigDict({k: full[k] for k in BLOCKS})
    for block, value in full.conditions[name].items():
        if isinstance(value, ml_collections.ConfigDict):
            out[block].update(value)
        else:
            out[block] = value
    return out


def run_condition(cfg: ml_collections.ConfigDict, seed: int, desc: str) -> ConditionResult:
    """Trains a network for a resolved condition (``train.steps = 0`` leaves it untrained) and rolls it out."""
    task = make_task(cfg.task)
    key = jax.random.key(seed)
    kinit, ktrain, kactive, kquiet = jax.random.split(key, 4)
    model = build_model(task, cfg, int(jax.random.randint(kinit, (), 0, 2**30)))
    history = {"step": [], "loss": [], "seconds_per_step": float("nan")}
    if cfg.train.steps > 0:
        model, history = train(model, task, cfg.train, ktrain, desc=desc)
    active, states = run_active(model, task, kactive, batch=cfg.eval.active_batch, steps=cfg.train.seq_len)
    q = cfg.quiescence
    quiet = run_quiescence(
        model,
        task,
        kquiet,
        batch=q.batch,
        steps=q.steps,
        noise_mode=q.noise_mode,
        reference_sd=q.reference_sd,
        init=q.init,
        init_sd=q.init_sd,
    )
    to_np = lambda r: Rollout(*(np.asarray(a) for a in r))  # noqa: E731
    return ConditionResult(task, history, to_np(active), np.asarray(states), to_np(quiet))


def targets_for(task: Task) -> np.ndarray | None:
    """Landmarks whose first-hit times measure replay speed: triangle corners, T-maze ends; else ``None``."""
    if task.name == "triangle":
        return triangle_vertices()
    if task.name == "tmaze":
        routes = tmaze_routes()
        return np.stack([routes[0, 0], routes[0, -1], routes[1, -1]])
    return None


def score(res: ConditionResult, cfg: ml_collections.ConfigDict) -> dict[str, float]:
    """Per-condition metrics (see :mod:`possm_jax.replay.metrics`); distances in metres, or radians for angles."""
    task, burn = res.task, cfg.quiescence.burn_in
    k = res.true_states.shape[-1]
    awake = res.active.decoded.reshape(-1, k)
    quiet = res.quiescent.decoded[:, burn:].reshape(-1, k)
    err = res.active.decoded - res.true_states
    if task.period is not None:
        err = (err + np.pi) % (2 * np.pi) - np.pi
    hidden_dim = res.active.hidden.shape[-1]
    out = {
        "final_loss": res.history["loss"][-1] if res.history["loss"] else float("nan"),
        "seconds_per_step": res.history["seconds_per_step"],
        "decode_error": float(np.mean(np.linalg.norm(err, axis=-1))),
        "kl_quiescent_active": metrics.kde_kl(quiet, awake, num_mc=cfg.eval.num_mc, period=task.period),
        "pca_overlap": metrics.pca_overlap(
            res.active.hidden.reshape(-1, hidden_dim), res.quiescent.hidden[:, burn:].reshape(-1, hidden_dim)
        ),
        "step_distance": metrics.step_distance(res.quiescent.decoded[:, burn:], task.period),
        "replay_speed": metrics.step_distance(res.quiescent.decoded[:, burn:], task.period) / task.dt,
        "awake_step_distance": metrics.step_distance(res.active.decoded, task.period),
        **metrics.exploration(res.quiescent.decoded, task.extent, burn_in=burn),
    }
    if task.period is None:
        n = cfg.eval.wasserstein_points
        out["wasserstein_active"] = metrics.wasserstein_exact(quiet, awake, max_points=n)
        out["wasserstein_true"] = metrics.wasserstein_exact(quiet, res.true_states.reshape(-1, k), max_points=n)
        out["sliced_wasserstein_active"] = metrics.sliced_wasserstein(quiet, awake)
    landmarks = targets_for(task)
    if landmarks is not None:
        out["first_hit_time"] = metrics.first_hit_time(res.quiescent.decoded, landmarks, cfg.eval.hit_radius)
    return out


def write_json(path: str, payload: dict) -> None:
    """Writes ``payload`` as indented JSON, creating the directory."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(payload, f, indent=2)
