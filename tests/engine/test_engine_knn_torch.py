"""The torch backend of ``kneighbors`` against the Rust engine, index for index.

Oracle: the Rust engine (itself tested against brute force in ``test_engine_knn.py``) on the same
bank: same indices and the same float distances, ties included (many exact duplicates, integer
data), for both metrics, both dtypes, exclusions, index offsets, block sizes, data far from the
origin and at extreme scales. On a machine with a GPU the same comparison runs on CUDA tensors.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import unlearnkit.metrics as M
from unlearnkit.metrics.neighbors import exact_distances, resolve_backend


def both(q, b, k, **kw):
    e = M.kneighbors(q, b, k, backend="engine", **kw)
    t = M.kneighbors(q, b, k, backend="torch", **kw)
    return e, t


def assert_same(e, t, what=""):
    assert t[0].dtype == e[0].dtype and t[1].dtype == np.int64
    assert np.array_equal(t[1], e[1]), f"{what}: indices differ in {(t[1] != e[1]).any(1).sum()} rows"
    assert np.array_equal(t[0], e[0]), f"{what}: distances differ"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_random_data_same_as_engine(dtype, metric):
    rng = np.random.default_rng(0)
    for m, n, d, block in [(60, 3000, 9, None), (300, 2000, 33, 300), (7, 20, 3, 7), (1100, 700, 16, None)]:
        q = rng.standard_normal((m, d)).astype(dtype)
        b = rng.standard_normal((n, d)).astype(dtype)
        for k in (1, 5, 17):
            assert_same(*both(q, b, k, metric=metric, block_size=block), f"{m}x{n}x{d} k={k} block={block}")


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_ties_follow_the_engine_lowest_index_rule(metric):
    rng = np.random.default_rng(1)
    b = rng.integers(0, 3, (600, 4)).astype(np.float32)  # 81 distinct rows: hundreds of exact ties
    q = b[:150]
    for k in (1, 12, 40):
        assert_same(*both(q, b, k, metric=metric, exclude_self=True), f"k={k}")
        assert_same(*both(q, b, k, metric=metric, block_size=45), f"k={k} blocks of 45")
    dup = np.tile(np.array([[0.1, 0.2, 0.3]], np.float32), (3000, 1))  # all identical
    e, t = both(dup[:3], dup, 5)
    assert_same(e, t)
    assert (t[1] == np.arange(5)).all()


def test_exclusions_offsets_and_extreme_data():
    rng = np.random.default_rng(2)
    b = rng.standard_normal((400, 5)).astype(np.float32)
    assert_same(*both(b, b, 4, exclude_self=True))
    assert_same(*both(b, b[100:250], 3, exclude_self=True, index_offset=100))
    rows = np.array([5, 17, 399, 0])
    assert_same(*both(b[rows], b, 6, exclude_index=rows))
    assert_same(*both(b[rows], b, 6, exclude_index=np.array([-1, 3, -1, 0])))
    for offset, scale in [(1e6, 1.0), (0.0, 1e15), (0.0, 1e-15), (0.0, 1e30), (3e4, 1e-3)]:
        q = (rng.uniform(-1, 1, (20, 4)) * scale + offset).astype(np.float32)
        bank = (rng.uniform(-1, 1, (300, 4)) * scale + offset).astype(np.float32)
        for metric in ("l2", "cosine"):
            assert_same(*both(q, bank, 3, metric=metric), f"{offset} {scale} {metric}")
    # A row near float32's limit next to rows of magnitude 1 (cosine).
    bank = rng.standard_normal((40, 3)).astype(np.float32)
    bank[0, 0] = 3e38
    assert_same(*both(rng.standard_normal((6, 3)).astype(np.float32), bank, 3, metric="cosine"))


def test_inputs_errors_and_backend_choice():
    rng = np.random.default_rng(3)
    q = torch.from_numpy(rng.standard_normal((30, 6)).astype(np.float32))
    b = rng.standard_normal((200, 6))  # float64 numpy + float32 tensor: float32, as the engine
    assert_same(*both(q, b, 3))
    assert_same(*both(q.half(), b.astype(np.float32), 3))
    assert resolve_backend("auto", q, b) == "engine"
    assert resolve_backend("torch", b) == "torch"
    if torch.cuda.is_available():
        assert resolve_backend("auto", q.cuda(), b) == "torch"
    with pytest.raises(ValueError, match="backend: expected one of"):
        M.kneighbors(q, b, 3, backend="gpu")
    bad = b.copy()
    bad[7, 2] = np.nan
    with pytest.raises(ValueError, match="^bank: expected finite values, got NaN or Inf in row 7"):
        M.kneighbors(q, bad, 3, backend="torch")
    huge = b.copy()
    huge[3, 0] = 3e200
    with pytest.raises(ValueError, match="^bank: expected values of magnitude"):
        M.kneighbors(b, huge, 3, backend="torch")
    with pytest.raises(ValueError, match=r"^k: expected an int <= n_bank - 1 = 199 \(a query excludes itself\)"):
        M.kneighbors(b, b, 200, exclude_self=True, backend="torch")
    with pytest.raises(ValueError, match="^bank: expected 6 feature columns"):
        M.kneighbors(q, b[:, :5], 3, backend="torch")


def test_exact_distances_are_the_engines_numbers():
    """Summed in the engine's order: equal, not merely close, to the engine's float64 distances
    (and close to a plain numpy computation)."""
    rng = np.random.default_rng(4)
    q = rng.standard_normal((1, 37)) * 1e3
    b = rng.standard_normal((500, 37)) * 1e3
    for metric in ("l2", "cosine"):
        d_e, i_e = M.kneighbors(q, b, 500, metric=metric, backend="engine")
        mine = exact_distances(torch.from_numpy(np.repeat(q, 500, 0)), torch.from_numpy(b[i_e[0]]), metric).numpy()
        assert np.array_equal(mine, d_e[0]), metric
        plain = ((q - b[i_e[0]]) ** 2).sum(1) if metric == "l2" else 1 - (b[i_e[0]] @ q[0]) / (
            np.linalg.norm(b[i_e[0]], axis=1) * np.linalg.norm(q[0]))
        assert np.allclose(mine, plain, rtol=1e-12, atol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_tensors_same_as_engine():
    rng = np.random.default_rng(5)
    for dtype in (np.float32, np.float64):
        q = rng.standard_normal((700, 32)).astype(dtype)
        b = rng.standard_normal((20000, 32)).astype(dtype)
        b[5000:5100] = b[:100]  # exact duplicates
        for metric in ("l2", "cosine"):
            e = M.kneighbors(q, b, 10, metric=metric, backend="engine")
            t = M.kneighbors(torch.from_numpy(q).cuda(), torch.from_numpy(b).cuda(), 10, metric=metric)
            assert_same(e, t, f"cuda {dtype} {metric}")
