"""train_and_evaluate end to end on the tiny synthetic corpus: learning, SIGTERM save, exact resume, NaN guard,
config mismatch on resume."""

import functools
import json
import os
import signal

import numpy as np
import pytest
from flax import nnx

from data_pipeline.pipeline import make_train_iterator
from experiments.configs import pretrain
from possm_jax.possm import POSSM
from possm_jax.train import corpus, loop
from possm_jax.train.checkpoint import Checkpointer, ConfigMismatchError
from possm_jax.train.logging import read_scalars
from possm_jax.train.loss import multitask_loss
from possm_jax.train.state import create_train_state
from possm_jax.train.step import NonFiniteLossError, make_train_step
from possm_jax.train.transfer import full_mask

STEPS = 6


def tiny_config(steps: int = STEPS):
    """possm_small shrunk for tests: 8 windows per batch (one per simulated device), every step logged."""
    c = pretrain.get_config("possm_small,quick")
    c.data.sessions = "all"
    c.model.dim, c.model.hidden = 32, 32
    c.train.batch_size, c.train.num_steps, c.train.log_every = 8, steps, 1
    c.train.pack_spikes = False  # one compilation
    c.eval.every, c.checkpoint.every = 1000, 3
    c.eval.final_split, c.eval.strict = "valid", False
    return c


def test_one_step_reduces_loss_on_a_fixed_batch():
    # Given possm_small (small dims), the reference LAMB and one batch of the tiny corpus,
    config = tiny_config()
    config.model.ffn_dropout = 0.0
    recs = corpus.select(corpus.load_corpus("", "tiny"), "all")
    units, sessions = corpus.build_vocabs(recs)
    tok = loop.tokenizer_config(config)
    data = make_train_iterator(recs, corpus.vocab_maps(recs, units, sessions), tok, 8, 0, prefetch=0)
    batch = next(data)
    cfg = loop.model_config(config)
    model = POSSM(cfg, len(units), len(sessions), rngs=nnx.Rngs(0))
    tx = loop.make_optimizer(config)
    graphdef, state = create_train_state(model, tx, full_mask(nnx.state(model, nnx.Param)))
    loss_fn = functools.partial(multitask_loss, task_names=cfg.task_names)
    step = make_train_step(graphdef, tx, loss_fn, donate=False)

    def loss_of(s):
        preds, _ = nnx.merge(graphdef, s.params, s.rest)(batch)
        return float(loss_fn(preds, batch)[0])

    # When one update is applied, then the loss on that batch goes down.
    before = loss_of(state)
    state, metrics = step(state, batch, np.zeros(2, np.uint32))
    assert bool(metrics["finite"])
    assert loss_of(state) < before


def _sigterm_after(calls: int, monkeypatch):
    """Wraps the loop's train step so SIGTERM arrives (in-process) right after its ``calls``-th call."""
    real = loop.make_train_step

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

    monkeypatch.setattr(loop, "make_train_step", patched)


def test_model_config_overrides_only_the_fields_that_are_set():
    config = pretrain.get_config("possm_small")
    base = loop.model_config(config)
    assert base.lag is None and base.dim == 64  # -1 / 0 keep the preset's chunk-causal decoder and width
    config.model.lag, config.model.hidden = 0.05, 128
    cfg = loop.model_config(config)
    assert cfg.lag == 0.05 and cfg.backbone.hidden == 128 and cfg.dim == base.dim


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
