"""Layer: metrics (tests). Membership-inference signals and attacks (``unlearnkit.metrics.membership``):
the per-sample signals (confidence, loss, entropy, modified entropy, correctness), the attacks and
``mia_suite``, against hand-computed values and independent implementations (scipy, scikit-learn)."""

import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
from sklearn.linear_model import LogisticRegression

from unlearnkit import metrics as M


def test_modified_entropy_hand_computed():
    # Song & Mittal: -(1 - p_y) ln p_y - sum_{i != y} p_i ln(1 - p_i)
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    y = np.array([0, 2])
    row0 = -(0.3) * math.log(0.7) - 0.2 * math.log(0.8) - 0.1 * math.log(0.9)
    row1 = -(0.4) * math.log(0.6) - 0.1 * math.log(0.9) - 0.3 * math.log(0.7)
    np.testing.assert_allclose(M.modified_entropy(p, y), [row0, row1], rtol=1e-12)
    # The widely copied variant (log p instead of log(1-p) for the other classes, and the first
    # term over every class rather than the own label) gives a different number here.
    wrong = -(1 - p[0]) * np.log(p[0])
    assert not np.isclose(M.modified_entropy(p, y)[0], wrong.sum())


def test_modified_entropy_is_lowest_for_confident_correct():
    p = np.array([[0.98, 0.01, 0.01], [0.01, 0.98, 0.01]])
    me = M.modified_entropy(p, np.array([0, 0]))
    assert me[0] < 0.1 < 2 < me[1]  # right and confident: low; confidently wrong: high


def test_signals_hand_computed():
    p = np.array([[0.5, 0.25, 0.25], [0.2, 0.8, 0.0]])
    y = np.array([1, 1])
    np.testing.assert_allclose(M.confidence(p, y), [0.25, 0.8])
    np.testing.assert_allclose(M.loss(p, y), [math.log(4), -math.log(0.8)])
    np.testing.assert_allclose(M.entropy(p), scipy.stats.entropy(p.T))
    np.testing.assert_array_equal(M.correctness(p, y), [0.0, 1.0])


def test_signal_bad_inputs():
    with pytest.raises(ValueError, match="labels: expected values in \\[0, 2\\)"):
        M.confidence(np.full((2, 2), 0.5), np.array([0, 2]))
    with pytest.raises(ValueError, match="probs"):
        M.entropy(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="labels"):
        M.modified_entropy(np.full((2, 2), 0.5), np.array([0]))


def test_membership_attack_matches_sklearn_on_separable_signal():
    rng = np.random.default_rng(0)
    members, nonmembers = rng.normal(2, 1, 500), rng.normal(-2, 1, 500)
    targets = rng.normal(2, 1, 300)
    frac = M.membership_attack(members, nonmembers, targets)
    clf = LogisticRegression().fit(np.r_[members, nonmembers][:, None], np.r_[np.ones(500), np.zeros(500)])
    assert frac == pytest.approx(clf.predict(targets[:, None]).mean(), abs=0.01)
    assert frac > 0.9
    assert M.membership_attack(members, nonmembers, rng.normal(-2, 1, 300), attack="svc") < 0.1


def test_loss_threshold_attack():
    assert M.loss_threshold_attack([1.0, 3.0], [1.0, 2.0, 2.5, 0.1]) == 0.5


def test_forget_vs_test_at_chance_for_identical_distributions():
    rng = np.random.default_rng(1)
    acc = M.mia_forget_vs_test(rng.exponential(size=1000), rng.exponential(size=1000))
    assert 0.4 < acc < 0.6
    assert M.mia_forget_vs_test(rng.exponential(size=500) * 0.01, rng.exponential(size=500) + 1) > 0.95


def test_mia_suite_has_every_variant_in_range():
    rng = np.random.default_rng(3)
    def mk(n, conf):
        return scipy.special.softmax(rng.normal(size=(n, 3)) + conf * np.eye(3)[rng.integers(0, 3, n)], 1)

    pr, pt, pf = mk(400, 6), mk(400, 1), mk(100, 6)
    yr, yt, yf = pr.argmax(1), pt.argmax(1), pf.argmax(1)
    out = M.mia_suite(pr, yr, pt, yt, pf, yf)
    assert {"mia", "mia_svc_correctness", "mia_svc_confidence", "mia_svc_entropy", "mia_svc_m_entropy",
            "mia_svc_prob", "mia_loss_threshold", "mia_forget_vs_test"} == set(out)
    assert all(0.0 <= v <= 1.0 for v in out.values())
    assert out["mia"] < 0.3  # forget looks like retain (members): few called non-members
