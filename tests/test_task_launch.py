"""Handwriting and speech runs from their launcher configs: train, report, SIGTERM + exact resume (in either speech
phase), ``experiments.evaluate`` on the checkpoint, and a clear error for an unknown ``task.name``."""

import dataclasses
import itertools
import json
import os
import signal

import numpy as np
import pytest

from data_pipeline.store_writer import write_recording
from data_pipeline.synth import speech as synth_speech
from data_pipeline.synth.binned import ChannelConfig
from data_pipeline.synth.handwriting import CHARACTERS, generate_handwriting
from experiments import evaluate as evaluate_launcher
from experiments.configs import evaluate as evaluate_config
from experiments.configs import handwriting as handwriting_config
from experiments.configs import speech as speech_config
from experiments.finetune import finetune
from possm_jax.train import loop, model_io
from possm_jax.train.logging import read_scalars
from tests.test_finetune import _flat
from tests.test_loop import tiny_config

STEPS = 4
SPEECH_CHANNELS = 32  # fewer than the 256 of a speech array: 8x fewer tokens, and task.num_channels is exercised


def _write(sessions, directory) -> str:
    os.makedirs(directory)
    for _, rec in sessions:
        write_recording(os.path.join(directory, f"{rec.session_id}.h5"), rec)
    return str(directory)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """One tiny session per task on disk: 186 handwriting trials (6 per character), 12 speech sentences."""
    base = tmp_path_factory.mktemp("task_data")
    channels = ChannelConfig(num_channels=SPEECH_CHANNELS)
    speech = synth_speech.generate_speech(
        num_sessions=1, trials_per_session=12, config=dataclasses.replace(synth_speech.CONFIG, channels=channels)
    )
    return {
        "handwriting": _write(generate_handwriting(num_sessions=1, trials_per_session=186), base / "handwriting"),
        "speech": _write(speech, base / "speech"),
    }


def _config(name: str, data_dir: str):
    """The launcher config of ``name`` shrunk for tests: small dims, 8 examples a batch, short windows."""
    c = {"handwriting": handwriting_config, "speech": speech_config}[name].get_config("possm_small,quick")
    c.data.dir = data_dir
    c.model.dim, c.model.ffn_mult, c.model.ffn_dropout, c.model.backbone.hidden = 32, 1, 0.0, 32
    c.train.batch_size, c.train.num_steps, c.train.log_every = 8, STEPS, 1
    c.eval.every, c.checkpoint.every, c.eval.final_split = 2, 1000, "valid"
    if name == "handwriting":
        c.task.window, c.task.before_go, c.task.pool, c.task.jitter = 0.2, -0.3, 0.05, 0.0
    else:
        c.task.chunk_step, c.task.reconstruct_steps, c.task.num_channels = 256, 2, SPEECH_CHANNELS
    return c


def _stop_after(steps: int, monkeypatch) -> None:
    """SIGTERM (in-process) while the run fetches the batch of its ``steps``-th step: it stops after that step."""
    real, calls = loop._next_batch, itertools.count(1)

    def next_batch(run, min_width):
        if next(calls) == steps:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(run, min_width)

    monkeypatch.setattr(loop, "_next_batch", next_batch)


def _losses(workdir) -> tuple[np.ndarray, np.ndarray]:
    return read_scalars(os.path.join(workdir, "tb"))["train/loss"]


def _evaluate(checkpoint_dir: str, workdir: str) -> dict:
    config = evaluate_config.get_config()
    config.checkpoint, config.split = checkpoint_dir, "valid"
    return evaluate_launcher.evaluate_checkpoint(config, workdir)


def test_handwriting_trains_reports_resumes_and_evaluates(data, tmp_path, monkeypatch):
    # Given an uninterrupted handwriting run from the launcher config,
    full = loop.train_and_evaluate(_config("handwriting", data["handwriting"]), str(tmp_path / "full"))
    # it reports accuracy on the 31 valid trials (one per character: trial i of a character is valid when i % 9 == 2),
    (session,) = full["valid"]["num_trials"]
    assert full["valid"]["num_trials"][session] == len(CHARACTERS) == 31
    with open(tmp_path / "full" / "handwriting_eval.json") as f:
        confusion = np.array(json.load(f)["confusion_all"])
    assert confusion.shape == (31, 31) and confusion.sum() == 31 and np.all(confusion.sum(1) == 1)
    assert full["valid"]["accuracy"][session] == np.trace(confusion) / 31
    for name in ("metrics.json", "handwriting_confusion.png", "training_curves.png"):
        assert (tmp_path / "full" / name).exists(), name

    # When another run is stopped by SIGTERM after step 2 and started again,
    workdir = str(tmp_path / "resumed")
    with monkeypatch.context() as m:
        _stop_after(2, m)
        assert loop.train_and_evaluate(_config("handwriting", data["handwriting"]), workdir) == {
            "preempted": True,
            "step": 2,
        }
    loop.train_and_evaluate(_config("handwriting", data["handwriting"]), workdir)
    # then its losses are those of the uninterrupted run,
    got, want = _losses(workdir), _losses(tmp_path / "full")
    np.testing.assert_array_equal(got[0], np.arange(1, STEPS + 1))
    np.testing.assert_array_equal(got[1][2:], want[1][2:])
    # and experiments.evaluate on its checkpoint gives the accuracy the run reported, with the task's files.
    out = _evaluate(os.path.join(workdir, "checkpoints"), str(tmp_path / "eval"))
    assert out["valid"]["accuracy"] == full["valid"]["accuracy"]
    assert (tmp_path / "eval" / "handwriting_eval.json").exists()
    assert (tmp_path / "eval" / "handwriting_confusion.png").exists()


def test_speech_runs_both_phases_and_resumes_in_each(data, tmp_path, monkeypatch):
    # Given an uninterrupted speech run (2 reconstruction steps, then CTC),
    full = loop.train_and_evaluate(_config("speech", data["speech"]), str(tmp_path / "full"))
    scalars = read_scalars(tmp_path / "full" / "tb")
    # the CTC loss is trained (and logged) from step 3 on only, and PER is reported with decoded strings.
    np.testing.assert_array_equal(scalars["train/loss/speech_phoneme"][0], [3, 4])
    np.testing.assert_array_equal(scalars["train/loss/speech_counts"][0], np.arange(1, STEPS + 1))
    np.testing.assert_allclose(scalars["train/loss"][1][:2], scalars["train/loss/speech_counts"][1][:2])
    assert 0 <= full["valid"]["per_mean"]
    assert (tmp_path / "full" / "speech_eval.json").exists() and (tmp_path / "full" / "speech_examples.png").exists()

    # When a run is stopped in phase 1 (after step 1), restarted and stopped in phase 2 (after step 3), then finished,
    workdir = str(tmp_path / "resumed")
    for stop in (1, 2):
        with monkeypatch.context() as m:
            _stop_after(stop, m)
            assert loop.train_and_evaluate(_config("speech", data["speech"]), workdir)["preempted"]
    loop.train_and_evaluate(_config("speech", data["speech"]), workdir)
    # then every loss equals the uninterrupted run's,
    got, want = _losses(workdir), _losses(tmp_path / "full")
    np.testing.assert_array_equal(got[0], np.arange(1, STEPS + 1))
    np.testing.assert_array_equal(got[1], want[1])
    # and experiments.evaluate on the checkpoint reproduces the reported PER and writes the decoded strings.
    out = _evaluate(os.path.join(workdir, "checkpoints"), str(tmp_path / "eval"))
    assert out["valid"]["per"] == full["valid"]["per"]
    with open(tmp_path / "eval" / "speech_eval.json") as f:
        assert json.load(f)["examples"]


def test_unknown_task_name_and_a_phase_1_longer_than_the_run_are_refused(data, tmp_path):
    config = _config("handwriting", data["handwriting"])
    config.task.name = "typing"
    with pytest.raises(ValueError, match=r"task.name='typing'.*'handwriting', 'speech'"):
        loop.train_and_evaluate(config, str(tmp_path / "typing"))
    config = _config("speech", data["speech"])
    config.task.reconstruct_steps = STEPS + 1
    with pytest.raises(ValueError, match=rf"task.reconstruct_steps={STEPS + 1}: .*train.num_steps={STEPS}"):
        loop.train_and_evaluate(config, str(tmp_path / "speech"))


def test_handwriting_finetunes_from_a_reaching_checkpoint(data, tmp_path):
    # Given a reaching checkpoint of the same sizes as the handwriting test model,
    reaching = tiny_config(2)
    reaching.data.sessions = "subject_00_session_000"
    reaching.model.ffn_mult, reaching.model.ffn_dropout = 1, 0.0
    reaching.checkpoint.every = 2
    loop.train_and_evaluate(reaching, str(tmp_path / "reaching"))
    # When the handwriting launcher config finetunes from it (ft: new rows and new parameters for 2 steps, then all),
    c = _config("handwriting", data["handwriting"])
    c.transfer.checkpoint, c.transfer.mode, c.transfer.unfreeze_step = (
        str(tmp_path / "reaching" / "checkpoints"),
        "ft",
        2,
    )
    c.checkpoint.every, c.checkpoint.keep = 1, STEPS
    results = finetune(c, str(tmp_path / "handwriting"))
    assert 0.0 <= results["valid"]["accuracy_mean"] <= 1.0

    # Then the carried recurrent weights stay the pretrained ones up to the unfreezing and train after it, while the
    # new readout trains from the first step.
    pre = _flat(model_io.load_checkpoint(str(tmp_path / "reaching" / "checkpoints"))[0])
    finetuned = str(tmp_path / "handwriting" / "checkpoints")
    steps = {s: _flat(model_io.load_checkpoint(finetuned, step=s)[0]) for s in (1, 2, STEPS)}
    carried, readout = "backbone/layers/0/w_hh", "decoder/readouts/handwriting_character/kernel"
    np.testing.assert_array_equal(steps[2][carried], pre[carried])
    assert np.any(steps[STEPS][carried] != pre[carried])
    assert np.any(steps[1][readout] != steps[2][readout])
