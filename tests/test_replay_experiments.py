"""End-to-end smoke runs of the replay launchers on tiny settings (configs, training, metrics JSON, figures)."""

import json

import pytest

from experiments import replay_dynamics, replay_reactivation
from experiments.configs import replay_dynamics as dynamics_config
from experiments.configs import replay_reactivation as reactivation_config


def _shrink(config, only):
    config.only = only
    config.hidden_dim = 16
    config.task.num_cells = 32
    config.train.update(steps=3, batch_size=4, seq_len=10, progress=False)
    config.quiescence.update(batch=6, steps=40, burn_in=10)
    config.eval.update(active_batch=6, num_mc=100, wasserstein_points=50)
    return config


def test_reactivation_smoke(tmp_path):
    config = _shrink(reactivation_config.get_config("quick"), "noisy_biased")
    payload = replay_reactivation.train_and_evaluate(config, str(tmp_path))
    scores = payload["conditions"]["noisy_biased"]
    assert {"kl_quiescent_active", "pca_overlap", "variance", "coverage", "wasserstein_active"} <= set(scores)
    assert payload["groups"]["spatial"]["rows"] == ["noisy_biased", "uniform"]
    assert json.loads((tmp_path / "metrics.json").read_text())["preset"] == "quick"
    for name in ("kl_spatial.png", "occupancy_spatial.png", "replay_spatial.png", "loss.png", "metrics.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_dynamics_smoke(tmp_path):
    config = _shrink(dynamics_config.get_config("quick"), "tmaze_leak_adapt_momentum")
    payload = replay_dynamics.train_and_evaluate(config, str(tmp_path))
    scores = payload["conditions"]["tmaze_leak_adapt_momentum"]
    assert scores["first_hit_time"] <= 40 and scores["replay_speed"] >= 0
    assert (tmp_path / "occupancy_tmaze.png").stat().st_size > 0


def test_unknown_preset_and_condition_raise(tmp_path):
    with pytest.raises(ValueError, match="preset"):
        reactivation_config.get_config("huge")
    config = _shrink(dynamics_config.get_config("quick"), "nope")
    with pytest.raises(ValueError, match="config.only"):
        replay_dynamics.train_and_evaluate(config, str(tmp_path))
