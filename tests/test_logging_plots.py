"""Run logging (TensorBoard + scalar log + metrics JSON) and the PNG plots."""

import json
import os

import numpy as np
import pytest

from possm_jax.train.logging import RunLogger, read_scalars, write_metrics_json
from possm_jax.train.plots import plot_r2_per_session, plot_traces, plot_training_curves


def test_logger_writes_tensorboard_and_scalar_log(tmp_path):
    with RunLogger(tmp_path, total_steps=10) as log:
        for step in range(5):
            log.log(step, {"loss": 1.0 / (step + 1), "lr": np.float32(1e-3)}, prefix="train/")
            log.advance()
        log.log(4, {"r2": 0.8}, prefix="val/")
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(tmp_path))
    scalars = read_scalars(tmp_path)
    steps, loss = scalars["train/loss"]
    np.testing.assert_array_equal(steps, np.arange(5))
    np.testing.assert_allclose(loss, 1.0 / np.arange(1, 6))
    assert scalars["val/r2"][1].tolist() == [0.8]


def test_disabled_logger_writes_nothing(tmp_path):
    with RunLogger(tmp_path / "off", total_steps=3, enabled=False) as log:
        log.log(0, {"loss": 1.0})
        log.advance()
    assert not os.path.exists(tmp_path / "off")


def test_metrics_json_converts_arrays(tmp_path):
    path = tmp_path / "run" / "metrics.json"
    write_metrics_json(path, {"r2": {"s1": np.float64(0.9)}, "per_dim": np.array([0.8, 0.7]), "steps": np.int32(3)})
    assert json.loads(path.read_text()) == {"per_dim": [0.8, 0.7], "r2": {"s1": 0.9}, "steps": 3}
    assert os.listdir(path.parent) == ["metrics.json"]  # no temporary file left behind


def test_plots_write_pngs(tmp_path):
    t = np.linspace(0, 1, 50)
    trials = [(t, np.stack([np.sin(t), np.cos(t)], 1), np.stack([np.sin(t), np.cos(t)], 1) + 0.1) for _ in range(3)]
    plot_traces(trials, tmp_path / "traces.png", titles=["a", "b", "c"])
    plot_r2_per_session({"ds/s1": 0.9, "ds/s2": 0.8}, tmp_path / "r2.png")
    plot_training_curves({"loss": (np.arange(5), np.linspace(2, 1, 5))}, tmp_path / "curves.png")
    for name in ("traces.png", "r2.png", "curves.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="none of the requested scalars"):
        plot_training_curves({"loss": (np.arange(2), np.ones(2))}, keys=["val/r2"])
