"""The few calls the eval job makes into ``unlearnkit.metrics`` (the Rust engine), in one place."""

from __future__ import annotations

import numpy as np


def metrics():
    from .. import metrics as M

    return M


def contingency(labels_true: np.ndarray, labels_pred: np.ndarray):
    return metrics().contingency_matrix(labels_true, labels_pred)


def scores(table: np.ndarray) -> dict:
    """Clustering scores of a merged contingency table (classes x clusters, int64)."""
    table = np.asarray(table, dtype=np.int64)
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]  # what a full-array contingency holds
    return {k: float(v) for k, v in metrics().scores_from_contingency(np.ascontiguousarray(table)).items()}


def fit_kmeans(x: np.ndarray, n_clusters: int, *, n_init: int, max_iter: int, tol: float, seed: int):
    return metrics().kmeans(x, n_clusters, n_init=n_init, max_iter=max_iter, tol=tol, seed=seed)


def assign(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid (squared L2) for every row (the engine's exact 1-NN)."""
    _, idx = metrics().kneighbors(x, np.ascontiguousarray(centroids, dtype=x.dtype), 1)
    return np.asarray(idx[:, 0], dtype=np.int64)


_MASKED = np.iinfo(np.int64).max  # index of a masked candidate (sorts after every real one)


def knn_candidates(queries: np.ndarray, bank: np.ndarray, k: int, *, offset: int, exclude=None,
                   bank_labels: np.ndarray | None = None, block_rows=None):
    """The k nearest rows of ``bank`` (a chunk starting at global row ``offset``) for every query:
    ``(distances, global indices, labels of those rows or None)``, ascending by (distance, index).

    ``exclude``: (m,) global row each query must not match (its own row; -1: none). A chunk of at
    most k rows returns all its rows (an excluded one masked with an infinite distance), so no
    query loses a candidate it would have had in one search of the whole bank.
    """
    M = metrics()
    n = len(bank)
    if n > k:
        dist, idx = M.kneighbors(queries, bank, k, index_offset=offset, block_size=block_rows,
                                 exclude_index=exclude)
    else:
        dist, idx = M.kneighbors(queries, bank, n, index_offset=offset, block_size=block_rows)
        if exclude is not None:
            own = idx == np.asarray(exclude, dtype=np.int64)[:, None]
            if own.any():
                dist = np.where(own, np.inf, dist).astype(dist.dtype)
                idx = np.where(own, _MASKED, idx)
                order = np.lexsort((idx, dist), axis=1)
                dist, idx = np.take_along_axis(dist, order, 1), np.take_along_axis(idx, order, 1)
    idx = np.asarray(idx, dtype=np.int64)
    labels = None
    if bank_labels is not None:
        labels = np.where(idx == _MASKED, -1, bank_labels[np.clip(idx - offset, 0, n - 1)])
    return dist, idx, labels


def merge_candidates(a, b, k: int):
    """Merges two candidate triples into the k best by (distance, index), as
    ``unlearnkit.metrics.merge_kneighbors`` orders them; labels follow their rows."""
    dist = np.concatenate([a[0], b[0]], axis=1)
    idx = np.concatenate([a[1], b[1]], axis=1)
    order = np.lexsort((idx, dist), axis=1)[:, :k]
    labels = None if a[2] is None else np.take_along_axis(np.concatenate([a[2], b[2]], axis=1), order, 1)
    return np.take_along_axis(dist, order, 1), np.take_along_axis(idx, order, 1), labels


def knn_mia_from_neighbours(train: dict, heldout: dict, query_labels: dict, *, k: int, seed: int,
                            test_size: float = 0.3) -> dict:
    """``unlearnkit.metrics.knn_mia`` from neighbour lists found shard by shard.

    train / heldout: {"forget"|"retain"|"test": (distances, indices, labels)} of each query group
    in the retain (training) bank and the test (held-out) bank, k columns each; members are the
    retain queries, non-members the test queries, targets the forget queries; query_labels the
    groups' labels. Same features (k-th distances, ratio, label agreement), same attack, same
    seed use as ``knn_mia``: equal to it on the same query rows.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from ..metrics.knn_membership import FEATURE_NAMES, _ratio, _transform

    feats = {}
    for g in ("retain", "test", "forget"):
        d_tr, _, lab_tr = train[g]
        d_ho = heldout[g][0]
        if d_tr.shape[1] < k or d_ho.shape[1] < k or not np.isfinite(d_tr[:, k - 1]).all():
            raise ValueError(f"knn_k: expected fewer neighbours than rows in the retain and test banks, got k={k}")
        f = np.empty((len(d_tr), 4), dtype=np.float64)
        f[:, 0] = d_tr[:, k - 1]
        f[:, 1] = d_ho[:, k - 1]
        f[:, 2] = _ratio(f[:, 0], f[:, 1])
        f[:, 3] = (lab_tr[:, :k] == query_labels[g][:, None]).mean(axis=1)
        feats[g] = f
    n_ex = len(feats["retain"])
    x = _transform(np.concatenate([feats["retain"], feats["test"]]), True)
    y = np.concatenate([np.ones(n_ex), np.zeros(len(feats["test"]))])
    x_tr, x_ho, y_tr, y_ho = train_test_split(x, y, test_size=test_size, stratify=y, random_state=seed)
    if len(np.unique(y_ho)) < 2 or len(np.unique(y_tr)) < 2:
        raise ValueError(f"knn_queries: expected enough retain and test rows to split the attack's examples, "
                         f"got {n_ex} per class")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x_tr, y_tr)
    auc = float(roc_auc_score(y_ho, model.predict_proba(x_ho)[:, 1]))
    acc = float((model.predict(x_ho) == y_ho).mean())
    member_rate = float(model.predict(_transform(feats["forget"], True)).mean())
    means = {g: dict(zip(FEATURE_NAMES, map(float, feats[g].mean(axis=0)))) for g in feats}
    return {"metrics": {"knn_mia": 1.0 - member_rate, "knn_attack_auc": auc},
            "details": {"forget_member_rate": member_rate, "attack_accuracy": acc, "n_members": int(n_ex),
                        "n_nonmembers": int(len(feats["test"])), "n_forget": int(len(feats["forget"])),
                        "feature_means": means}}
