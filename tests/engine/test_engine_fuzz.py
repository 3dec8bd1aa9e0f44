"""Fuzzing of the Rust-backed metrics: 10,000 random calls in all.

Random shapes (including empty), dtypes (floats of every width, ints, bools, complex, objects),
memory layouts (strided, Fortran, negative strides, lists), values (NaN, Inf, huge, subnormal,
duplicates) and arguments (valid and not). A call must either succeed with a well-formed result
or raise ValueError/TypeError; anything else (a crash, a panic surfacing as another exception,
a malformed result) fails the test. Every function must also succeed on a share of its draws (its
valid inputs): a function that always raised ValueError would otherwise pass.
"""

from __future__ import annotations

import collections
import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import unlearnkit.metrics as M

SETTINGS = dict(deadline=None, database=None, suppress_health_check=list(HealthCheck))

# Examples per function; they add up to 10,000.
N_LABELS, N_SINGLE, N_TABLE, N_KNN, N_KMEANS, N_MIA, N_MERGE = 2500, 1000, 1000, 2500, 1500, 1000, 500
assert N_LABELS + N_SINGLE + N_TABLE + N_KNN + N_KMEANS + N_MIA + N_MERGE == 10_000

FLOAT_DTYPES = [np.float16, np.float32, np.float64, np.longdouble]
OTHER_DTYPES = [np.int8, np.int32, np.int64, np.uint8, np.uint64, np.bool_, np.complex64, object]
SPECIALS = [np.nan, np.inf, -np.inf, 3e38, -1e300, 1e-40, 1e-310, 0.0, -0.0, 1e150, 2e150]


# (function name, "ok" | "raised") -> calls, over one test's examples (reset by ``succeeds_sometimes``)
TALLY: collections.Counter = collections.Counter()


def allowed(fn, *args, **kwargs):
    """Calls fn; returns (True, result) or (False, None) when it raised ValueError/TypeError."""
    try:
        out = fn(*args, **kwargs)
    except (ValueError, TypeError):
        TALLY[fn.__name__, "raised"] += 1
        return False, None
    TALLY[fn.__name__, "ok"] += 1
    return True, out


def succeeds_sometimes(test):
    """Runs the (hypothesis) test, then asserts that every function it called succeeded on some of its
    calls: the generators draw valid inputs too (measured over one run: from 14 of 1,000 calls for
    knn_mia_features and 40 of 1,500 for kmeans to 1,762 of 2,500 for clustering_scores), so a function
    that always raises fails here instead of passing as "raised ValueError every time"."""
    def run():
        TALLY.clear()
        test()
        names = {name for name, _ in TALLY}
        assert names, "no call was made"
        for name in sorted(names):
            assert TALLY[name, "ok"] >= 1, f"{name}: raised ValueError/TypeError on all {TALLY[name, 'raised']} calls"
    run.__name__, run.__doc__ = test.__name__, test.__doc__
    return run


@st.composite
def layouts(draw, a: np.ndarray):
    """The same values as a contiguous, strided, Fortran, reversed view, or a list."""
    kind = draw(st.sampled_from(["c", "strided", "fortran", "reversed", "list"]))
    if kind == "strided" and a.ndim in (1, 2):
        wide = np.empty((a.shape[0] * 2,) + a.shape[1:], dtype=a.dtype) if a.ndim == 1 else \
            np.empty((a.shape[0], a.shape[1] * 3), dtype=a.dtype)
        if a.ndim == 1:
            wide[::2] = a
            return wide[::2]
        wide[:, ::3] = a
        return wide[:, ::3]
    if kind == "fortran":
        return np.asfortranarray(a)
    if kind == "reversed" and a.ndim >= 1 and len(a) > 0:
        return np.ascontiguousarray(a[::-1])[::-1]
    if kind == "list" and a.dtype != object:
        return a.tolist()
    return a


@st.composite
def features(draw, rows=st.integers(0, 12), cols=st.integers(0, 5)):
    n, d = draw(rows), draw(cols)
    dtype = draw(st.sampled_from(FLOAT_DTYPES * 3 + OTHER_DTYPES))
    ndim = draw(st.sampled_from([2] * 12 + [1, 3]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    base = rng.standard_normal((n, d)) * draw(st.sampled_from([1.0, 1e-3, 1e3, 1e30]))
    if draw(st.booleans()) and n > 1:
        base[-1] = base[0]  # duplicate rows
    if draw(st.integers(0, 4)) == 0 and base.size:
        base.flat[draw(st.integers(0, base.size - 1))] = draw(st.sampled_from(SPECIALS))
    with np.errstate(all="ignore"):
        if dtype is object:
            a = base.astype(object)
        elif np.dtype(dtype).kind in "iub":
            a = np.nan_to_num(base, nan=0, posinf=0, neginf=0).clip(-100, 100).astype(dtype)
        else:
            a = base.astype(dtype)
    if ndim == 1:
        a = a.reshape(-1)
    elif ndim == 3:
        a = a.reshape(n, d, 1)
    return draw(layouts(a))


@st.composite
def labels(draw, n=None):
    n = draw(st.integers(0, 30)) if n is None else n
    kind = draw(st.sampled_from(["small", "negative", "huge", "extreme", "float", "bad"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "small":
        a = rng.integers(0, draw(st.integers(1, 6)), n)
    elif kind == "negative":
        a = rng.integers(-5, 3, n).astype(draw(st.sampled_from([np.int8, np.int32, np.int64])))
    elif kind == "huge":
        a = rng.integers(-(2**62), 2**62, n) // draw(st.sampled_from([1, 2**40]))
    elif kind == "extreme":
        a = rng.choice(np.array([np.iinfo(np.int64).min, np.iinfo(np.int64).max, 0, -1]), n)
    elif kind == "float":
        a = rng.integers(0, 4, n).astype(np.float64)
        if n and draw(st.booleans()):
            a[0] = draw(st.sampled_from([np.nan, np.inf, 0.5, 1e300]))
    else:
        a = draw(st.sampled_from([np.array(["a"] * n), np.zeros((n, 2)), np.array([None] * n), None, "labels",
                                  rng.integers(0, 3, n).astype(np.uint64), np.zeros(n, dtype=bool)]))
        if not isinstance(a, np.ndarray):
            return a
    return draw(layouts(a))


def check_scores(d: dict) -> None:
    for key in M.clustering.SCORE_KEYS:
        v = d[key]
        assert isinstance(v, float) and math.isfinite(v), (key, v)
        if key in ("ami", "ari"):
            assert -1.0 - 1e-9 <= v <= 1.0 + 1e-9, (key, v)
        else:
            assert -1e-12 <= v <= 1.0 + 1e-9, (key, v)


@succeeds_sometimes
@settings(max_examples=N_LABELS, **SETTINGS)
@given(st.data())
def test_fuzz_clustering_scores(data):
    n = data.draw(st.integers(0, 30))
    n2 = n if data.draw(st.integers(0, 9)) else data.draw(st.integers(0, 30))
    ok, out = allowed(M.clustering_scores, data.draw(labels(n)), data.draw(labels(n2)))
    if ok:
        check_scores(out)


@succeeds_sometimes
@settings(max_examples=N_SINGLE, **SETTINGS)
@given(st.data())
def test_fuzz_single_scores(data):
    n = data.draw(st.integers(0, 25))
    y, c = data.draw(labels(n)), data.draw(labels(n))
    fn = data.draw(st.sampled_from([M.normalized_mutual_info_score, M.adjusted_mutual_info_score]))
    avg = data.draw(st.sampled_from(["arithmetic", "geometric", "min", "max", "median", 3, None]))
    ok, v = allowed(fn, y, c, average_method=avg)
    if ok:
        assert isinstance(v, float) and math.isfinite(v) and -1.0 - 1e-9 <= v <= 1.0 + 1e-9
    ok, out = allowed(M.contingency_matrix, y, c, sparse=data.draw(st.booleans()))
    if ok:
        classes, clusters, table = out
        assert table.shape == (len(classes), len(clusters)) and int(table.sum()) == n
    for fn in (M.matched_accuracy_score, M.matched_f1_score, M.pair_f1_score, M.adjusted_rand_score):
        ok, v = allowed(fn, y, c)
        if ok:
            assert isinstance(v, float) and math.isfinite(v)


@succeeds_sometimes
@settings(max_examples=N_TABLE, **SETTINGS)
@given(st.data())
def test_fuzz_scores_from_contingency(data):
    rows, cols = data.draw(st.integers(0, 6)), data.draw(st.integers(0, 6))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    table = rng.integers(0, data.draw(st.sampled_from([2, 5, 1000])), (rows, cols))
    kind = data.draw(st.sampled_from(["int", "float", "negative", "fraction", "nan", "1d", "sparse", "object"]))
    if kind == "float":
        table = table.astype(np.float64)
    elif kind == "negative" and table.size:
        table.flat[0] = -1
    elif kind == "fraction":
        table = table + 0.5
    elif kind == "nan":
        table = table.astype(float)
        if table.size:
            table.flat[0] = np.nan
    elif kind == "1d":
        table = table.reshape(-1)
    elif kind == "sparse":
        import scipy.sparse as sp

        table = sp.csr_array(table)
    elif kind == "object":
        table = table.astype(object)
    ok, out = allowed(M.scores_from_contingency, table, matched=data.draw(st.booleans()))
    if ok:
        for key, v in out.items():
            assert math.isfinite(v), key


@succeeds_sometimes
@settings(max_examples=N_KNN, **SETTINGS)
@given(st.data())
def test_fuzz_kneighbors(data):
    q = data.draw(features())
    b = q if data.draw(st.integers(0, 3)) == 0 else data.draw(features())
    k = data.draw(st.one_of(st.integers(-1, 14), st.sampled_from([2.0, None, True, "3"])))
    kwargs = dict(
        metric=data.draw(st.sampled_from(["l2", "l2", "cosine", "cosine", "l1"])),
        exclude_self=data.draw(st.sampled_from([False, False, True, 1])),
        index_offset=data.draw(st.sampled_from([0, 0, 3, -1])),
        block_size=data.draw(st.sampled_from([None, None, 1, 2, 0])),
    )
    ok, out = allowed(M.kneighbors, q, b, k, **kwargs)
    if ok:
        dist, idx = out
        m = np.asarray(q).shape[0]
        assert dist.shape == idx.shape == (m, k) and idx.dtype == np.int64
        assert dist.dtype in (np.float32, np.float64)
        assert not np.isnan(dist).any() and (dist >= 0).all()
        assert (dist[:, 1:] >= dist[:, :-1]).all()  # (inf where a squared distance overflows float32)
        n = np.asarray(b).shape[0]
        off = kwargs["index_offset"]
        assert ((idx >= off) & (idx < off + n)).all()
        for row in idx:
            assert len(set(row.tolist())) == k


@succeeds_sometimes
@settings(max_examples=N_KMEANS, **SETTINGS)
@given(st.data())
def test_fuzz_kmeans(data):
    x = data.draw(features(rows=st.integers(0, 15)))
    k = data.draw(st.one_of(st.integers(-1, 8), st.sampled_from([1.5, None])))
    kwargs = dict(
        n_init=data.draw(st.sampled_from([1, 1, 2, 0])),
        max_iter=data.draw(st.sampled_from([1, 5, 100, 0])),
        tol=data.draw(st.sampled_from([1e-4, 0.0, -1.0, math.nan])),
        seed=data.draw(st.sampled_from([0, 1, 2**63, -1])),
    )
    ok, r = allowed(M.kmeans, x, k, **kwargs)
    if ok:
        n = np.asarray(x).shape[0]
        assert r.labels.shape == (n,) and ((r.labels >= 0) & (r.labels < k)).all()
        assert r.centroids.shape == (k, np.asarray(x).shape[1])
        assert r.inertia >= 0 and not math.isnan(r.inertia) and 1 <= r.n_iter <= kwargs["max_iter"]


@succeeds_sometimes
@settings(max_examples=N_MIA, **SETTINGS)
@given(st.data())
def test_fuzz_knn_mia_features(data):
    q = data.draw(features())
    tr = data.draw(features())
    ho = data.draw(features())
    k = data.draw(st.integers(0, 6))
    with_labels = data.draw(st.booleans())
    nq = np.asarray(q).shape[0] if hasattr(q, "__len__") else 0
    ntr = np.asarray(tr).shape[0] if hasattr(tr, "__len__") else 0
    kwargs = dict(metric=data.draw(st.sampled_from(["l2", "cosine"])),
                  exclude_self=data.draw(st.sampled_from([False, True, "heldout", "x"])))
    if with_labels:
        kwargs["query_labels"] = data.draw(labels(nq))
        kwargs["train_labels"] = data.draw(labels(ntr))
    ok, f = allowed(M.knn_mia_features, q, tr, ho, k, **kwargs)
    if ok:
        assert f.shape == (np.asarray(q).shape[0], 4) and f.dtype == np.float64
        assert not np.isnan(f[:, :3]).any() and (f[:, :2] >= 0).all()


@succeeds_sometimes
@settings(max_examples=N_MERGE, **SETTINGS)
@given(st.data())
def test_fuzz_merge_kneighbors(data):
    m = data.draw(st.integers(0, 5))
    parts = []
    for _ in range(data.draw(st.integers(0, 3))):
        kk = data.draw(st.integers(0, 4))
        rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
        d = np.sort(rng.random((m if data.draw(st.integers(0, 5)) else m + 1, kk)), axis=1)
        parts.append((d, rng.integers(0, 100, d.shape)) if data.draw(st.integers(0, 5)) else (d,))
    ok, out = allowed(M.merge_kneighbors, parts, data.draw(st.integers(0, 6)))
    if ok:
        d, i = out
        assert d.shape == i.shape and (d[:, 1:] >= d[:, :-1]).all()
