"""The torch backend of ``kmeans`` against the Rust engine.

Oracle: the Rust engine (tested against scikit-learn and Lloyd by hand in
``test_engine_kmeans.py``). From the same initial centroids both run the same Lloyd iterations:
same labels and iteration count, centroids and exact inertia equal up to float64 summation
order. With k-means++ the torch backend draws its own seeds: it must be deterministic and reach
the engine's clustering on well-separated blobs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import unlearnkit.metrics as M

CENTERS = np.array([[0, 0], [10, 0], [0, 10], [10, 10], [5, 20]], float)


def blobs(per=300, seed=0, dtype=np.float32, offset=0.0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(CENTERS)), per)
    return (CENTERS[y] + rng.uniform(-1, 1, (len(y), 2)) + offset).astype(dtype), y


def same_partition(a, b) -> bool:
    pairs = set(zip(np.asarray(a).tolist(), np.asarray(b).tolist()))
    return len(pairs) == len(set(np.asarray(a).tolist())) == len(set(np.asarray(b).tolist()))


@pytest.mark.parametrize("dtype, offset", [(np.float32, 0.0), (np.float64, 0.0), (np.float64, 1e6),
                                           (np.float32, 3e4)])
def test_same_lloyd_as_engine_from_the_same_init(dtype, offset):
    x, _ = blobs(dtype=dtype, offset=offset)
    rng = np.random.default_rng(1)
    init = x[rng.choice(len(x), 5, replace=False)]
    e = M.kmeans(x, 5, init=init, backend="engine")
    t = M.kmeans(x, 5, init=init, backend="torch")
    assert np.array_equal(t.labels, e.labels) and t.n_iter == e.n_iter
    assert t.centroids.dtype == e.centroids.dtype
    assert np.allclose(t.centroids, e.centroids, rtol=1e-6, atol=1e-6 * max(1.0, offset))
    assert abs(t.inertia - e.inertia) <= 1e-9 * e.inertia


def test_empty_clusters_are_reseeded_like_the_engine():
    x = np.array([[0.0], [0.1], [0.2], [5.0], [5.1], [5.2]], np.float32)
    init = np.array([[100.0], [101.0]], np.float32)
    e = M.kmeans(x, 2, init=init, backend="engine")
    t = M.kmeans(x, 2, init=init, backend="torch")
    assert np.array_equal(t.labels, e.labels) and np.array_equal(t.centroids, e.centroids)
    r = M.kmeans(np.array([[1.0], [1.0], [1.0], [2.0]], np.float32), 3, backend="torch")
    assert r.inertia == 0.0


def test_kmeans_pp_is_deterministic_and_finds_the_blobs():
    x, y = blobs(per=400, seed=2)
    a = M.kmeans(torch.from_numpy(x), 5, n_init=3, seed=4, backend="torch")
    b = M.kmeans(x, 5, n_init=3, seed=4, backend="torch")
    assert np.array_equal(a.labels, b.labels) and a.inertia == b.inertia
    assert same_partition(a.labels, y)
    e = M.kmeans(x, 5, n_init=3, seed=4, backend="engine")
    assert abs(a.inertia - e.inertia) <= 1e-9 * e.inertia
    # Exact inertia of the returned centroids.
    direct = ((x.astype(np.float64) - a.centroids[a.labels].astype(np.float64)) ** 2).sum()
    assert abs(a.inertia - direct) <= 1e-9 * direct


def test_errors_name_the_argument():
    x, _ = blobs(per=3)
    with pytest.raises(ValueError, match="^n_clusters: expected an int <= n_samples = 15"):
        M.kmeans(x, 16, backend="torch")
    with pytest.raises(ValueError, match=r"^init: expected an array of shape \(5, 2\)"):
        M.kmeans(x, 5, init=x[:4], backend="torch")
    bad = x.copy()
    bad[4, 1] = np.inf
    with pytest.raises(ValueError, match="^x: expected finite values, got NaN or Inf in row 4"):
        M.kmeans(bad, 2, backend="torch")
    with pytest.raises(ValueError, match="^backend: expected one of"):
        M.kmeans(x, 2, backend="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_same_lloyd_as_engine():
    x, _ = blobs(per=2000, seed=3)
    init = x[:5]
    e = M.kmeans(x, 5, init=init, backend="engine")
    t = M.kmeans(torch.from_numpy(x).cuda(), 5, init=init)
    assert np.array_equal(t.labels, e.labels) and t.n_iter == e.n_iter
