"""Exact k-nearest neighbours over large feature banks (Rust engine, or torch on a GPU).

Layer: metrics. Invariants: results are exact (distances recomputed in float64 from the original
rows, summed in one fixed order) and ranked by (distance, index), so the Rust engine and the
torch backend return the same indices and distances, ties included.

The engine scores tiles of (512 queries x ``block_size`` bank rows) with one matrix product each
(blocked GEMM, the norm trick |q - b|^2 = |q|^2 + |b|^2 - 2 q.b), keeps each query's best
candidates in a bounded heap, then recomputes the candidates' distances exactly in float64 from
the original rows and sorts them. Memory is bounded by the tile, never queries x bank. All
cores are used (rayon; ``RAYON_NUM_THREADS`` sets the count) and the GIL is released.

The torch backend (``backend="torch"``, chosen automatically for tensors on a GPU) runs the same
algorithm on the tensors' device: per tile one GEMM, the engine's a-priori error bound, a
running top-k of upper bounds (``torch.topk``), every bank row whose lower bound is within it
kept as a candidate and its distance recomputed exactly in float64 in the engine's summation
order, then the k best by (distance, index).
"""

from __future__ import annotations

import math
import sys

import numpy as np

from .. import _core
from .._validation import _describe, check_choice, check_positive_int, to_numpy

__all__ = ["kneighbors", "merge_kneighbors", "resolve_backend"]

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
    a = a.astype(np.float64 if kind == "f" and a.dtype.itemsize >= 8 else np.float32, copy=False)
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
               index_offset: int = 0, block_size: int | None = None, exclude_index=None, backend: str = "auto"):
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
        backend: ``"engine"`` (Rust, CPU), ``"torch"`` (the same algorithm in torch, on the
            device of the tensors given, CPU for numpy input) or ``"auto"`` (torch when
            ``queries`` or ``bank`` is a tensor on a GPU, else the engine). Both return the same
            numbers, index for index.

    Returns:
        tuple: ``(distances, indices)`` numpy arrays, both (m, k), ascending by (distance, index):
        float32 distances (float64 when both inputs are float64) and int64 indices.
    """
    check_choice(metric, "metric", _METRICS)
    k = check_positive_int(k, "k")
    exclude_self = _check_bool(exclude_self, "exclude_self")
    index_offset = check_positive_int(index_offset, "index_offset", minimum=0)
    if block_size is not None:
        block_size = check_positive_int(block_size, "block_size")
    if resolve_backend(backend, queries, bank) == "torch":
        return _kneighbors_torch_api(queries, bank, k, metric, exclude_self, index_offset, block_size, exclude_index)
    q = as_features(queries, "queries")
    b = as_features(bank, "bank")
    if q.shape[1] != b.shape[1]:
        raise ValueError(f"bank: expected {q.shape[1]} feature columns (as queries), got shape {b.shape}")
    q, b = _common(q, b)
    exclude_index = _exclude_array(exclude_index, len(q))
    return _core.kneighbors(q, b, k, metric, exclude_self, index_offset, block_size, exclude_index)  # type: ignore[arg-type]


def _exclude_array(exclude_index, m: int):
    if exclude_index is None:
        return None
    e = to_numpy(exclude_index, "exclude_index")
    if e.ndim != 1 or e.dtype.kind not in "iu":
        raise TypeError(f"exclude_index: expected a 1-D integer array, got {_describe(e)}")
    if len(e) != m:
        raise ValueError(f"exclude_index: expected one index per query ({m}), got length {len(e)}")
    return np.ascontiguousarray(e, dtype=np.int64)


def _kneighbors_torch_api(queries, bank, k, metric, exclude_self, index_offset, block_size, exclude_index):
    import torch

    device = _device_of(bank, queries)
    q = as_torch_features(queries, "queries", device)
    b = as_torch_features(bank, "bank", device)
    if q.shape[1] != b.shape[1]:
        raise ValueError(f"bank: expected {q.shape[1]} feature columns (as queries), got shape {tuple(b.shape)}")
    if q.dtype != b.dtype:
        q, b = q.float(), b.float()
    excl = _exclude_array(exclude_index, q.shape[0])
    dist, idx = kneighbors_torch(q, b, k, metric=metric, exclude_self=exclude_self, index_offset=index_offset,
                                 block_size=block_size, exclude_index=None if excl is None else torch.from_numpy(excl))
    return dist.cpu().numpy(), idx.cpu().numpy()


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
    dists: list = []
    idxs: list = []
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


# --------------------------------------------------------------------------------------------
# The torch backend: the engine's algorithm on torch tensors (any device)

_BACKENDS = ("auto", "engine", "torch")
#: Largest magnitude accepted in float64 input (the engine's MAX_MAGNITUDE_F64).
_MAX_MAGNITUDE_F64 = 1e150
#: Queries per tile and bank rows per tile (default) of the torch backend.
TORCH_QUERY_BLOCK = 1024
TORCH_BANK_BLOCK = 4096
_STAT_ROWS = 65536


def resolve_backend(backend: str, *arrays) -> str:
    """``"engine"`` or ``"torch"`` for ``backend`` (``"auto"``: torch when any array is a torch
    tensor on an accelerator, else the Rust engine)."""
    check_choice(backend, "backend", _BACKENDS)
    if backend != "auto":
        return backend
    torch = sys.modules.get("torch")
    if torch is not None and any(isinstance(a, torch.Tensor) and a.device.type != "cpu" for a in arrays):
        return "torch"
    return "engine"


def _device_of(*arrays):
    import torch

    for a in arrays:
        if isinstance(a, torch.Tensor):
            return a.device
    return torch.device("cpu")


def as_torch_features(x, name: str, device, dtype=None):
    """``as_features`` for the torch backend: a contiguous 2-D float32/float64 tensor on ``device``
    (float64 only when ``x`` is float64, or when ``dtype`` says so)."""
    import torch

    if isinstance(x, torch.Tensor):
        t = x.detach()
        if t.is_complex():
            raise TypeError(f"{name}: expected a numeric (float, int or bool) array, got {_describe(x)}")
        is_f64 = t.dtype == torch.float64
    else:
        a = as_features(x, name)
        t = torch.from_numpy(a)
        is_f64 = a.dtype == np.float64
    if t.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (n_samples, n_features), got {_describe(x)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one row, got an array of shape {tuple(t.shape)}")
    if t.shape[1] == 0:
        raise ValueError(f"{name}: expected at least one feature column, got an array of shape {tuple(t.shape)}")
    if dtype is None:
        dtype = torch.float64 if is_f64 else torch.float32
    return t.to(device=device, dtype=dtype).contiguous()


def _check_values(t, name: str) -> None:
    """The engine's finite check: NaN/Inf, and float64 magnitudes above 1e150, name their row."""
    import torch

    for r0 in range(0, t.shape[0], _STAT_ROWS):
        blk = t[r0:r0 + _STAT_ROWS]
        bad = ~torch.isfinite(blk).all(dim=1)
        if t.dtype == torch.float64:
            bad |= (blk.abs() > _MAX_MAGNITUDE_F64).any(dim=1)
        if bool(bad.any()):
            row = int(bad.nonzero()[0, 0])
            vals = blk[row]
            if bool(torch.isfinite(vals).all()):
                v = float(vals[vals.abs() > _MAX_MAGNITUDE_F64][0])
                raise ValueError(f"{name}: expected values of magnitude at most {_MAX_MAGNITUDE_F64:e} (squared "
                                 f"distances must stay finite in float64), got {v:e} in row {r0 + row}")
            raise ValueError(f"{name}: expected finite values, got NaN or Inf in row {r0 + row}")


def _pow2_scale(max_dev: float) -> float:
    """The power of two that brings ``max_dev`` into [0.5, 1] (1 when it is 0); as the engine's."""
    if max_dev > 0.0 and math.isfinite(max_dev):
        e = math.ceil(math.log2(max_dev))
        return 2.0 ** -min(max(e, -1000), 1000)
    return 1.0


def _unit_roundoff(dtype, device) -> float:
    """u of the GEMM: the dtype's, or TF32/bfloat16's when float32 matmuls may use them."""
    import torch

    if dtype == torch.float64:
        return 2.0**-53
    u = 2.0**-24
    precision = torch.get_float32_matmul_precision()
    if precision == "medium":
        u = 2.0**-8
    elif precision == "high" or (device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32):
        u = 2.0**-11
    return u


def _error_c(u: float, d: int) -> float:
    """The engine's constant c of the score error bound E = 2c (|q|^2 + |b|^2) (rust/knn.rs)."""
    gamma = (d + 4.0) * u
    big = 2.0 * gamma + 8.0 * u
    return 2.0 * 0.75 * big + 16.0 * u


def _column_stats(b):
    """(mean (d,) float64, mean column variance, bound on max |b - mean|), as the engine's."""
    import torch

    n, d = b.shape
    shift = b[0].double()
    s1 = torch.zeros(d, dtype=torch.float64, device=b.device)
    s2 = torch.zeros_like(s1)
    mx = torch.zeros((), dtype=torch.float64, device=b.device)
    for r0 in range(0, n, _STAT_ROWS):
        y = b[r0:r0 + _STAT_ROWS].double() - shift
        s1 += y.sum(0)
        s2 += (y * y).sum(0)
        mx = torch.maximum(mx, y.abs().max())
    m1 = s1 / n
    mean = shift + m1
    mean_var = float((s2 / n - m1 * m1).clamp_min(0).sum()) / d
    return mean, mean_var, float(mx) + float(m1.abs().max())


def _max_dev(t, center=None) -> float:
    m = 0.0
    for r0 in range(0, t.shape[0], _STAT_ROWS):
        y = t[r0:r0 + _STAT_ROWS].double()
        if center is not None:
            y = y - center
        m = max(m, float(y.abs().max()))
    return m


def _transformed(q, b, metric: str):
    """(queries, bank) as the GEMM sees them, with their squared norms (float64): rows centred on
    the bank mean when the data sit far from the origin and scaled by a power of two out of the
    safe range (L2), or each row at unit norm (cosine); the engine's choices (rust/knn.rs)."""
    import torch

    dt = b.dtype
    safe = (2.0**-30, 2.0**30) if dt == torch.float32 else (2.0**-250, 2.0**250)

    def unit(x):
        out = torch.empty_like(x)
        flag = torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
        for r0 in range(0, x.shape[0], _STAT_ROWS):  # float64 work in blocks, not a copy of the bank
            y = x[r0:r0 + _STAT_ROWS].double()
            top = y.abs().amax(dim=1, keepdim=True)
            y = y / torch.where(top > 0, top, torch.ones_like(top))
            nrm = y.norm(dim=1, keepdim=True)
            out[r0:r0 + _STAT_ROWS] = (y / torch.where(nrm > 0, nrm, torch.ones_like(nrm))).to(dt)
            flag[r0:r0 + _STAT_ROWS] = (nrm[:, 0] > 0).double()
        return out, flag

    def sq_norms(x):
        return torch.cat([x[r0:r0 + _STAT_ROWS].double().pow(2).sum(1) for r0 in range(0, x.shape[0], _STAT_ROWS)])

    if metric == "cosine":
        (qt, qn), (bt, bn) = unit(q), unit(b)
        return qt, qn, bt, bn
    mean, mean_var, max_dev = _column_stats(b)
    d = b.shape[1]
    if float((mean * mean).sum()) > mean_var * d:
        scale = _pow2_scale(max(max_dev, _max_dev(q, mean)))
        c = mean.to(dt)
        qt, bt = (q - c) * scale, (b - c) * scale
    else:
        top = max(_max_dev(q), max_dev + float(mean.abs().max()))
        if top == 0.0 or safe[0] <= top <= safe[1]:
            qt, bt = q, b
        else:
            s = _pow2_scale(top)
            qt, bt = q * s, b * s
    return qt, sq_norms(qt), bt, sq_norms(bt)


def exact_distances(q, b, metric: str):
    """Exact distances (float64) of row pairs ``q[i]``, ``b[i]`` (P x d each), summed in the
    engine's order (rust/distance.rs), so that they are the same float64 numbers.

    Squared L2: 8 lane sums over chunks of 8 columns, the remainder columns in order, then
    remainder + (lane 0 + ... + lane 7). Cosine: each row scaled by a power of two (exact),
    dot and squared norms accumulated column by column, 1 - ab / (sqrt(aa) sqrt(bb)) clamped to
    [0, 2]; 1 when a row is zero.
    """
    import torch

    q, b = q.double(), b.double()
    d = q.shape[1]
    if metric == "l2":
        sq = (q - b).square_()
        full = d - d % 8
        acc = torch.zeros(q.shape[0], 8, dtype=torch.float64, device=q.device)
        for c0 in range(0, full, 8):
            acc += sq[:, c0:c0 + 8]
        s = torch.zeros(q.shape[0], dtype=torch.float64, device=q.device)
        for t in range(full, d):
            s += sq[:, t]
        tot = torch.zeros_like(s)
        for t in range(8):
            tot += acc[:, t]
        return s + tot
    amax = q.abs().amax(dim=1)
    bmax = b.abs().amax(dim=1)
    zero = (amax == 0) | (bmax == 0)
    # Any power of two gives the same float64 result (scaling by 2^e is exact): 2^-E, max = m 2^E.
    sa = torch.ldexp(torch.ones_like(amax), -torch.frexp(torch.where(zero, 1.0, amax)).exponent)
    sb = torch.ldexp(torch.ones_like(bmax), -torch.frexp(torch.where(zero, 1.0, bmax)).exponent)
    x, y = q * sa[:, None], b * sb[:, None]
    ab = torch.zeros_like(amax)
    aa = torch.zeros_like(amax)
    bb = torch.zeros_like(amax)
    for t in range(d):
        xt, yt = x[:, t], y[:, t]
        ab += xt * yt
        aa += xt * xt
        bb += yt * yt
    out = (1.0 - ab / (_sqrt_rn(aa) * _sqrt_rn(bb))).clamp(0.0, 2.0)
    return torch.where(zero, torch.ones_like(out), out)


def _sqrt_rn(t):
    """Correctly rounded square root (IEEE, as Rust's ``f64::sqrt`` and CUDA's): torch's
    vectorised CPU kernel is not (about 1% of float64 results are an ulp off), numpy's is."""
    import torch

    if t.device.type == "cpu":
        return torch.from_numpy(np.sqrt(t.numpy()))
    return t.sqrt()


def _reduce(r, j, dist, k: int, rows: int):
    """The k best (distance, index) pairs per row of candidate triples (row, index, distance),
    sorted by (row, distance, index); drops the rest."""
    import torch

    o = torch.sort(j, stable=True).indices
    r, j, dist = r[o], j[o], dist[o]
    o = torch.sort(dist, stable=True).indices
    r, j, dist = r[o], j[o], dist[o]
    o = torch.sort(r, stable=True).indices
    r, j, dist = r[o], j[o], dist[o]
    counts = torch.bincount(r, minlength=rows)
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.arange(len(r), device=r.device) - starts[r]
    keep = pos < k
    return r[keep], j[keep], dist[keep], pos[keep]


def kneighbors_torch(q, b, k: int, *, metric: str = "l2", exclude_self: bool = False, index_offset: int = 0,
                     block_size: int | None = None, exclude_index=None):
    """``kneighbors`` on torch tensors (validated, one dtype, one device): the engine's algorithm
    and tie rule, blocked GEMM + top-k on the device. Returns (distances, indices) tensors."""
    import torch

    m, d = q.shape
    n = b.shape[0]
    dev, dt = b.device, b.dtype
    _check_values(q, "queries")
    _check_values(b, "bank")
    if exclude_index is not None:
        excl = torch.as_tensor(exclude_index, dtype=torch.int64, device=dev)
    elif exclude_self:
        excl = torch.arange(m, dtype=torch.int64, device=dev)
    else:
        excl = None
    overlap = excl is not None and bool(((excl >= 0) & (excl >= index_offset) & (excl < index_offset + n)).any())
    n_avail = n - 1 if overlap else n
    if k > n_avail:
        what = f"n_bank - 1 = {n_avail} (a query excludes itself)" if overlap else f"n_bank = {n}"
        raise ValueError(f"k: expected an int <= {what}, got {k}")
    qt, qn, bt, bn = _transformed(q, b, metric)
    c2 = 2.0 * _error_c(_unit_roundoff(dt, dev), d)
    alpha, base_on = (2.0, 1.0) if metric == "l2" else (1.0, 0.0)
    bl = (base_on * bn - c2 * bn).to(dt)
    wb = (2.0 * c2 * bn).to(dt)  # bu - bl
    eq_all = (c2 * qn).to(dt)
    bb = min(block_size or TORCH_BANK_BLOCK, n)
    qbs = min(TORCH_QUERY_BLOCK, m)
    limit = max(8 * qbs * k, 1 << 20)
    out_d = torch.full((m, k), float("nan"), dtype=torch.float64, device=dev)
    out_i = torch.full((m, k), -1, dtype=torch.int64, device=dev)
    inf = torch.tensor(float("inf"), dtype=dt, device=dev)
    nan = torch.tensor(float("nan"), dtype=dt, device=dev)
    for q0 in range(0, m, qbs):
        rows = min(qbs, m - q0)
        qb_t, e = qt[q0:q0 + rows], eq_all[q0:q0 + rows, None]
        qsrc = q[q0:q0 + rows]
        local_excl = None if excl is None else excl[q0:q0 + rows] - index_offset
        heap = torch.full((rows, k), float("inf"), dtype=dt, device=dev)
        cr, cj, cd = [], [], []
        held = 0
        for s0 in range(0, n, bb):
            cols = min(bb, n - s0)
            # bl - alpha q.b in one GEMM call (alpha a power of two: exact scaling), then the
            # bounds (their few extra roundings are inside the bound's 16 u margin).
            base = torch.addmm(bl[None, s0:s0 + cols], qb_t, bt[s0:s0 + cols].T, alpha=-alpha)
            upper = base + wb[None, s0:s0 + cols]
            upper += e
            lower = base.sub_(e)
            if local_excl is not None:
                # An excluded pair: NaN lower bound (no candidate), infinite upper bound.
                col = local_excl - s0
                hit = (col >= 0) & (col < cols)
                if bool(hit.any()):
                    rr = hit.nonzero()[:, 0]
                    lower[rr, col[rr]] = nan
                    upper[rr, col[rr]] = inf
            top = torch.topk(upper, min(k, cols), dim=1, largest=False, sorted=False).values
            heap = torch.topk(torch.cat([heap, top], 1), k, dim=1, largest=False, sorted=False).values
            root = heap.max(dim=1, keepdim=True).values
            r, c = (lower <= root).nonzero(as_tuple=True)
            if len(r) == 0:
                continue
            j = c + s0
            dist = torch.cat([exact_distances(qsrc[r[p:p + 262144]], b[j[p:p + 262144]], metric)
                              for p in range(0, len(r), 262144)])
            cr.append(r)
            cj.append(j)
            cd.append(dist)
            held += len(r)
            if held > limit:
                r, j, dist, _ = _reduce(torch.cat(cr), torch.cat(cj), torch.cat(cd), k, rows)
                cr, cj, cd, held = [r], [j], [dist], len(r)
        r, j, dist, pos = _reduce(torch.cat(cr), torch.cat(cj), torch.cat(cd), k, rows)
        out_d[q0 + r, pos] = dist
        out_i[q0 + r, pos] = j + index_offset
    return out_d.to(dt), out_i
