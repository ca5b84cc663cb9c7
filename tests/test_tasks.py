"""Human-BCI tasks end to end on tiny corpora: training lowers the loss, evaluation, streamed ≡ batched decoding."""

import functools

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from data_pipeline.synth.handwriting import generate_handwriting
from data_pipeline.synth.speech import generate_speech
from possm_jax.backbones.registry import BackboneConfig
from possm_jax.config import POSSMConfig
from possm_jax.eval.evaluate import make_predict
from possm_jax.eval.metrics import ctc_greedy_decode, phoneme_error_rate
from possm_jax.possm import POSSM
from possm_jax.streaming import Streamer
from possm_jax.tasks import common, handwriting, speech
from possm_jax.train.corpus import build_vocabs, vocab_maps
from possm_jax.train.state import create_train_state
from possm_jax.train.step import make_train_step

TINY = POSSMConfig(
    dim=32, head_dim=32, ffn_mult=1, ffn_dropout=0.0, backbone=BackboneConfig(kind="gru", hidden=32, num_layers=1)
)


def _corpus(recordings):
    units, sessions = build_vocabs(recordings)
    return units, sessions, vocab_maps(recordings, units, sessions)


def _train(model_cfg, units, sessions, loss_fn, batch, steps):
    """Adam on one fixed batch; returns (model, first loss, last loss)."""
    model = POSSM(model_cfg, len(units), len(sessions), rngs=nnx.Rngs(0))
    tx = optax.adam(3e-3)
    graphdef, state = create_train_state(model, tx)
    step = make_train_step(graphdef, tx, loss_fn, donate=False)
    losses = []
    for _ in range(steps):
        state, metrics = step(state, batch, jax.random.PRNGKey(0))
        losses.append(float(metrics["loss"]))
    return nnx.merge(graphdef, state.params, state.rest), losses[0], losses[-1]


@pytest.fixture(scope="module")
def speech_run():
    recordings = [rec for _, rec in generate_speech(num_sessions=1, trials_per_session=12)]
    units, sessions, maps = _corpus(recordings)
    cfg = speech.SpeechConfig(chunk_step=256, reconstruct_weight=1.0)
    batch = speech.train_dataset(cfg, recordings, maps, 2, seed=0)[0]
    loss = functools.partial(speech.loss_fn, cfg=cfg)
    model, first, last = _train(speech.model_config(cfg, TINY), units, sessions, loss, batch, 8)
    return recordings, maps, cfg, batch, model, first, last


def test_handwriting_trains_and_evaluates():
    recordings = [rec for _, rec in generate_handwriting(num_sessions=1, trials_per_session=186)]
    units, sessions, maps = _corpus(recordings)
    cfg = handwriting.HandwritingConfig(window=0.2, before_go=-0.3, pool=0.05, jitter=0.0)
    batch = handwriting.train_dataset(cfg, recordings, maps, 8, seed=0)[0]
    model, first, last = _train(handwriting.model_config(cfg, TINY), units, sessions, handwriting.loss_fn, batch, 12)
    assert last < 0.7 * first
    result = handwriting.evaluate(model, cfg, recordings, maps, "valid", batch_size=32)
    (key,) = result["accuracy"]
    assert result["num_trials"][key] == np.sum(result["confusion_all"]) == 31  # one valid trial per character
    assert result["top3"][key] >= result["accuracy"][key]


def test_handwriting_summary_against_hand_counts():
    scores = np.array([[0.0, 2.0, 1.0], [3.0, 0.0, 1.0], [0.0, 1.0, 2.0], [1.0, 0.0, 0.5]])
    labels, owner = np.array([1, 2, 2, 1]), np.array([0, 0, 1, 1])
    recs = [type("R", (), {"session_key": k})() for k in ("a", "b")]
    out = handwriting.summarise(scores, labels, owner, recs, 3)
    assert out["accuracy"] == {"a": 0.5, "b": 0.5}
    assert out["top3"] == {"a": 1.0, "b": 1.0}
    assert out["confusion_all"] == [[0, 0, 0], [1, 1, 0], [1, 0, 1]]


def test_speech_trains_both_losses(speech_run):
    *_, first, last = speech_run
    assert last < 0.7 * first


def test_speech_reconstruct_phase_is_the_poisson_loss_alone(speech_run):
    _, _, cfg, batch, model, *_ = speech_run
    preds = make_predict(model)(batch)
    rate = np.minimum(preds[speech.COUNT_TASK].astype(np.float64), 8.0)
    nll = (np.exp(rate) - batch["counts_target"] * rate).mean(-1)
    expected = (nll * batch["weight"]).sum() / batch["weight"].sum()
    phase1 = speech.SpeechConfig(chunk_step=cfg.chunk_step, phase="reconstruct")
    loss, _ = speech.loss_fn(preds, batch, phase1)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-4)


def test_streamed_phonemes_equal_batched(speech_run):
    _, _, cfg, batch, model, *_ = speech_run
    frames = make_predict(model)(batch)[speech.PHONEME_TASK][:, : batch["ctc_mask"].shape[1]]
    streamed = common.stream_chunk_logits(Streamer(model), batch, 0, model.config, speech.PHONEME_TASK)
    n = int(batch["ctc_mask"][0].sum())
    at_stride = streamed[cfg.ctc_stride - 1 :: cfg.ctc_stride][:n]
    np.testing.assert_allclose(at_stride, frames[0, :n], atol=1e-4)
    ref = batch["labels"][0][batch["label_mask"][0]].tolist()
    batched, online = ctc_greedy_decode(frames[0, :n]), ctc_greedy_decode(at_stride)
    assert online == batched
    assert phoneme_error_rate([ref], [online]) == phoneme_error_rate([ref], [batched])


def test_speech_evaluation_report(speech_run, tmp_path):
    recordings, maps, cfg, _, model, *_ = speech_run
    result = speech.evaluate(model, cfg, recordings, maps, "valid", batch_size=4, beam_width=2, num_examples=2)
    (key,) = result["per"]
    assert result["per"][key] >= 0 and len(result["examples"]) >= 1
    speech.write_report(result, str(tmp_path))
    assert (tmp_path / "speech_eval.json").exists() and (tmp_path / "speech_examples.png").exists()


def test_model_with_another_chunk_length_is_refused(speech_run):
    recordings, maps, _, _, model, *_ = speech_run
    with pytest.raises(ValueError, match="bin_width"):
        speech.evaluate(model, speech.SpeechConfig(bin_width=0.01), recordings, maps)
