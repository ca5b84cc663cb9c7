"""Task metrics and losses against hand-computed cases: top-k, confusion matrix, CTC prefix beam search, Poisson NLL."""

import numpy as np

from possm_jax.eval.metrics import confusion_matrix, ctc_greedy_decode, ctc_prefix_beam_search, top_k_accuracy
from possm_jax.train.loss import weighted_poisson_nll


def test_top_k_accuracy_by_hand():
    scores = np.array([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1], [0.3, 0.3, 0.4]])
    labels = np.array([2, 2, 0])
    assert top_k_accuracy(scores, labels, 1) == 0.0
    assert top_k_accuracy(scores, labels, 2) == 2 / 3  # row 1's label 2 ranks last
    assert top_k_accuracy(scores, labels, 3) == 1.0


def test_confusion_matrix_rows_are_true_classes():
    m = confusion_matrix(np.array([0, 2, 2, 1]), np.array([0, 1, 2, 1]), 3)
    np.testing.assert_array_equal(m, [[1, 0, 0], [0, 1, 1], [0, 0, 1]])


def test_beam_search_finds_the_sequence_greedy_misses():
    # Two steps of p(blank) = 0.6, p(a) = 0.4: greedy reads "" (0.36), but "a" sums three paths (0.64).
    logp = np.log(np.array([[0.6, 0.4], [0.6, 0.4]]))
    assert ctc_greedy_decode(logp) == []
    assert ctc_prefix_beam_search(logp, beam_width=4) == [1]


def test_beam_search_keeps_repeats_split_by_a_blank():
    logp = np.log(np.array([[0.05, 0.9, 0.05], [0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.9, 0.05, 0.05]]))
    assert ctc_prefix_beam_search(logp, beam_width=3) == [1, 1]
    assert ctc_prefix_beam_search(logp, beam_width=3, mask=np.array([1, 0, 1, 1], bool)) == [1]


def test_poisson_nll_by_hand():
    log_rate = np.log(np.array([[[1.0, 2.0]], [[3.0, 0.5]]], np.float32))
    counts = np.array([[[0.0, 4.0]], [[1.0, 1.0]]], np.float32)
    weight = np.array([[1.0], [3.0]], np.float32)
    row0 = (1.0 + (2.0 - 4.0 * np.log(2.0))) / 2
    row1 = ((3.0 - np.log(3.0)) + (0.5 - np.log(0.5))) / 2
    expected = (row0 + 3 * row1) / 4
    np.testing.assert_allclose(float(weighted_poisson_nll(log_rate, counts, weight)), expected, rtol=1e-6)
