"""Layer: cli. ``unlearnkit audit``: the per-example unlearning audit (pools of K models on Ray,
the NeurIPS 2023 challenge's score, U-LiRA, KLOM, RMIA), thin parsing over ``unlearnkit.audit``."""

from __future__ import annotations

import math
import os
import time

from ._common import SCENARIO_HELP, add_common, default_out


def cmd_audit(args) -> int:
    from ..audit import AuditConfig, resolve_methods, run_audit, table, write_audit
    from .bench import _parse_set

    t0 = time.perf_counter()
    config = AuditConfig(dataset=args.dataset, scenario=args.scenario, methods=resolve_methods(args.methods),
                         pool=args.pool, seed=args.seed, overrides=_parse_set(args.set), device=args.device,
                         threads=args.threads)
    out = args.out or default_out(f"audit-{args.dataset}-{args.scenario}")
    result = run_audit(config, cache_dir=args.cache_dir, executor="serial" if args.serial else "ray",
                       ray_address=args.ray_address, num_cpus=args.ray_cpus, progress=not args.quiet,
                       recipes=str(args.recipes) if args.recipes else None)
    paths = write_audit(result, out, plots=not args.no_plots)
    print()
    print(table(result["scores"]))
    k = result["pools"]["k"]
    print(f"\nK = {k} models per pool; largest measurable eps ~ ln(K - 1) = "
          f"{math.log(k - 1) if k > 2 else 0.0:.2f}")
    failed = [n for n, r in result["scores"]["rows"].items() if "error" in r]
    for n in failed:
        print(f"FAILED {n}: {result['scores']['rows'][n]['error']}")
    print(f"pools {result['pools']['wall_seconds']:.1f} s on {result['pools']['executor']['name']}, "
          f"scores {result['scores']['metric_seconds']:.2f} s")
    print(f"wrote {', '.join(str(p) for p in paths.values())} ({time.perf_counter() - t0:.1f} s)")
    return 1 if any(n != "retrained floor" for n in failed) else 0


def add_parser(sub) -> None:
    a = sub.add_parser("audit", help="per-example audit: K-model pools on Ray, the NeurIPS 2023 forgetting score, "
                                     "U-LiRA, KLOM and RMIA against the retrained pool")
    a.add_argument("--dataset", default="digits")
    a.add_argument("--scenario", default="random-10", help=SCENARIO_HELP)
    a.add_argument("--methods", default="finetune,neggrad", help="comma-separated registry names, or 'all'")
    a.add_argument("--pool", type=int, default=16, help="K, models per pool (default 16; 64+ on a cluster)")
    a.add_argument("--seed", type=int, default=0, help="chooses the forget set (pools use seeds 1..K)")
    a.add_argument("--set", action="append", metavar="METHOD.FIELD=VALUE", help="override one hyper-parameter")
    a.add_argument("--recipes", metavar="TOML", help="a recipes file instead of the packaged recipes.toml")
    a.add_argument("--device", default="cpu")
    a.add_argument("--threads", type=int, default=1, help="torch threads per model task (default 1)")
    a.add_argument("--ray-address", metavar="ADDRESS",
                   help="'auto' or HOST:PORT of a Ray cluster (default: a local Ray with every core)")
    a.add_argument("--ray-cpus", type=int, help=f"CPUs of the local Ray (default: all, here {os.cpu_count()})")
    a.add_argument("--serial", action="store_true", help="train the pools in this process, without Ray")
    a.add_argument("--no-plots", action="store_true", help="skip the epsilon histogram")
    add_common(a)
    a.set_defaults(func=cmd_audit)
