"""Training augmentation of binned windows: what each perturbation does, checked against the clean window."""

import numpy as np
import pytest

from data_pipeline.count_augment import CountAugment
from data_pipeline.recording import Intervals
from data_pipeline.trial_batches import BinnedSession, handwriting_batch, handwriting_train_dataset
from possm_jax.tasks import handwriting
from tests.test_trial_batches import _recording

CHANNELS = 40


def _session(**augment):
    """One dense 40-channel session (almost every bin of every channel has a count), its examples and layout."""
    counts = np.random.default_rng(0).poisson(3.0, (400, CHANNELS))
    columns = {"label": np.arange(3), "go_cue_time": np.array([0.5, 1.5, 2.5])}
    rec = _recording(counts, Intervals(np.array([0.0, 1.0, 2.0]), np.array([1.0, 2.0, 3.0]), columns))
    cfg = handwriting.HandwritingConfig(window=0.3, before_go=0.1, pool=0.05, jitter=0.0, num_classes=4, **augment)
    session = BinnedSession.build(rec, (np.arange(1, CHANNELS + 1), 0))
    return session, handwriting.examples(cfg, [rec], "train"), cfg.layout


def _dataset(**augment):
    """Training batches of :func:`_session` (3 windows each)."""
    session, examples, layout = _session(**augment)
    return handwriting_train_dataset([session], examples, layout, 3, seed=5)


def _per_channel(batch, row):
    """{channel: (chunks, values)} of one batch row's real tokens."""
    real = batch["spike_mask"][row]
    unit, chunk, value = (batch[k][row][real] for k in ("spike_unit", "spike_chunk", "spike_value"))
    return {int(u): (chunk[unit == u], value[unit == u]) for u in np.unique(unit)}


def test_no_augmentation_is_the_clean_batch_and_augmentation_is_reproducible():
    session, examples, layout = _session()
    sizes = {"b": 3, "s": 2048}
    clean = handwriting_batch([session], examples, layout, sizes)  # evaluation: no generator
    trained = handwriting_batch([session], examples, layout, sizes, rng=np.random.default_rng(0))
    for key in clean:
        np.testing.assert_array_equal(clean[key], trained[key])
    first, again = _dataset(channel_dropout=0.5, token_noise=0.2), _dataset(channel_dropout=0.5, token_noise=0.2)
    for key in first[4]:
        np.testing.assert_array_equal(first[4][key], again[4][key])


def test_channel_dropout_removes_whole_channels_and_keeps_the_rest_intact():
    clean, dropped = _dataset(), _dataset(channel_dropout=0.9)
    lost = []
    for k in range(30):
        a, b = clean[k], dropped[k]
        np.testing.assert_array_equal(a["label"], b["label"])
        for row in range(3):
            before, after = _per_channel(a, row), _per_channel(b, row)
            assert set(after) <= set(before)
            for u, (chunk, value) in after.items():  # a kept channel keeps every token, unchanged
                np.testing.assert_array_equal(chunk, before[u][0])
                np.testing.assert_array_equal(value, before[u][1])
            lost.append(1 - len(after) / len(before))
    # drop rate ~ U[0, 0.9] per window: mean 0.45, and windows differ
    assert np.mean(lost) == pytest.approx(0.45, abs=0.08)
    assert np.std(lost) > 0.15


def test_gain_is_one_factor_per_channel_and_token_noise_one_per_token():
    rng = np.random.default_rng(3)
    channels = 3000
    row = np.repeat(np.arange(channels), 4)
    value = rng.uniform(1, 3, len(row)).astype(np.float32)
    keep, gained = CountAugment(channel_gain=0.25).apply(row, value, channels, rng)
    assert keep.all()
    log_ratio = np.log(gained / value).reshape(channels, 4)
    np.testing.assert_allclose(log_ratio, log_ratio[:, :1].repeat(4, 1), atol=1e-5)  # one factor per channel
    assert np.std(log_ratio[:, 0]) == pytest.approx(0.25, rel=0.06)
    _, noisy = CountAugment(token_noise=0.4).apply(row, value, channels, rng)
    per_token = np.log(noisy / value)
    assert np.std(per_token) == pytest.approx(0.4, rel=0.04)
    assert abs(np.mean(per_token)) < 0.02
    assert np.std(per_token.reshape(channels, 4).mean(1)) == pytest.approx(0.4 / 2, rel=0.08)  # independent tokens


BAD = [("channel_dropout", 1.0), ("channel_gain", -0.1), ("token_noise", -1.0), ("augment_from_epoch", -1)]


@pytest.mark.parametrize("field, bad", BAD)
def test_bad_augmentation_names_the_field(field, bad):
    with pytest.raises(ValueError, match=f"HandwritingConfig.{field}="):
        handwriting.HandwritingConfig(**{field: bad})


def test_augmentation_starts_at_its_epoch():
    # 3 examples in batches of 3: one batch per epoch, so batch k is epoch k
    clean, late = _dataset(), _dataset(channel_dropout=0.9, token_noise=0.3, augment_from_epoch=2)
    for k in (0, 1):
        for key in clean[k]:
            np.testing.assert_array_equal(clean[k][key], late[k][key])
    assert late[2]["spike_mask"].sum() < clean[2]["spike_mask"].sum()
