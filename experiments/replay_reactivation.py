r"""Offline reactivation (Krishna et al., ICLR 2024): train, run quiescence, compare decoded occupancies.

    python -m experiments.replay_reactivation \
        --config=experiments/configs/replay_reactivation.py:quick --workdir=runs/replay_reactivation

Writes ``metrics.json`` (per-condition metrics, KL matrices, references) and PNG figures to ``--workdir``.
"""

import os
import time

import numpy as np
from absl import logging
from ml_collections import ConfigDict

from experiments.launch import launch
from possm_jax.replay import metrics, plots
from possm_jax.replay.experiment import condition_names, resolve, run_condition, score, write_json


def kl_matrix(quiet: dict[str, np.ndarray], awake: dict[str, np.ndarray], cfg: ConfigDict, period) -> np.ndarray:
    """``KL(quiescent_row || active_col)`` for every pair of conditions ``[rows, cols]``."""
    return np.array(
        [[metrics.kde_kl(q, a, num_mc=cfg.eval.num_mc, period=period) for a in awake.values()] for q in quiet.values()]
    )


def uniform_reference(task, num: int, seed: int) -> np.ndarray:
    """Uniform samples ``[num, k]`` over the arena (or the circle)."""
    rng = np.random.default_rng(seed)
    k = 1 if task.period is not None else 2
    return rng.uniform(-task.extent, task.extent, (num, k))


def compare(config: ConfigDict, task_name: str, names: list[str], results: dict, workdir: str) -> dict:
    """KL matrix and references for the conditions of one task, plus its occupancy and trajectory figures."""
    task = results[names[0]].task
    k = 1 if task.period is not None else 2
    trained = [n for n in names if resolve(config, n).train.steps > 0]
    awake = {n: results[n].active.decoded.reshape(-1, k) for n in trained}
    quiet = {n: results[n].quiescent.decoded[:, resolve(config, n).quiescence.burn_in :].reshape(-1, k) for n in names}
    quiet["uniform"] = uniform_reference(task, 5000, config.seed)
    kl = kl_matrix(quiet, awake, config, task.period)
    if trained:
        plots.matrix(
            kl, list(quiet), trained, os.path.join(workdir, f"kl_{task_name}.png"), "KL(quiescent row || active col)"
        )
    if task.period is None:
        plots.trajectories(
            {n: results[n].quiescent.decoded for n in names},
            task.extent,
            os.path.join(workdir, f"replay_{task_name}.png"),
        )
        occupancy = {f"awake {n}": awake[n] for n in trained} | {f"quiet {n}": quiet[n] for n in names}
        plots.occupancy(occupancy, task.extent, os.path.join(workdir, f"occupancy_{task_name}.png"))
    else:
        angles = {f"awake {n}": awake[n][:, 0] for n in trained} | {f"quiet {n}": quiet[n][:, 0] for n in names}
        plots.angle_histograms(angles, os.path.join(workdir, f"occupancy_{task_name}.png"))
    return {"rows": list(quiet), "cols": trained, "kl": kl.tolist()}


def train_and_evaluate(config: ConfigDict, workdir: str) -> dict:
    """Runs every condition, then the cross-condition comparisons; returns the metrics written to JSON."""
    os.makedirs(workdir, exist_ok=True)
    start = time.time()
    results, scores, histories = {}, {}, {}
    for name in condition_names(config):
        cfg = resolve(config, name)
        res = run_condition(cfg, config.seed, desc=name)
        results[name], histories[name] = res, res.history
        scores[name] = score(res, cfg)
        logging.info("%s: %s", name, {k: round(v, 4) for k, v in scores[name].items()})

    payload = {"preset": config.preset, "conditions": scores, "groups": {}}
    groups = {}
    for name, res in results.items():
        groups.setdefault(res.task.name, []).append(name)
    for task_name, names in groups.items():
        payload["groups"][task_name] = compare(config, task_name, names, results, workdir)
    plots.losses({n: h for n, h in histories.items() if h["loss"]}, os.path.join(workdir, "loss.png"))
    plots.bars(
        scores,
        ["kl_quiescent_active", "variance", "coverage", "step_distance", "pca_overlap"],
        os.path.join(workdir, "metrics.png"),
    )
    payload["wall_seconds"] = time.time() - start
    write_json(os.path.join(workdir, "metrics.json"), payload)
    return payload


if __name__ == "__main__":
    launch(train_and_evaluate, "Replay reactivation config file.", "runs/replay_reactivation")
