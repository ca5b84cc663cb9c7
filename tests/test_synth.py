"""Synthetic generators: determinism, spiking, sessions, intervals, binned tasks and Wiener calibration on ``tiny``."""

import numpy as np
import pytest

from data_pipeline.binning import bin_spikes
from data_pipeline.synth import (
    generate,
    generate_session,
    get_preset,
    handwriting,
    plan_subject,
    reaching,
    session_specs,
    speech,
    units,
)
from data_pipeline.synth.reaching import simulate_reaching
from experiments.calibrate import calibrate_session, format_table

TINY = get_preset("tiny")


@pytest.fixture(scope="module")
def tiny():
    return list(generate(TINY, seed=0))


def _arrays(rec):
    out = {"spike_times": rec.spike_times, "spike_units": rec.spike_units, "unit_ids": rec.unit_ids}
    out.update({f"cursor/{k}": v for k, v in rec.behaviour["cursor"].values.items()})
    out.update({f"truth/{k}": v for k, v in rec.truth.items()})
    return out


def test_same_seed_same_bytes_different_seed_differs(tiny):
    spec = session_specs(TINY)[1]
    again = generate_session(TINY, 0, spec, plan_subject(TINY, 0, 0))
    for key, value in _arrays(tiny[1][1]).items():
        assert value.tobytes() == _arrays(again)[key].tobytes(), key
    other = generate_session(TINY, 1, spec, plan_subject(TINY, 1, 0))
    assert other.spike_times.shape != tiny[1][1].spike_times.shape or not np.array_equal(
        other.spike_times, tiny[1][1].spike_times
    )


def test_spikes_sorted_in_range_and_refractory(tiny):
    for _, rec in tiny:
        assert np.all(np.diff(rec.spike_times) >= 0)
        assert rec.spike_times[0] >= rec.domain.start[0] and rec.spike_times[-1] < rec.domain.end[-1]
        assert rec.spike_units.min() >= 0 and rec.spike_units.max() < len(rec.unit_ids)
        order = np.lexsort((rec.spike_times, rec.spike_units))
        t, u = rec.spike_times[order], rec.spike_units[order]
        same = u[1:] == u[:-1]
        assert np.all(np.diff(t)[same] >= rec.truth["refractory"][u[1:][same]])
        assert 1.5e-3 <= rec.truth["refractory"].min() and rec.truth["refractory"].max() <= 2e-3


def test_refractory_keep_equals_sequential_dead_time():
    rng = np.random.default_rng(0)
    times, unit = rng.uniform(0, 0.05, 300), rng.integers(0, 3, 300)
    ref = np.array([1.5e-3, 2e-3, 1.7e-3])
    keep = units.refractory_keep(times, unit, ref)
    want = np.zeros(300, dtype=bool)
    for u in range(3):
        last = -np.inf
        for i in np.flatnonzero(unit == u)[np.argsort(times[unit == u])]:
            if times[i] - last >= ref[u]:
                want[i], last = True, times[i]
    np.testing.assert_array_equal(keep, want)


def test_spike_counts_match_ground_truth_rates(tiny):
    # Expected spikes = integral of the true rate (20 Hz truth grid); refractoriness removes only a few percent.
    _, rec = tiny[0]
    expected = rec.truth["rates"].sum() / 20.0
    assert 0.93 < len(rec.spike_times) / expected < 1.01
    assert 4.0 < np.median(np.exp(rec.truth["log_r0"])) < 8.0


def test_unit_overlap_between_neighbouring_sessions():
    preset = get_preset("demo")
    plan = plan_subject(preset, 3, 0)
    for a, b in zip(plan.unit_sets[:-1], plan.unit_sets[1:], strict=True):
        assert 60 <= len(b) <= 250 and len(np.unique(b)) == len(b)
        shared = len(np.intersect1d(a, b)) / min(len(a), len(b))
        assert 0.5 - 1 / min(len(a), len(b)) <= shared <= 0.9 + 1 / min(len(a), len(b))
    assert 300 <= len(plan.pool.log_r0) <= 500
    assert 0.05 < np.mean(~plan.pool.tuned) < 0.35


def test_single_preset_is_one_long_centre_out_session_of_demo_neurons():
    single, demo = get_preset("single"), get_preset("demo")
    (spec,) = session_specs(single)
    assert spec.task == reaching.CENTRE_OUT and not spec.heldout and single.duration >= 3 * demo.duration
    np.testing.assert_array_equal(plan_subject(single, 0, 0).unit_sets[0], plan_subject(demo, 0, 0).unit_sets[0])


def test_intervals_consistent(tiny):
    for _, rec in tiny:
        trials = rec.intervals["trials"]
        assert np.all(trials.end > trials.start) and np.all(trials.start[1:] >= trials.end[:-1])
        assert trials.start[0] >= rec.domain.start[0] and trials.end[-1] <= rec.domain.end[-1]
        for key, iv in rec.intervals.items():
            if key.startswith("movement_phases/"):
                assert np.all(iv.start[1:] >= iv.end[:-1]), key
                assert np.all(trials.contains(iv.start) & trials.contains(iv.end - 1e-9)), key
        # Splits are disjoint unions of whole trials and together cover every trial.
        covered = sum(s.total_duration() for s in rec.splits.values())
        assert covered == pytest.approx(trials.total_duration())
        for s in rec.splits.values():
            inside = s.contains(trials.start + 1e-9)
            assert np.all(inside == s.contains(trials.end - 1e-9))
        ts = rec.behaviour["cursor"].timestamps
        np.testing.assert_allclose(np.diff(ts), 0.01)


def test_minimum_jerk_kinematics_are_consistent():
    beh = simulate_reaching(np.random.default_rng(0), 30.0)
    # Velocity and acceleration are the time derivatives of position (central differences, 100 Hz).
    np.testing.assert_allclose(np.gradient(beh.pos, 0.01, axis=0)[1:-1], beh.vel[1:-1], atol=0.5)
    # The analytic profile's derivatives against fine central differences of its own position.
    s = np.linspace(0.0, 1.0, 2001)
    d, v, a = reaching.minimum_jerk(s, np.array([3.0, -4.0]), 0.5)
    np.testing.assert_allclose(np.gradient(d, s * 0.5, axis=0)[1:-1], v[1:-1], atol=1e-3)
    np.testing.assert_allclose(np.gradient(v, s * 0.5, axis=0)[1:-1], a[1:-1], atol=0.05)
    np.testing.assert_allclose(d[-1], [3.0, -4.0], atol=1e-12)
    reach = beh.movements[0]
    assert 8.0 <= np.hypot(*reach.p1) <= 10.0 and 0.35 <= reach.duration <= 0.6
    end = int(np.ceil((reach.onset + reach.duration) * 100))
    np.testing.assert_allclose(beh.pos[end], reach.p1, atol=1e-9)


def test_latent_velocity_leads_the_cursor(tiny):
    _, rec = tiny[0]
    z, vel = rec.truth["latents"][:, 0].astype(float), rec.behaviour["cursor"].values["vel"][:, 0] / 20.0
    lags = np.arange(0, 30)
    corr = [np.corrcoef(z[: len(z) - k], vel[k:])[0, 1] for k in lags]
    assert lags[int(np.argmax(corr))] == round(rec.truth["lead"][0] * 100)


def test_calibration_on_tiny_in_target_range(tiny):
    r2 = [calibrate_session(rec, spec.task)["r2_test"] for spec, rec in tiny]
    assert 0.60 <= np.mean(r2) <= 0.75, r2


def test_calibration_gru_column(tiny):
    spec, rec = tiny[0]
    row = calibrate_session(rec, spec.task, gru_steps=2)
    assert np.isfinite(row["r2_test_gru"]) and row["r2_test_gru"] < 1.0
    table = format_table([row])
    assert " GRU" in table.splitlines()[0] and "GRU test R2 mean" in table


def test_handwriting_counts_and_labels():
    spec, rec = next(handwriting.generate_handwriting(seed=0, num_sessions=1, trials_per_session=186))
    assert len(rec.unit_ids) == 192 and len(handwriting.CHARACTERS) == 31
    trials = rec.intervals["trials"]
    labels = trials.columns["label"]
    np.testing.assert_array_equal(np.bincount(labels, minlength=31), np.full(31, 6))  # 6 rounds of all characters
    # Split per character: its 3rd trial (index 2) is valid, its 6th (index 5) test, the rest train.
    for split, reps in (("train", [0, 1, 3, 4]), ("valid", [2]), ("test", [5])):
        inside = rec.splits[split].contains(trials.start) & rec.splits[split].contains(trials.end - 1e-9)
        for label in range(31):
            np.testing.assert_array_equal(np.flatnonzero(inside[labels == label]), reps)
    # Every trial holds its go-aligned cube: 0.5 s before the go cue to 1.51 s after it.
    go = trials.columns["go_cue_time"]
    assert np.all(go - 0.5 >= trials.start - 1e-9) and np.all(go + 1.51 <= trials.end + 1e-9)
    # Spikes sit at 10 ms bin centres: re-binning recovers integer counts with nothing in between.
    frac = rec.spike_times / handwriting.BIN_WIDTH % 1.0
    np.testing.assert_allclose(frac, 0.5, atol=1e-6)
    n = int(round(rec.domain.end[0] / handwriting.BIN_WIDTH))
    assert bin_spikes(rec.spike_times, rec.spike_units, 192, 0.0, n, 0.01).sum() == len(rec.spike_times)


def test_speech_ctc_targets():
    _, rec = next(speech.generate_speech(seed=0, num_sessions=1, trials_per_session=10))
    assert len(rec.unit_ids) == 256
    phon, trials = rec.intervals["phonemes"], rec.intervals["trials"]
    ids = phon.columns["phoneme"]
    assert ids.min() >= 1 and ids.max() <= speech.NUM_PHONEMES
    assert np.all(trials.contains(phon.start))
    for t0, t1 in zip(trials.start, trials.end, strict=True):
        seq = ids[(phon.start >= t0) & (phon.start < t1)]
        assert len(seq) >= 6  # 3+ words of 2+ phonemes
    frames = rec.behaviour["phoneme"].values["id"]
    runs = frames[np.flatnonzero(np.diff(frames, prepend=-1))]
    np.testing.assert_array_equal(runs[runs != 0], ids)


def test_handwriting_needs_six_trials_per_character():
    with pytest.raises(ValueError, match="trials_per_session=100: need at least 186"):
        next(handwriting.generate_handwriting(trials_per_session=100))


def test_handwriting_families_share_length_and_strokes():
    def templates(distinct: float) -> list[np.ndarray]:
        return handwriting.stroke_templates(np.random.default_rng(0), family_size=3, distinct=distinct)

    alike, unrelated = templates(0.0), templates(1.0)
    for first in range(0, 30, 3):
        family = range(first, min(first + 3, 31))
        assert len({len(alike[c]) for c in family}) == 1  # one length per family
        for c in family:
            np.testing.assert_allclose(alike[c], alike[first])  # distinct = 0: the shared strokes only
            if c != first:  # distinct = 1: the own strokes only, unrelated to the sibling's
                corr = np.corrcoef(unrelated[c].ravel(), unrelated[first].ravel())[0, 1]
                assert abs(corr) < 0.9


def test_handwriting_slips_write_a_family_sibling():
    # No warp and no stretch: a trial's pen velocity is exactly the template of the character written.
    config = handwriting.HandwritingConfig(stretch=(1.0, 1.0), warp=0.0, slip=1.0, family_size=3, distinct=1.0)
    _, rec = next(handwriting.generate_handwriting(seed=0, num_sessions=1, trials_per_session=186, config=config))
    templates = handwriting.stroke_templates(
        np.random.default_rng([0, 1000, 0]), config.bump_width, config.family_size, config.distinct
    )
    trials, vel = rec.intervals["trials"], rec.behaviour["pen"].values["vel"]
    for label, go in zip(trials.columns["label"], trials.columns["go_cue_time"], strict=True):
        start = int(round(go / handwriting.BIN_WIDTH))
        family = range(label - label % 3, label - label % 3 + 3) if label < 30 else range(31)  # 30: family of one
        written = [c for c in family if np.allclose(vel[start : start + len(templates[c])], templates[c], atol=1e-4)]
        # Every trial slipped to another member of its family (any other character for the one-member family).
        assert written and label not in written
