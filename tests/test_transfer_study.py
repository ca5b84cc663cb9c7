"""Transfer study: held-out subject in the synthetic corpus and its selection; a killed study resumes per cell."""

import json
import os
import types

import pytest

from data_pipeline.synth.presets import ReachingPreset
from data_pipeline.synth.sessions import plan_subject, session_specs
from experiments import transfer_study
from experiments.configs import transfer_study as study_config
from possm_jax.train import corpus, objectives


def test_heldout_subject_has_only_heldout_sessions_and_its_own_dynamics():
    # Given a preset of 3 subjects (2 sessions + 1 held out each) whose last subject is held out,
    preset = ReachingPreset("t", num_subjects=3, sessions_per_subject=2, num_heldout=1, heldout_subjects=1)
    specs = session_specs(preset)
    # Then subjects 0 and 1 have 2 pretraining + 1 held-out session, and subject 2 one held-out session,
    assert [(s.subject, s.index, s.heldout) for s in specs] == [
        (0, 0, False), (0, 1, False), (0, 2, True), (1, 0, False), (1, 1, False), (1, 2, True), (2, 0, True)
    ]  # fmt: skip
    # and its rotational dynamics come from the held-out range.
    low, high = preset.heldout_rotation_freq
    assert low <= plan_subject(preset, 0, 2).rotation_freq <= high
    assert preset.rotation_freq[0] <= plan_subject(preset, 0, 0).rotation_freq <= preset.rotation_freq[1] < low
    # and the selections split the held-out sessions by whether their subject was seen in pretraining.
    sessions = [
        corpus.Session(types.SimpleNamespace(session_id=s.session_id, subject_id=s.subject_id), s.heldout)
        for s in specs
    ]
    ids = {w: [r.session_id for r in corpus.select(sessions, w)] for w in ("heldout_session", "heldout_subject")}
    assert ids == {
        "heldout_session": ["subject_00_session_002", "subject_01_session_002"],
        "heldout_subject": ["subject_02_session_000"],
    }


def _study(tmp_path):
    c = study_config.get_config("small")
    c.data.dir, c.pretrained = str(tmp_path / "data"), str(tmp_path / "base")
    c.methods, c.fractions, c.cases = ("ui", "lora"), (0.1, 1.0), ("heldout_subject",)
    return c


def test_a_killed_study_resumes_without_rerunning_finished_cells(tmp_path):
    # Given a study of 4 cells whose third cell is killed after writing into its directory,
    calls = []

    def fake_cell(config, workdir, kill_at=None):
        calls.append((config.transfer.mode, config.data.train_fraction))
        os.makedirs(workdir, exist_ok=True)
        open(os.path.join(workdir, "partial"), "w").close()
        if len(calls) == kill_at:
            raise KeyboardInterrupt
        r2 = 0.5 + config.data.train_fraction / 4 + (0.01 if config.transfer.mode == "lora" else 0.0)
        return {"test_score": r2, "test_strict_r2": None, "steps": 1, "wall_seconds": 2.0, "trainable": 7}

    study, workdir = _study(tmp_path), str(tmp_path / "study")
    with pytest.raises(KeyboardInterrupt):
        transfer_study.run_study(study, workdir, run_cell=lambda c, w: fake_cell(c, w, kill_at=3))
    assert calls == [("ui", 0.1), ("lora", 0.1), ("ui", 1.0)]
    # When the same study runs again,
    calls.clear()
    report = transfer_study.run_study(study, workdir, run_cell=fake_cell)
    # Then only the killed and the never-started cells run, the killed one from a fresh directory,
    assert calls == [("ui", 1.0), ("lora", 1.0)]
    # and the report holds every cell: mean test R² per method and fraction (0.5 + fraction / 4, + 0.01 for lora).
    summary = {(s["method"], s["fraction"]): s["test_score_mean"] for s in report["summary"]}
    assert summary == pytest.approx({("ui", 0.1): 0.525, ("lora", 0.1): 0.535, ("ui", 1.0): 0.75, ("lora", 1.0): 0.76})
    with open(os.path.join(workdir, "study.json"), encoding="utf-8") as f:
        assert len(json.load(f)["cells"]) == 4
    table = open(os.path.join(workdir, "study.md"), encoding="utf-8").read()
    assert "| lora | 0.535 ± 0.000 | 0.760 ± 0.000 | 7 | 2 |" in table
    assert os.path.getsize(os.path.join(workdir, "data_efficiency.png")) > 0
    # and a third run trains nothing.
    calls.clear()
    transfer_study.run_study(study, workdir, run_cell=fake_cell)
    assert calls == []


def test_cell_configs_differ_only_in_what_the_cell_names(tmp_path):
    study = _study(tmp_path)
    cell = {"case": "heldout_subject", "method": "lora", "fraction": 0.1, "seed": 2}
    c = transfer_study.cell_config(study, "d", "base", cell)
    assert (c.data.sessions, c.data.train_fraction, c.train.seed) == ("heldout_subject", 0.1, 2)
    assert (c.transfer.checkpoint, c.transfer.mode, c.transfer.lora_rank) == ("base", "lora", study.lora_rank)
    scratch = transfer_study.cell_config(study, "d", "base", cell | {"method": "scratch"})
    assert scratch.transfer.checkpoint == "" and scratch.train.num_steps == c.train.num_steps


def test_handwriting_study_cells_are_the_handwriting_launcher_finetuned_from_reaching():
    study = study_config.get_config("handwriting")
    cell = {"case": "all", "method": "ft", "fraction": 0.1, "seed": 0}
    c = transfer_study.cell_config(study, "reaching_data", "base", cell)
    assert c.task.name == "handwriting" and c.data.synthetic == "handwriting" and c.data.dir == ""
    assert (c.transfer.checkpoint, c.transfer.mode, c.transfer.partial) == ("base", "ft", True)
    assert c.transfer.unfreeze_step == study.steps // 2 and c.data.train_fraction == 0.1
    _, score = objectives.get(c).score({"accuracy_mean": 0.7, "top3_mean": 0.9}, c, study.steps)
    assert score == 0.7  # the cell's test score is its accuracy
