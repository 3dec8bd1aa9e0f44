"""The engine's fused chunk sweep (``unlearnkit._core.eval_chunk``, issue 29) against numpy brute
force: every per-row quantity the eval job takes from it (finite check, float64 moments, the
probe's classes, nearest centroids, the alignment sum, the k-NN candidates of all queries at
once) on float16 / bfloat16 / float32 / float64 chunks spanning several of the engine's slabs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from unlearnkit import _core
from unlearnkit.eval.shards import ScoreModels, _da_terms

D = 256  # the engine's slab is 16 MiB: 16 384 float32 rows of 256 features, so N spans two slabs
N = 20_000
MASKED = np.iinfo(np.int64).max


def _stored(x32: np.ndarray, kind: str):
    """(array handed to the engine, the exact values it must see)."""
    if kind == "f16":
        h = x32.astype(np.float16)
        return h.view(np.uint16), h.astype(np.float32)
    if kind == "bf16":
        bits = (x32.view(np.uint32) >> 16).astype(np.uint16)
        return bits, (bits.astype(np.uint32) << 16).view(np.float32)
    if kind == "f32":
        return x32, x32
    x64 = x32.astype(np.float64) + 1e-9
    return x64, x64


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, D)).astype(np.float32) * 0.5
    y = rng.integers(0, 4, N)
    x = (centers[y] + rng.normal(size=(N, D)).astype(np.float32)).astype(np.float32)
    x[17] = 0.0  # a zero row: alignment term 0 by convention
    x[40] = x[39]  # exact duplicates: ties go to the lower index
    return x, y


def _brute_knn(q, x, k, offset, exclude):
    x64 = x.astype(np.float64)
    d = np.stack([((x64 - qi.astype(np.float64)) ** 2).sum(-1) for qi in q])
    cols = np.arange(len(x)) + offset
    d[exclude[:, None] == cols[None]] = np.inf
    order = np.lexsort((np.broadcast_to(cols, d.shape), d), axis=1)[:, :k]
    return np.take_along_axis(d, order, 1), cols[order]


@pytest.mark.parametrize("kind", ["f16", "bf16", "f32", "f64"])
def test_chunk_sweep_equals_numpy_brute_force(data, kind):
    x32, y = data
    raw, x = _stored(x32, kind)
    dt = x.dtype
    rng = np.random.default_rng(1)
    # moments and the finite check
    r = _core.eval_chunk(raw, kind, validate=True, moments=True)
    assert r["bad_row"] is None
    n, mean, m2 = r["moments"]
    x64 = x.astype(np.float64)
    assert n == N
    np.testing.assert_allclose(mean, x64.mean(0), rtol=0, atol=1e-11)
    c = x64 - x64.mean(0)
    np.testing.assert_allclose(m2, c.T @ c, rtol=1e-11, atol=1e-9)
    # probe (scikit-learn's pipeline, as the job fits it), centroids, alignment, k-NN
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(x[:3000], y[:3000])
    params, classes = ScoreModels(classes=np.arange(4), probe=probe, basis=None, complement=None, mean=None,
                                  centroids=None, knn=None).probe_params(dt)
    cents = np.ascontiguousarray(x[rng.choice(N, 6, replace=False)] + 0.01, dtype=dt)
    u = np.linalg.qr(rng.normal(size=(D, D)))[0]
    mu = x64.mean(0)
    own = np.sort(rng.choice(N, 15, replace=False))
    q = np.ascontiguousarray(np.concatenate([x[own], x[rng.choice(N, 10)] + 0.5]), dtype=dt)
    exclude = np.concatenate([own + 1000, np.full(10, -1)]).astype(np.int64)
    for basis, complement in ((u[:, :40], False), (u[:, 40:], True)):
        r = _core.eval_chunk(raw, kind, validate=False, probe=params, centroids=cents,
                             alignment=(np.ascontiguousarray(basis.T), complement, mu), knn_queries=q, knn_k=5,
                             knn_exclude=exclude, knn_offset=1000, block_size=300)
        want_da = _da_terms(x, None if complement else basis, mu, basis if complement else None).sum()
        assert abs(r["da_sum"] - want_da) <= 1e-9 * want_da
    assert r["da_zero_rows"] == 0  # centred: no row equals the mean
    cls = r["probe_class"]
    sure = cls >= 0
    assert sure.mean() > 0.999
    assert np.array_equal(classes[cls[sure]], probe.predict(x)[sure])
    dist = np.stack([((x64 - c) ** 2).sum(-1) for c in cents.astype(np.float64)], axis=1)
    assert np.array_equal(r["assign"], dist.argmin(1))
    want_d, want_i = _brute_knn(q, x, 5, 1000, exclude)
    got_d, got_i = r["knn"]
    assert got_d.dtype == dt and np.array_equal(got_i, want_i)
    if kind == "f64":  # float64 sums in another order: equal to rounding
        np.testing.assert_allclose(got_d, want_d, rtol=1e-13)
    else:  # exact products of float32 values, summed in float64, rounded to float32
        assert np.array_equal(got_d, want_d.astype(dt))
    assert all(own[i] + 1000 not in got_i[i] for i in range(len(own)))
    # without centring the zero row is counted
    r = _core.eval_chunk(raw, kind, validate=False, alignment=(np.ascontiguousarray(u[:, :40].T), False, None))
    assert r["da_zero_rows"] == (1 if kind != "f64" else 0)


def test_a_nan_row_is_found_and_a_tiny_chunk_keeps_every_candidate(data):
    x32, _ = data
    raw = x32[:5000].astype(np.float16)
    raw[4321, 7] = np.nan
    r = _core.eval_chunk(raw.view(np.uint16), "f16")
    assert r["bad_row"] == 4321
    # a chunk of 3 rows, k = 5: every row but the excluded one, then (inf, MASKED)
    q = np.ascontiguousarray(x32[:2])
    r = _core.eval_chunk(np.ascontiguousarray(x32[10:13]), "f32", validate=False, knn_queries=q, knn_k=5,
                         knn_exclude=np.array([11, -1]), knn_offset=10)
    d, i = r["knn"]
    assert d.shape == (2, 3)
    want_d, want_i = _brute_knn(q, x32[10:13], 3, 10, np.array([11, -1]))
    assert np.array_equal(i[1], want_i[1]) and np.array_equal(i[0], [*want_i[0, :2], MASKED])
    assert np.isinf(d[0, 2])


def test_bad_arguments_name_themselves(data):
    x32, _ = data
    x = np.ascontiguousarray(x32[:100])
    with pytest.raises(ValueError, match="^kind:"):
        _core.eval_chunk(x, "f16")
    with pytest.raises(TypeError, match="^centroids:"):
        _core.eval_chunk(x, "f32", centroids=x[:3].astype(np.float64))
    with pytest.raises(ValueError, match="^knn_queries:"):
        _core.eval_chunk(x, "f32", knn_queries=np.zeros((2, 3), np.float32))


def test_the_job_equals_numpy_brute_force_on_a_small_bank(tmp_path):
    """The whole job (engine sweep, prefetching reader, chunks smaller than the banks) against
    numpy / scikit-learn on whole arrays: alignment from numpy's eigh, probe accuracy from the
    pipeline's own predict, the k-NN features (k-th neighbour distances in retain and test, label
    agreement) from all pairwise distances."""
    from unlearnkit.eval import job, run

    rng = np.random.default_rng(3)
    d, k = 12, 4
    centers = rng.normal(size=(3, d)) * 2
    sets = {}
    for s, n in (("forget", 150), ("retain", 900), ("test", 300)):
        y = rng.integers(0, 3, n)
        x = (centers[y] + rng.normal(size=(n, d))).astype(np.float16)
        np.save(tmp_path / f"{s}.npy", x)
        np.save(tmp_path / f"{s}.labels.npy", y)
        sets[s] = (x.astype(np.float32), y)
    got = run(*(tmp_path / f"{s}.npy" for s in ("forget", "retain", "test")), chunk_rows=128, knn_k=k,
              knn_queries=60)
    xr = sets["retain"][0].astype(np.float64)
    lam, u = np.linalg.eigh(xr.T @ xr / len(xr))
    lam, u = lam[::-1], u[:, ::-1]
    kk = int((np.cumsum(lam) / lam.sum() < 0.9 - 1e-12).sum()) + 1
    assert got["details"]["model"]["da"]["k"] == kk
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(*sets["retain"])
    for s, (x, y) in sets.items():
        z = x.astype(np.float64)
        want = ((z @ u[:, :kk]) ** 2).sum(1) / (z ** 2).sum(1)
        assert abs(got["metrics"][f"da_{s}"] - want.mean()) < 1e-9
        assert got["metrics"][f"lp_{s}"] == (probe.predict(x) == y).mean()
    # k-NN features of every query group, by brute force on the rows the job drew
    idx = {"forget": job._sample(150, 60, 0, 0, "knn")}
    idx["retain"], idx["test"] = job._knn_examples(900, 300, 60, 0)
    for g, rows in idx.items():
        q = sets[g][0][rows].astype(np.float64)
        dist = {}
        for b in ("retain", "test"):
            dd = ((q[:, None, :] - sets[b][0][None].astype(np.float64)) ** 2).sum(-1)
            if b == g:
                dd[np.arange(len(rows)), rows] = np.inf  # a query is never its own neighbour
            dist[b] = dd
        order = np.lexsort((np.broadcast_to(np.arange(900), dist["retain"].shape), dist["retain"]), axis=1)[:, :k]
        d_tr = np.sort(dist["retain"], 1)[:, k - 1].astype(np.float32)
        d_ho = np.sort(dist["test"], 1)[:, k - 1].astype(np.float32)
        agree = (sets["retain"][1][order] == sets[g][1][rows][:, None]).mean(1)
        means = got["details"]["model"]["knn"]["feature_means"][g]
        assert np.isclose(means["d_train"], d_tr.mean(), rtol=1e-6)
        assert np.isclose(means["d_heldout"], d_ho.mean(), rtol=1e-6)
        assert np.isclose(means["label_agreement"], agree.mean(), rtol=1e-12)
