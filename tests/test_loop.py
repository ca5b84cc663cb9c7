"""setup() and train_and_evaluate end to end on the tiny synthetic corpus: learning, every model field in the config,
SIGTERM save, exact resume, NaN guard, config mismatch on resume."""

import dataclasses
import json
import os
import signal

import numpy as np
import pytest

from experiments.configs import pretrain
from experiments.configs.common import apply_overrides
from possm_jax.backbones.registry import BackboneConfig
from possm_jax.config import POSSMConfig, get_preset
from possm_jax.train import loop, model_io, run_config
from possm_jax.train import setup as setup_lib
from possm_jax.train.checkpoint import Checkpointer, ConfigMismatchError
from possm_jax.train.logging import read_scalars
from possm_jax.train.loss import multitask_loss
from possm_jax.train.step import NonFiniteLossError

STEPS = 6


def tiny_config(steps: int = STEPS):
    """possm_small shrunk for tests: 8 windows per batch (one per simulated device), every step logged."""
    c = pretrain.get_config("possm_small,quick")
    c.data.sessions = "all"
    c.model.dim, c.model.backbone.hidden = 32, 32
    c.train.batch_size, c.train.num_steps, c.train.log_every = 8, steps, 1
    c.train.pack_spikes = False  # one compilation
    c.eval.every, c.checkpoint.every = 1000, 3
    c.eval.final_split, c.eval.strict = "valid", False
    return c


def test_one_step_reduces_loss_on_a_fixed_batch(tmp_path):
    # Given the run that setup() builds for possm_small (small dims) on the tiny corpus, and one of its batches,
    config = tiny_config()
    config.model.ffn_dropout = 0.0
    run = setup_lib.setup(config, str(tmp_path))
    batch = loop._next_batch(run, 0)

    def loss_of(s):
        preds, _ = run.model(s)(batch)
        return float(multitask_loss(preds, batch, task_names=run.model_config.task_names)[0])

    # When one update is applied, then the loss on that batch goes down.
    before = loss_of(run.state)
    state, metrics = run.step_fn(run.state, batch, run.rng)
    assert bool(metrics["finite"])
    assert loss_of(state) < before
    run.checkpointer.close()


def _sigterm_after(calls: int, monkeypatch):
    """Wraps the loop's train step so SIGTERM arrives (in-process) right after its ``calls``-th call."""
    real = setup_lib.make_train_step

    def patched(*args, **kwargs):
        step_fn = real(*args, **kwargs)
        count = [0]

        def wrapped(*a):
            out = step_fn(*a)
            count[0] += 1
            if count[0] == calls:
                os.kill(os.getpid(), signal.SIGTERM)
            return out

        return wrapped

    monkeypatch.setattr(setup_lib, "make_train_step", patched)


def test_every_model_field_is_in_the_config_and_round_trips_through_a_checkpoint(tmp_path):
    # Given the pretrain config of a preset, its model section holds every POSSMConfig field but the chunk length,
    config = pretrain.get_config("possm_small")
    preset = get_preset("possm_small")
    fields = {f.name for f in dataclasses.fields(POSSMConfig)} - {"bin_width"}
    assert set(config.model.keys()) == fields
    assert set(config.model.backbone.keys()) == {f.name for f in dataclasses.fields(BackboneConfig)}
    assert run_config.model_config(config) == preset  # nothing set: exactly the preset
    # and overrides of any field reach the model config (the chunk length comes from the tokenizer),
    config.model.lag, config.model.backbone.hidden, config.tokenizer.bin_width = 0.05, 128, 0.02
    cfg = run_config.model_config(config)
    assert (cfg.lag, cfg.backbone.hidden, cfg.bin_width, cfg.dim) == (0.05, 128, 0.02, preset.dim)
    # When a run trains with num_latents=4, depth=1 given as command-line style overrides, its parameters split
    # over 2 devices (FSDP on a 4 x 2 mesh),
    overrides = {"model.num_latents": 4, "model.depth": 1, "train.model_shards": 2}
    small = apply_overrides(tiny_config(2), overrides)
    loop.train_and_evaluate(small, str(tmp_path))
    # then the checkpoint loads on one device, its model has them, and the saved config prints them.
    model, _, _, saved, _ = model_io.load_checkpoint(str(tmp_path / "checkpoints"))
    assert (model.config.num_latents, model.config.depth) == (4, 1)
    assert (saved["model"]["num_latents"], saved["model"]["depth"]) == (4, 1)


def test_sigterm_saves_resume_is_exact_nan_guard_keeps_checkpoint(tmp_path, monkeypatch):
    # Given an uninterrupted run of STEPS steps,
    full = loop.train_and_evaluate(tiny_config(), str(tmp_path / "full"))
    assert full["step"] == STEPS
    assert os.path.exists(tmp_path / "full" / "metrics.json")
    assert os.path.exists(tmp_path / "full" / "training_curves.png")

    # When a second run gets SIGTERM after step 2, it saves step 2 and returns,
    workdir = str(tmp_path / "resumed")
    with monkeypatch.context() as m:
        _sigterm_after(2, m)
        out = loop.train_and_evaluate(tiny_config(), workdir)
    assert out == {"preempted": True, "step": 2}
    assert Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True).latest_step() == 2

    # and, restarted, it continues with exactly the losses of the uninterrupted run.
    loop.train_and_evaluate(tiny_config(), workdir)
    want = read_scalars(tmp_path / "full" / "tb")["train/loss"]
    got = read_scalars(os.path.join(workdir, "tb"))["train/loss"]
    np.testing.assert_array_equal(got[0], np.arange(1, STEPS + 1))
    np.testing.assert_array_equal(got[1][2:], want[1][2:])

    # Resuming with a different model config is refused, naming the key.
    changed = tiny_config()
    changed.model.dim = 48
    with pytest.raises(ConfigMismatchError, match="model.dim"):
        loop.train_and_evaluate(changed, workdir)

    # A NaN batch stops the run naming the step; the last good checkpoint (STEPS) survives untouched.
    real_shard = loop.shard_batch

    def poisoned(batch, mesh):
        return real_shard({**batch, "target": np.full_like(batch["target"], np.nan)}, mesh)

    monkeypatch.setattr(loop, "shard_batch", poisoned)
    longer = tiny_config(STEPS + 3)
    with pytest.raises(NonFiniteLossError, match=rf"step {STEPS}\b.*step {STEPS}\) is kept"):
        loop.train_and_evaluate(longer, workdir)
    assert Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True).latest_step() == STEPS
    with open(os.path.join(workdir, "metrics.json")) as f:
        assert json.load(f)["step"] == STEPS
