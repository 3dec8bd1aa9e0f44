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


def knn_candidates(queries: np.ndarray, bank: np.ndarray, k: int, *, offset: int, self_index=None,
                   block_rows=None):
    """The k nearest rows of ``bank`` (a chunk starting at global row ``offset``) for every query,
    with global indices; a query's own row (``self_index``, global) is never its neighbour."""
    M = metrics()
    kk = min(k + (1 if self_index is not None else 0), len(bank))
    dist, idx = M.kneighbors(queries, bank, kk, block_size=block_rows)
    idx = np.asarray(idx, dtype=np.int64) + offset
    dist = np.asarray(dist)
    if self_index is not None:
        own = idx == np.asarray(self_index, dtype=np.int64)[:, None]
        if own.any():
            # drop the query's own row; push it past the end so the k best remain in order
            dist = np.where(own, np.inf, dist)
            idx = np.where(own, np.iinfo(np.int64).max, idx)
            order = _order(dist, idx)
            dist = np.take_along_axis(dist, order, 1)
            idx = np.take_along_axis(idx, order, 1)
        dist, idx = dist[:, :k], idx[:, :k]
    return dist, idx


def _order(dist: np.ndarray, idx: np.ndarray) -> np.ndarray:
    order = np.argsort(idx, axis=1, kind="stable")
    d2 = np.take_along_axis(dist, order, 1)
    order2 = np.argsort(d2, axis=1, kind="stable")
    return np.take_along_axis(order, order2, 1)


def merge_candidates(a, b, k: int):
    """Merges two candidate lists (distances, global indices) into the k best, ties to the lower index."""
    dist = np.concatenate([a[0], b[0]], axis=1)
    idx = np.concatenate([a[1], b[1]], axis=1)
    order = _order(dist, idx)[:, :k]
    return np.take_along_axis(dist, order, 1), np.take_along_axis(idx, order, 1)


def knn_mia_from_candidates(knn: dict, *, k: int, seed: int) -> dict:
    """PROVISIONAL until the engine's knn_mia lands: features = mean distance to the k nearest
    retain rows and to the k nearest test rows; attack = logistic regression retain vs test."""
    from ..metrics.membership import membership_attack

    feats = {}
    for q in ("forget", "retain", "test"):
        feats[q] = np.stack([knn["retain"][q][0].mean(1), knn["test"][q][0].mean(1)], axis=1)
    score = 1.0 - membership_attack(feats["retain"], feats["test"], feats["forget"], seed=seed)
    return {"metrics": {"knn_mia": score}, "details": {}}
