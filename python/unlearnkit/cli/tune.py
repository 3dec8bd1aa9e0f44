"""Layer: cli. ``unlearnkit tune``: thin parsing over ``unlearnkit.tune.run_search``."""

from __future__ import annotations

import pathlib

from ._common import SCENARIO_HELP, add_common, default_out


def cmd_tune(args) -> int:
    from ..methods import METHODS
    from ..tune import run_search
    from ..tune.space import method_space

    if args.methods == "all":
        methods = [m for m in METHODS if method_space(m)]
    else:
        methods = [m for m in args.methods.split(",") if m]
    if not methods:
        raise ValueError(f"--methods: expected comma-separated method names or 'all', got {args.methods!r}")
    out = args.out or default_out(f"tune-{args.dataset}-{args.scenario}")
    seeds = (args.seed,) if args.seed is not None else _seeds(args.tuning_seeds)
    result = run_search(args.dataset, args.scenario, methods, trials=args.trials, out_dir=out, seed=seeds,
                        max_rte=args.max_rte, num_cpus=args.num_cpus, cpus_per_trial=args.cpus_per_trial,
                        ray_address=args.ray_address, cache_dir=args.cache_dir,
                        recipes=str(args.recipes) if args.recipes else None, asha=not args.no_asha,
                        progress=not args.quiet, retrain_time=args.retrain_time)
    for m, b in result["best"].items():
        why = result["meta"]["decisions"][m]
        print(f"{m}: " + (f"{why} at {b['rte']:.3f} x retraining, {b['params']}" if b else why))
    p = result["paths"]
    print(f"wrote {p['recipes']}, {p['trials']} and {p['report']} ({result['meta']['wall_s']:.1f} s)")
    return 0


def _seeds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in str(text).split(",") if s.strip())
    except ValueError:
        raise ValueError(f"--tuning-seeds: expected comma-separated integers such as 100,101, got {text!r}") from None


def add_parser(sub) -> None:
    t = sub.add_parser("tune", help="search each method's hyper-parameters (Ray Tune + Optuna) on a tuning seed")
    t.add_argument("--dataset", default="digits")
    t.add_argument("--scenario", default="random-10", help=SCENARIO_HELP)
    t.add_argument("--methods", default="finetune,neggrad,random_labels",
                   help="comma-separated registry names, or 'all' (every method with a search space)")
    t.add_argument("--trials", type=int, default=20, help="trials per method (the first is the hand-made recipe)")
    t.add_argument("--max-rte", type=float, default=0.2,
                   help="time budget of a trial as a fraction of retraining time (over it: infeasible)")
    t.add_argument("--tuning-seeds", default="100,101",
                   help="comma-separated tuning seeds (never the reported seeds 0-9); a trial's objective is the "
                        "mean over them, so a recipe that wins on one seed only does not win (default: 100,101)")
    t.add_argument("--seed", type=int, default=None, help="a single tuning seed (same as --tuning-seeds SEED)")
    t.add_argument("--recipes", type=pathlib.Path, help="base recipes file (default: the shipped recipes.toml)")
    t.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    t.add_argument("--cpus-per-trial", type=int, default=1, help="CPUs and torch threads per trial")
    t.add_argument("--ray-address", help="connect to a Ray cluster instead of starting a local one")
    t.add_argument("--retrain-time", choices=("measure", "cache"), default="measure",
                   help="the budget's unit: retraining time measured now (one epoch x epochs, a trial's threads) "
                        "or the cached gold model's recorded time")
    t.add_argument("--no-asha", action="store_true", help="run every trial to the end (no early stopping)")
    add_common(t)
    t.set_defaults(func=cmd_tune)
