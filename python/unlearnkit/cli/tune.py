"""Layer: cli. ``unlearnkit tune``: thin parsing over ``unlearnkit.tune.run_search``."""

from __future__ import annotations

import pathlib

from ._common import add_common, add_config_arguments, config_from_args, default_out


def cmd_tune(args) -> int:
    from ..experiment.config import TuneConfig
    from ..tune import run_search

    values, names = {}, {}
    if args.seed is not None:  # one tuning seed, the older spelling of --tuning-seeds
        values["tuning_seeds"], names["tuning_seeds"] = (args.seed,), "--seed"
    cfg = config_from_args(TuneConfig, args, {k: v for k, v in args.config_flags.items() if k not in values},
                           values, names)
    out = args.out or default_out(f"tune-{cfg.dataset}-{cfg.scenario}")
    result = run_search(cfg.dataset, cfg.scenario, cfg.methods, trials=cfg.trials, out_dir=out, seed=cfg.tuning_seeds,
                        max_rte=cfg.max_rte, num_cpus=cfg.num_cpus, cpus_per_trial=cfg.cpus_per_trial,
                        ray_address=args.ray_address, cache_dir=args.cache_dir,
                        recipes=str(args.recipes) if args.recipes else None, asha=cfg.asha,
                        progress=not args.quiet, retrain_time=cfg.retrain_time,
                        max_retain_drop=cfg.max_retain_drop)
    for m, b in result["best"].items():
        why = result["meta"]["decisions"][m]
        print(f"{m}: " + (f"{why} at {b['rte']:.3f} x retraining, {b['params']}" if b else why))
    p = result["paths"]
    print(f"wrote {p['recipes']}, {p['trials']} and {p['report']} ({result['meta']['wall_s']:.1f} s)")
    return 0


def add_parser(sub) -> None:
    from ..experiment.config import TuneConfig  # torch-free: the parser is built without torch

    t = sub.add_parser("tune", help="search each method's hyper-parameters (Ray Tune + Optuna) on a tuning seed")
    # the search's settings: generated from TuneConfig's fields (unlearnkit.experiment.config)
    flags = add_config_arguments(t, TuneConfig)
    t.add_argument("--seed", type=int, default=None, help="a single tuning seed (same as --tuning-seeds SEED)")
    t.add_argument("--recipes", type=pathlib.Path, help="base recipes file (default: the shipped recipes.toml)")
    t.add_argument("--ray-address", help="connect to a Ray cluster instead of starting a local one")
    add_common(t)
    t.set_defaults(func=cmd_tune, config_flags=flags)
