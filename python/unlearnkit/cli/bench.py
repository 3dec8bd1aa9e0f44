"""Layer: cli. ``unlearnkit demo`` and ``unlearnkit bench`` (alias ``run``): thin parsing over
``unlearnkit.bench``."""

from __future__ import annotations

import pathlib
import time

from ._common import SCENARIO_HELP, add_common, default_out


def _parse_set(values: list[str]) -> dict:
    """``--set neggrad.lr=0.001`` -> {"neggrad": {"lr": 0.001}} (values parsed as TOML scalars)."""
    from ..io import tomllib

    out: dict = {}
    for item in values or []:
        try:
            lhs, rhs = item.split("=", 1)
            method, fieldname = lhs.split(".", 1)
            value = tomllib.loads(f"v = {rhs}")["v"]
        except (ValueError, tomllib.TOMLDecodeError):
            raise ValueError(f"--set: expected METHOD.FIELD=VALUE (e.g. neggrad.lr=0.001), got {item!r}") from None
        out.setdefault(method, {})[fieldname] = value
    return out


def _run_and_report(config, out: pathlib.Path, cache_dir, quiet: bool, plots: bool = True) -> int:
    from ..bench import run, table, write_report
    from ..bench.report import describe, failures

    t0 = time.perf_counter()
    result = run(config, out_dir=out, cache_dir=cache_dir, progress=not quiet)
    paths = write_report(result, out, plots=plots)
    print(f"\n{describe(result['meta'])}")
    print("accuracies, MIA and gaps in %; |Δ| = |value - gold value|\n")
    print(table(result["rows"]))
    failed = failures(result["rows"])
    for r in failed:
        print(f"FAILED {r['model']} (seed {r['seed']}): {r['error']}")
    print(f"\nwrote {paths['json']}, {paths['csv']} and {paths['markdown']} ({time.perf_counter() - t0:.1f} s)")
    return 1 if failed else 0


def cmd_demo(args) -> int:
    from ..bench import RunConfig

    config = RunConfig(dataset="digits", scenario="random-10", seeds=(args.seed,), features=not args.quick)
    return _run_and_report(config, args.out or default_out("demo"), args.cache_dir, args.quiet, plots=not args.quick)


def cmd_run(args) -> int:
    from ..bench import DEFAULT_METHODS, RunConfig
    from ..methods import METHODS

    methods = tuple(METHODS) if args.methods == "all" else tuple(m for m in args.methods.split(",") if m)
    methods = tuple(m for m in methods if m != "retrain") if args.methods == "all" else methods
    config = RunConfig(dataset=args.dataset, scenario=args.scenario, seeds=tuple(range(args.seeds)),
                       methods=methods or DEFAULT_METHODS, overrides=_parse_set(args.set), device=args.device,
                       features=not args.no_features)
    return _run_and_report(config, args.out or default_out(f"{args.dataset}-{config.scenario}"), args.cache_dir,
                           args.quiet, plots=not args.no_plots)


def add_parser(sub) -> None:
    d = sub.add_parser("demo", help="digits, random 10%% forgetting, original + gold + three baselines")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--quick", action="store_true", help="output-space metrics only, no plots")
    add_common(d)
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser("bench", aliases=["run"], help="compare methods on one dataset and scenario over several seeds")
    r.add_argument("--dataset", default="digits")
    r.add_argument("--scenario", default="random-10", help=SCENARIO_HELP)
    r.add_argument("--no-features", action="store_true", help="skip the feature-space metrics")
    r.add_argument("--no-plots", action="store_true", help="skip the plots")
    r.add_argument("--methods", default=",".join(("finetune", "neggrad", "random_labels")),
                   help="comma-separated registry names, or 'all'")
    r.add_argument("--seeds", type=int, default=1, help="number of seeds (0..N-1)")
    r.add_argument("--set", action="append", metavar="METHOD.FIELD=VALUE", help="override one hyper-parameter")
    r.add_argument("--device", default="cpu")
    add_common(r)
    r.set_defaults(func=cmd_run)
