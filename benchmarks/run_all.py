"""`make bench`: runs every benchmarks/bench_*.py in one process and prints one table.

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


def main(argv: list[str]) -> int:
    only = set(argv)
    rows: list[dict] = []
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
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
