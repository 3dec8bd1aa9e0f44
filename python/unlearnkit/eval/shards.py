"""The per-shard work of an eval job: pure functions of (bank, row range, fitted models).

A shard is a run of whole chunks ``[start, stop)`` of one bank. The single-process path calls
these functions shard after shard; the Ray path calls the very same functions as Ray tasks.
Every shard returns *partials* (counts, float64 sums, contingency tables, k-NN candidates
with global row indices) that :mod:`unlearnkit.eval.job` merges in shard order, so the two
paths add the same numbers in the same order and give the same results.

A chunk is read as stored by a reader thread one chunk ahead (``readers.prefetch``) and handed
whole to one engine call (``_core.eval_chunk``), which upcasts it slab by slab, checks it,
and computes every per-row quantity of the pass on all cores (``rust/sweep.rs``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from . import _engine as E
from .readers import Bank, prefetch

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

__all__ = ["KnnQueries", "Moments", "ScoreModels", "scan_shard", "score_shard", "shard_ranges"]


def shard_ranges(n_rows: int, shard_rows: int) -> list[tuple[int, int]]:
    return [(lo, min(lo + shard_rows, n_rows)) for lo in range(0, n_rows, shard_rows)] or [(0, 0)]


@dataclasses.dataclass
class Moments:
    """Row count, float64 mean and centred co-moment M2 = sum (x - mean)(x - mean)^T.

    Merged with the pairwise update of Chan, Golub & LeVeque (1979), which stays accurate when
    the mean is large next to the spread (``sum x x^T - n mean mean^T`` would cancel)."""

    n: int
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray) -> Moments:
        x = x.astype(np.float64, copy=False)
        mean = x.mean(axis=0)
        xc = x - mean
        return cls(len(x), mean, xc.T @ xc)

    def merge(self, other: Moments | None) -> Moments:
        if other is None or other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / n)
        m2 = self.m2 + other.m2 + np.outer(delta, delta) * (self.n * other.n / n)
        return Moments(n, mean, m2)


def _label_counts(y: np.ndarray, counts: dict) -> None:
    if len(y) and y.min() >= 0 and y.max() < 1 << 16:
        c = np.bincount(y)
        u = np.flatnonzero(c)
        c = c[u]
    else:
        u, c = np.unique(y, return_counts=True)
    for a, b in zip(u.tolist(), c.tolist()):
        counts[a] = counts.get(a, 0) + b


class _Clock:
    """Seconds this shard spent waiting for the reader, in the engine, and in Python around it."""

    def __init__(self):
        self.read = self.engine = self.other = 0.0
        self._t = time.perf_counter()

    def lap(self, what: str) -> None:
        t = time.perf_counter()
        setattr(self, what, getattr(self, what) + t - self._t)
        self._t = t

    def as_dict(self) -> dict:
        return {"read_wait_s": self.read, "engine_s": self.engine, "python_s": self.other}


def scan_shard(bank: Bank, start: int, stop: int, chunk_rows: int, want: np.ndarray, moments: bool,
               on_rows: Callable[[int], None] | None = None) -> dict:
    """Pass 1 over rows [start, stop): validates every chunk (the engine, on the stored dtype),
    counts labels, accumulates the moments (retain bank; the engine's per-chunk float64 moments
    merged in chunk order), and copies out the rows whose (global) indices are in ``want``."""
    labels: dict[int, int] = {}
    mom = None
    xs, ys = [], []
    want = np.asarray(want, dtype=np.int64)
    rows = 0
    clock = _Clock()
    for chunk in prefetch(bank.raw_chunks(start, stop, chunk_rows)):
        clock.lap("read")
        m = len(chunk.y)
        rows += m
        r = E.eval_chunk(chunk.x, chunk.kind, validate=True, moments=moments)
        clock.lap("engine")
        if r["bad_row"] is not None:
            raise bank.nonfinite_error(chunk.upcast(), chunk.offset)
        _label_counts(chunk.y, labels)
        if moments:
            cnt, mean, m2 = r["moments"]
            part = Moments(int(cnt), mean, m2)
            mom = part if mom is None else mom.merge(part)
        lo, hi = np.searchsorted(want, [chunk.offset, chunk.offset + m])
        if hi > lo:
            sel = want[lo:hi] - chunk.offset
            xs.append(chunk.upcast(sel))
            ys.append(chunk.y[sel])
        if on_rows is not None:
            on_rows(m)
        clock.lap("other")
    if rows != stop - start:
        raise ValueError(f"{bank.name}: read {rows} rows in [{start}, {stop}), expected {stop - start}")
    d = bank.dim
    return {"rows": rows, "labels": labels, "moments": mom, "timing": clock.as_dict(),
            "x": np.concatenate(xs) if xs else np.empty((0, d), bank.compute_dtype),
            "y": np.concatenate(ys) if ys else np.empty(0, np.int64)}


@dataclasses.dataclass
class KnnQueries:
    """Every k-NN query searched in one reference bank, in one sweep: ``x`` (m, d) the query
    rows of all groups one after another (``groups``: name -> slice of ``x``), ``exclude`` each
    query's own (global) row in that bank, never its neighbour (-1: none)."""

    x: np.ndarray
    exclude: np.ndarray
    groups: dict


@dataclasses.dataclass
class ScoreModels:
    """What pass 2 applies to every chunk of one bank (fitted on the driver, shipped once)."""

    classes: np.ndarray  # sorted class ids of the job
    probe: Pipeline | None  # fitted sklearn pipeline (asked for the rows the engine calls ambiguous), or None
    basis: np.ndarray | None  # (d, k) float64 retain eigenvectors for DA
    complement: np.ndarray | None  # (d, d - k) the other eigenvectors, when k > d / 2 (cheaper)
    mean: np.ndarray | None  # (d,) float64 retain mean removed before projection, or None
    centroids: np.ndarray | None  # (k, d) k-means centroids to assign rows to, or None (fit had all rows)
    knn: KnnQueries | None  # the queries searched in this bank
    knn_k: int = 5
    knn_labels: bool = False  # carry the labels of the neighbours (the retain = training bank)
    knn_block_rows: int | None = None

    def probe_params(self, dtype) -> tuple | None:
        """(mean, scale, coef (c, d), intercept (c,)) of the StandardScaler + linear model, in
        ``dtype`` (as scikit-learn casts them to the features' dtype), and the model's classes."""
        if self.probe is None:
            return None
        scaler, lin = self.probe[0], self.probe[-1]
        d = lin.coef_.shape[1]
        mean = scaler.mean_ if scaler.with_mean else np.zeros(d)
        scale = scaler.scale_ if scaler.with_std and scaler.scale_ is not None else np.ones(d)
        arrs = tuple(np.ascontiguousarray(a, dtype=dtype) for a in (mean, scale, lin.coef_, np.ravel(lin.intercept_)))
        return arrs, np.asarray(lin.classes_)


def _da_terms(x: np.ndarray, basis: np.ndarray, mean: np.ndarray | None,
              complement: np.ndarray | None = None) -> np.ndarray:
    """Per-row ||U_k^T (z - mu)||^2 / ||z - mu||^2 in float64 (den clamped to float64 tiny,
    as ``unlearnkit.losses.alignment``); the numpy form of what the engine computes per chunk
    (kept as the reference the tests compare the engine with)."""
    z = x.astype(np.float64)
    if mean is not None:
        z -= mean
    den = np.einsum("ij,ij->i", z, z)
    if complement is not None:
        proj = z @ complement
        num = np.maximum(den - np.einsum("ij,ij->i", proj, proj), 0.0)
    else:
        proj = z @ basis
        num = np.einsum("ij,ij->i", proj, proj)
    return num / np.maximum(den, np.finfo(np.float64).tiny)


def score_shard(bank: Bank, start: int, stop: int, chunk_rows: int, models: ScoreModels,
                on_rows: Callable[[int], None] | None = None) -> dict:
    """Pass 2 over rows [start, stop): probe hits, DA sum, k-means contingency partial and k-NN
    candidates of every query, all from one engine call per chunk (``_core.eval_chunk``)."""
    n_cls = len(models.classes)
    k_clusters = 0 if models.centroids is None else len(models.centroids)
    table = np.zeros((n_cls, k_clusters), np.int64)
    correct = 0
    da_sum, da_zero = 0.0, 0
    cand: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None  # (distances, indices, labels)
    dtype = bank.compute_dtype
    probe = models.probe_params(dtype)
    align = None
    if models.basis is not None:
        proj = models.complement if models.complement is not None else models.basis
        mean = None if models.mean is None else np.ascontiguousarray(models.mean, dtype=np.float64)
        align = (np.ascontiguousarray(proj.T, dtype=np.float64), models.complement is not None, mean)
    centroids = None if models.centroids is None else np.ascontiguousarray(models.centroids, dtype=dtype)
    q = models.knn
    clock = _Clock()
    for chunk in prefetch(bank.raw_chunks(start, stop, chunk_rows)):
        clock.lap("read")
        y = chunk.y
        r = E.eval_chunk(chunk.x, chunk.kind, validate=False, probe=None if probe is None else probe[0],
                         centroids=centroids, alignment=align, knn_queries=None if q is None else q.x,
                         knn_k=models.knn_k, knn_exclude=None if q is None else q.exclude, knn_offset=chunk.offset,
                         block_size=models.knn_block_rows)
        clock.lap("engine")
        if probe is not None:
            cls = r["probe_class"]
            pred = probe[1][np.maximum(cls, 0)]
            unsure = np.flatnonzero(cls < 0)
            if len(unsure):  # rows whose top logits are within rounding: scikit-learn decides
                assert models.probe is not None  # probe_params gave the probe's parameters
                pred[unsure] = models.probe.predict(chunk.upcast(unsure))
            correct += int((pred == y).sum())
        if align is not None:
            da_sum += r["da_sum"]
            da_zero += r["da_zero_rows"]
        if centroids is not None:
            cls_idx = np.searchsorted(models.classes, y)
            table += np.bincount(cls_idx * k_clusters + r["assign"], minlength=n_cls * k_clusters).reshape(
                n_cls, k_clusters)
        if q is not None:
            dist, idx = r["knn"]
            labels = None
            if models.knn_labels:
                labels = np.where(idx == E.MASKED, -1, y[np.clip(idx - chunk.offset, 0, len(y) - 1)])
            part = (dist, idx, labels)
            cand = part if cand is None else E.merge_candidates(cand, part, models.knn_k)
        if on_rows is not None:
            on_rows(len(y))
        clock.lap("other")
    knn = {}
    if q is not None:
        assert cand is not None, "at least one chunk searched"
        for name, sl in q.groups.items():
            knn[name] = (cand[0][sl], cand[1][sl], None if cand[2] is None else cand[2][sl])
    return {"rows": stop - start, "correct": correct, "da_sum": da_sum, "da_zero_rows": da_zero, "table": table,
            "knn": knn, "timing": clock.as_dict()}
