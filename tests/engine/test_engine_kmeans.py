"""k-means of the Rust engine against scikit-learn's KMeans (Lloyd) and direct recomputation."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

import unlearnkit.metrics as M


def blobs(n=3000, k=8, d=16, std=1.0, seed=0, box=(-20, 20)):
    x, y = make_blobs(n_samples=n, centers=k, n_features=d, cluster_std=std, center_box=box, random_state=seed)
    return x.astype(np.float32), y


def direct_inertia(x, labels, centroids) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(((x - np.asarray(centroids, dtype=np.float64)[labels]) ** 2).sum())


def test_recovers_well_separated_blobs():
    x, y = blobs()
    r = M.kmeans(x, 8, n_init=3, seed=0)
    assert adjusted_rand_score(y, r.labels) == pytest.approx(1.0)
    assert r.labels.dtype == np.int64 and r.labels.shape == (3000,)
    assert r.centroids.dtype == np.float32 and r.centroids.shape == (8, 16)
    assert isinstance(r.inertia, float) and isinstance(r.n_iter, int)
    # Centroids are the means of their clusters; inertia is the exact sum of squared distances.
    for c in range(8):
        np.testing.assert_allclose(r.centroids[c], x[r.labels == c].astype(np.float64).mean(0), rtol=1e-5, atol=1e-5)
    assert r.inertia == pytest.approx(direct_inertia(x, r.labels, r.centroids), rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_initial_centroids_give_sklearns_lloyd_result(seed):
    # Overlapping blobs so that Lloyd takes several iterations; same init for both.
    x, _ = blobs(n=4000, k=10, d=8, std=3.0, seed=seed, box=(-10, 10))
    init = x[np.random.default_rng(seed).choice(len(x), 10, replace=False)]
    sk = KMeans(10, init=init, n_init=1, max_iter=300, tol=1e-4, algorithm="lloyd").fit(x)
    ours = M.kmeans(x, 10, init=init, max_iter=300, tol=1e-4)
    assert ours.inertia == pytest.approx(sk.inertia_, rel=1e-3)
    assert adjusted_rand_score(sk.labels_, ours.labels) > 0.99
    np.testing.assert_allclose(np.sort(ours.centroids, axis=0), np.sort(sk.cluster_centers_, axis=0), atol=0.05)
    # And in float64.
    x64 = x.astype(np.float64)
    sk = KMeans(10, init=init.astype(np.float64), n_init=1, max_iter=300, tol=1e-4, algorithm="lloyd").fit(x64)
    ours = M.kmeans(x64, 10, init=init.astype(np.float64), max_iter=300, tol=1e-4)
    assert ours.centroids.dtype == np.float64
    assert ours.inertia == pytest.approx(sk.inertia_, rel=1e-6)
    assert np.array_equal(ours.labels, sk.labels_)


def test_one_iteration_equals_sklearn_exactly():
    # From the same centres, one Lloyd step: the same assignment and the same new means.
    x, _ = blobs(n=2000, k=6, d=5, std=4.0, seed=3, box=(-8, 8))
    x = x.astype(np.float64)
    init = x[:6].copy()
    sk = KMeans(6, init=init, n_init=1, max_iter=1, algorithm="lloyd").fit(x)
    ours = M.kmeans(x, 6, init=init, max_iter=1)
    assert np.array_equal(ours.labels, sk.labels_)
    np.testing.assert_allclose(ours.centroids, sk.cluster_centers_, rtol=1e-12, atol=1e-12)
    assert ours.inertia == pytest.approx(sk.inertia_, rel=1e-12)
    assert ours.n_iter == sk.n_iter_ == 1


def test_kmeans_plus_plus_inertia_close_to_sklearn():
    x, _ = blobs(n=6000, k=20, d=10, std=2.0, seed=4, box=(-15, 15))
    sk = KMeans(20, n_init=4, random_state=0, algorithm="lloyd").fit(x)
    ours = M.kmeans(x, 20, n_init=4, seed=0)
    assert ours.inertia <= sk.inertia_ * 1.03, (ours.inertia, sk.inertia_)


def test_deterministic_for_a_seed_and_n_init_keeps_the_best():
    x, _ = blobs(n=5000, k=12, d=6, std=3.0, seed=5, box=(-10, 10))
    a = M.kmeans(x, 12, seed=7)
    b = M.kmeans(x, 12, seed=7)
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.centroids, b.centroids)
    assert a.inertia == b.inertia and a.n_iter == b.n_iter
    c = M.kmeans(x, 12, seed=8)
    assert not np.array_equal(a.centroids, c.centroids)
    # Restart 0 of n_init=5 is the n_init=1 run; the best of five cannot be worse.
    best = M.kmeans(x, 12, seed=7, n_init=5)
    assert best.inertia <= a.inertia


def test_same_result_on_one_and_two_threads():
    # The engine directly (importing unlearnkit.metrics would import torch in each process).
    code = (
        "import numpy as np, sys\n"
        "from unlearnkit import _core\n"
        "rng = np.random.default_rng(0); x = rng.standard_normal((20000, 24)).astype(np.float32)\n"
        "labels, centroids, inertia, n_iter = _core.kmeans(x, 30, 1, 20, 1e-4, 3)\n"
        "d, i = _core.kneighbors(x[:500], x, 5)\n"
        "s = _core.clustering_scores(labels, np.arange(20000) % 7)\n"
        "sys.stdout.buffer.write(labels.tobytes() + centroids.tobytes() + d.tobytes() + i.tobytes()"
        " + repr(inertia).encode()"
        " + repr(sorted((k, getattr(s, k)) for k in dir(s) if isinstance(getattr(s, k), float))).encode())\n"
    )
    outs = []
    for threads in ("1", "2"):
        env = {**os.environ, "RAYON_NUM_THREADS": threads}
        outs.append(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=True).stdout)
    assert outs[0] == outs[1] and len(outs[0]) > 0


def test_subsampled_initialisation_on_larger_data():
    # n > max(8192, 32 k): k-means++ runs on a subsample; Lloyd on everything.
    x, y = blobs(n=30_000, k=5, d=4, std=0.5, seed=6)
    r = M.kmeans(x, 5, seed=1)
    assert adjusted_rand_score(y, r.labels) == pytest.approx(1.0)


def test_empty_clusters_and_degenerate_data():
    # Initial centres far from the data: all but one cluster start empty and are re-seeded.
    x = np.concatenate([np.zeros((50, 2)), np.full((50, 2), 10.0)]).astype(np.float32)
    x += np.random.default_rng(0).standard_normal(x.shape).astype(np.float32) * 0.1
    r = M.kmeans(x, 2, init=np.array([[100.0, 100.0], [101.0, 101.0]], dtype=np.float32))
    assert adjusted_rand_score(np.repeat([0, 1], 50), r.labels) == 1.0
    # Fewer distinct points than clusters, and k = n.
    dup = np.array([[1.0, 1.0]] * 5 + [[2.0, 2.0]] * 5, dtype=np.float32)
    r = M.kmeans(dup, 4)
    assert r.inertia == pytest.approx(0.0, abs=1e-12)
    r = M.kmeans(dup[:3], 3)
    assert r.inertia == pytest.approx(0.0, abs=1e-12)
    # One cluster: the mean.
    r = M.kmeans(x, 1)
    assert np.all(r.labels == 0) and np.allclose(r.centroids[0], x.mean(0), atol=1e-5)
    # Constant data.
    r = M.kmeans(np.ones((20, 3)), 2)
    assert r.inertia == 0.0


def test_far_from_origin():
    x, y = blobs(n=3000, k=4, d=3, std=0.5, seed=7)
    r = M.kmeans(x.astype(np.float64) + 1e6, 4, seed=2, n_init=2)
    assert adjusted_rand_score(y, r.labels) == pytest.approx(1.0)


def test_input_kinds():
    import torch

    x, _ = blobs(n=1000, k=3, d=4, seed=8)
    ref = M.kmeans(x, 3, seed=0)
    wide = np.zeros((1000, 8), dtype=np.float32)
    wide[:, ::2] = x
    for arr in (wide[:, ::2], np.asfortranarray(x), torch.from_numpy(x)):
        r = M.kmeans(arr, 3, seed=0)
        assert np.array_equal(r.labels, ref.labels) and np.array_equal(r.centroids, ref.centroids)
    r = M.kmeans(x.tolist(), 3, seed=0)  # Python floats: float64
    assert r.centroids.dtype == np.float64 and np.array_equal(r.labels, ref.labels)
    np.testing.assert_allclose(r.centroids, ref.centroids, rtol=1e-5)
    r = M.kmeans(x.astype(np.float16), 3, seed=0)
    assert r.centroids.dtype == np.float32 and adjusted_rand_score(ref.labels, r.labels) == 1.0
    r = M.kmeans(np.rint(x).astype(np.int32), 3, seed=0)
    assert r.labels.shape == (1000,)


def test_stops_by_tol_and_max_iter():
    x, _ = blobs(n=5000, k=15, d=6, std=4.0, seed=9, box=(-10, 10))
    assert M.kmeans(x, 15, max_iter=2, tol=0.0).n_iter == 2
    loose = M.kmeans(x, 15, tol=1e-1)
    tight = M.kmeans(x, 15, tol=0.0, max_iter=500)
    assert loose.n_iter <= tight.n_iter
    assert tight.inertia <= loose.inertia * (1 + 1e-6)


@pytest.mark.parametrize(
    "call, exc, pattern",
    [
        (lambda x: M.kmeans(x, 0), ValueError, "n_clusters: expected an int >= 1"),
        (lambda x: M.kmeans(x, 11), ValueError, "n_clusters: expected an int <= n_samples = 10"),
        (lambda x: M.kmeans(x, 2.5), TypeError, "n_clusters"),
        (lambda x: M.kmeans(x, 2, n_init=0), ValueError, "n_init"),
        (lambda x: M.kmeans(x, 2, max_iter=0), ValueError, "max_iter"),
        (lambda x: M.kmeans(x, 2, tol=-1.0), ValueError, "tol"),
        (lambda x: M.kmeans(x, 2, tol=float("nan")), ValueError, "tol"),
        (lambda x: M.kmeans(x, 2, tol="small"), TypeError, "tol"),
        (lambda x: M.kmeans(x, 2, seed=-1), ValueError, "seed"),
        (lambda x: M.kmeans(x, 2, init="random"), ValueError, "init"),
        (lambda x: M.kmeans(x, 2, init=np.zeros((3, 3))), ValueError, "init: expected an array of shape \\(2, 3\\)"),
        (lambda x: M.kmeans(x, 2, init=np.full((2, 3), np.nan)), ValueError, "init: expected finite"),
        (lambda x: M.kmeans(x[:, 0], 2), ValueError, "x: expected a 2-D"),
        (lambda x: M.kmeans(x[:0], 1), ValueError, "x: expected at least one row"),
        (lambda x: M.kmeans(np.where(x > 0.5, np.inf, x), 2), ValueError,
         "x: expected finite values, got NaN or Inf in row"),
        (lambda x: M.kmeans(x.astype(object), 2), TypeError, "x"),
    ],
)
def test_bad_inputs_name_the_argument(call, exc, pattern):
    x = np.random.default_rng(0).standard_normal((10, 3)).astype(np.float32)
    with pytest.raises(exc, match=pattern):
        call(x)


def test_engine_layer_raises_value_errors():
    from unlearnkit import _core

    x = np.zeros((4, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="n_clusters: expected an int in \\[1, n_samples = 4\\]"):
        _core.kmeans(x, 5)
    with pytest.raises(ValueError, match="max_iter: expected an int >= 1"):
        _core.kmeans(x, 1, 1, -2)
    with pytest.raises(TypeError, match="init: expected the dtype of x"):
        _core.kmeans(x, 1, init=np.zeros((1, 2)))
