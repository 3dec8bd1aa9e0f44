"""Layer: metrics (tests). Output-space metrics (``unlearnkit.metrics.output``: accuracy, softmax,
activation distance, Jensen-Shannon divergence, NoMUS) against hand-computed values and independent
implementations (scipy). The membership-inference signals and attacks are in ``test_membership.py``."""

import math

import numpy as np
import pytest
import scipy.spatial.distance
import scipy.special

from unlearnkit import metrics as M


def test_activation_distance_and_js_against_scipy():
    rng = np.random.default_rng(2)
    a = scipy.special.softmax(rng.normal(size=(50, 4)), axis=1)
    b = scipy.special.softmax(rng.normal(size=(50, 4)), axis=1)
    assert M.activation_distance(a, b) == pytest.approx(np.mean([np.linalg.norm(x - y) for x, y in zip(a, b)]))
    expected = np.mean([scipy.spatial.distance.jensenshannon(x, y) ** 2 for x, y in zip(a, b)])
    assert M.js_divergence(a, b) == pytest.approx(expected, rel=1e-9)
    assert M.js_divergence(a, a) == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(ValueError, match="probs_b"):
        M.activation_distance(a, b[:3])


def test_nomus_matches_dlfd_reference_numbers():
    # DLFD's official notebook: retrained test .608, |MIA - .5| = .055 -> NoMUS .749
    assert M.nomus(0.608, 0.555) == pytest.approx(0.5 * (0.608 + 1 - 2 * 0.055))
    assert M.nomus(0.608, 0.555) == pytest.approx(0.749, abs=1e-3)
    with pytest.raises(ValueError, match="mia_accuracy"):
        M.nomus(0.5, 1.5)


def test_accuracy_and_softmax():
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    assert M.accuracy([0, 1, 1], logits) == pytest.approx(2 / 3)
    np.testing.assert_allclose(M.softmax(logits), scipy.special.softmax(logits, axis=1))
    with pytest.raises(ValueError, match="labels_pred|logits"):
        M.accuracy([0, 1], logits)


# Issue 16: each of these returned a number (NaN, 0.0, or a JS value outside [0, ln 2]) without a word.
@pytest.mark.parametrize("fn, match", [
    (lambda: M.accuracy([], np.zeros((0, 3))), r"^labels_true: expected at least one label, got an empty array"),
    (lambda: M.accuracy([5, 7], np.eye(3)[:2]), r"^labels_true: expected labels in \[0, 3\) \(the columns of logits\), "
                                                r"got values 5\.\.7"),
    (lambda: M.accuracy([-1, 0], np.eye(3)[:2]), r"^labels_true: expected labels in \[0, 3\)"),
    (lambda: M.js_divergence([[-0.2, 1.2], [0.5, 0.5]], [[0.5, 0.5], [1.0, 0.0]]),
     r"^probs_a: expected non-negative probabilities, got minimum -0\.2"),
    (lambda: M.js_divergence([[0.5, 0.5]], [[0.5, -0.5]]), r"^probs_b: expected non-negative probabilities"),
    (lambda: M.js_divergence([[0.5, 0.5]], [[0.9, 0.9]]),
     r"^probs_b: expected rows summing to 1, got row 0 summing to 1\.8"),
    (lambda: M.activation_distance([[0.5, 0.5]], [[-1.0, 2.0]]), r"^probs_b: expected non-negative probabilities"),
])
def test_output_metrics_refuse_what_has_no_answer(fn, match):
    with pytest.raises(ValueError, match=match):
        fn()


def test_js_of_valid_probabilities_stays_in_its_range():
    # the edge cases the check must still accept: one-hot rows, zeros, float32 rows summing to 1 +- 1e-7
    a = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    b = np.array([[0.0, 1.0], [0.0, 1.0], [0.5, 0.5]])
    assert M.js_divergence(a, b) == pytest.approx((math.log(2) + 0 + 0) / 3)
    p = scipy.special.softmax(np.random.default_rng(0).normal(size=(64, 10)), axis=1).astype(np.float32)
    assert 0.0 <= M.js_divergence(p, p[::-1].copy()) <= math.log(2)
    assert M.accuracy([2], np.array([[0.0, 1.0, 3.0]])) == 1.0
