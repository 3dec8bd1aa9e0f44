"""Evaluating one model on the forget, retain and test sets of a split.

Output space: accuracy (and UA), every MIA variant, activation distance and JS divergence to
the gold model, NoMUS, attack success rate (backdoor). Feature space: dimensional alignment,
linear probe, k-means clustering F1 and NMI (Rust engine). Gaps to gold are added by ``add_gaps``.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import metrics as M
from ..metrics.backdoor import attack_success_rate
from ..data.forget import UnlearningSplit
from ..training import predict, predict_with_features

# The four quantities the average gap is taken over (UA's gap equals acc_forget's).
GAP_METRICS = ("acc_forget", "acc_retain", "acc_test", "mia")
# Every scalar that also gets a |gap to gold| column.
GAP_ALL = GAP_METRICS + ("mia_svc_correctness", "mia_svc_confidence", "mia_svc_entropy", "mia_svc_m_entropy",
                         "mia_svc_prob", "mia_loss_threshold", "mia_forget_vs_test", "nomus", "asr",
                         "da_forget", "da_test", "lp_forget", "lp_test", "nmi_forget", "nmi_test",
                         "pair_f1_forget", "pair_f1_test")

_MAX_BANK = 5000  # rows per set for the feature metrics (k-means, probe): plenty for a score, bounded time


def _subsample(n: int, k: int, seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).permutation(n)[:k]) if n > k else np.arange(n)


def evaluate_model(model: torch.nn.Module, split: UnlearningSplit, *, seed: int = 0, features: bool = True) -> dict:
    """All per-model metrics. Keys starting with ``_`` hold arrays for plots and gaps, not numbers.

    ``mia`` (the headline) is the fraction of forget samples that a logistic-regression attack on
    p_y (trained on retain = member vs test = non-member) calls non-members; see ``metrics.mia_suite``
    for the other variants.
    """
    d = split.data
    sets = {"forget": (split.forget_idx, d.x_train, d.y_train), "retain": (split.retain_idx, d.x_train, d.y_train),
            "test": (split.test_idx, d.x_test, d.y_test)}
    out: dict = {}
    probs, labels, feats = {}, {}, {}
    for name, (idx, x, y) in sets.items():
        i = torch.from_numpy(idx)
        labels[name] = y[i].numpy()
        if features:  # one forward pass for both
            logits, z = predict_with_features(model, x[i])
            sub = _subsample(len(idx), _MAX_BANK, seed)
            feats[name] = (z[torch.from_numpy(sub)].numpy(), labels[name][sub])
        else:
            logits = predict(model, x[i])
        out[f"acc_{name}"] = M.accuracy(labels[name], logits)
        probs[name] = M.softmax(logits)
    out["ua"] = 1.0 - out["acc_forget"]
    out.update(M.mia_suite(probs["retain"], labels["retain"], probs["test"], labels["test"], probs["forget"],
                           labels["forget"], seed=seed))
    out["nomus"] = M.nomus(out["acc_test"], out["mia_forget_vs_test"])
    if split.trigger is not None:
        out["asr"] = attack_success_rate(model, d.x_test[torch.from_numpy(split.test_idx)],
                                         d.y_test[torch.from_numpy(split.test_idx)], split.trigger)
    if features:
        out.update(feature_metrics(feats, d.num_classes, seed=seed))
    out["_probs_forget"] = probs["forget"]
    out["_loss_forget"] = M.loss(probs["forget"], labels["forget"])
    out["_loss_test"] = M.loss(probs["test"], labels["test"])
    return out


def feature_metrics(feats: dict, num_classes: int, *, seed: int = 0) -> dict:
    """Feature-space metrics from {"forget"|"retain"|"test": (features (n, d), labels (n,))}:

    - ``da_<set>``: dimensional alignment of the set's features with the retain eigenspace
      (top eigenvectors holding 90% of the energy; MUDA);
    - ``lp_<set>``: accuracy of a logistic-regression probe trained on standardised retain features;
    - ``nmi_<set>``, ``pair_f1_<set>``: k-means (k = number of classes) on the set's features,
      scored against the true labels (NMI, pair-counting F1).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out = {}
    z_r, y_r = feats["retain"]
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(z_r, y_r)
    for name in ("forget", "test"):
        z, y = feats[name]
        out[f"da_{name}"] = M.dimensional_alignment(z, z_r)
        out[f"lp_{name}"] = float(probe.score(z, y))
        k = min(num_classes, len(z))
        km = M.kmeans(z, k, seed=seed, n_init=3)
        scores = M.clustering_scores(y, km.labels)
        out[f"nmi_{name}"] = scores["nmi"]
        out[f"pair_f1_{name}"] = scores["pair_f1"]
    out["lp_retain"] = float(probe.score(z_r, y_r))
    return out


def add_gaps(row: dict, gold: dict) -> dict:
    """Adds ``gap_<metric>`` = |row - gold| for every metric both have, ``avg_gap`` = mean gap over
    UA/RA/TA/MIA, and the distances of this model's forget-set outputs to the gold model's
    (``act_dist``: mean L2 between probability vectors; ``js``: mean Jensen-Shannon divergence)."""
    for k in GAP_ALL:
        if k in row and k in gold:
            row[f"gap_{k}"] = abs(row[k] - gold[k])
    row["avg_gap"] = float(np.mean([row[f"gap_{k}"] for k in GAP_METRICS]))
    row["act_dist"] = M.activation_distance(row["_probs_forget"], gold["_probs_forget"])
    row["js"] = M.js_divergence(row["_probs_forget"], gold["_probs_forget"])
    return row
