"""k-means clustering (Rust engine, or torch on a GPU): k-means++ then Lloyd, assignment by blocked GEMM.

Layer: metrics. Invariants: centroid sums and inertia are accumulated in float64; the inertia
is the exact sum of squared distances to the returned centroids; a seed gives the same result
on any number of threads (engine) and on a CPU (torch; on CUDA the float64 sums use atomics,
whose order can change their last bits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import _core
from .._validation import _describe, check_positive_int
from .neighbors import (
    _check_values,
    _column_stats,
    _device_of,
    _max_dev,
    _pow2_scale,
    as_features,
    as_torch_features,
    exact_distances,
    resolve_backend,
)

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
           init="k-means++", backend: str = "auto") -> KMeansResult:
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
        backend: ``"engine"`` (Rust, CPU), ``"torch"`` (the same algorithm in torch on the
            device of ``x``; its k-means++ draws from torch's generator, so a seed gives another
            initialisation than the engine's, while from the same ``init`` both run the same
            Lloyd iterations) or ``"auto"`` (torch when ``x`` is a tensor on a GPU).

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
    if resolve_backend(backend, x) == "torch":
        return _kmeans_torch_api(x, n_clusters, n_init, max_iter, float(tol), seed, init)
    a = as_features(x, "x")
    centers = _check_init(a.shape, n_clusters, init, lambda v: as_features(v, "init").astype(a.dtype, copy=False))
    labels, centroids, inertia, n_iter = _core.kmeans(a, n_clusters, n_init, max_iter, float(tol), seed, centers)
    return KMeansResult(labels=labels, centroids=centroids, inertia=float(inertia), n_iter=int(n_iter))


def _check_init(shape, n_clusters: int, init, convert):
    """Both backends' argument checks: ``n_clusters <= n_samples`` and ``init`` either
    "k-means++" (returns None) or an (n_clusters, d) array, returned converted by ``convert``."""
    n, d = shape
    if n_clusters > n:
        raise ValueError(f"n_clusters: expected an int <= n_samples = {n}, got {n_clusters}")
    if isinstance(init, str):
        if init != "k-means++":
            raise ValueError(f"init: expected 'k-means++' or a ({n_clusters}, {d}) array, got {init!r}")
        return None
    centers = convert(init)
    if tuple(centers.shape) != (n_clusters, d):
        raise ValueError(f"init: expected an array of shape ({n_clusters}, {d}), got shape {tuple(centers.shape)}")
    return centers


# --------------------------------------------------------------------------------------------
# The torch backend: the engine's algorithm (rust/kmeans.rs) on torch tensors

_BLOCK = 4096
_PP_MIN_SAMPLES, _PP_SAMPLES_PER_CLUSTER = 8192, 32


def _kmeans_torch_api(x, n_clusters, n_init, max_iter, tol, seed, init) -> KMeansResult:
    device = _device_of(x)
    a = as_torch_features(x, "x", device)
    centers = _check_init(tuple(a.shape), n_clusters, init, lambda v: as_torch_features(v, "init", device, dtype=a.dtype))
    if centers is not None:
        _check_values(centers, "init")
    _check_values(a, "x")
    labels, centroids, inertia, n_iter = kmeans_torch(a, n_clusters, n_init=n_init, max_iter=max_iter, tol=tol,
                                                      seed=seed, init=centers)
    return KMeansResult(labels=labels.cpu().numpy(), centroids=centroids.cpu().numpy(), inertia=float(inertia),
                        n_iter=int(n_iter))


def _assign(xt, xn, ct, accumulate: bool):
    """Labels (first nearest centroid by |c|^2 - 2 x.c), clamped approximate squared distances,
    and (``accumulate``) float64 centroid sums and counts."""
    import torch

    k, d = ct.shape
    cn = ct.double().pow(2).sum(1).to(ct.dtype)
    labels = torch.empty(xt.shape[0], dtype=torch.int64, device=xt.device)
    mind = torch.empty(xt.shape[0], dtype=xt.dtype, device=xt.device)
    sums = torch.zeros(k, d, dtype=torch.float64, device=xt.device) if accumulate else None
    for r0 in range(0, xt.shape[0], _BLOCK):
        blk = xt[r0:r0 + _BLOCK]
        scores = cn[None, :] - 2 * (blk @ ct.T)
        best, lab = scores.min(dim=1)
        labels[r0:r0 + _BLOCK] = lab
        mind[r0:r0 + _BLOCK] = (xn[r0:r0 + _BLOCK] + best).clamp_min(0)
        if sums is not None:
            sums.index_add_(0, lab, blk.double())
    counts = torch.bincount(labels, minlength=k) if accumulate else None
    return labels, mind, sums, counts


def _kmeans_pp(xt, xn, k: int, gen):
    """Greedy k-means++ (2 + ln k candidates per step) on a subsample of max(8192, 32 k) rows;
    centres in float64 (transformed space)."""
    import torch

    n = xt.shape[0]
    n_sub = min(n, max(_PP_MIN_SAMPLES, _PP_SAMPLES_PER_CLUSTER * k))
    ids = torch.arange(n) if n_sub == n else torch.randperm(n, generator=gen)[:n_sub].sort().values
    ids = ids.to(xt.device)
    sub, sn = xt[ids], xn[ids].double()
    trials = 2 + int(math.floor(math.log(k)))
    first = int(torch.randint(n_sub, (1,), generator=gen))

    def dist(cand, closest):
        dots = (sub @ sub[cand].T).double()
        v = (sn[:, None] + sn[cand][None, :] - 2 * dots).clamp_min(0)
        return v if closest is None else torch.minimum(v, closest[:, None])

    closest = dist(torch.tensor([first], device=xt.device), None)[:, 0]
    chosen = [first]
    for _ in range(1, k):
        cum = torch.cumsum(closest, 0)
        r = torch.rand(trials, generator=gen, dtype=torch.float64).to(xt.device) * cum[-1]
        cand = torch.searchsorted(cum, r).clamp_max(n_sub - 1)
        dd = dist(cand, closest)
        best = int(torch.argmin(dd.sum(0)))
        closest = dd[:, best]
        chosen.append(int(cand[best]))
    return sub[torch.tensor(chosen, device=xt.device)].double()


def kmeans_torch(x, k: int, *, n_init: int = 1, max_iter: int = 100, tol: float = 1e-4, seed: int = 0, init=None):
    """k-means on a validated (n, d) float32/float64 tensor, on its device: the engine's
    transform (centre and power-of-two scale when far from the origin), k-means++, Lloyd with
    scikit-learn's stopping rule, empty clusters re-seeded at the farthest rows (largest distance
    first, lowest index on ties), exact float64 inertia. Returns (labels, centroids, inertia, n_iter)."""
    import torch

    n, d = x.shape
    dt = x.dtype
    safe = (2.0**-30, 2.0**30) if dt == torch.float32 else (2.0**-250, 2.0**250)
    mean, mean_var, max_dev = _column_stats(x)
    init_dev = _max_dev(init, mean) if init is not None else 0.0
    top = max_dev + float(mean.abs().max())
    if init is not None:
        top = max(top, float(init.double().abs().max()))
    identity = float((mean * mean).sum()) <= mean_var * d and (top == 0.0 or safe[0] <= top <= safe[1])
    if identity:
        scale, mean = 1.0, torch.zeros_like(mean)
        xt = x
    else:
        scale = _pow2_scale(max(max_dev, init_dev))
        xt = (x - mean.to(dt)) * scale
    xn = xt.double().pow(2).sum(1).to(dt)
    tol_abs = tol * mean_var * scale * scale
    best = None
    for run in range(1 if init is not None else n_init):
        if init is not None:
            centers = ((init - mean.to(dt)) * scale).double()
        else:
            gen = torch.Generator().manual_seed((seed * 1_000_003 + run) % 2**63)
            centers = _kmeans_pp(xt, xn, k, gen)
        labels_old = None
        strict, n_iter = False, 0
        for it in range(max_iter):
            n_iter = it + 1
            labels, mind, sums, counts = _assign(xt, xn, centers.to(dt), True)
            empty = (counts == 0).nonzero()[:, 0]
            if len(empty):
                far = torch.sort(mind.double(), descending=True, stable=True).indices[:len(empty)]
                for j, i in zip(empty.tolist(), far.tolist()):
                    xi = xt[i].double()
                    old = int(labels[i])
                    if int(counts[old]) > 1:
                        counts[old] -= 1
                        sums[old] -= xi
                    counts[j] = 1
                    sums[j] = xi
            nonempty = counts > 0
            new = torch.where(nonempty[:, None], sums * (1.0 / counts.clamp_min(1).double())[:, None], centers)
            shift = float(((new - centers) ** 2).sum())
            centers = new
            if labels_old is not None and torch.equal(labels, labels_old):
                strict = True
                break
            if shift <= tol_abs:
                break
            labels_old = labels
        if not strict:
            labels, _, _, _ = _assign(xt, xn, centers.to(dt), False)
        centroids = (centers / scale + mean).to(dt)
        inertia = sum(float(exact_distances(x[r0:r0 + _BLOCK], centroids[labels[r0:r0 + _BLOCK]], "l2").sum())
                      for r0 in range(0, n, _BLOCK))
        if best is None or inertia < best[2]:
            best = (labels, centroids, inertia, n_iter)
    return best
