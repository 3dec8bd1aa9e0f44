"""Command line: ``unlearnkit demo`` and ``unlearnkit run`` (thin parsing over ``unlearnkit.bench``)."""

from __future__ import annotations

import argparse
import datetime
import pathlib
import sys
import time

from . import __version__
from .bench.runner import SCENARIO_HELP


def _default_out(name: str) -> pathlib.Path:
    return pathlib.Path("unlearnkit-results") / f"{name}-{datetime.datetime.now():%Y%m%d-%H%M%S}"


def _parse_set(values: list[str]) -> dict:
    """``--set neggrad.lr=0.001`` -> {"neggrad": {"lr": 0.001}} (values parsed as TOML scalars)."""
    import tomllib

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
    from .bench import run, table, write_report
    from .bench.report import describe

    t0 = time.perf_counter()
    result = run(config, out_dir=out, cache_dir=cache_dir, progress=not quiet)
    paths = write_report(result, out, plots=plots)
    print(f"\n{describe(result['meta'])}")
    print("accuracies, MIA and gaps in %; |Δ| = |value - gold value|\n")
    print(table(result["rows"]))
    print(f"\nwrote {paths['json']}, {paths['csv']} and {paths['markdown']} ({time.perf_counter() - t0:.1f} s)")
    return 0


def cmd_demo(args) -> int:
    from .bench import RunConfig

    config = RunConfig(dataset="digits", scenario="random-10", seeds=(args.seed,), features=not args.quick)
    return _run_and_report(config, args.out or _default_out("demo"), args.cache_dir, args.quiet, plots=not args.quick)


def cmd_run(args) -> int:
    from .bench import DEFAULT_METHODS, RunConfig
    from .methods import METHODS

    methods = tuple(METHODS) if args.methods == "all" else tuple(m for m in args.methods.split(",") if m)
    methods = tuple(m for m in methods if m != "retrain") if args.methods == "all" else methods
    config = RunConfig(dataset=args.dataset, scenario=args.scenario, seeds=tuple(range(args.seeds)),
                       methods=methods or DEFAULT_METHODS, overrides=_parse_set(args.set), device=args.device,
                       features=not args.no_features)
    return _run_and_report(config, args.out or _default_out(f"{args.dataset}-{config.scenario}"), args.cache_dir,
                           args.quiet, plots=not args.no_plots)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="unlearnkit", description="Machine unlearning for PyTorch, measured against retraining.")
    p.add_argument("--version", action="version", version=f"unlearnkit {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp):
        sp.add_argument("--out", type=pathlib.Path, help="results folder (default: unlearnkit-results/<name>-<time>)")
        sp.add_argument("--cache-dir", type=pathlib.Path,
                        help="checkpoint cache (default: $UNLEARNKIT_CACHE or ~/.cache/unlearnkit)")
        sp.add_argument("--quiet", action="store_true", help="no progress bars")

    d = sub.add_parser("demo", help="digits, random 10%% forgetting, original + gold + three baselines")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--quick", action="store_true", help="output-space metrics only, no plots")
    common(d)
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
    common(r)
    r.set_defaults(func=cmd_run)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError) as exc:
        print(f"unlearnkit: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
