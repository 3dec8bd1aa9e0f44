"""Exact k-nearest neighbours over large feature banks (Rust engine).

The engine scores tiles of (512 queries x ``block_size`` bank rows) with one matrix product each
(blocked GEMM, the norm trick |q - b|^2 = |q|^2 + |b|^2 - 2 q.b), keeps each query's best
candidates in a bounded heap, then recomputes the candidates' distances exactly in float64 from
the original rows and sorts them. Memory is bounded by the tile, never queries x bank. All
cores are used (rayon; ``RAYON_NUM_THREADS`` sets the count) and the GIL is released.
"""

from __future__ import annotations

import numpy as np

from .. import _core
from .._validation import _describe, check_choice, check_positive_int, to_numpy

__all__ = ["kneighbors", "merge_kneighbors"]

_METRICS = ("l2", "cosine")


def as_features(x, name: str) -> np.ndarray:
    """A C-contiguous 2-D float32 or float64 array for the engine (no copy when it already is one).

    float16/bfloat16 (numpy or torch), integers and booleans become float32; float64 stays
    float64; longer floats become float64. NaN/Inf are rejected by the engine (one parallel pass).
    """
    a = to_numpy(x, name)
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (n_samples, n_features), got {_describe(a)}")
    kind = a.dtype.kind
    if kind not in "fiub":
        raise TypeError(f"{name}: expected a numeric (float, int or bool) array, got {_describe(a)}")
    if a.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one row, got an array of shape {a.shape}")
    if a.shape[1] == 0:
        raise ValueError(f"{name}: expected at least one feature column, got an array of shape {a.shape}")
    if kind == "f" and a.dtype.itemsize >= 8:
        a = a.astype(np.float64, copy=False)
    else:
        a = a.astype(np.float32, copy=False)
    return np.ascontiguousarray(a)


def _common(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both float64 only if both are; otherwise float32 (the float64 one is cast once)."""
    if a.dtype == b.dtype:
        return a, b
    return a.astype(np.float32), b.astype(np.float32)


def _check_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {_describe(value)}")
    return bool(value)


def kneighbors(queries, bank, k: int, *, metric: str = "l2", exclude_self: bool = False,
               index_offset: int = 0, block_size: int | None = None, exclude_index=None):
    """The k nearest rows of ``bank`` for every row of ``queries``, exactly.

    Distances are squared Euclidean (``metric="l2"``) or 1 - cosine similarity
    (``metric="cosine"``; a zero vector has similarity 0 with everything, so distance 1).
    They are recomputed in float64 from the original rows for the final ranking, so they are
    never negative and equal a brute-force computation; ties are broken by the lower index.

    Sharded banks: search each shard with its ``index_offset`` (its first row's position in the
    whole bank) and combine the per-shard answers with ``merge_kneighbors``.

    Args:
        queries: (m, d) features (numpy or torch; float16/32/64, int or bool).
        bank: (n, d) features; float64 is used only when both arrays are float64.
        k: neighbours per query, 1 <= k <= n (n - 1 when a query excludes itself).
        metric: ``"l2"`` (squared Euclidean) or ``"cosine"``.
        exclude_self: query i never matches bank row ``i - index_offset``; use it when the
            queries are the bank itself (a sample is not its own neighbour).
        index_offset: added to every returned index (position of this bank shard).
        block_size: bank rows per tile (default 512); the working memory per thread is about
            (512 x block_size + (512 + block_size) x d) floats. Results do not depend on it.
        exclude_index: optional (m,) int array: the global bank index each query must not match
            (negative: none), for queries that are a subset of the bank. Overrides ``exclude_self``.

    Returns:
        tuple: ``(distances, indices)``, both (m, k), ascending by distance: float32 distances
        (float64 when both inputs are float64) and int64 indices.
    """
    check_choice(metric, "metric", _METRICS)
    k = check_positive_int(k, "k")
    exclude_self = _check_bool(exclude_self, "exclude_self")
    index_offset = check_positive_int(index_offset, "index_offset", minimum=0)
    if block_size is not None:
        block_size = check_positive_int(block_size, "block_size")
    q = as_features(queries, "queries")
    b = as_features(bank, "bank")
    if q.shape[1] != b.shape[1]:
        raise ValueError(f"bank: expected {q.shape[1]} feature columns (as queries), got shape {b.shape}")
    q, b = _common(q, b)
    if exclude_index is not None:
        e = to_numpy(exclude_index, "exclude_index")
        if e.ndim != 1 or e.dtype.kind not in "iu":
            raise TypeError(f"exclude_index: expected a 1-D integer array, got {_describe(e)}")
        if len(e) != len(q):
            raise ValueError(f"exclude_index: expected one index per query ({len(q)}), got length {len(e)}")
        exclude_index = np.ascontiguousarray(e, dtype=np.int64)
    return _core.kneighbors(q, b, k, metric, exclude_self, index_offset, block_size, exclude_index)


def merge_kneighbors(parts, k: int):
    """Merges per-shard k-NN answers of the same queries into the k best overall.

    Args:
        parts: iterable of ``(distances, indices)`` pairs, each (m, k_i), e.g. ``kneighbors``
            of every bank shard with its ``index_offset``.
        k: neighbours to keep, at most the sum of the k_i.

    Returns:
        tuple: ``(distances, indices)``, (m, k), ascending by (distance, index), as one search
        of the whole bank returns them.
    """
    k = check_positive_int(k, "k")
    parts = list(parts)
    if not parts:
        raise ValueError("parts: expected at least one (distances, indices) pair, got none")
    dists, idxs = [], []
    for i, p in enumerate(parts):
        if not (isinstance(p, (tuple, list)) and len(p) == 2):
            raise TypeError(f"parts: expected (distances, indices) pairs, got {_describe(p)} at position {i}")
        d, j = np.asarray(p[0]), np.asarray(p[1])
        if d.ndim != 2 or d.shape != j.shape:
            raise ValueError(f"parts: expected 2-D distances and indices of one shape, got {d.shape} and {j.shape}")
        if dists and d.shape[0] != dists[0].shape[0]:
            raise ValueError(f"parts: expected {dists[0].shape[0]} queries in every part, got {d.shape[0]}")
        dists.append(d)
        idxs.append(j.astype(np.int64, copy=False))
    d = np.concatenate(dists, axis=1)
    j = np.concatenate(idxs, axis=1)
    if k > d.shape[1]:
        raise ValueError(f"k: expected an int <= {d.shape[1]} (the candidates in parts), got {k}")
    order = np.lexsort((j, d), axis=1)[:, :k]
    return np.take_along_axis(d, order, axis=1), np.take_along_axis(j, order, axis=1)
