"""The memory budget of an eval job: sizes, resident-memory probes and the chunk plan.

``--memory-limit`` bounds the *peak resident set size* of the process (the driver, and in a
Ray run each worker process too). The plan subtracts what the process already holds once the
libraries the job uses are imported (``unlearnkit.eval.job`` imports them before measuring:
Python, numpy, torch through ``unlearnkit.metrics``, scikit-learn, pyarrow for Parquet banks,
Ray with ``ray=``: typically 800-900 MiB) and a fixed reserve for small allocations, and sizes
the rest:

- the driver's resident samples (k-means fit rows for each set, the probe's training rows, the
  k-NN query rows, plus scikit-learn's float64 copies of the probe rows);
- one streamed chunk as stored (three windows: in the engine, in the prefetch queue, being
  read) and its per-row outputs; the engine upcasts it slab by slab, so no float32 or float64
  copy of a chunk exists;
- the Rust engine's buffers: the 16 MiB slab, per thread a k-NN tile (512 queries x 512 bank
  rows) and a float64 row tile.

If the samples do not fit, they are shrunk (the result's ``plan`` says so); if not even a
1024-row chunk fits, the job stops with a ``ValueError`` naming ``memory_limit``.
"""

from __future__ import annotations

import dataclasses
import re
import resource
import sys

__all__ = ["Plan", "current_rss", "engine_bytes", "format_size", "make_plan", "parse_size", "peak_rss",
           "reset_peak_rss"]

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
          "t": 1000**4, "tb": 1000**4, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}

MIN_CHUNK_ROWS = 1024
MAX_CHUNK_ROWS = 262144
RESERVE_BYTES = 96 << 20  # interpreter growth, tqdm, pyarrow buffers, result dicts


def parse_size(value, name: str = "memory_limit") -> int:
    """``"4GiB"``, ``"512MB"``, ``"1.5G"``, ``2**30`` -> bytes (KB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024)."""
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected a size such as '4GiB' or a number of bytes, got {value!r}")
    if isinstance(value, (int, float)):
        size = float(value)
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", value)
        if not m or m.group(2).lower() not in _UNITS:
            raise ValueError(f"{name}: expected a size such as '4GiB', '512MB' or a number of bytes, got {value!r}")
        size = float(m.group(1)) * _UNITS[m.group(2).lower()]
    else:
        raise TypeError(f"{name}: expected a size such as '4GiB' or a number of bytes, got {type(value).__name__}")
    if not size > 0 or size != size:
        raise ValueError(f"{name}: expected a positive size, got {value!r}")
    return int(size)


def format_size(n: int | float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"  # pragma: no cover


def _status(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def current_rss() -> int:
    """Resident set size of this process now, in bytes (``VmRSS``; falls back to the peak)."""
    v = _status("VmRSS")
    return v if v is not None else peak_rss()


def peak_rss() -> int:
    """Peak resident set size since start or since the last :func:`reset_peak_rss` (``VmHWM``)."""
    v = _status("VmHWM")
    if v is not None:
        return v
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return ru if sys.platform == "darwin" else ru * 1024


def reset_peak_rss() -> bool:
    """Resets ``VmHWM`` to the current RSS (Linux >= 4.0, ``/proc/self/clear_refs``); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


@dataclasses.dataclass(frozen=True)
class Plan:
    """How the job streams and samples. Everything that changes a result (sample sizes, the
    chunk grid) is in here and written to the result's ``plan`` section."""

    chunk_rows: int
    shard_rows: int
    knn_block_rows: int
    kmeans_rows: int
    probe_rows: int
    knn_queries: int
    limit_bytes: int | None
    baseline_bytes: int
    estimate_bytes: int
    notes: tuple = ()

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["notes"] = list(self.notes)
        return d


def _sample_bytes(dim: int, kmeans_rows: int, probe_rows: int, knn_queries: int, n_sets: int,
                  n_classes_guess: int) -> int:
    """Resident samples on the driver and what fitting them costs (measured: about 0.6x this)."""
    km = n_sets * kmeans_rows * (dim * 4 * 2 + 8 + 8 * n_classes_guess)  # rows, engine copy, labels, distances
    probe = probe_rows * (dim * (4 + 4 + 8) + 8 + 8 * 3 * n_classes_guess)  # rows, scaled rows, lbfgs work
    knn = 3 * knn_queries * (dim * 4 * 2 + 8 + 3 * 16 * 8)  # queries (driver + shipped copy), candidates
    return km + probe + knn


def _row_bytes(dim: int, itemsize: int, n_classes_guess: int) -> int:
    """Bytes per streamed row: the stored window three times (the chunk the engine works on,
    the one waiting in the prefetch queue, the one being read), the labels of each, and the
    per-row outputs (probe class, nearest centroid, their comparisons with the labels)."""
    return 3 * (dim * itemsize + 8) + 96


#: Bank rows per k-NN tile handed to the engine: its working memory per thread is about
#: (512 x this + (512 + this) x d) floats, 2.3 MiB at d = 128; larger tiles are not faster.
KNN_BLOCK_ROWS = 512
#: The engine's upcast buffer for one slab of a chunk (``SLAB_BYTES`` in ``rust/sweep.rs``).
ENGINE_SLAB_BYTES = 16 << 20


def engine_bytes(dim: int, threads: int) -> int:
    """The Rust engine's working memory: the slab buffer, per thread one k-NN tile (512 queries
    x ``KNN_BLOCK_ROWS`` rows, the query and bank blocks in float64 at worst) and the float64
    scratch of one row tile (1024 rows: centred rows, projections)."""
    knn_tiles = (512 * KNN_BLOCK_ROWS + (512 + KNN_BLOCK_ROWS) * dim) * 8
    row_tile = 2 * 1024 * dim * 8
    return ENGINE_SLAB_BYTES + threads * (knn_tiles + row_tile)


def make_plan(*, dim: int, itemsize: int, n_rows_max: int, limit_bytes: int | None, kmeans_rows: int,
              probe_rows: int, knn_queries: int, n_sets: int = 3, chunk_rows: int | None = None,
              n_classes_guess: int = 32, baseline_bytes: int | None = None, threads: int | None = None) -> Plan:
    """Chunk rows and sample sizes that keep the peak RSS under ``limit_bytes`` (None: defaults)."""
    import os

    baseline = current_rss() if baseline_bytes is None else baseline_bytes
    threads = threads or os.cpu_count() or 1
    notes = []
    per_row = _row_bytes(dim, itemsize, n_classes_guess)
    knn_tiles = engine_bytes(dim, threads)
    if limit_bytes is None:
        rows = 65536
    else:
        work = limit_bytes - baseline - RESERVE_BYTES - knn_tiles
        need_min = _sample_bytes(dim, 1000, 1000, 100, n_sets, n_classes_guess) + MIN_CHUNK_ROWS * per_row
        if work < need_min:
            floor = baseline + RESERVE_BYTES + knn_tiles + need_min
            raise ValueError(f"memory_limit: {format_size(limit_bytes)} is too small: the process already holds "
                             f"{format_size(baseline)} (Python and the libraries the job imports) and the job "
                             f"needs at least {format_size(floor - baseline)} more for {dim}-wide features "
                             f"(1000-row samples, a {MIN_CHUNK_ROWS}-row chunk, the engine's buffers and a "
                             f"reserve): this job's floor is {format_size(floor)}; give at least that")
        # samples get at most half of the working memory; shrink them proportionally if needed
        samples = _sample_bytes(dim, kmeans_rows, probe_rows, knn_queries, n_sets, n_classes_guess)
        if samples > work // 2:
            f = (work // 2) / samples
            new = (max(1000, int(kmeans_rows * f)), max(1000, int(probe_rows * f)), max(100, int(knn_queries * f)))
            notes.append(f"memory_limit: samples shrunk from kmeans_rows={kmeans_rows}, probe_rows={probe_rows}, "
                         f"knn_queries={knn_queries} to {new[0]}, {new[1]}, {new[2]}")
            kmeans_rows, probe_rows, knn_queries = new
            samples = _sample_bytes(dim, kmeans_rows, probe_rows, knn_queries, n_sets, n_classes_guess)
        rows = int((work - samples) // per_row)
    if chunk_rows is not None:  # asked for: used as given
        rows = int(chunk_rows)
    else:
        rows = int(min(max(rows, MIN_CHUNK_ROWS), MAX_CHUNK_ROWS))
        # a power of two, so the chunk grid (and the float sums) do not move with small changes
        # of the baseline between runs
        rows = 1 << (rows.bit_length() - 1)
    # shards: whole chunks, at most 16 per bank (depends only on the bank and the chunk size)
    n_chunks = max(1, -(-n_rows_max // rows))
    shard_rows = rows * max(1, -(-n_chunks // 16))
    estimate = (baseline + RESERVE_BYTES + knn_tiles + rows * per_row
                + _sample_bytes(dim, kmeans_rows, probe_rows, knn_queries, n_sets, n_classes_guess))
    return Plan(chunk_rows=rows, shard_rows=shard_rows, knn_block_rows=KNN_BLOCK_ROWS, kmeans_rows=kmeans_rows,
                probe_rows=probe_rows, knn_queries=knn_queries, limit_bytes=limit_bytes, baseline_bytes=baseline,
                estimate_bytes=int(estimate), notes=tuple(notes))
