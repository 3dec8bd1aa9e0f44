"""The per-shard work of an eval job: pure functions of (bank, row range, fitted models).

A shard is a run of whole chunks ``[start, stop)`` of one bank. The single-process path calls
these functions shard after shard; the Ray path calls the very same functions as Ray tasks.
Every shard returns *partials* (counts, float64 sums, contingency tables, k-NN candidates
with global row indices) that :mod:`unlearnkit.eval.job` merges in shard order, so the two
paths add the same numbers in the same order and give the same results.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from . import _engine as E
from .readers import Bank

__all__ = ["Moments", "ScoreModels", "scan_shard", "score_shard", "shard_ranges"]


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
    def of(cls, x: np.ndarray) -> "Moments":
        x = x.astype(np.float64, copy=False)
        mean = x.mean(axis=0)
        xc = x - mean
        return cls(len(x), mean, xc.T @ xc)

    def merge(self, other: "Moments | None") -> "Moments":
        if other is None or other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / n)
        m2 = self.m2 + other.m2 + np.outer(delta, delta) * (self.n * other.n / n)
        return Moments(n, mean, m2)


def scan_shard(bank: Bank, start: int, stop: int, chunk_rows: int, want: np.ndarray, moments: bool,
               on_rows: Callable[[int], None] | None = None) -> dict:
    """Pass 1 over rows [start, stop): validates every chunk, counts labels, accumulates the
    moments (retain bank), and copies out the rows whose (global) indices are in ``want``."""
    labels: dict[int, int] = {}
    mom = None
    xs, ys = [], []
    want = np.asarray(want, dtype=np.int64)
    rows = 0
    for chunk in bank.chunks(start, stop, chunk_rows):
        m = len(chunk.y)
        rows += m
        u, c = np.unique(chunk.y, return_counts=True)
        for a, b in zip(u.tolist(), c.tolist()):
            labels[a] = labels.get(a, 0) + b
        if moments:
            part = Moments.of(chunk.x)
            mom = part if mom is None else mom.merge(part)
        lo, hi = np.searchsorted(want, [chunk.offset, chunk.offset + m])
        if hi > lo:
            sel = want[lo:hi] - chunk.offset
            xs.append(chunk.x[sel])
            ys.append(chunk.y[sel])
        if on_rows is not None:
            on_rows(m)
    if rows != stop - start:
        raise ValueError(f"{bank.name}: read {rows} rows in [{start}, {stop}), expected {stop - start}")
    d = bank.dim
    return {"rows": rows, "labels": labels, "moments": mom,
            "x": np.concatenate(xs) if xs else np.empty((0, d), bank.compute_dtype),
            "y": np.concatenate(ys) if ys else np.empty(0, np.int64)}


@dataclasses.dataclass
class KnnQueries:
    """Query rows to search for in one reference bank; ``exclude``: each query's own (global)
    row in that bank, never its neighbour (None when the queries come from another set)."""

    x: np.ndarray
    exclude: np.ndarray | None


@dataclasses.dataclass
class ScoreModels:
    """What pass 2 applies to every chunk of one bank (fitted on the driver, shipped once)."""

    classes: np.ndarray  # sorted class ids of the job
    probe: object | None  # fitted sklearn pipeline, or None
    basis: np.ndarray | None  # (d, k) float64 retain eigenvectors for DA
    complement: np.ndarray | None  # (d, d - k) the other eigenvectors, when k > d / 2 (cheaper)
    mean: np.ndarray | None  # (d,) float64 retain mean removed before projection, or None
    centroids: np.ndarray | None  # (k, d) k-means centroids to assign rows to, or None (fit had all rows)
    knn: dict  # {query group: KnnQueries} searched in this bank
    knn_k: int = 5
    knn_labels: bool = False  # carry the labels of the neighbours (the retain = training bank)
    knn_block_rows: int | None = None


def _da_terms(x: np.ndarray, basis: np.ndarray, mean: np.ndarray | None,
              complement: np.ndarray | None = None) -> np.ndarray:
    """Per-row ||U_k^T (z - mu)||^2 / ||z - mu||^2 in float64 (den clamped to float64 tiny,
    as ``unlearnkit.losses.alignment``). With ``complement`` (the other d - k eigenvectors,
    given when k > d/2) the numerator is ||z||^2 - ||U_rest^T z||^2: the same number in a
    fraction of the work (relative error ~1e-16 x ||z||^2 / ||U_k^T z||^2)."""
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
    """Pass 2 over rows [start, stop): probe hits, DA sum, k-means contingency partial, k-NN candidates."""
    n_cls = len(models.classes)
    k_clusters = 0 if models.centroids is None else len(models.centroids)
    table = np.zeros((n_cls, k_clusters), np.int64)
    correct = 0
    da_sum = 0.0
    knn = {name: None for name in models.knn}
    for chunk in bank.chunks(start, stop, chunk_rows):
        x, y = chunk.x, chunk.y
        if models.probe is not None:
            correct += int((models.probe.predict(x) == y).sum())
        if models.basis is not None:
            da_sum += float(_da_terms(x, models.basis, models.mean, models.complement).sum())
        if models.centroids is not None:
            pred = E.assign(x, models.centroids)
            cls = np.searchsorted(models.classes, y)
            np.add.at(table, (cls, pred), 1)
        for name, q in models.knn.items():
            cand = E.knn_candidates(q.x, x, models.knn_k, offset=chunk.offset, exclude=q.exclude,
                                    bank_labels=y if models.knn_labels else None, block_rows=models.knn_block_rows)
            knn[name] = cand if knn[name] is None else E.merge_candidates(knn[name], cand, models.knn_k)
        if on_rows is not None:
            on_rows(len(y))
    return {"rows": stop - start, "correct": correct, "da_sum": da_sum, "table": table, "knn": knn}
