"""Layer: bench (tests). The numbers ``bench.evaluate`` reports against direct computations (issue 24).

``evaluate_model``: accuracies from the model's own forward pass (torch), each membership-inference
variant of ``metrics.mia_suite`` as the papers define it, rebuilt here with scikit-learn on signals
computed here with numpy (members = retain, non-members = test, targets = forget; the value is the
fraction of forget samples called non-members), Yeom's threshold, DLFD's forget-vs-test accuracy
(10 stratified 70/30 splits) and NoMUS; dimensional alignment from ``numpy.linalg.eigh``; the
linear probe from a scikit-learn pipeline. The split has as many retain as test samples, so the
attacks see every known sample (no subsampling).

``feature_metrics``: on well-separated blobs, where any k-means finds the blobs, so the clustering
is known: NMI from scikit-learn, pair-counting F1 by brute force over all pairs, with labels that
disagree with the blobs on purpose (the scores are not 1).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import normalized_mutual_info_score
from sklearn.model_selection import StratifiedShuffleSplit, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from unlearnkit.bench.evaluate import evaluate_model, feature_metrics
from unlearnkit.data import load_digits
from unlearnkit.data.forget import UnlearningSplit
from unlearnkit.data.types import _make
from unlearnkit.models import build_model
from unlearnkit.training import TrainConfig, fit

N_TRAIN, N_FORGET = 400, 40  # retain 360 = the digits test split's 360


@pytest.fixture(scope="module")
def small_digits():
    """(split, model): 400 digits images (40 forgotten, 360 retained), all 360 test images evaluated,
    and a small CNN trained until it memorises the retain set and half of the forget set (the other
    half it never saw: the attacks have members and non-members to find among the forget samples)."""
    full = load_digits()
    data = _make("digits-400", full.x_train[:N_TRAIN], full.y_train[:N_TRAIN], full.x_test, full.y_test, full.classes)
    forget = np.sort(np.random.default_rng(0).permutation(N_TRAIN)[:N_FORGET])
    split = UnlearningSplit(data, forget, np.setdiff1d(np.arange(N_TRAIN), forget), "hand-40", 0,
                            test_idx=np.arange(len(full.y_test)))
    torch.manual_seed(0)
    model = build_model("small-cnn", data)
    seen = torch.from_numpy(np.sort(np.r_[split.retain_idx, forget[::2]]))
    fit(model, data.x_train[seen], data.y_train[seen], TrainConfig(epochs=25, batch_size=32, lr=0.05), seed=0)
    return split, model.eval()


# ------------------------------------------------------------------------------------- oracles

def _outputs(model, x):
    with torch.no_grad():
        logits = model(x).double()
        return logits.numpy(), torch.softmax(logits, 1).numpy(), model.features(x).double().numpy()


def _signals(p, y):
    """Each attack's input, from the definitions (Song & Mittal's modified entropy)."""
    rows = np.arange(len(y))
    p_y = p[rows, y]
    log_1mp = np.log(np.maximum(1 - p, 1e-300))
    log_1mp[rows, y] = 0.0
    m_entropy = -(1 - p_y) * np.log(np.maximum(p_y, 1e-300)) - (p * log_1mp).sum(1)
    return {"correctness": (p.argmax(1) == y).astype(float)[:, None], "confidence": p_y[:, None],
            "entropy": -(p * np.log(np.maximum(p, 1e-300))).sum(1)[:, None], "m_entropy": m_entropy[:, None],
            "prob": p}


def _called_nonmember(clf, members, nonmembers, targets):
    x = np.concatenate([members, nonmembers])
    y = np.r_[np.ones(len(members)), np.zeros(len(nonmembers))]
    return 1.0 - make_pipeline(StandardScaler(), clf).fit(x, y).predict(targets).mean()


def _forget_vs_test(f, t, seed, max_per_set=2000):
    """DLFD's loss attack: the larger set subsampled (seeded) to the smaller's size, 10 stratified 70/30 splits."""
    rng = np.random.default_rng(seed)
    f, t = f[rng.permutation(len(f))[:max_per_set]], t[rng.permutation(len(t))[:max_per_set]]
    k = min(len(f), len(t))
    f, t = f[rng.permutation(len(f))[:k]], t[rng.permutation(len(t))[:k]]
    x, y = np.r_[f, t][:, None], np.r_[np.ones(k), np.zeros(k)]
    cv = StratifiedShuffleSplit(n_splits=10, test_size=0.3, random_state=seed)
    return cross_val_score(LogisticRegression(), x, y, cv=cv, scoring="accuracy").mean()


def _da(z_f, z_r, energy=0.9):
    """Share of each forget row's energy in the top eigenvectors (90% of the trace) of Z_r^T Z_r / n."""
    w, v = np.linalg.eigh(z_r.T @ z_r / len(z_r))
    w, v = w[::-1], v[:, ::-1]
    k = int(np.searchsorted(np.cumsum(w) / w.sum(), energy - 1e-12) + 1)
    proj = z_f @ v[:, :k]
    return float(((proj ** 2).sum(1) / (z_f ** 2).sum(1)).mean())


def _pair_f1(truth, pred):
    same_t = same_p = both = 0
    for i, j in itertools.combinations(range(len(truth)), 2):
        t, p = truth[i] == truth[j], pred[i] == pred[j]
        same_t, same_p, both = same_t + t, same_p + p, both + (t and p)
    precision, recall = both / same_p, both / same_t
    return 2 * precision * recall / (precision + recall)


# --------------------------------------------------------------------------------------- tests

@pytest.mark.parametrize("seed", [0, 3])
def test_evaluate_model_output_metrics_equal_direct_computations(small_digits, seed):
    split, model = small_digits
    d = split.data
    got = evaluate_model(model, split, seed=seed)
    sets = {"forget": (d.x_train[split.forget_idx], d.y_train[split.forget_idx].numpy()),
            "retain": (d.x_train[split.retain_idx], d.y_train[split.retain_idx].numpy()),
            "test": (d.x_test[split.test_idx], d.y_test[split.test_idx].numpy())}
    out = {s: _outputs(model, x) for s, (x, _) in sets.items()}
    y = {s: v[1] for s, v in sets.items()}
    for s in sets:
        assert got[f"acc_{s}"] == pytest.approx((out[s][0].argmax(1) == y[s]).mean(), abs=1e-12)
    assert got["acc_retain"] == 1.0 and got["acc_test"] < 0.97  # memorised: the attacks have something to see
    assert got["ua"] == pytest.approx(1 - got["acc_forget"])
    sig = {s: _signals(out[s][1], y[s]) for s in sets}
    n_f = len(y["forget"])
    # the headline: logistic regression on p_y
    want = _called_nonmember(LogisticRegression(), sig["retain"]["confidence"], sig["test"]["confidence"],
                             sig["forget"]["confidence"])
    assert got["mia"] == pytest.approx(want, abs=1e-12)
    # SalUn's SVC attacks (RBF, C = 3, gamma "auto") on each signal; the attack's training order is
    # shuffled in the package: libsvm's tolerance may move one sample across the boundary
    for name in ("correctness", "confidence", "entropy", "m_entropy", "prob"):
        want = _called_nonmember(SVC(C=3, gamma="auto", kernel="rbf"), sig["retain"][name], sig["test"][name],
                                 sig["forget"][name])
        assert abs(got[f"mia_svc_{name}"] - want) <= 1 / n_f + 1e-12, name
    loss = {s: -np.log(out[s][1][np.arange(len(y[s])), y[s]]) for s in sets}
    assert got["mia_loss_threshold"] == pytest.approx((loss["forget"] >= loss["retain"].mean()).mean(), abs=1e-12)
    fvt = _forget_vs_test(loss["forget"], loss["test"], seed)
    assert got["mia_forget_vs_test"] == pytest.approx(fvt, abs=1e-12)
    assert got["nomus"] == pytest.approx(0.5 * (got["acc_test"] + 1 - 2 * abs(fvt - 0.5)), abs=1e-12)
    # the features: DA against the retain eigenspace, a probe trained on retain
    z = {s: out[s][2] for s in sets}
    for s in ("forget", "test"):
        assert got[f"da_{s}"] == pytest.approx(_da(z[s], z["retain"]), rel=1e-6)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(z["retain"], y["retain"])
    for s in ("forget", "test", "retain"):
        assert got[f"lp_{s}"] == pytest.approx(probe.score(z[s], y[s]), abs=1e-12)


def _blobs(rng, n, centers, noise):
    blob = rng.integers(0, len(centers), n)
    x = centers[blob] + rng.normal(size=(n, centers.shape[1]))
    labels = blob.copy()
    flip = rng.random(n) < noise  # labels that disagree with the blobs
    labels[flip] = (blob[flip] + 1 + rng.integers(0, len(centers) - 1, flip.sum())) % len(centers)
    return x, labels, blob


def test_feature_metrics_equal_direct_computations_on_known_clusters():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 8)) * 40
    centers[:, 0] += np.arange(4) * 10  # distinct blobs
    (x_f, y_f, b_f), (x_r, y_r, _), (x_t, y_t, b_t) = (_blobs(rng, n, centers, noise) for n, noise in
                                                       ((120, 0.3), (400, 0.05), (200, 0.1)))
    x_f = x_f + rng.normal(size=x_f.shape) * 3  # the forget set a little off the retain manifold
    got = feature_metrics({"forget": (x_f, y_f), "retain": (x_r, y_r), "test": (x_t, y_t)}, 4, seed=0)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(x_r, y_r)
    for name, x, y, blob in (("forget", x_f, y_f, b_f), ("test", x_t, y_t, b_t)):
        assert got[f"da_{name}"] == pytest.approx(_da(x, x_r), rel=1e-9)
        assert got[f"lp_{name}"] == pytest.approx(probe.score(x, y), abs=1e-12)
        nmi = normalized_mutual_info_score(y, blob)
        assert 0.2 < nmi < 0.95  # the labels disagree with the clusters: no trivial 1
        assert got[f"nmi_{name}"] == pytest.approx(nmi, abs=1e-12)
        assert got[f"pair_f1_{name}"] == pytest.approx(_pair_f1(y, blob), abs=1e-12)
    assert got["lp_retain"] == pytest.approx(probe.score(x_r, y_r), abs=1e-12)
