"""The few calls the eval job makes into ``unlearnkit.metrics`` (the Rust engine), in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .readers import StoredKind


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
MASKED = _MASKED


def eval_chunk(x: np.ndarray, kind: StoredKind, **options) -> dict:
    """One streamed chunk through the engine's fused sweep (``unlearnkit._core.eval_chunk``):
    ``x`` as stored (uint16 bits of float16/bfloat16, float32, float64), upcast per slab inside
    the engine; the finite check, float64 moments, probe classes, nearest centroids, alignment
    sum and the k-NN candidates of every query, as asked by ``options``."""
    from .. import _core

    return _core.eval_chunk(x, kind, **options)


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
    groups' labels. The features (``knn_mia_features_from_neighbors``) and the attack
    (``knn_mia_attack``) are the public functions ``knn_mia`` itself calls, so the result equals
    it on the same query rows. Returns {"metrics": knn_mia, knn_attack_auc; "details": the rest
    of ``knn_mia_attack``'s keys and the feature means per group}.
    """
    M = metrics()
    feats = {}
    for g in ("retain", "test", "forget"):
        d_tr, i_tr, lab_tr = train[g]
        d_ho, i_ho = heldout[g][0], heldout[g][1]
        if d_tr.shape[1] < k or d_ho.shape[1] < k or (i_tr[:, k - 1] == _MASKED).any() \
                or (i_ho[:, k - 1] == _MASKED).any():
            raise ValueError(f"knn_k: expected fewer neighbours than rows in the retain and test banks, got k={k}")
        for dist, bank in ((d_tr, "retain"), (d_ho, "test")):
            if not np.isfinite(dist[:, :k]).all():
                top = float(np.sqrt(np.finfo(dist.dtype).max))
                raise ValueError(f"{bank}: the squared distances between the k-NN queries and the {bank} rows "
                                 f"overflow {dist.dtype} (they reach {np.finfo(dist.dtype).max:.3g} when features "
                                 f"differ by about {top:.3g}); rescale the features (e.g. divide them by their "
                                 f"largest magnitude) or store them as float64")
        feats[g] = M.knn_mia_features_from_neighbors(d_tr, d_ho, k, train_neighbor_labels=lab_tr,
                                                     query_labels=query_labels[g])
    try:
        out = M.knn_mia_attack(feats["retain"], feats["test"], feats["forget"], use_labels=True, seed=seed,
                               test_size=test_size)
    except ValueError as exc:
        raise ValueError(f"knn_queries: expected enough retain and test rows to split the attack's examples, "
                         f"got {len(feats['retain'])} per class ({exc})") from None
    from ..metrics.knn_membership import FEATURE_NAMES

    headline = ("knn_mia", "knn_attack_auc")
    details = {key: v for key, v in out.items() if key not in headline}
    details["feature_means"] = {g: dict(zip(FEATURE_NAMES, map(float, feats[g].mean(axis=0)))) for g in feats}
    return {"metrics": {key: out[key] for key in headline}, "details": details}
