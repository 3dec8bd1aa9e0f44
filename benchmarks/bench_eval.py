"""`unlearnkit eval` on a 1e7 x 128 float16 feature bank on disk, within a stated memory limit.

Generates a Gaussian-mixture bank (10 classes; rows split 80% retain, 10% forget, 10% test,
each a float16 ``.npy`` with a ``.labels.npy`` beside it) in a temporary folder, runs
``unlearnkit eval --memory-limit LIMIT`` on it in a fresh process, and reports per stage: wall
time, vectors/s and peak RSS (``VmHWM``, reset at each stage), plus the process's peak RSS
sampled from outside (``/proc/PID/status`` every 20 ms). The folder is deleted afterwards.

If the disk lacks room for the bank, the row count is reduced to what fits (and said so).

Beside the measured stages it computes the **floor** on this machine (``floor()``): the exact
k-NN's GEMM flops (queries x retain+test rows x d x 2) at the rate the engine's kernel reaches
here on all cores (measured on a 65 536-row block), plus reading the bank's bytes once from the
page cache (measured on the bank itself). Every other per-row score is a few percent of that.

    python benchmarks/bench_eval.py [--rows 10000000] [--dim 128] [--memory-limit 2GiB]
                                    [--knn-queries 1000] [--ray auto] [--keep DIR] [--json FILE]

``make bench`` calls :func:`run` with the defaults.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROWS = 10_000_000
DIM = 128
LIMIT = "2GiB"
CLASSES = 10
SPLITS = (("retain", 0.8), ("forget", 0.1), ("test", 0.1))


def _write_npy(path: pathlib.Path, n: int, dim: int, rng, centers: np.ndarray, piece: int = 1 << 20) -> None:
    """Writes features (n, dim) float16 and labels (n,) int64 piece by piece (bounded memory)."""
    labels_path = path.with_name(path.stem + ".labels.npy")
    with open(path, "wb") as fx, open(labels_path, "wb") as fy:
        np.lib.format.write_array_header_1_0(fx, {"descr": "<f2", "fortran_order": False, "shape": (n, dim)})
        np.lib.format.write_array_header_1_0(fy, {"descr": "<i8", "fortran_order": False, "shape": (n,)})
        for lo in range(0, n, piece):
            m = min(piece, n - lo)
            y = rng.integers(0, len(centers), m)
            x = rng.standard_normal((m, dim), dtype=np.float32)
            x += centers[y]
            fx.write(x.astype(np.float16).tobytes())
            fy.write(y.astype(np.int64).tobytes())


def generate(folder: pathlib.Path, rows: int, dim: int, seed: int = 0) -> dict[str, pathlib.Path]:
    rng = np.random.default_rng(seed)
    centers = (rng.standard_normal((CLASSES, dim)) * 0.6).astype(np.float32)
    paths = {}
    done = 0
    for i, (name, frac) in enumerate(SPLITS):
        n = rows - done if i == len(SPLITS) - 1 else int(rows * frac)
        done += n
        paths[name] = folder / f"{name}.npy"
        _write_npy(paths[name], n, dim, rng, centers)
    return paths


def _fit_rows(folder: pathlib.Path, rows: int, dim: int) -> tuple[int, str | None]:
    free = shutil.disk_usage(folder).free
    need = rows * (dim * 2 + 8) + (64 << 20)
    if need <= free * 0.8:
        return rows, None
    fit = int(free * 0.8 - (64 << 20)) // (dim * 2 + 8)
    return fit, (f"disk: {free / 2**30:.1f} GiB free, {need / 2**30:.1f} GiB needed for {rows:.0e} rows; "
                 f"ran {fit} rows instead")


def bench(rows: int = ROWS, dim: int = DIM, memory_limit: str = LIMIT, knn_queries: int = 1000,
          ray: str | None = None, keep: str | None = None, extra: list[str] | None = None) -> dict:
    base = pathlib.Path(keep) if keep else pathlib.Path(tempfile.mkdtemp(prefix="unlearnkit-bench-eval-"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        rows, note = _fit_rows(base, rows, dim)
        if note:
            print(f"   {note}", flush=True)
        t0 = time.perf_counter()
        if not (base / "retain.npy").exists() or not keep:
            paths = generate(base, rows, dim)
        else:
            paths = {name: base / f"{name}.npy" for name, _ in SPLITS}
        gen_s = time.perf_counter() - t0
        on_disk = sum(p.stat().st_size for p in base.glob("*.npy"))
        print(f"   bank: {rows} x {dim} float16, {on_disk / 2**30:.2f} GiB on disk, generated in {gen_s:.0f} s",
              flush=True)
        fl = floor(paths, rows, dim, knn_queries)
        print(f"   floor: k-NN {fl['knn_flops']:.3g} flops at {fl['gemm_flops_per_s'] / 1e9:.0f} GFLOP/s = "
              f"{fl['knn_s']:.1f} s, reading {fl['read_bytes'] / 2**30:.2f} GiB = {fl['read_s']:.1f} s: "
              f"{fl['floor_s']:.1f} s", flush=True)
        out = base / "result.json"
        cmd = [sys.executable, "-m", "unlearnkit.cli", "eval", "--forget", str(paths["forget"]),
               "--retain", str(paths["retain"]), "--test", str(paths["test"]), "--memory-limit", memory_limit,
               "--knn-queries", str(knn_queries), "--out", str(out), "--quiet", *(extra or [])]
        if ray:
            cmd += ["--ray", ray]
        load0 = _load()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        sampled = _sample_rss(proc)  # VmRSS of the child every 20 ms, from outside
        stdout, stderr = proc.communicate()
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"unlearnkit eval failed ({proc.returncode}):\n{stdout}\n{stderr}")
        print("\n".join("   " + line for line in stdout.splitlines()), flush=True)
        result = json.loads(out.read_text())
        return {"rows": rows, "dim": dim, "memory_limit": memory_limit, "wall_s": wall, "generate_s": gen_s,
                "bytes_on_disk": on_disk, "sampled_peak_rss": sampled, "floor": fl,
                "load_before": load0, "load_after": _load(), "result": result, "note": note}
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)


def _load() -> str:
    try:
        return " ".join(pathlib.Path("/proc/loadavg").read_text().split()[:3])
    except OSError:  # pragma: no cover - not Linux
        return "n/a"


def _sample_rss(proc: subprocess.Popen, every: float = 0.02) -> int:
    """The largest VmRSS of a running child seen from outside (polled until it exits). The child
    resets its own VmHWM at each stage, so getrusage(RUSAGE_CHILDREN) would under-report."""
    peak = 0
    status = pathlib.Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmRSS:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
        except OSError:
            pass
        time.sleep(every)
    return peak


def floor(paths: dict, rows: int, dim: int, knn_queries: int) -> dict:
    """The hardware floor of the job on this machine (see the module docstring)."""
    from unlearnkit import _core

    rng = np.random.default_rng(1)
    bank = rng.standard_normal((65536, dim), dtype=np.float32)
    q = rng.standard_normal((3 * knn_queries, dim), dtype=np.float32)
    _core.kneighbors(q[:64], bank[:4096], 5)  # warm up
    t = time.perf_counter()
    _core.kneighbors(q, bank, 5, block_size=512)
    dt = time.perf_counter() - t
    rate = 2.0 * len(q) * len(bank) * dim / dt
    n_search = sum(np.load(paths[s], mmap_mode="r").shape[0] for s in ("retain", "test"))
    knn_flops = 2.0 * 3 * min(knn_queries, rows) * n_search * dim
    t = time.perf_counter()
    nbytes = 0
    buf = bytearray(64 << 20)
    for p in paths.values():
        with open(p, "rb", buffering=0) as fh:
            while (k := fh.readinto(buf)):
                nbytes += k
    read_s = time.perf_counter() - t
    return {"gemm_flops_per_s": rate, "knn_flops": knn_flops, "knn_s": knn_flops / rate, "read_bytes": nbytes,
            "read_s": read_s, "floor_s": knn_flops / rate + read_s}


def _gib(n) -> str:
    return f"{n / 2**30:.2f} GiB" if n else "n/a"


def rows_of(b: dict) -> list[dict]:
    res = b["result"]
    limit = res["meta"]["memory_limit_bytes"]
    peak = max(b["sampled_peak_rss"] or 0, res["meta"]["peak_rss_bytes"])
    size = f"{b['rows']:.0e}x{b['dim']} f16"
    out = []
    for name, st in res["stages"].items():
        vps = st.get("vectors_per_s")
        util = f" ({st['cpu_utilisation']:.0%} of the cores)" if "cpu_utilisation" in st else ""
        io = (f", read wait {st['read_wait_s']:.1f} s, engine {st['engine_s']:.1f} s" if "engine_s" in st else "")
        note = (f"{vps:.3g} vec/s, " if vps else "") + f"cpu {st['cpu_seconds']:.1f} s{util}{io}, " \
            f"peak RSS {_gib(st['peak_rss_bytes'])}"
        out.append({"bench": "eval", "case": f"{name} {size}", "ours_s": st["seconds"], "anchor": "",
                    "anchor_s": None, "goal": "", "note": note})
    ok = "within" if limit and peak <= limit else "OVER"
    out.append({"bench": "eval", "case": f"total {size} ({res['meta']['executor']})", "ours_s": b["wall_s"],
                "anchor": "", "anchor_s": None, "goal": f"<= {b['memory_limit']}",
                "note": f"peak RSS {_gib(peak)} (VmHWM {_gib(res['meta']['peak_rss_bytes'])}, sampled "
                        f"{_gib(b['sampled_peak_rss'])}) {ok} limit {_gib(limit)}; "
                        f"{b['rows'] / b['wall_s']:.3g} vec/s end to end; load {b.get('load_before')} -> "
                        f"{b.get('load_after')}" + (f"; {b['note']}" if b["note"] else "")})
    fl = b.get("floor")
    if fl:
        out.append({"bench": "eval", "case": f"floor {size}", "ours_s": fl["floor_s"], "anchor": "", "anchor_s": None,
                    "goal": "total <= 1.5 x floor",
                    "note": f"k-NN {fl['knn_s']:.1f} s at {fl['gemm_flops_per_s'] / 1e9:.0f} GFLOP/s + read "
                            f"{fl['read_s']:.1f} s; total / floor = {b['wall_s'] / fl['floor_s']:.2f}"})
    return out


def run() -> list[dict]:
    """`make bench`: the 1e7 x 128 float16 bank within 2 GiB."""
    return rows_of(bench())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=float, default=ROWS, help="total rows over forget/retain/test (default 1e7)")
    p.add_argument("--dim", type=int, default=DIM)
    p.add_argument("--memory-limit", default=LIMIT)
    p.add_argument("--knn-queries", type=int, default=1000)
    p.add_argument("--ray", help="pass --ray to unlearnkit eval (e.g. auto)")
    p.add_argument("--keep", help="generate into (and keep, reuse) this folder instead of a temporary one")
    p.add_argument("--json", help="also write the figures here")
    args, extra = p.parse_known_args(argv)
    b = bench(int(args.rows), args.dim, args.memory_limit, args.knn_queries, args.ray, args.keep, extra)
    rows = rows_of(b)
    print(f"\n{'case':<34} {'seconds':>9}  note")
    for r in rows:
        print(f"{r['case']:<34} {r['ours_s']:>9.2f}  {r['note']}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({k: v for k, v in b.items()}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
