"""Layer: cli. ``unlearnkit audit``: the per-example unlearning audit (pools of K models on Ray,
the NeurIPS 2023 challenge's score, U-LiRA, KLOM, RMIA), thin parsing over ``unlearnkit.audit``.

Before any work: the arguments (``--pool`` >= 6, what the retrained floor needs; ``--methods``),
then ``--out`` is claimed with the bench's rules (``unlearnkit.io.claim_out``: a lock, one run's
settings per folder, a file or another run's results refused, released again if the run fails
before writing). Before the pools train, their cost is estimated and printed; above
:data:`CONFIRM_SECONDS` of wall time or :data:`CONFIRM_BYTES` of checkpoints the run needs ``--yes``.
"""

from __future__ import annotations

import math
import os
import time

from ._common import add_common, add_config_arguments, config_from_args, default_out

#: an estimated wall time above this (seconds) needs --yes
CONFIRM_SECONDS = 3600.0
#: estimated new checkpoints above this (bytes) need --yes
CONFIRM_BYTES = 10 * 1024 ** 3


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def describe_estimate(est: dict, cache_dir) -> str:
    """One paragraph: models to train, time and disk."""
    if not est["to_train"]:
        return f"audit: all {est['models']} models of the pools are in the cache ({cache_dir}); nothing to train"
    lines = [f"audit: {est['models']} models in the pools, {est['to_train']} to train ({est['cached']} in the cache)"]
    if est["seconds_per_model"] is not None:
        cpu = est["cpu_seconds"]
        where = (f"about {_duration(est['wall_seconds'])} on {est['workers']} worker(s)" if est["wall_seconds"] is not None
                 else "divided by the cluster's free CPUs")
        lines.append(f"  time: {est['seconds_per_model']:.2f} s per model (from {est['seconds_source']}), "
                     f"{_duration(cpu)} of CPU time in all, {where}")
    lines.append(f"  disk: {_size(est['bytes_per_model'])} per checkpoint, {_size(est['disk_bytes'])} more in {cache_dir}")
    return "\n".join(lines)


def _confirm(args, cache_dir):
    def confirm(est: dict) -> None:
        print(describe_estimate(est, cache_dir), flush=True)
        long = []
        wall = est["wall_seconds"] if est["wall_seconds"] is not None else est["cpu_seconds"]  # a cluster: CPU time
        if wall is not None and wall > CONFIRM_SECONDS:
            long.append(f"about {_duration(wall)} of {'wall' if est['wall_seconds'] is not None else 'CPU'} time")
        if est["disk_bytes"] > CONFIRM_BYTES:
            long.append(f"{_size(est['disk_bytes'])} of checkpoints")
        if long and not args.yes:
            raise ValueError(f"--pool: expected a confirmation for {est['to_train']} models to train "
                             f"({' and '.join(long)}), got none; pass --yes to start, or a smaller --pool or fewer "
                             f"--methods")
    return confirm


def cmd_audit(args) -> int:
    from dataclasses import asdict

    from ..audit import AuditConfig, run_audit, table, write_audit
    from ..audit.report import LEGEND
    from ..checkpoints import default_cache_dir
    from ..experiment.config import check_environment
    from ..experiment.scores import FLOOR
    from ..io import claim_out
    from .bench import _parse_set

    t0 = time.perf_counter()
    config = config_from_args(AuditConfig, args, args.config_flags, {"overrides": _parse_set(args.set)},
                              {"overrides": "--set"})
    recipes = str(args.recipes) if args.recipes else None
    check_environment(config, recipes, "--device")  # before any work
    args.resolved_out = args.out or default_out(f"audit-{config.dataset}-{config.scenario}")  # for the Ctrl-C message
    settings = {"command": "audit", "config": asdict(config), "recipes": recipes}
    cache_dir = args.cache_dir or default_cache_dir()
    # one run at a time; not a file, another run's results or another audit's settings; before any work
    with claim_out(args.resolved_out, settings, force=args.force, name="--out", subdirs=(),
                   legacy=("audit.json",)) as out:
        result = run_audit(config, cache_dir=cache_dir, executor="serial" if args.serial else "ray",
                           ray_address=args.ray_address, num_cpus=args.ray_cpus, progress=not args.quiet,
                           recipes=recipes, confirm=_confirm(args, cache_dir))
        paths = write_audit(result, out, plots=not args.no_plots)
    print()
    print(table(result["scores"]))
    print(LEGEND)
    k = result["pools"]["k"]
    print(f"\nK = {k} models per pool; largest measurable eps ~ ln(K - 1) = "
          f"{math.log(k - 1) if k > 2 else 0.0:.2f}")
    failed = [n for n, r in result["scores"]["rows"].items() if "error" in r]
    for n in failed:
        print(f"FAILED {n}: {result['scores']['rows'][n]['error']}")
    print(f"pools {result['pools']['wall_seconds']:.1f} s on {result['pools']['executor']['name']}, "
          f"scores {result['scores']['metric_seconds']:.2f} s")
    print(f"wrote {', '.join(str(p) for p in paths.values())} ({time.perf_counter() - t0:.1f} s)")
    return 1 if any(n != FLOOR for n in failed) else 0


def add_parser(sub) -> None:
    a = sub.add_parser("audit", help="per-example audit: K-model pools on Ray, the NeurIPS 2023 forgetting score, "
                                     "U-LiRA, KLOM and RMIA against the retrained pool")
    from ..experiment.config import AuditConfig  # torch-free: the parser is built without torch

    # the audit's settings: generated from AuditConfig's fields (unlearnkit.experiment.config)
    flags = add_config_arguments(a, AuditConfig)
    a.add_argument("--set", action="append", metavar="METHOD.FIELD=VALUE", help="override one hyper-parameter")
    a.add_argument("--recipes", metavar="TOML", help="a recipes file instead of the packaged recipes.toml")
    a.add_argument("--ray-address", "--ray", dest="ray_address", metavar="ADDRESS",
                   help="'auto' or HOST:PORT of a Ray cluster (default: a local Ray of its own with every core); "
                        "a cluster with token authentication needs its token here (see docs/audit.md)")
    a.add_argument("--ray-cpus", type=int, help=f"CPUs of the local Ray (default: all, here {os.cpu_count()})")
    a.add_argument("--serial", action="store_true", help="train the pools in this process, without Ray")
    a.add_argument("--no-plots", action="store_true", help="skip the epsilon histogram")
    a.add_argument("--yes", action="store_true",
                   help=f"start even when the pools are estimated to take over {CONFIRM_SECONDS / 3600:.0f} h or "
                        f"{CONFIRM_BYTES / 1024 ** 3:.0f} GiB of checkpoints (the estimate is printed first)")
    add_common(a)
    a.add_argument("--force", action="store_true",
                   help="write into an --out folder holding other files or the results of other settings")
    a.set_defaults(func=cmd_audit, config_flags=flags)
