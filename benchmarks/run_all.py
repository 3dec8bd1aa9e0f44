"""`make bench`: runs every benchmarks/bench_*.py in one process and prints one table, then the
unlearning-quality regime of docs/benchmarks.md (``regime``: Fashion-MNIST-10k, random-10 and
class-0, every method, 3 seeds, through ``unlearnkit bench``; resumable, results under
target/bench-regime/). ``run_all.py regime`` runs the regime only, ``run_all.py sinkhorn`` one bench.

Each bench module defines ``run() -> list[dict]``; a row has the keys
``bench`` (group), ``case`` (what was measured), ``ours_s`` (seconds), ``anchor`` (name),
``anchor_s`` (seconds), ``goal`` (text, e.g. ">= 20x"), ``note`` (agreement, memory, ...).
The ratio printed is anchor_s / ours_s: above 1 means unlearnkit is faster.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys
import time

HERE = pathlib.Path(__file__).parent


def _load(path: pathlib.Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# The regime every method is measured on (issue 12): a memorising original model, so that doing
# nothing is measurably far from retraining. Seeds 0-2 are reported; recipes were calibrated on 100.
REGIME = {"dataset": "fashion-mnist-10k", "scenarios": ("random-10", "class-0"), "seeds": 3}


def run_regime() -> int:
    """Runs ``unlearnkit bench`` for each regime scenario (each in its own resumable folder) and
    prints its table; returns the worst exit status (1 when a method failed)."""
    import subprocess

    rc = 0
    for scenario in REGIME["scenarios"]:
        out = HERE.parent / "target" / "bench-regime" / f"{REGIME['dataset']}-{scenario}"
        print(f"== regime {REGIME['dataset']} {scenario} -> {out}", flush=True)
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "unlearnkit.cli", "bench", "--dataset", REGIME["dataset"], "--scenario", scenario,
               "--methods", "all", "--seeds", str(REGIME["seeds"]), "--out", str(out), "--quiet"]
        rc = max(rc, subprocess.call(cmd))
        print(f"   ({time.perf_counter() - t0:.0f} s; report: {out / 'report.md'})", flush=True)
    return rc


def main(argv: list[str]) -> int:
    only = set(argv)
    rows: list[dict] = []
    regime = not only or "regime" in only
    only.discard("regime")
    if argv and not only:  # `run_all.py regime`: the regime alone
        return run_regime()
    for path in sorted(HERE.glob("bench_*.py")):
        if only and path.stem not in only and path.stem.removeprefix("bench_") not in only:
            continue
        print(f"== {path.stem}", flush=True)
        t0 = time.perf_counter()
        rows += _load(path).run()
        print(f"   ({time.perf_counter() - t0:.0f} s)", flush=True)
    header = f"{'bench':<12} {'case':<44} {'ours s':>9} {'anchor':<24} {'anchor s':>9} {'ratio':>8} {'goal':<10} note"
    print("\n" + header + "\n" + "-" * len(header))
    for r in rows:
        ratio = r["anchor_s"] / r["ours_s"] if r.get("anchor_s") and r.get("ours_s") else float("nan")
        print(
            f"{r['bench']:<12} {r['case']:<44} {r.get('ours_s', float('nan')):>9.3f} {r.get('anchor', ''):<24} "
            f"{r.get('anchor_s') or float('nan'):>9.3f} {ratio:>7.1f}x {r.get('goal', ''):<10} {r.get('note', '')}"
        )
    out = HERE.parent / "target" / "bench-results.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))
    print(f"\nrows also written to {out}")
    return run_regime() if regime else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
