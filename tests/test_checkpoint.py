"""Checkpoints: round trip (state, data position, config), keep-N + best, 8 -> 1 devices, errors, SIGTERM, damaged
steps skipped for the newest readable one."""

import functools
import os
import shutil
import signal

import grain
import jax
import numpy as np
import pytest
from flax import nnx

from possm_jax.train.checkpoint import (
    Checkpointer,
    CheckpointError,
    CheckpointWarning,
    ConfigMismatchError,
    PreemptionFlag,
    abstract_state,
    config_differences,
)
from possm_jax.train.loss import multitask_loss
from possm_jax.train.optim import lamb
from possm_jax.train.sharding import make_mesh, replicate
from possm_jax.train.state import create_train_state
from possm_jax.train.step import make_train_step

LOSS = functools.partial(multitask_loss, task_names=["vel"])

CONFIG = {"model": {"dim": 8, "tasks": {"vel": 2}}, "train": {"batch": 4}}


class Tiny(nnx.Module):
    def __init__(self, rngs):
        self.emb = nnx.Embed(5, 3, rngs=rngs)
        self.lin = nnx.Linear(3, 2, rngs=rngs)


class TinyRegressor(Tiny):
    def __call__(self, batch, *, rngs=None):
        return {"vel": self.lin(self.emb(batch["unit"]))}, None


def _setup_step(seed=0):
    tx = lamb(1e-2)
    graphdef, state = create_train_state(TinyRegressor(nnx.Rngs(seed)), tx)
    return graphdef, tx, state


def _step_batch(seed):
    rng = np.random.default_rng(seed)
    return {
        "unit": rng.integers(0, 5, size=(4, 3)).astype(np.int32),
        "query_task": np.zeros((4, 3), np.int32),
        "target": rng.normal(size=(4, 3, 2)).astype(np.float32),
        "weight": np.ones((4, 3), np.float32),
    }


def _state(seed=0):
    _, state = create_train_state(Tiny(nnx.Rngs(seed)), lamb(1e-3))
    return state


def _assert_trees_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _iterator():
    return grain.MapDataset.range(20).shuffle(seed=3).to_iter_dataset().__iter__()


def test_round_trip_8_devices_to_1(tmp_path):
    mesh8, mesh1 = make_mesh(8), make_mesh(1)
    state = replicate(_state(), mesh8)
    it = _iterator()
    seen = [next(it) for _ in range(3)]
    ckpt = Checkpointer(tmp_path / "ckpt")
    ckpt.save(7, state, CONFIG, data_iterator=it)
    ckpt.wait()
    expected_next = [next(it) for _ in range(4)]

    fresh_it = _iterator()
    reader = Checkpointer(tmp_path / "ckpt", read_only=True)
    restored = reader.restore(abstract_state(_state(seed=1), mesh1), config=CONFIG, data_iterator=fresh_it)
    _assert_trees_equal(restored, state)
    assert all(leaf.sharding.mesh.size == 1 for leaf in jax.tree.leaves(restored))
    assert [next(fresh_it) for _ in range(4)] == expected_next and seen != expected_next[:3]
    assert reader.restore_config() == CONFIG
    ckpt.close()


def test_keep_n_and_best_by_validation(tmp_path):
    ckpt = Checkpointer(tmp_path, keep=2, best_metric="val_r2", async_save=False)
    state = _state()
    r2 = {1: 0.5, 2: 0.9, 3: 0.6, 4: 0.7, 5: 0.65}
    for step, value in r2.items():
        ckpt.save(step, state, CONFIG, metrics={"val_r2": value})
    assert ckpt.all_steps() == [2, 4, 5]  # newest two + the best
    assert ckpt.best_step() == 2
    with pytest.raises(ValueError, match="missing best_metric 'val_r2'"):
        ckpt.save(6, state, CONFIG, metrics={"loss": 1.0})
    ckpt.close()


def test_missing_and_empty_directories(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        Checkpointer(tmp_path / "nope", read_only=True)
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        Checkpointer(tmp_path).restore(_state())
    ckpt = Checkpointer(tmp_path, async_save=False)
    ckpt.save(1, _state(), CONFIG)
    with pytest.raises(CheckpointError, match="no checkpoint for step 5 .*saved steps: \\[1\\]"):
        ckpt.restore(_state(), step=5)


def test_corrupt_checkpoint_names_step_and_fix(tmp_path):
    ckpt = Checkpointer(tmp_path, async_save=False)
    ckpt.save(3, _state(), CONFIG)
    state_dir = os.path.join(tmp_path, "3", "state")
    for entry in os.listdir(state_dir):  # simulate a partially deleted / truncated write
        path = os.path.join(state_dir, entry)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    with pytest.raises(CheckpointError, match="step 3 .*could not be read.*Delete"):
        Checkpointer(tmp_path, read_only=True).restore(_state())


def test_config_mismatch_names_keys(tmp_path):
    ckpt = Checkpointer(tmp_path, async_save=False)
    ckpt.save(1, _state(), CONFIG)
    other = {"model": {"dim": 16, "tasks": {"vel": 2, "acc": 2}}, "train": {"batch": 8}}
    with pytest.raises(ConfigMismatchError, match=r"\['model.dim', 'model.tasks.acc'\] differ"):
        ckpt.restore(_state(), config=other)
    # Training hyper-parameters may change between runs; only the compared sections matter.
    ckpt.restore(_state(), config={**CONFIG, "train": {"batch": 8}})
    assert config_differences(CONFIG, other, ()) == ["model.dim", "model.tasks.acc", "train.batch"]


def test_sigterm_sets_flag_and_restores_handler():
    before = signal.getsignal(signal.SIGTERM)
    with PreemptionFlag() as flag:
        assert not flag.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert flag.requested and flag.signal_name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) == before


def test_best_survives_reopening(tmp_path):
    ckpt = Checkpointer(tmp_path, keep=1, best_metric="val_loss", best_mode="min", async_save=False)
    for step, value in {1: 0.3, 2: 0.1, 3: 0.2}.items():
        ckpt.save(step, _state(), CONFIG, metrics={"val_loss": value})
    ckpt.close()
    reopened = Checkpointer(tmp_path, keep=1, best_metric="val_loss", best_mode="min", async_save=False)
    assert reopened.best_step() == 2
    reopened.save(4, _state(), CONFIG, metrics={"val_loss": 0.4})
    assert reopened.all_steps() == [2, 4]


def test_resume_gives_identical_losses(tmp_path):
    """Run 6 steps; separately run 3, save, restore into a fresh state, run 3 more: same losses, same params."""
    graphdef, tx, state = _setup_step()
    step_fn = make_train_step(graphdef, tx, LOSS, donate=False)
    batches = [_step_batch(seed) for seed in range(6)]
    rng = jax.random.key(5)
    straight = []
    s = state
    for batch in batches:
        s, m = step_fn(s, batch, rng)
        straight.append(float(m["loss"]))

    s = state
    for batch in batches[:3]:
        s, _ = step_fn(s, batch, rng)
    ckpt = Checkpointer(tmp_path, async_save=False)
    ckpt.save(int(s.step), s, CONFIG)
    _, _, fresh = _setup_step(seed=9)
    s = ckpt.restore(fresh)
    resumed = []
    for batch in batches[3:]:
        s, m = step_fn(s, batch, rng)
        resumed.append(float(m["loss"]))
    assert resumed == straight[3:]


def _damage(path, how):
    """Deletes or truncates the file ``path``, or the largest file under the directory ``path`` (state: array data)."""
    files = [os.path.join(root, name) for root, _, names in os.walk(path) for name in names]
    victim = max(files, key=os.path.getsize) if files else path
    if how == "delete":
        os.remove(victim)
    else:
        with open(victim, "r+b") as f:
            f.truncate(os.path.getsize(victim) // 2)


def _three_steps(directory):
    """Steps 1..3, step k holding ``_state(seed=k)``, config ``{"step": k}`` and the iterator after k items."""
    ckpt = Checkpointer(directory, async_save=False)
    it = _iterator()
    for step in (1, 2, 3):
        next(it)
        ckpt.save(step, _state(seed=step), {"model": {"step": step}}, data_iterator=it)
    ckpt.close()


@pytest.mark.parametrize("how", ["delete", "truncate"])
def test_damaged_newest_step_falls_back_to_previous(tmp_path, how):
    # Given steps 1..3 whose newest has a state file deleted or truncated,
    _three_steps(tmp_path)
    _damage(tmp_path / "3" / "state", how)
    # when a run resumes from the newest step,
    ckpt = Checkpointer(tmp_path, async_save=False)
    it = _iterator()
    with pytest.warns(CheckpointWarning, match=r"step 3 .* is damaged, using step 2 instead; moved it to .*3\.damaged"):
        restored = ckpt.restore(_state(seed=9), data_iterator=it)
    # then it gets step 2's state and data position (two items consumed),
    _assert_trees_equal(restored, _state(seed=2))
    assert [next(it) for _ in range(3)] == list(_iterator())[2:5]
    # and step 3 is set aside, so the resumed run saves its own step 3.
    assert ckpt.all_steps() == [1, 2] and os.path.isdir(tmp_path / "3.damaged")
    ckpt.save(3, _state(seed=3), {"model": {"step": 3}})
    assert ckpt.all_steps() == [1, 2, 3]
    ckpt.close()


def test_damaged_steps_read_only_and_none_readable(tmp_path):
    _three_steps(tmp_path)
    # A truncated config: read-only readers skip the step without touching the directory.
    _damage(tmp_path / "3" / "config" / "metadata", "truncate")
    reader = Checkpointer(tmp_path, read_only=True)
    with pytest.warns(CheckpointWarning, match=r"step 3 .* using step 2 instead\. checkpoint step 3"):
        assert reader.restore_config() == {"model": {"step": 2}}
    assert reader.all_steps() == [1, 2, 3] and not os.path.exists(tmp_path / "3.damaged")
    # An explicit damaged step is an error naming it, not a fall-back.
    with pytest.raises(CheckpointError, match=r"step 3 \(.*3\) could not be read.*Restore another step"):
        reader.restore_config(step=3)
    # No readable step: one clear error, nothing renamed.
    for step in (1, 2, 3):
        _damage(tmp_path / str(step) / "state", "delete")
    with pytest.raises(CheckpointError, match=r"no checkpoint in .* can be read \(steps \[1, 2, 3\]\).*start over"):
        Checkpointer(tmp_path).restore(_state())
    assert sorted(os.listdir(tmp_path)) == ["1", "2", "3"]
