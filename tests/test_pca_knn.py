"""PCA-KNN handwriting baseline: smoothing, PCA and KNN against independent numpy references, go-aligned cubes
against hand-placed spikes, and perfect accuracy on a hand-built separable session."""

import numpy as np

from data_pipeline.recording import Intervals, Recording
from possm_jax.baselines.pca_knn import (
    fit_pca,
    gaussian_smooth,
    go_aligned_cubes,
    knn_predict,
    pca_knn_accuracy,
)


def test_gaussian_smooth_matches_np_convolve():
    x = np.random.default_rng(0).poisson(2.0, (2, 40, 3)).astype(np.float32)
    half = 9
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / 3.0) ** 2)
    kernel /= kernel.sum()
    expected = np.stack(
        [np.stack([np.convolve(x[n, :, c], kernel, mode="same") for c in range(3)], 1) for n in range(2)]
    )
    np.testing.assert_allclose(gaussian_smooth(x, 3.0), expected, rtol=1e-5, atol=1e-6)


def test_fit_pca_recovers_the_dominant_axis():
    rng = np.random.default_rng(1)
    axis = np.array([3.0, 4.0, 0.0]) / 5.0
    x = rng.standard_normal((500, 1)) * 10.0 * axis + 0.1 * rng.standard_normal((500, 3)) + 7.0
    mean, comps = fit_pca(x, 2)
    np.testing.assert_allclose(mean, x.mean(0))
    assert abs(abs(comps[0] @ axis) - 1.0) < 1e-3
    np.testing.assert_allclose(comps @ comps.T, np.eye(2), atol=1e-9)


def test_knn_predict_matches_brute_force_votes():
    rng = np.random.default_rng(2)
    train_x, train_y = rng.standard_normal((60, 5)), rng.integers(0, 4, 60)
    test_x = rng.standard_normal((25, 5))
    for k in (1, 3, 7):
        pred = knn_predict(train_x, train_y, test_x, k)
        for row, x in enumerate(test_x):
            dist = [np.sqrt(np.sum((x - t) ** 2)) for t in train_x]
            nearest = sorted(range(60), key=lambda i: dist[i])[:k]
            counts = np.bincount(train_y[nearest], minlength=4)
            tied = [lab for lab in range(4) if counts[lab] == counts.max()]
            # ties: the tied label owning the closest neighbour
            expected = min(tied, key=lambda lab: min(dist[i] for i in nearest if train_y[i] == lab))
            assert pred[row] == expected


def test_go_aligned_cubes_bin_hand_placed_spikes():
    # go at 1.0 s; cube of 5 bins of 0.1 s starting 0.2 s before go: [0.8, 1.3)
    times = np.array([0.79, 0.81, 0.95, 1.01, 1.05, 1.29, 1.31])
    units = np.array([0, 1, 1, 0, 0, 1, 0])
    rec = _recording(times, units, 2, Intervals(np.array([0.5]), np.array([1.5]), {"go_cue_time": np.array([1.0])}))
    cube = go_aligned_cubes(rec, rec.intervals["trials"], bin_width=0.1, go_bin=2, num_bins=5)
    expected = np.zeros((1, 5, 2))
    expected[0, 0, 1] = 1  # 0.81
    expected[0, 1, 1] = 1  # 0.95
    expected[0, 2, 0] = 2  # 1.01, 1.05
    expected[0, 4, 1] = 1  # 1.29
    np.testing.assert_array_equal(cube, expected)


def test_separable_session_is_classified_perfectly():
    """3 labels, 9 trials each; label c fires channel c for 0.2 s after the go cue, nothing else fires."""
    bw, labels = 0.01, np.tile(np.arange(3), 9)
    starts = np.arange(27) * 3.0
    gos = starts + 0.6
    times, units = [], []
    for go, lab in zip(gos, labels, strict=True):
        t = go + (np.arange(20) + 0.5) * bw
        times.append(t)
        units.append(np.full(20, lab))
    order = np.argsort(np.concatenate(times))
    trials = Intervals(starts, starts + 3.0, {"label": labels, "go_cue_time": gos})
    rep = np.arange(27) // 3  # i-th trial of its label
    which = np.where(rep % 9 == 2, 1, np.where(rep % 9 == 5, 2, 0))
    splits = {
        name: Intervals(starts[which == c], starts[which == c] + 3.0)
        for c, name in enumerate(["train", "valid", "test"])
    }
    rec = _recording(np.concatenate(times)[order], np.concatenate(units)[order], 3, trials, splits)
    out = pca_knn_accuracy(rec, dims=2)
    assert out["trials"] == {"train": 21, "valid": 3, "test": 3}
    assert out["accuracy_test"] == 1.0 and out["accuracy_valid"] == 1.0


def _recording(times, units, num_units, trials, splits=None):
    end = float(trials.end[-1])
    return Recording(
        brainset_id="hand",
        session_id="s0",
        subject_id="x",
        unit_ids=np.array([f"ch{i}" for i in range(num_units)]),
        spike_times=np.asarray(times, np.float64),
        spike_units=np.asarray(units, np.int64),
        domain=Intervals(np.array([0.0]), np.array([end])),
        splits=splits or {"train": Intervals(np.array([0.0]), np.array([end]))},
        behaviour={},
        intervals={"trials": trials},
        truth={},
    )
