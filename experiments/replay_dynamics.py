r"""Leakage, adaptation and momentum in replay (Casco-Rodriguez et al. 2026): fidelity, speed, exploration.

    python -m experiments.replay_dynamics \
        --config=experiments/configs/replay_dynamics.py:quick --workdir=runs/replay_dynamics

For each task and variant: trains the network, runs quiescence and scores replay against waking activity
(Wasserstein distance, KL, replay speed, first-hit time of landmarks, exploration). Writes ``metrics.json`` and
PNG figures to ``--workdir``.
"""

import os
import time

from absl import logging
from ml_collections import ConfigDict

from experiments.launch import launch
from possm_jax.replay import plots
from possm_jax.replay.experiment import condition_names, resolve, run_condition, score, write_json

BAR_KEYS = ["wasserstein_active", "kl_quiescent_active", "replay_speed", "first_hit_time", "variance", "coverage"]


def train_and_evaluate(config: ConfigDict, workdir: str) -> dict:
    """Runs every condition and writes per-task figures; returns the metrics written to JSON."""
    os.makedirs(workdir, exist_ok=True)
    start = time.time()
    scores, by_task = {}, {}
    for name in condition_names(config):
        cfg = resolve(config, name)
        res = run_condition(cfg, config.seed, desc=name)
        scores[name] = score(res, cfg)
        logging.info("%s: %s", name, {k: round(v, 4) for k, v in scores[name].items()})
        by_task.setdefault(cfg.task.name, {})[name] = res
    for task_name, results in by_task.items():
        extent = next(iter(results.values())).task.extent
        plots.trajectories(
            {n: r.quiescent.decoded for n, r in results.items()},
            extent,
            os.path.join(workdir, f"replay_{task_name}.png"),
        )
        burn = config.quiescence.burn_in
        occupancy = {"awake (true)": next(iter(results.values())).true_states.reshape(-1, 2)}
        occupancy |= {n: r.quiescent.decoded[:, burn:].reshape(-1, 2) for n, r in results.items()}
        plots.occupancy(occupancy, extent, os.path.join(workdir, f"occupancy_{task_name}.png"))
        plots.bars({n: scores[n] for n in results}, BAR_KEYS, os.path.join(workdir, f"metrics_{task_name}.png"))
        plots.losses({n: r.history for n, r in results.items()}, os.path.join(workdir, f"loss_{task_name}.png"))
    payload = {"preset": config.preset, "conditions": scores, "wall_seconds": time.time() - start}
    write_json(os.path.join(workdir, "metrics.json"), payload)
    return payload


if __name__ == "__main__":
    launch(train_and_evaluate, "Replay dynamics config file.", "runs/replay_dynamics")
