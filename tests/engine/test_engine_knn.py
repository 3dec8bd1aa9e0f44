"""Exact k-NN and k-NN membership features of the Rust engine against brute-force oracles.

Oracles: every pairwise distance computed with numpy in float64 (squared L2 directly as
sum((q - b)^2), cosine from normalised rows), scikit-learn's ``NearestNeighbors(algorithm="brute")``
and ``cosine_distances``. Ties are handled by comparing distances: every returned index must
carry the returned distance, and the returned distances must be the k smallest.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import unlearnkit.metrics as M


def brute(q, b, metric="l2", exclude=None):
    """All distances in float64 (m, n); `exclude[i]` (bank index) set to +inf."""
    q = np.asarray(q, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if metric == "l2":
        d = ((q[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    else:
        qn = np.linalg.norm(q, axis=1, keepdims=True)
        bn = np.linalg.norm(b, axis=1, keepdims=True)
        qu = np.divide(q, qn, out=np.zeros_like(q), where=qn > 0)
        bu = np.divide(b, bn, out=np.zeros_like(b), where=bn > 0)
        d = np.clip(1.0 - qu @ bu.T, 0.0, 2.0)
    if exclude is not None:
        for i, j in enumerate(exclude):
            if 0 <= j < d.shape[1]:
                d[i, j] = np.inf
    return d


def check_against(all_d, dist, idx, k, rtol=1e-5, atol=1e-6):
    """Tie-tolerant: sorted, the k smallest distances, and each index carries its distance."""
    m = all_d.shape[0]
    assert dist.shape == idx.shape == (m, k)
    assert idx.dtype == np.int64
    assert (np.diff(dist, axis=1) >= 0).all()
    assert (dist >= 0).all()
    want = np.sort(all_d, axis=1)[:, :k]
    np.testing.assert_allclose(dist, want, rtol=rtol, atol=atol)
    np.testing.assert_allclose(np.take_along_axis(all_d, idx, axis=1), dist, rtol=rtol, atol=atol)
    for row in idx:
        assert len(set(row.tolist())) == k  # no repeated neighbour


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("m, n, d, k", [(1, 1, 1, 1), (7, 50, 3, 5), (300, 1200, 17, 10), (64, 700, 130, 1)])
def test_matches_brute_force(metric, m, n, d, k):
    rng = np.random.default_rng(m * 1000 + n + d)
    q = rng.standard_normal((m, d)).astype(np.float32)
    b = rng.standard_normal((n, d)).astype(np.float32)
    dist, idx = M.kneighbors(q, b, k, metric=metric)
    assert dist.dtype == np.float32
    check_against(brute(q, b, metric), dist, idx, k)


def test_indices_equal_numpy_argsort_without_ties():
    rng = np.random.default_rng(0)
    q = rng.standard_normal((200, 32)).astype(np.float32)
    b = rng.standard_normal((3000, 32)).astype(np.float32)
    all_d = brute(q, b)
    dist, idx = M.kneighbors(q, b, 8)
    want = np.argsort(all_d, axis=1, kind="stable")[:, :8]
    # Random data in general position: no ties, so the indices are exact.
    assert np.array_equal(idx, want)
    np.testing.assert_allclose(dist, np.take_along_axis(all_d, want, axis=1), rtol=1e-6)


def test_agrees_with_sklearn_nearest_neighbors():
    from sklearn.metrics.pairwise import cosine_distances
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(1)
    q = rng.standard_normal((150, 24))
    b = rng.standard_normal((2000, 24))
    nn = NearestNeighbors(n_neighbors=6, algorithm="brute").fit(b)
    sk_d, sk_i = nn.kneighbors(q)
    dist, idx = M.kneighbors(q, b, 6)
    assert dist.dtype == np.float64
    np.testing.assert_allclose(dist, sk_d**2, rtol=1e-10)
    assert np.array_equal(idx, sk_i)
    cd = cosine_distances(q, b)
    dist, idx = M.kneighbors(q, b, 6, metric="cosine")
    np.testing.assert_allclose(dist, np.sort(cd, axis=1)[:, :6], rtol=1e-10, atol=1e-12)


def test_float64_is_exact_to_rounding():
    rng = np.random.default_rng(2)
    q = rng.standard_normal((40, 9))
    b = rng.standard_normal((500, 9))
    all_d = brute(q, b)
    dist, idx = M.kneighbors(q, b, 4)
    check_against(all_d, dist, idx, 4, rtol=1e-13, atol=0)


def test_ties_go_to_the_lowest_index_and_are_deterministic():
    rng = np.random.default_rng(3)
    base = rng.standard_normal((40, 6)).astype(np.float32)
    b = np.concatenate([base, base, base])  # every row three times: exact ties
    q = base[:10] + 0.01
    dist, idx = M.kneighbors(q, b, 6)
    # Each query's nearest base row appears at i, i + 40, i + 80: lowest index first.
    all_d = brute(q, b)
    check_against(all_d, dist, idx, 6)
    first = idx[:, 0]
    assert np.array_equal(idx[:, 1], first + 40) and np.array_equal(idx[:, 2], first + 80)
    for bs in (1, 7, 64, None):
        d2, i2 = M.kneighbors(q, b, 6, block_size=bs)
        assert np.array_equal(i2, idx) and np.array_equal(d2, dist)
    # A query equal to a bank row: distance exactly 0, never negative.
    d0, i0 = M.kneighbors(base[:3], b, 3)
    assert (d0 == 0).all() and np.array_equal(i0, np.array([[0, 40, 80], [1, 41, 81], [2, 42, 82]]))


def test_exclude_self():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((500, 8)).astype(np.float32)
    dist, idx = M.kneighbors(x, x, 5, exclude_self=True)
    assert not (idx == np.arange(500)[:, None]).any()
    check_against(brute(x, x, exclude=np.arange(500)), dist, idx, 5)
    # Without it, every row is its own nearest neighbour at distance 0.
    dist, idx = M.kneighbors(x, x, 1)
    assert np.array_equal(idx[:, 0], np.arange(500)) and (dist == 0).all()
    # exclude_index: a subset of the bank as queries.
    rows = np.array([3, 499, 0, 250])
    dist, idx = M.kneighbors(x[rows], x, 4, exclude_index=rows, metric="cosine")
    check_against(brute(x[rows], x, "cosine", exclude=rows), dist, idx, 4)


def test_shards_with_offsets_merge_to_the_whole_search():
    rng = np.random.default_rng(5)
    q = rng.standard_normal((120, 10)).astype(np.float32)
    b = rng.standard_normal((1000, 10)).astype(np.float32)
    whole = M.kneighbors(q, b, 7)
    parts = [M.kneighbors(q, b[lo:lo + 300], 7, index_offset=lo) for lo in range(0, 1000, 300)[:-1]]
    parts.append(M.kneighbors(q, b[900:], 7, index_offset=900))
    merged = M.merge_kneighbors(parts, 7)
    assert np.array_equal(merged[1], whole[1]) and np.array_equal(merged[0], whole[0])
    # exclude_self with shards: the queries are the bank.
    whole = M.kneighbors(b, b, 3, exclude_self=True)
    parts = [M.kneighbors(b, b[lo:lo + 250], 3, exclude_self=True, index_offset=lo) for lo in range(0, 1000, 250)]
    merged = M.merge_kneighbors(parts, 3)
    assert np.array_equal(merged[1], whole[1]) and np.array_equal(merged[0], whole[0])


def test_block_size_bounds_memory_without_changing_results():
    rng = np.random.default_rng(6)
    q = rng.standard_normal((1100, 20)).astype(np.float32)
    b = rng.standard_normal((2500, 20)).astype(np.float32)
    ref = M.kneighbors(q, b, 9, block_size=4096)
    for bs in (1, 3, 100, 512, 2500):
        d, i = M.kneighbors(q, b, 9, block_size=bs)
        assert np.array_equal(i, ref[1]) and np.array_equal(d, ref[0]), bs


def test_far_from_origin_and_extreme_scales():
    rng = np.random.default_rng(7)
    base_q = rng.standard_normal((50, 12))
    base_b = rng.standard_normal((800, 12))
    for offset, scale in [(1e4, 1.0), (0.0, 1e15), (0.0, 1e-15), (-3e3, 1e-2)]:
        q = (base_q * scale + offset).astype(np.float32)
        b = (base_b * scale + offset).astype(np.float32)
        dist, idx = M.kneighbors(q, b, 5)
        check_against(brute(q, b), dist, idx, 5, rtol=1e-5, atol=0)


def test_input_kinds():
    import torch

    rng = np.random.default_rng(8)
    x = rng.standard_normal((300, 16)).astype(np.float32)
    ref = M.kneighbors(x[:50], x, 4)
    # Strided (every other column of a wider array), Fortran order, torch, lists.
    wide = np.zeros((300, 32), dtype=np.float32)
    wide[:, ::2] = x
    for q, b in [(wide[:50, ::2], wide[:, ::2]), (np.asfortranarray(x[:50]), np.asfortranarray(x)),
                 (torch.from_numpy(x[:50]), torch.from_numpy(x)), (x[:50].tolist(), x)]:
        d, i = M.kneighbors(q, b, 4)
        assert np.array_equal(i, ref[1]) and np.allclose(d, ref[0])
    # float16 is computed in float32; float64 with float32 falls back to float32.
    h = x.astype(np.float16)
    d, i = M.kneighbors(h[:50], h, 4)
    assert d.dtype == np.float32
    check_against(brute(h[:50], h), d, i, 4)
    d, i = M.kneighbors(x[:50].astype(np.float64), x, 4)
    assert d.dtype == np.float32 and np.array_equal(i, ref[1])
    d, i = M.kneighbors(torch.from_numpy(x[:50]).to(torch.bfloat16), x, 4)
    assert i.shape == (50, 4)
    # Integer features.
    xi = rng.integers(-5, 5, (100, 3))
    d, i = M.kneighbors(xi, xi, 3, exclude_self=True)
    check_against(brute(xi, xi, exclude=np.arange(100)), d, i, 3)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(st.integers(1, 30), st.integers(1, 60), st.integers(1, 9), st.data())
def test_random_shapes_match_brute_force(m, n, d, data):
    k = data.draw(st.integers(1, n))
    metric = data.draw(st.sampled_from(["l2", "cosine"]))
    values = st.floats(-4, 4, allow_nan=False, width=32)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    q = rng.standard_normal((m, d)).astype(np.float32)
    b = rng.standard_normal((n, d)).astype(np.float32)
    # A few hand-picked values (duplicates, zeros) to exercise ties and zero rows.
    b[0] = data.draw(st.lists(values, min_size=d, max_size=d))
    if n > 1:
        b[-1] = b[0]
    q[0] = 0.0
    dist, idx = M.kneighbors(q, b, k, metric=metric, block_size=data.draw(st.sampled_from([None, 1, 5])))
    check_against(brute(q, b, metric), dist, idx, k, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "call, exc, pattern",
    [
        (lambda x: M.kneighbors(x, x, 0), ValueError, "k: expected an int >= 1"),
        (lambda x: M.kneighbors(x, x, 11), ValueError, "k: expected an int <= n_bank = 10"),
        (lambda x: M.kneighbors(x, x, 10, exclude_self=True), ValueError, "k: .*n_bank - 1"),
        (lambda x: M.kneighbors(x, x, 2.0), TypeError, "k: expected an int"),
        (lambda x: M.kneighbors(x, x, True), TypeError, "k: expected an int"),
        (lambda x: M.kneighbors(x[0], x, 1), ValueError, "queries: expected a 2-D"),
        (lambda x: M.kneighbors(x, x[:, :2], 1), ValueError, "bank: expected 3 feature columns"),
        (lambda x: M.kneighbors(x[:0], x, 1), ValueError, "queries: expected at least one row"),
        (lambda x: M.kneighbors(x, x[:, :0], 1), ValueError, "bank: expected at least one feature column"),
        (lambda x: M.kneighbors(np.where(x > 1, np.nan, x), x, 1), ValueError, "queries: expected finite values"),
        (lambda x: M.kneighbors(x, np.where(x > 1, np.inf, x), 1), ValueError,
         "bank: expected finite values, got NaN or Inf in row"),
        (lambda x: M.kneighbors(x, x, 1, metric="l1"), ValueError, "metric"),
        (lambda x: M.kneighbors(x, x, 1, block_size=0), ValueError, "block_size"),
        (lambda x: M.kneighbors(x, x, 1, index_offset=-1), ValueError, "index_offset"),
        (lambda x: M.kneighbors(x, x, 1, exclude_self="yes"), TypeError, "exclude_self"),
        (lambda x: M.kneighbors(x, x, 1, exclude_index=[1, 2]), ValueError, "exclude_index.*length 2"),
        (lambda x: M.kneighbors(x.astype(complex), x, 1), TypeError, "queries: expected a numeric"),
        (lambda x: M.kneighbors("abc", x, 1), TypeError, "queries"),
        (lambda x: M.merge_kneighbors([], 1), ValueError, "parts"),
        (lambda x: M.merge_kneighbors([M.kneighbors(x, x, 2)], 3), ValueError, "k: expected an int <= 2"),
    ],
)
def test_bad_inputs_name_the_argument(call, exc, pattern):
    x = np.random.default_rng(0).standard_normal((10, 3)).astype(np.float32) * 2
    with pytest.raises(exc, match=pattern):
        call(x)


def test_engine_layer_raises_the_same_exceptions():
    from unlearnkit import _core

    x = np.zeros((4, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="k: expected an int <= n_bank = 4"):
        _core.kneighbors(x, x, 5)
    with pytest.raises(ValueError, match="k: expected an int >= 1"):
        _core.kneighbors(x, x, -3)
    with pytest.raises(TypeError, match="bank: expected the dtype of queries"):
        _core.kneighbors(x, x.astype(np.float64), 1)
    # Strided input straight to the engine is copied, not rejected.
    wide = np.zeros((4, 4), dtype=np.float32)
    d, i = _core.kneighbors(wide[:, ::2], wide[:, ::2], 1)
    assert d.shape == (4, 1)


# --------------------------------------------------------------------------------------------
# k-NN membership features and attack


def test_knn_mia_features_equal_brute_force():
    rng = np.random.default_rng(9)
    tr = rng.standard_normal((400, 6)).astype(np.float32)
    ho = rng.standard_normal((300, 6)).astype(np.float32)
    q = rng.standard_normal((50, 6)).astype(np.float32)
    ytr = rng.integers(0, 3, 400)
    yq = rng.integers(0, 3, 50)
    k = 5
    f = M.knn_mia_features(q, tr, ho, k, query_labels=yq, train_labels=ytr)
    assert f.shape == (50, 4) and f.dtype == np.float64
    d_tr = brute(q, tr)
    d_ho = brute(q, ho)
    np.testing.assert_allclose(f[:, 0], np.sort(d_tr, 1)[:, k - 1], rtol=1e-5)
    np.testing.assert_allclose(f[:, 1], np.sort(d_ho, 1)[:, k - 1], rtol=1e-5)
    np.testing.assert_allclose(f[:, 2], f[:, 0] / f[:, 1], rtol=1e-9)
    nn = np.argsort(d_tr, 1, kind="stable")[:, :k]
    np.testing.assert_allclose(f[:, 3], (ytr[nn] == yq[:, None]).mean(1))
    # Without labels the agreement column is NaN.
    assert np.isnan(M.knn_mia_features(q, tr, ho, k)[:, 3]).all()
    # Queries that are the training bank exclude themselves there (and only there).
    f = M.knn_mia_features(tr, tr, ho, k, exclude_self=True)
    np.testing.assert_allclose(f[:, 0], np.sort(brute(tr, tr, exclude=np.arange(400)), 1)[:, k - 1], rtol=1e-5)
    np.testing.assert_allclose(f[:, 1], np.sort(brute(tr, ho), 1)[:, k - 1], rtol=1e-5)
    f = M.knn_mia_features(ho, tr, ho, k, exclude_self="heldout", metric="cosine")
    np.testing.assert_allclose(f[:, 1], np.sort(brute(ho, ho, "cosine", exclude=np.arange(300)), 1)[:, k - 1],
                               rtol=1e-5, atol=1e-6)
    # Duplicated points: distance 0 on both sides gives a finite ratio.
    f = M.knn_mia_features(tr[:3], tr[:3], tr[:3], 1)
    assert np.isfinite(f[:, 2]).all() and (f[:, 2] == 1.0).all()


def test_knn_mia_has_no_self_match_leak_on_exchangeable_data():
    # retain, test and forget drawn from one distribution: the attack must be at chance. Without
    # excluding each example from its own bank, members would sit at distance 0 from themselves.
    rng = np.random.default_rng(10)
    x = rng.standard_normal((3000, 8)).astype(np.float32)
    y = rng.integers(0, 4, 3000)
    out = M.knn_mia(x[:300], x[300:1800], x[1800:], k=5, forget_labels=y[:300], retain_labels=y[300:1800],
                    test_labels=y[1800:], seed=0)
    assert set(out) == {"knn_mia", "forget_member_rate", "knn_attack_auc", "attack_accuracy", "n_members",
                        "n_nonmembers", "n_forget"}
    assert 0.38 < out["knn_attack_auc"] < 0.62, out
    assert out["n_members"] == out["n_nonmembers"] == 1200 and out["n_forget"] == 300
    assert 0.0 <= out["knn_mia"] <= 1.0 and out["knn_mia"] + out["forget_member_rate"] == 1.0


def test_knn_mia_detects_memorised_samples():
    # "Memorised" training data: every retain sample has a near-twin in retain; unseen samples
    # do not. Forget samples that are twins of retain samples still look like members; fresh
    # ones look unseen.
    rng = np.random.default_rng(11)
    centers = rng.standard_normal((1000, 8)).astype(np.float32)
    retain = np.concatenate([centers, centers + 0.01 * rng.standard_normal((1000, 8)).astype(np.float32)])
    test = rng.standard_normal((1000, 8)).astype(np.float32)
    remembered = centers[:200] + 0.01 * rng.standard_normal((200, 8)).astype(np.float32)
    forgotten = rng.standard_normal((200, 8)).astype(np.float32)
    a = M.knn_mia(remembered, retain, test, k=1, seed=1)
    b = M.knn_mia(forgotten, retain, test, k=1, seed=1)
    assert a["knn_attack_auc"] > 0.9, a
    assert a["knn_mia"] < 0.2 < 0.8 < b["knn_mia"], (a, b)
    # Deterministic for a seed.
    assert M.knn_mia(forgotten, retain, test, k=1, seed=1) == b


@pytest.mark.parametrize(
    "call, exc, pattern",
    [
        (lambda x: M.knn_mia_features(x, x, x, 0), ValueError, "k"),
        (lambda x: M.knn_mia_features(x, x, x[:, :2]), ValueError, "heldout_bank: expected 3 feature columns"),
        (lambda x: M.knn_mia_features(x[:5], x, x, exclude_self=True), ValueError, "exclude_self: expected queries"),
        (lambda x: M.knn_mia_features(x, x, x, exclude_self="both"), ValueError, "exclude_self"),
        (lambda x: M.knn_mia_features(x, x, x, query_labels=np.zeros(20)), ValueError, "train_labels"),
        (lambda x: M.knn_mia_features(x, x, x, query_labels=np.zeros(3), train_labels=np.zeros(20)), ValueError,
         "query_labels: expected one label per query"),
        (lambda x: M.knn_mia_features(x, x, x, metric="l3"), ValueError, "metric"),
        (lambda x: M.knn_mia(x, x[:4], x, k=5), ValueError, "retain: expected more than k = 5 rows"),
        (lambda x: M.knn_mia(x, x, x, forget_labels=np.zeros(20)), ValueError, "retain_labels"),
        (lambda x: M.knn_mia(x, x, x, test_size=1.5), ValueError, "test_size"),
        (lambda x: M.knn_mia(x, x, x, test_size=0.01), ValueError, "test_size: expected a split"),
        (lambda x: M.knn_mia(x, x, x, max_per_set=4), ValueError, "max_per_set: expected at least 5"),
        (lambda x: M.knn_mia(np.full((20, 3), np.nan), x, x), ValueError, "forget: expected finite"),
        (lambda x: M.knn_mia(x, x, np.where(x > 1, np.inf, x)), ValueError, "test: expected finite"),
        (lambda x: M.knn_mia_features(x, np.where(x > 1, np.nan, x), x), ValueError, "train_bank: expected finite"),
    ],
)
def test_membership_bad_inputs(call, exc, pattern):
    x = np.random.default_rng(0).standard_normal((20, 3)).astype(np.float32)
    with pytest.raises(exc, match=pattern):
        call(x)


def test_the_gil_is_released_while_the_engine_computes():
    # Python code keeps running in the main thread while another thread is inside the engine.
    import threading
    import time

    rng = np.random.default_rng(12)
    x = rng.standard_normal((4000, 64)).astype(np.float32)
    y = rng.integers(0, 100, 1_000_000)
    for work in (lambda: M.kneighbors(x, x, 5), lambda: M.kmeans(x, 50, max_iter=10, tol=0.0),
                 lambda: M.clustering_scores(y, y[::-1].copy(), matched=False)):
        done = threading.Event()
        thread = threading.Thread(target=lambda: (work(), done.set()))
        ticks = 0
        thread.start()
        while not done.is_set():
            ticks += 1
            time.sleep(0)
        thread.join()
        assert ticks > 50, ticks
