"""Launchers: bad input gives one clear line (unknown config key with a suggestion, missing or corrupt checkpoint,
empty data directory, finetuning without a checkpoint), never a traceback."""

import os
import subprocess
import sys

import pytest

from experiments import evaluate as evaluate_launcher
from experiments import finetune as finetune_launcher
from experiments.configs import evaluate as evaluate_config
from experiments.configs import finetune as finetune_config
from experiments.launch import run_or_exit
from possm_jax.train.checkpoint import CheckpointError
from possm_jax.train.loop import train_and_evaluate
from tests.test_loop import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _one_line_error(fn, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run_or_exit(fn)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_unknown_config_key_suggests_the_right_one(tmp_path):
    cmd = [
        sys.executable, "-m", "experiments.pretrain",
        "--config=experiments/configs/pretrain.py:possm_small",
        "--config.train.batch_sise=8",
        f"--workdir={tmp_path}",
    ]  # fmt: skip
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode != 0
    assert "unknown config key 'train.batch_sise'; did you mean 'train.batch_size'?" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_empty_data_directory(tmp_path, capsys):
    config = tiny_config()
    config.data.dir = str(tmp_path / "empty")
    os.makedirs(config.data.dir)
    err = _one_line_error(lambda: train_and_evaluate(config, str(tmp_path / "run")), capsys)
    assert "empty" in err and "*.h5" in err


def test_missing_checkpoint(tmp_path, capsys):
    config = finetune_config.get_config("ui,quick")
    config.transfer.checkpoint = str(tmp_path / "nowhere")
    err = _one_line_error(lambda: finetune_launcher.finetune(config, str(tmp_path / "run")), capsys)
    assert "nowhere" in err and "does not exist" in err
    config.transfer.checkpoint = ""
    err = _one_line_error(lambda: finetune_launcher.finetune(config, str(tmp_path / "run")), capsys)
    assert "--config.transfer.checkpoint" in err


def test_corrupt_checkpoint(tmp_path, capsys):
    # A step directory with garbage in place of the orbax items.
    step = tmp_path / "checkpoints" / "7"
    for item in ("state", "config", "data"):
        os.makedirs(step / item)
        (step / item / "garbage").write_text("not a checkpoint")
    config = evaluate_config.get_config()
    config.checkpoint = str(tmp_path / "checkpoints")
    with pytest.raises(CheckpointError):
        evaluate_launcher.evaluate_checkpoint(config, str(tmp_path / "eval"))
    err = _one_line_error(lambda: evaluate_launcher.evaluate_checkpoint(config, str(tmp_path / "eval")), capsys)
    assert "checkpoint" in err
