"""Membership-inference attacks (MIA): per-sample signals and the attacks built on them.

Signals (one value per sample, from output probabilities ``probs`` (n, c) and labels (n,)):

- ``confidence``: p_y, the probability of the true label.
- ``loss``: cross-entropy -ln p_y.
- ``entropy``: -sum_i p_i ln p_i.
- ``modified_entropy`` (Song & Mittal, USENIX Security 2021):
  Mentr(p, y) = -(1 - p_y) ln(p_y) - sum_{i != y} p_i ln(1 - p_i).
  It uses the *own-label* probability p_y in the first term and ln(1 - p_i) for the others.
- ``correctness``: 1 if arg-max p = y else 0.

Attacks train a classifier on the signal of known members (retain samples) against known
non-members (test samples), balanced by subsampling, and apply it to the forget set.
"""

from __future__ import annotations

import numpy as np

from .._validation import check_choice, check_labels, check_same_length, to_numpy

__all__ = ["MIA_HEADLINE", "confidence", "correctness", "entropy", "loss", "loss_threshold_attack",
           "membership_attack", "mia_forget_vs_test", "mia_suite", "modified_entropy"]

#: The MIA number a report leads with: logistic regression on the true-label confidence p_y,
#: trained retain (member) vs test (non-member), reported as the fraction of forget samples it
#: calls non-members (SalUn's "MIA-efficacy"; the gold model's value is the target).
MIA_HEADLINE = "mia"

_EPS = 1e-30  # clip inside logs only; never changes a probability that is not ~0


def _probs(probs, labels=None):
    p = to_numpy(probs, "probs").astype(np.float64, copy=False)
    if p.ndim != 2 or p.shape[1] == 0:
        raise ValueError(f"probs: expected a 2-D array (n_samples, n_classes), got shape {p.shape}")
    if not np.isfinite(p).all() or (p < 0).any():
        raise ValueError("probs: expected finite non-negative probabilities, got NaN, Inf or negative values")
    if labels is None:
        return p, None
    y = check_labels(labels, "labels")
    check_same_length(p, y, "probs", "labels")
    if len(y) and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(f"labels: expected values in [0, {p.shape[1]}), got {y.min()}..{y.max()}")
    return p, y


def confidence(probs, labels) -> np.ndarray:
    """(n,) p_y: probability assigned to each sample's own label."""
    p, y = _probs(probs, labels)
    return p[np.arange(len(y)), y]


def loss(probs, labels) -> np.ndarray:
    """(n,) cross-entropy -ln p_y (nats)."""
    return -np.log(np.maximum(confidence(probs, labels), _EPS))


def entropy(probs) -> np.ndarray:
    """(n,) Shannon entropy of each row (nats)."""
    p, _ = _probs(probs)
    return -(p * np.log(np.maximum(p, _EPS))).sum(axis=1)


def modified_entropy(probs, labels) -> np.ndarray:
    """(n,) modified entropy of Song & Mittal (2021):
    -(1 - p_y) ln p_y - sum_{i != y} p_i ln(1 - p_i). Low for confident correct predictions."""
    p, y = _probs(probs, labels)
    rows = np.arange(len(y))
    p_y = p[rows, y]
    own = -(1.0 - p_y) * np.log(np.maximum(p_y, _EPS))
    others = -p * np.log(np.maximum(1.0 - p, _EPS))
    others[rows, y] = 0.0
    return own + others.sum(axis=1)


def correctness(probs, labels) -> np.ndarray:
    """(n,) 1.0 where the arg-max class is the label, else 0.0."""
    p, y = _probs(probs, labels)
    return (p.argmax(axis=1) == y).astype(np.float64)


def membership_attack(members, nonmembers, targets, *, attack: str = "logistic", seed: int = 0,
                      max_per_set: int | None = None) -> float:
    """Trains an attack on (members -> 1, non-members -> 0) and returns the fraction of ``targets``
    it predicts as members.

    Args:
        members: (n_m,) or (n_m, f) signals of known training samples (e.g. retain).
        nonmembers: (n_n,) or (n_n, f) signals of known unseen samples (e.g. test).
        targets: (n_t,) or (n_t, f) signals of the samples under question (e.g. forget).
        attack: ``"logistic"`` (logistic regression) or ``"svc"`` (RBF SVM, as SalUn's SVC-MIA).
        seed: the larger of the two known sets is subsampled to the smaller one's size with it.
        max_per_set: cap on the known samples per class of the attack (SVC is quadratic in it).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    check_choice(attack, "attack", ("logistic", "svc"))
    arrays = []
    for name, s in (("members", members), ("nonmembers", nonmembers), ("targets", targets)):
        a = to_numpy(s, name).astype(np.float64)
        a = a[:, None] if a.ndim == 1 else a
        if a.ndim != 2 or len(a) == 0:
            raise ValueError(f"{name}: expected a non-empty 1-D or 2-D array of signals, got shape {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"{name}: expected finite signals, got NaN or Inf")
        arrays.append(a)
    m, n, t = arrays
    rng = np.random.default_rng(seed)
    k = min(len(m), len(n), max_per_set or len(m))
    m = m[rng.choice(len(m), k, replace=False)]
    n = n[rng.choice(len(n), k, replace=False)]
    x = np.concatenate([m, n])
    y = np.concatenate([np.ones(k), np.zeros(k)])
    clf = LogisticRegression() if attack == "logistic" else SVC(C=3, gamma="auto", kernel="rbf")
    model = make_pipeline(StandardScaler(), clf).fit(x, y)
    return float(model.predict(t).mean())


def mia_forget_vs_test(forget_signal, test_signal, *, n_splits: int = 10, max_per_set: int | None = None,
                       seed: int = 0) -> float:
    """Accuracy of a logistic-regression attack telling forget (1) from test (0) samples by one
    signal (DLFD's loss-based MIA): ``n_splits`` stratified shuffle splits, mean test accuracy.
    0.5 = the attacker can't tell them apart (what retraining gives when the sets are alike)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedShuffleSplit, cross_val_score

    f = to_numpy(forget_signal, "forget_signal").astype(np.float64).reshape(len(forget_signal), -1)
    t = to_numpy(test_signal, "test_signal").astype(np.float64).reshape(len(test_signal), -1)
    rng = np.random.default_rng(seed)
    if max_per_set is not None:
        f = f[rng.permutation(len(f))[:max_per_set]]
        t = t[rng.permutation(len(t))[:max_per_set]]
    k = min(len(f), len(t))
    if k < 2:
        raise ValueError(f"forget_signal: expected at least 2 samples in each set, got {len(f)} and {len(t)}")
    f, t = f[rng.permutation(len(f))[:k]], t[rng.permutation(len(t))[:k]]
    x = np.concatenate([f, t])
    y = np.concatenate([np.ones(k), np.zeros(k)])
    cv = StratifiedShuffleSplit(n_splits=n_splits, test_size=0.3, random_state=seed)
    return float(cross_val_score(LogisticRegression(), x, y, cv=cv, scoring="accuracy").mean())


def loss_threshold_attack(member_losses, target_losses) -> float:
    """Yeom et al. (CSF 2018): a sample is called a member when its loss is below the mean loss of
    known members. Returns the fraction of ``target_losses`` called non-members."""
    m = to_numpy(member_losses, "member_losses").astype(np.float64).ravel()
    t = to_numpy(target_losses, "target_losses").astype(np.float64).ravel()
    if len(m) == 0 or len(t) == 0:
        raise ValueError("member_losses: expected non-empty loss arrays for members and targets")
    return float((t >= m.mean()).mean())


_SIGNALS = {
    "correctness": correctness,
    "confidence": confidence,
    "entropy": lambda p, y: entropy(p),
    "m_entropy": modified_entropy,
    "prob": lambda p, y: _probs(p)[0],
}


def mia_suite(probs_retain, labels_retain, probs_test, labels_test, probs_forget, labels_forget, *,
              seed: int = 0, max_per_set: int = 2000) -> dict:
    """Every MIA variant the unlearning papers report, each as the fraction of forget samples
    called *non-members* (higher = looks more forgotten; compare with the gold model's value):

    - ``mia`` (headline, see ``MIA_HEADLINE``): logistic regression on confidence p_y;
    - ``mia_svc_<signal>`` for signal in correctness, confidence, entropy, m_entropy, prob
      (SalUn/l1-sparse's SVC attacks, RBF SVC on the standardised signal; ``prob`` uses the
      whole probability vector);
    - ``mia_loss_threshold``: Yeom et al.'s threshold at the mean retain loss;
    - ``mia_forget_vs_test``: accuracy of a loss-based forget-vs-test attack (DLFD; 0.5 = chance).

    Known sets are subsampled to ``max_per_set`` samples each with ``seed``.
    """
    sets = {"retain": (probs_retain, labels_retain), "test": (probs_test, labels_test),
            "forget": (probs_forget, labels_forget)}
    sig = {name: {k: fn(*sets[k]) for k in sets} for name, fn in _SIGNALS.items()}
    out = {"mia": 1.0 - membership_attack(sig["confidence"]["retain"], sig["confidence"]["test"],
                                          sig["confidence"]["forget"], seed=seed, max_per_set=max_per_set)}
    for name, s in sig.items():
        out[f"mia_svc_{name}"] = 1.0 - membership_attack(s["retain"], s["test"], s["forget"], attack="svc",
                                                         seed=seed, max_per_set=max_per_set)
    losses = {k: loss(*v) for k, v in sets.items()}
    out["mia_loss_threshold"] = loss_threshold_attack(losses["retain"], losses["forget"])
    out["mia_forget_vs_test"] = mia_forget_vs_test(losses["forget"], losses["test"], max_per_set=max_per_set,
                                                   seed=seed)
    return out
