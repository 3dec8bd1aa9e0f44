"""Sinkhorn OT on the CPU: unlearnkit's torch path against POT (numpy and torch backends) and
GeomLoss (tensorized), at n = m in {1024, 4096}, d = 256, float32.

Every case runs in its own subprocess so its peak resident memory (ru_maxrss) is its own.
Same problem for all: x ~ N(0, I/d), y ~ N(0.1, I/d); cost |x - y|^2 / 2; eps = blur^2 with
blur 0.1 (GeomLoss's convention). Two comparisons:

* entropic OT cost to a fixed tolerance, same algorithm on both sides: ours (``output="cost"``,
  ``scaling=1``: no eps-annealing, as POT's ``sinkhorn_log`` has none; stop at L1 marginal
  error <= 1e-4, stricter than POT's L2 error <= 1e-4) vs POT ``sinkhorn2(method="sinkhorn_log",
  stopThr=1e-4)``; the values should agree to ~1e-5 relative. Ours at its default annealing
  (scaling 0.8, from the cloud's bounding-box diameter) is printed too: on these clouds it
  spends ~20 extra iterations, so annealing is for small eps, not for this one;
* debiased divergence: ours (``output="divergence"``) vs GeomLoss ``SamplesLoss("sinkhorn",
  p=2, blur=0.1, scaling=0.8, debias=True, backend="tensorized")``, which runs one iteration
  per annealing step and stops there (no tolerance): faster, less converged.

Ours also reports whether its solve converged and the tolerance it used (``loss.last.tol_used``: the
requested one, raised to float32's precision floor when it asks for less; see docs/losses.md).

Run: ``python benchmarks/bench_sinkhorn.py`` (or through ``make bench``).
"""

from __future__ import annotations

import json
import subprocess
import sys

D, BLUR, SCALING, TOL = 256, 0.1, 0.8, 1e-4


def _data(n: int):
    import torch

    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, D, generator=g) / D ** 0.5
    y = torch.randn(n, D, generator=g) / D ** 0.5 + 0.1 / D ** 0.5
    return x, y


def _case(impl: str, n: int) -> dict:
    import resource
    import time

    import geomloss  # noqa: F401  (imports outside the timed region)
    import ot  # noqa: F401
    import torch

    import unlearnkit.losses  # noqa: F401

    x, y = _data(n)
    eps = BLUR ** 2

    def solve(x, y):
        n = x.shape[0]
        iters, extra = None, {}
        if impl in ("ours-cost", "ours-cost-annealed"):
            from unlearnkit.losses import SinkhornLoss

            loss = SinkhornLoss(blur=BLUR, scaling=SCALING if impl == "ours-cost-annealed" else 1.0, output="cost",
                                tol=TOL, max_iter=5000, backend="torch")
            value = float(loss(x, y))
            iters = loss.last.n_iter
            extra = {"converged": loss.last.converged, "tol_used": loss.last.tol_used}
        elif impl == "ours-divergence":
            from unlearnkit.losses import SinkhornLoss

            loss = SinkhornLoss(blur=BLUR, scaling=SCALING, output="divergence", tol=TOL, max_iter=5000,
                                backend="torch")
            value = float(loss(x, y))
            iters = loss.last.n_iter
            extra = {"converged": loss.last.converged, "tol_used": loss.last.tol_used}
        elif impl in ("pot-numpy", "pot-torch"):
            import numpy as np
            import ot

            if impl == "pot-numpy":
                xs, ys = x.numpy(), y.numpy()
                a = np.full(n, 1.0 / n, dtype=np.float32)
            else:
                xs, ys = x, y
                a = torch.full((n,), 1.0 / n)
            m = ot.dist(xs, ys) * 0.5
            value, log = ot.sinkhorn2(a, a, m, eps, method="sinkhorn_log", stopThr=TOL, numItermax=5000, log=True)
            value, iters = float(value), int(log["niter"])
        elif impl == "geomloss":
            from geomloss import SamplesLoss

            value = float(SamplesLoss("sinkhorn", p=2, blur=BLUR, scaling=SCALING, debias=True,
                                      backend="tensorized")(x, y))
        else:
            raise ValueError(impl)
        return value, iters, extra

    # one untimed call on 64 points first: thread-pool start-up and first-call dispatch are not
    # what is compared (measured: they made single runs at n=1024 vary 3x between processes)
    solve(x[:64], y[:64])
    t0 = time.perf_counter()
    value, iters, extra = solve(x, y)
    seconds = time.perf_counter() - t0
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"impl": impl, "n": n, "seconds": seconds, "value": value, "iters": iters, "peak_mib": peak_mib, **extra}


def _baseline_rss() -> float:
    """Peak RSS of a process that only imports torch and makes the data (subtracted)."""
    return _in_subprocess("baseline", 16)["peak_mib"]


def _in_subprocess(impl: str, n: int) -> dict:
    if impl == "baseline":
        code = ("import resource, torch, sys; sys.path.insert(0, 'benchmarks'); import json; "
                "print(json.dumps({'peak_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))")
    else:
        code = (f"import sys, json; sys.path.insert(0, {str(__import__('pathlib').Path(__file__).parent)!r}); "
                f"import bench_sinkhorn as b; print(json.dumps(b._case({impl!r}, {n})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run() -> list[dict]:
    base = _baseline_rss()
    rows = []
    for n in (1024, 4096):
        r = {impl: _in_subprocess(impl, n) for impl in ("ours-cost", "ours-cost-annealed", "pot-numpy",
                                                        "pot-torch", "ours-divergence", "geomloss")}
        for impl in r:
            r[impl]["mem"] = r[impl]["peak_mib"] - base
            print(f"   n={n} {impl:<16} {r[impl]['seconds']:8.3f} s  value {r[impl]['value']:.6g}  "
                  f"iters {r[impl]['iters']}  +{r[impl]['mem']:.0f} MiB"
                  + (f"  converged {r[impl]['converged']} (tol {r[impl]['tol_used']:.2g})" if "converged" in r[impl] else ""),
                  flush=True)
        ours = r["ours-cost"]
        for anchor in ("pot-numpy", "pot-torch"):
            a = r[anchor]
            rel = abs(ours["value"] - a["value"]) / abs(a["value"])
            rows.append(dict(bench="sinkhorn", case=f"OT cost n=m={n} d={D} tol={TOL:g}", ours_s=ours["seconds"],
                             anchor=f"POT {anchor[4:]} sinkhorn_log", anchor_s=a["seconds"], goal=">= 1x",
                             note=f"rel diff {rel:.1e}; iters {ours['iters']} vs {a['iters']}; "
                                  f"mem +{ours['mem']:.0f} vs +{a['mem']:.0f} MiB"))
        ours, a = r["ours-divergence"], r["geomloss"]
        rel = abs(ours["value"] - a["value"]) / abs(a["value"])
        rows.append(dict(bench="sinkhorn", case=f"divergence n=m={n} d={D}", ours_s=ours["seconds"],
                         anchor="GeomLoss tensorized", anchor_s=a["seconds"], goal="info",
                         note=f"rel diff {rel:.1e} (GeomLoss stops after annealing); "
                              f"mem +{ours['mem']:.0f} vs +{a['mem']:.0f} MiB"))
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
