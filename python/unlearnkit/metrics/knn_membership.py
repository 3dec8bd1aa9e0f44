"""Membership inference from nearest neighbours in feature space (Rust k-NN engine).

A model tends to place a training sample close to other training samples of its class and
comparatively far from unseen data. The features of a query are therefore its distance to its
k-th nearest neighbour in a bank of training features and in a bank of held-out features, the
ratio of the two, and how many of its k training neighbours share its label. An attack trained
on known members (retain) against known non-members (test) then says how many forget samples
still look like members.
"""

from __future__ import annotations

import numpy as np

from .._validation import _describe, check_labels, check_positive_int
from .neighbors import _METRICS, as_features, kneighbors

__all__ = ["knn_mia", "knn_mia_attack", "knn_mia_features", "knn_mia_features_from_neighbors"]

#: Column names of ``knn_mia_features``.
FEATURE_NAMES = ("d_train", "d_heldout", "ratio", "label_agreement")


def _ratio(d_train: np.ndarray, d_heldout: np.ndarray) -> np.ndarray:
    # Both distances shifted by a tiny eps so that duplicates (distance 0) give a finite ratio;
    # two infinite distances (overflowing float32) give 1.
    finite = d_heldout[np.isfinite(d_heldout)]
    scale = float(np.mean(finite)) if len(finite) else 0.0
    eps = 1e-12 * scale if scale > 0 else 1e-30
    with np.errstate(invalid="ignore"):
        r = (d_train + eps) / (d_heldout + eps)
    r[np.isinf(d_train) & np.isinf(d_heldout)] = 1.0
    return r


def _search(queries, bank, k, metric, exclude, names):
    """kneighbors, with the engine's argument names ("queries", "bank") replaced by the caller's."""
    try:
        return kneighbors(queries, bank, k, metric=metric, exclude_index=exclude)
    except ValueError as exc:
        msg = str(exc)
        for engine_name, name in zip(("queries", "bank"), names):
            if msg.startswith(engine_name + ":"):
                raise ValueError(name + msg[len(engine_name):]) from None
        raise


def knn_mia_features_from_neighbors(d_train, d_heldout, k: int, *, train_neighbor_labels=None,
                                    query_labels=None) -> np.ndarray:
    """``knn_mia_features`` from neighbour lists already found (e.g. shard by shard).

    Args:
        d_train: (m, >= k) distances of each query to its nearest training-bank rows, ascending.
        d_heldout: (m, >= k) distances to its nearest held-out-bank rows, ascending.
        k: the neighbour whose distance is the feature (column ``k - 1``); the label agreement
            is over the first k training neighbours.
        train_neighbor_labels: (m, >= k) labels of those training neighbours (with ``query_labels``).
        query_labels: (m,) labels of the queries.

    Returns:
        numpy.ndarray: (m, 4) float64, the columns of ``knn_mia_features``.
    """
    d_tr, d_ho = np.asarray(d_train), np.asarray(d_heldout)
    if d_tr.ndim != 2 or d_ho.ndim != 2 or len(d_tr) != len(d_ho):
        raise ValueError(f"d_heldout: expected a 2-D array with the rows of d_train {d_tr.shape}, got {d_ho.shape}")
    if d_tr.shape[1] < k or d_ho.shape[1] < k:
        raise ValueError(f"k: expected at most the neighbours given ({min(d_tr.shape[1], d_ho.shape[1])}), got {k}")
    out = np.empty((len(d_tr), 4), dtype=np.float64)
    out[:, 0] = d_tr[:, k - 1]
    out[:, 1] = d_ho[:, k - 1]
    out[:, 2] = _ratio(out[:, 0], out[:, 1])
    if query_labels is None or train_neighbor_labels is None:
        out[:, 3] = np.nan
    else:
        lab = np.asarray(train_neighbor_labels)[:, :k]
        out[:, 3] = (lab == np.asarray(query_labels)[:, None]).mean(axis=1)
    return out


def _features(queries, train_bank, heldout_bank, k, query_labels, train_labels, metric,
              exclude_train=None, exclude_heldout=None, names=("queries", "train_bank", "heldout_bank")) -> np.ndarray:
    d_tr, i_tr = _search(queries, train_bank, k, metric, exclude_train, (names[0], names[1]))
    d_ho, _ = _search(queries, heldout_bank, k, metric, exclude_heldout, (names[0], names[2]))
    return knn_mia_features_from_neighbors(
        d_tr, d_ho, k, train_neighbor_labels=None if query_labels is None else train_labels[i_tr],
        query_labels=query_labels)


def _label_pair(query_labels, train_labels, n_queries: int, n_train: int, q_name: str, t_name: str):
    if (query_labels is None) != (train_labels is None):
        missing = t_name if train_labels is None else q_name
        raise ValueError(f"{missing}: expected labels for both the queries and the training bank, got None")
    if query_labels is None:
        return None, None
    ql = check_labels(query_labels, q_name)
    tl = check_labels(train_labels, t_name)
    if len(ql) != n_queries:
        raise ValueError(f"{q_name}: expected one label per query ({n_queries}), got length {len(ql)}")
    if len(tl) != n_train:
        raise ValueError(f"{t_name}: expected one label per training-bank row ({n_train}), got length {len(tl)}")
    return ql, tl


def knn_mia_features(queries, train_bank, heldout_bank, k: int = 5, *, query_labels=None, train_labels=None,
                     metric: str = "l2", exclude_self=False) -> np.ndarray:
    """Per-query membership features from the k nearest neighbours in two banks.

    Columns (float64):

    0. ``d_train``: distance to the k-th nearest row of ``train_bank``;
    1. ``d_heldout``: distance to the k-th nearest row of ``heldout_bank``;
    2. ``ratio``: ``(d_train + eps) / (d_heldout + eps)``, eps = 1e-12 x the mean ``d_heldout``
       (1e-30 if that is 0), so duplicates give a finite value (1 when both distances are
       infinite, i.e. overflow float32);
    3. ``label_agreement``: fraction of the k training neighbours whose label equals the query's
       (NaN when no labels are given).

    Distances are squared Euclidean or 1 - cosine (``metric``), exact (see ``kneighbors``).

    Args:
        queries: (m, d) features of the samples under question.
        train_bank: (n_train, d) features of training samples (members).
        heldout_bank: (n_heldout, d) features of samples the model never saw.
        k: neighbours, 1 <= k <= bank size (minus one for the bank the queries belong to).
        query_labels: (m,) labels of the queries, for column 3.
        train_labels: (n_train,) labels of ``train_bank``, for column 3.
        metric: ``"l2"`` or ``"cosine"``.
        exclude_self: when the queries *are* one of the banks, a query must not count itself as
            its own neighbour: ``True`` or ``"train"`` (queries are ``train_bank``, row i is
            query i), ``"heldout"`` (queries are ``heldout_bank``), ``False`` (neither).

    Returns:
        numpy.ndarray: (m, 4) features, columns as above.
    """
    if not isinstance(exclude_self, (bool, np.bool_, str)) or exclude_self not in (False, True, "train", "heldout"):
        raise ValueError(f"exclude_self: expected False, True, 'train' or 'heldout', got {_describe(exclude_self)}")
    if metric not in _METRICS:
        raise ValueError(f"metric: expected one of {sorted(_METRICS)!r}, got {metric!r}")
    k = check_positive_int(k, "k")
    q = as_features(queries, "queries")
    tr = as_features(train_bank, "train_bank")
    ho = as_features(heldout_bank, "heldout_bank")
    for name, a in (("train_bank", tr), ("heldout_bank", ho)):
        if a.shape[1] != q.shape[1]:
            raise ValueError(f"{name}: expected {q.shape[1]} feature columns (as queries), got shape {a.shape}")
    own = {True: "train", "train": "train", "heldout": "heldout"}.get(exclude_self)
    if own is not None:
        bank = tr if own == "train" else ho
        if bank.shape[0] != q.shape[0]:
            raise ValueError(f"exclude_self: expected queries to be the {own} bank ({bank.shape[0]} rows), "
                             f"got {q.shape[0]} queries")
    ql, tl = _label_pair(query_labels, train_labels, len(q), len(tr), "query_labels", "train_labels")
    self_idx = np.arange(len(q), dtype=np.int64)
    return _features(q, tr, ho, k, ql, tl, metric,
                     exclude_train=self_idx if own == "train" else None,
                     exclude_heldout=self_idx if own == "heldout" else None)


def _transform(f: np.ndarray, use_labels: bool) -> np.ndarray:
    # Distances span orders of magnitude: the attack works on their logarithms.
    tiny, big = 1e-30, np.finfo(np.float64).max
    f = np.minimum(f, big)  # a distance that overflowed float32 is inf
    cols = [np.log(f[:, 0] + tiny), np.log(f[:, 1] + tiny), np.log(np.maximum(f[:, 2], tiny))]
    if use_labels:
        cols.append(f[:, 3])
    return np.stack(cols, axis=1)


def knn_mia(forget, retain, test, *, k: int = 5, forget_labels=None, retain_labels=None, test_labels=None,
            metric: str = "l2", seed: int = 0, max_per_set: int = 5000, test_size: float = 0.3) -> dict:
    """k-NN membership-inference attack in feature space: how many forget samples look unseen.

    Banks: the **training bank is ``retain``** (what an unlearned model should still know) and the
    **held-out bank is ``test``**. Every query gets the four ``knn_mia_features`` against both:

    - member examples: up to ``max_per_set`` retain samples, each excluded from the training bank
      (by index) so that it is not its own neighbour at distance 0;
    - non-member examples: up to ``max_per_set`` test samples, each excluded from the held-out
      bank likewise (the symmetric leak);
    - targets: every forget sample, against both full banks (it is in neither).

    A logistic regression (standardised log-distances, log-ratio and, with labels, the label
    agreement) is trained on a balanced, stratified ``1 - test_size`` split of members (1) vs
    non-members (0), scored on the rest (AUC, accuracy), and applied to the forget samples.

    Args:
        forget: (n_f, d) features of the forget set.
        retain: (n_r, d) features of the retain set (members), n_r > k.
        test: (n_t, d) features of unseen samples (non-members), n_t > k.
        k: neighbours.
        forget_labels: (n_f,) labels; give all three label arrays or none.
        retain_labels: (n_r,) labels.
        test_labels: (n_t,) labels.
        metric: ``"l2"`` or ``"cosine"``.
        seed: fixes the subsampling and the train/held-out split.
        max_per_set: cap on the member and non-member examples (banks are always complete).
        test_size: fraction of the balanced examples held out to score the attack.

    Returns:
        dict: ``knn_mia`` (fraction of forget samples predicted non-member: higher looks more
        forgotten; compare with the gold model's value), ``forget_member_rate`` (1 - that),
        ``knn_attack_auc`` and ``attack_accuracy`` (on the held-out examples; 0.5 = chance),
        ``n_members``, ``n_nonmembers`` (examples per class), ``n_forget`` (``knn_mia_attack``).
    """
    if metric not in _METRICS:
        raise ValueError(f"metric: expected one of {sorted(_METRICS)!r}, got {metric!r}")
    k = check_positive_int(k, "k")
    seed = check_positive_int(seed, "seed", minimum=0)
    max_per_set = check_positive_int(max_per_set, "max_per_set", minimum=2)
    if isinstance(test_size, bool) or not isinstance(test_size, (float, int, np.floating)) or not 0 < test_size < 1:
        raise ValueError(f"test_size: expected a number in (0, 1), got {test_size!r}")
    f = as_features(forget, "forget")
    r = as_features(retain, "retain")
    t = as_features(test, "test")
    for name, a in (("retain", r), ("test", t)):
        if a.shape[1] != f.shape[1]:
            raise ValueError(f"{name}: expected {f.shape[1]} feature columns (as forget), got shape {a.shape}")
        if a.shape[0] <= k:
            raise ValueError(f"{name}: expected more than k = {k} rows (a query excludes itself), got {a.shape[0]}")
    # One dtype for all three (float64 only if all are).
    if len({f.dtype, r.dtype, t.dtype}) > 1:
        f, r, t = (a.astype(np.float32) for a in (f, r, t))
    labels = (forget_labels, retain_labels, test_labels)
    if any(v is not None for v in labels) and any(v is None for v in labels):
        missing = ("forget_labels", "retain_labels", "test_labels")[[v is None for v in labels].index(True)]
        raise ValueError(f"{missing}: expected labels for forget, retain and test (or none), got None")
    use_labels = forget_labels is not None
    if use_labels:
        names = ("forget_labels", "retain_labels", "test_labels")
        fl, rl, tl = (check_labels(v, name) for v, name in zip(labels, names))
        for name, lab, a in (("forget_labels", fl, f), ("retain_labels", rl, r), ("test_labels", tl, t)):
            if len(lab) != len(a):
                raise ValueError(f"{name}: expected one label per row ({len(a)}), got length {len(lab)}")
    else:
        fl = rl = tl = None  # type: ignore[assignment]

    rng = np.random.default_rng(seed)
    n_ex = min(len(r), len(t), max_per_set)
    if n_ex < 5:
        raise ValueError(f"max_per_set: expected at least 5 member and 5 non-member examples for the attack "
                         f"(min of len(retain), len(test), max_per_set), got {n_ex}")
    mem = np.sort(rng.choice(len(r), n_ex, replace=False))
    non = np.sort(rng.choice(len(t), n_ex, replace=False))
    feats_f = _features(f, r, t, k, fl, rl, metric, names=("forget", "retain", "test"))
    feats_m = _features(r[mem], r, t, k, None if rl is None else rl[mem], rl, metric, exclude_train=mem,
                        names=("retain", "retain", "test"))
    feats_n = _features(t[non], r, t, k, None if tl is None else tl[non], rl, metric, exclude_heldout=non,
                        names=("test", "retain", "test"))
    return knn_mia_attack(feats_m, feats_n, feats_f, use_labels=use_labels, seed=seed, test_size=test_size)


def knn_mia_attack(members, nonmembers, targets, *, use_labels: bool = True, seed: int = 0,
                   test_size: float = 0.3) -> dict:
    """The attack of ``knn_mia`` on features already computed (``knn_mia_features`` or
    ``knn_mia_features_from_neighbors``).

    A logistic regression on standardised log-distances, log-ratio and (``use_labels``) label
    agreement is trained on a stratified ``1 - test_size`` split of members (1) vs non-members
    (0) (``random_state=seed``), scored on the rest, and applied to the targets.

    Args:
        members: (n_m, 4) features of known members (retain queries).
        nonmembers: (n_n, 4) features of known non-members (test queries).
        targets: (n_f, 4) features of the forget queries.
        use_labels: use column 3 (label agreement).
        seed: seed of the split.
        test_size: fraction of the examples held out to score the attack.

    Returns:
        dict: ``knn_mia`` (fraction of targets predicted non-member), ``knn_attack_auc`` and
        ``attack_accuracy`` (on the held-out examples; 0.5 = chance), ``forget_member_rate``
        (1 - ``knn_mia``), ``n_members``, ``n_nonmembers``, ``n_forget``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    members, nonmembers, targets = (np.asarray(a, dtype=np.float64) for a in (members, nonmembers, targets))
    for name, a in (("members", members), ("nonmembers", nonmembers), ("targets", targets)):
        if a.ndim != 2 or a.shape[1] != len(FEATURE_NAMES):
            raise ValueError(f"{name}: expected an (n, {len(FEATURE_NAMES)}) feature array, got {_describe(a)}")
    x = _transform(np.concatenate([members, nonmembers]), use_labels)
    y = np.concatenate([np.ones(len(members)), np.zeros(len(nonmembers))])
    try:
        x_tr, x_ho, y_tr, y_ho = train_test_split(x, y, test_size=test_size, stratify=y, random_state=seed)
    except ValueError as exc:
        raise ValueError(f"test_size: expected a split leaving both classes on both sides of {len(y)} "
                         f"examples, got {test_size!r} ({exc})") from None
    if len(np.unique(y_ho)) < 2 or len(np.unique(y_tr)) < 2:
        raise ValueError(f"test_size: expected a split leaving both classes on both sides of {len(y)} "
                         f"examples, got {test_size!r}")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x_tr, y_tr)
    auc = float(roc_auc_score(y_ho, model.predict_proba(x_ho)[:, 1]))
    acc = float((model.predict(x_ho) == y_ho).mean())
    member_rate = float(model.predict(_transform(targets, use_labels)).mean())
    return {
        "knn_mia": 1.0 - member_rate,
        "knn_attack_auc": auc,
        "attack_accuracy": acc,
        "forget_member_rate": member_rate,
        "n_members": int(len(members)),
        "n_nonmembers": int(len(nonmembers)),
        "n_forget": int(len(targets)),
    }
