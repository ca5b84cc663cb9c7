"""LoRA transfer: merged tables and forward vs numpy, a frozen base, adapter-only checkpoints tied to their base."""

import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from possm_jax.config import get_preset
from possm_jax.lora import BaseMismatchError, LoRAPOSSM, adapter_count, merge_lora, params_digest
from possm_jax.possm import POSSM
from possm_jax.train import loop, model_io, transfer
from tests.possm_batches import random_batch
from tests.test_finetune import SESSIONS, _flat
from tests.test_loop import tiny_config


def test_merged_model_is_the_base_with_adapter_rows_and_predicts_the_same():
    # Given a base with 30 unit rows of which 20..29 are new, and rank-4 adapters,
    base = POSSM(get_preset("possm_small", dim=16), 30, 3, rngs=nnx.Rngs(0))
    new_units, new_sessions = np.arange(20, 30), np.array([2])
    lora = LoRAPOSSM(base, new_units, new_sessions, 4, params_digest(base), rngs=nnx.Rngs(1))
    a_u, b_u = np.asarray(lora.unit_emb.a[...]), np.asarray(lora.unit_emb.b[...])
    a_s, b_s = np.asarray(lora.session_emb.a[...]), np.asarray(lora.session_emb.b[...])

    # When the adapters are folded into plain tables,
    merged = merge_lora(lora)

    # Then the tables are the base's with the new rows replaced by A @ B (numpy), every other weight is the base's,
    units = np.array(base.unit_emb.embedding[...])
    units[new_units] = a_u @ b_u
    sessions = np.array(base.session_emb.embedding[...])
    sessions[new_sessions] = a_s @ b_s
    flat_m, flat_b = _flat(merged), _flat(base)
    np.testing.assert_allclose(flat_m[transfer.UNIT_TABLE], units, atol=1e-7)
    np.testing.assert_allclose(flat_m[transfer.SESSION_TABLE], sessions, atol=1e-7)
    for path, value in flat_b.items():
        if path not in (transfer.UNIT_TABLE, transfer.SESSION_TABLE):
            np.testing.assert_array_equal(flat_m[path], value, err_msg=path)
    # and the LoRA model, the merged model and the base holding the numpy tables predict the same (1e-5).
    base.unit_emb.embedding[...] = units
    base.session_emb.embedding[...] = sessions
    batch = random_batch(0, num_units=30, num_sessions=3)
    expected, _ = base(batch)
    for model in (lora, merged):
        preds = jax.jit(lambda b, m=model: m(b)[0])(batch)
        for task, value in expected.items():
            np.testing.assert_allclose(preds[task], value, atol=1e-5, err_msg=task)
    # and the trainable count is (10 + 1) * 4 + 2 * 4 * 16.
    params = nnx.state(lora, nnx.Param)
    assert sum(x.size for x in jax.tree.leaves(params)) == adapter_count(10, 1, 4, 16) == 172


def _state_leaves(step_dir: str) -> dict:
    """The saved train state's tree (shapes only), read from orbax's metadata."""
    meta = ocp.StandardCheckpointer().metadata(os.path.join(step_dir, "state"))
    tree = getattr(meta, "item_metadata", meta)
    tree = getattr(tree, "tree", tree)
    return {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_lora_run_keeps_the_base_saves_only_adapters_and_refuses_another_base(tmp_path):
    # Given two different pretrained bases (seeds 0 and 1) on two sessions of the tiny corpus,
    for name, seed in (("pre", 0), ("other", 1)):
        pre = tiny_config(2)
        pre.data.sessions = ",".join(SESSIONS[:2])
        pre.train.seed = seed
        loop.train_and_evaluate(pre, str(tmp_path / name))
    # When LoRA (rank 2) finetunes on the third session for 3 steps, saving every step,
    ft = tiny_config(3)
    ft.data.sessions = SESSIONS[2]
    ft.transfer.checkpoint = str(tmp_path / "pre" / "checkpoints")
    ft.transfer.mode, ft.transfer.lora_rank = "lora", 2
    ft.train.lr_scale = 10.0
    ft.checkpoint.every = 1
    loop.train_and_evaluate(ft, str(tmp_path / "lora"))
    lora_dir = str(tmp_path / "lora" / "checkpoints")

    # Then the loaded (merged) model equals the base everywhere but the new rows, which changed between steps,
    before, units0, sessions0, _, _ = model_io.load_checkpoint(str(tmp_path / "pre" / "checkpoints"))
    a, saved = _flat(before), {}
    for step in (1, 3):
        model, units1, sessions1, _, _ = model_io.load_checkpoint(lora_dir, step=step)
        b = saved[step] = _flat(model)
        for path, value in a.items():
            if path not in (transfer.UNIT_TABLE, transfer.SESSION_TABLE):
                np.testing.assert_array_equal(b[path], value, err_msg=path)
        for table, old, new in ((transfer.UNIT_TABLE, units0, units1), (transfer.SESSION_TABLE, sessions0, sessions1)):
            np.testing.assert_array_equal(b[table][new.indices(old.ids[1:])], a[table][1:], err_msg=table)
    added = [i for i, key in enumerate(units1.ids) if SESSIONS[2] in key]
    assert added and np.all(np.any(saved[1][transfer.UNIT_TABLE][added] != saved[3][transfer.UNIT_TABLE][added], 1))
    # and the checkpoint's parameters are the four adapter factors only (their sizes: rows x 2, 2 x 32),
    leaves = {k: v for k, v in _state_leaves(os.path.join(lora_dir, "3")).items() if k.startswith("['params']")}
    shapes = sorted(tuple(v.shape) for v in leaves.values())
    assert shapes == sorted([(len(added), 2), (2, 32), (1, 2), (2, 32)]), shapes
    # and loading it on the other base fails with an error naming both bases.
    with pytest.raises(BaseMismatchError) as err:
        model_io.load_checkpoint(lora_dir, base=str(tmp_path / "other" / "checkpoints"))
    message = str(err.value)
    assert str(tmp_path / "other" / "checkpoints") in message and str(tmp_path / "pre" / "checkpoints") in message
    assert params_digest(before)[:16] in message
