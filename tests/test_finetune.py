"""Transfer: vocabulary carry-over by string id, masks, and UI training only the new rows end to end."""

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

from possm_jax.config import get_preset
from possm_jax.lora import LoRAPOSSM
from possm_jax.possm import POSSM
from possm_jax.train import loop, model_io, transfer
from possm_jax.train.state import param_paths
from possm_jax.vocab import Vocab
from tests.test_loop import tiny_config

SESSIONS = ("subject_00_session_000", "subject_00_session_001", "subject_00_session_002")


def _flat(model):
    return {k: np.asarray(v) for k, v in transfer._flatten(nnx.to_pure_dict(nnx.state(model, nnx.Param))).items()}


def test_transfer_params_copies_known_rows_by_id_and_draws_new_ones():
    # Given a model on vocab (a, b) and a target vocab (b, c) after extend + subset,
    old_u, old_s = Vocab(["a", "b"], "unit"), Vocab(["s1"], "session")
    new_u, new_s = transfer.transfer_vocabs(old_u, old_s, ["b", "c"], ["s2"], subset=True)
    assert new_u.ids == ("NA", "b", "c") and new_s.ids == ("NA", "s2")
    cfg = get_preset("possm_small", dim=32)
    pre = POSSM(cfg, len(old_u), len(old_s), rngs=nnx.Rngs(0))
    new = POSSM(cfg, len(new_u), len(new_s), rngs=nnx.Rngs(1))

    # When the pretrained parameters are carried over,
    params, fresh_u, fresh_s = transfer.transfer_params(
        nnx.to_pure_dict(nnx.state(pre, nnx.Param)),
        nnx.to_pure_dict(nnx.state(new, nnx.Param)),
        (old_u, old_s),
        (new_u, new_s),
        jax.random.PRNGKey(0),
    )
    flat, ref = transfer._flatten(params), _flat(pre)

    # Then row "b" moved from row 2 to row 1, "c" and the session are fresh, and everything else is copied.
    np.testing.assert_array_equal(flat[transfer.UNIT_TABLE][1], ref[transfer.UNIT_TABLE][2])
    np.testing.assert_array_equal(fresh_u, [2])
    np.testing.assert_array_equal(fresh_s, [1])
    np.testing.assert_array_equal(flat[transfer.UNIT_TABLE][0], 0.0)
    for path, value in ref.items():
        if path not in (transfer.UNIT_TABLE, transfer.SESSION_TABLE):
            np.testing.assert_array_equal(flat[path], value)


def test_masks_share_structure_and_ui_selects_only_new_rows():
    model = POSSM(get_preset("possm_small", dim=32), 6, 3, rngs=nnx.Rngs(0))
    params = nnx.state(model, nnx.Param)
    ui = transfer.transfer_mask(params, "ui", [4, 5], [2])
    full = transfer.transfer_mask(params, "full", [], [])
    shapes = jax.tree.map(np.shape, ui)
    assert shapes == jax.tree.map(np.shape, full)  # ft switches ui -> full without recompiling
    flat_ui = dict(zip(param_paths(params), jax.tree.leaves(ui), strict=True))
    assert np.flatnonzero(flat_ui[transfer.UNIT_TABLE][:, 0]).tolist() == [4, 5]
    assert np.flatnonzero(flat_ui[transfer.SESSION_TABLE][:, 0]).tolist() == [2]
    assert not any(np.any(v) for k, v in flat_ui.items() if k not in (transfer.UNIT_TABLE, transfer.SESSION_TABLE))


def test_ui_on_an_unseen_session_trains_only_its_rows(tmp_path):
    # Given a model pretrained on two sessions of the tiny corpus,
    pre = tiny_config(2)
    pre.data.sessions = ",".join(SESSIONS[:2])
    loop.train_and_evaluate(pre, str(tmp_path / "pre"))
    # When UI finetuning runs on the third session, which the checkpoint has never seen,
    ft = tiny_config(3)
    ft.data.sessions = SESSIONS[2]
    ft.transfer.checkpoint = str(tmp_path / "pre" / "checkpoints")
    ft.transfer.mode = "ui"
    ft.train.lr_scale = 10.0
    ft.checkpoint.every = 1
    loop.train_and_evaluate(ft, str(tmp_path / "ui"))

    # Then every parameter but the new rows is bit-identical to the pretrained one (latent query included) at every
    # saved step, and the new rows changed between steps 1 and 3 (they train).
    before, units0, sessions0, _, _ = model_io.load_checkpoint(str(tmp_path / "pre" / "checkpoints"))
    a = _flat(before)
    saved = {}
    for step in (1, 3):
        model, units1, sessions1, _, _ = model_io.load_checkpoint(str(tmp_path / "ui" / "checkpoints"), step=step)
        b = saved[step] = _flat(model)
        for path, value in a.items():
            if path not in (transfer.UNIT_TABLE, transfer.SESSION_TABLE):
                np.testing.assert_array_equal(b[path], value, err_msg=path)
        for table, old, new in ((transfer.UNIT_TABLE, units0, units1), (transfer.SESSION_TABLE, sessions0, sessions1)):
            kept = new.indices(old.ids[1:])
            np.testing.assert_array_equal(b[table][kept], a[table][1:], err_msg=table)
    for table, new in ((transfer.UNIT_TABLE, units1), (transfer.SESSION_TABLE, sessions1)):
        added = [i for i, key in enumerate(new.ids) if key.startswith(f"synthetic_reaching_tiny/{SESSIONS[2]}")]
        assert added
        assert np.all(np.any(saved[1][table][added] != saved[3][table][added], axis=1)), table


def test_transfer_to_another_task_carries_what_fits_and_trains_the_rest():
    # Given a reaching model on units (a, b) and the handwriting model (binned inputs, 4 latents, a 31-class readout)
    # on new channels,
    from experiments.configs import handwriting
    from possm_jax.train import objectives

    old_u, old_s = Vocab(["a", "b"], "unit"), Vocab(["s1"], "session")
    new_u, new_s = transfer.transfer_vocabs(old_u, old_s, ["c0", "c1", "c2"], ["hw"], subset=True)
    pre = POSSM(get_preset("possm_small", dim=32), len(old_u), len(old_s), rngs=nnx.Rngs(0))
    config = handwriting.get_config()
    config.model.dim = 32
    target = objectives.get(config).model_config(config)
    # When it is carried over in ui mode,
    model, mask = transfer.transfer_model(pre, (old_u, old_s), (new_u, new_s), seed=1, mode="ui", config=target)
    after, before = _flat(model), _flat(pre)
    fresh_init = _flat(POSSM(target, len(new_u), len(new_s), rngs=nnx.Rngs(1)))
    flat_mask = dict(zip(param_paths(nnx.state(model, nnx.Param)), jax.tree.leaves(mask), strict=True))

    # Then the model is the handwriting one, the recurrent weights, the decoder and the encoder's cross-attention
    # are the pretrained ones and frozen, and what the reaching model lacks or holds in another shape keeps its fresh
    # initialisation and trains, as do the new rows.
    assert model.config == target
    for path in ("backbone/layers/0/w_hh", "decoder/attn/to_q/kernel", "encoder/attn/to_kv/kernel", "decoder/task_emb"):
        np.testing.assert_array_equal(after[path], before[path], err_msg=path)
        assert not np.any(flat_mask[path]), path
    new_paths = (
        "decoder/readouts/handwriting_character/kernel",
        "encoder/value_vec",
        "encoder/latents",
        "encoder/readin/kernel",
    )
    for path in (*new_paths, "backbone/layers/0/w_ih"):  # w_ih: 4 latents x 32 inputs instead of 1 x 32
        np.testing.assert_array_equal(after[path], fresh_init[path], err_msg=path)
        assert np.all(flat_mask[path]), path
    assert not any(p.startswith("decoder/readouts/cursor") for p in after)
    assert np.flatnonzero(flat_mask[transfer.UNIT_TABLE][:, 0]).tolist() == [1, 2, 3]
    assert np.flatnonzero(flat_mask[transfer.SESSION_TABLE][:, 0]).tolist() == [1]
    # and LoRA, which keeps the base model whole, refuses another model but takes the checkpoint's own.
    with pytest.raises(ValueError, match="transfer.mode=lora"):
        transfer.transfer_model(pre, (old_u, old_s), (new_u, new_s), seed=1, mode="lora", lora_rank=2, config=target)
    same, _ = transfer.transfer_model(pre, (old_u, old_s), (new_u, new_s), 1, "lora", lora_rank=2, config=pre.config)
    assert isinstance(same, LoRAPOSSM)
    # A model of other sizes, into which nothing would carry, is refused with the fields to set.
    other = dataclasses.replace(target, dim=48, backbone=dataclasses.replace(target.backbone, hidden=96))
    with pytest.raises(ValueError, match="model.dim"):
        transfer.transfer_model(pre, (old_u, old_s), (new_u, new_s), seed=1, mode="ui", config=other)
