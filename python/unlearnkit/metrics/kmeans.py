"""k-means clustering (Rust engine): k-means++ then Lloyd, assignment by blocked GEMM."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _core
from .._validation import _describe, check_positive_int
from .neighbors import as_features

__all__ = ["kmeans"]


@dataclass(frozen=True)
class KMeansResult:
    """The result of ``kmeans``.

    Attributes:
        labels: (n,) int64 cluster index of every row.
        centroids: (k, d) cluster means, float32 (float64 when ``x`` is float64).
        inertia: sum of squared distances of the rows to their centroid (float64, exact).
        n_iter: Lloyd iterations run.
    """

    labels: np.ndarray
    centroids: np.ndarray
    inertia: float
    n_iter: int


def kmeans(x, n_clusters: int, *, n_init: int = 1, max_iter: int = 100, tol: float = 1e-4, seed: int = 0,
           init="k-means++") -> KMeansResult:
    """k-means of the rows of ``x`` (Lloyd's algorithm), multi-threaded, deterministic for a seed.

    Initialisation is greedy k-means++ (2 + ln k candidates per step, as scikit-learn), run on a
    random subsample of max(8192, 32 k) rows when ``x`` is larger. Each Lloyd iteration assigns
    blocks of rows with one matrix product against the centroids and accumulates the new
    centroids in float64. It stops when no label changes or when the squared centroid shift,
    summed over clusters, is at most ``tol`` times the mean feature variance (scikit-learn's
    rule); an empty cluster is re-seeded at the row farthest from its centroid. Data far from
    the origin are centred (and scaled by a power of two) block by block, as scikit-learn
    centres X, without a copy of ``x``; otherwise rows are read in place.

    Args:
        x: (n, d) features (numpy or torch; float16/32/64, int or bool). float64 is computed in
            float64, everything else in float32.
        n_clusters: k, 1 <= k <= n.
        n_init: restarts from independent k-means++ seeds; the lowest inertia wins.
        max_iter: Lloyd iterations at most, >= 1.
        tol: relative tolerance on the centroid shift, >= 0.
        seed: non-negative int; the same seed gives the same result on any number of threads.
        init: ``"k-means++"`` or a (k, d) array of initial centroids (then one run is made).

    Returns:
        KMeansResult: ``labels`` (n,) int64, ``centroids`` (k, d), ``inertia`` (float, exact
        sum of squared distances to the returned centroids) and ``n_iter`` (int).
    """
    n_clusters = check_positive_int(n_clusters, "n_clusters")
    n_init = check_positive_int(n_init, "n_init")
    max_iter = check_positive_int(max_iter, "max_iter")
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.integer, np.floating)):
        raise TypeError(f"tol: expected a number >= 0, got {_describe(tol)}")
    if not (np.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol: expected a finite number >= 0, got {tol!r}")
    seed = check_positive_int(seed, "seed", minimum=0)
    if seed >= 2**64:
        raise ValueError(f"seed: expected an int < 2**64, got {seed}")
    a = as_features(x, "x")
    if n_clusters > a.shape[0]:
        raise ValueError(f"n_clusters: expected an int <= n_samples = {a.shape[0]}, got {n_clusters}")
    centers = None
    if isinstance(init, str):
        if init != "k-means++":
            raise ValueError(f"init: expected 'k-means++' or a ({n_clusters}, {a.shape[1]}) array, got {init!r}")
    else:
        centers = as_features(init, "init").astype(a.dtype, copy=False)
        if centers.shape != (n_clusters, a.shape[1]):
            raise ValueError(f"init: expected an array of shape ({n_clusters}, {a.shape[1]}), got shape {centers.shape}")
    labels, centroids, inertia, n_iter = _core.kmeans(a, n_clusters, n_init, max_iter, float(tol), seed, centers)
    return KMeansResult(labels=labels, centroids=centroids, inertia=float(inertia), n_iter=int(n_iter))
