"""Command line: ``unlearnkit demo`` and ``unlearnkit run`` (thin parsing over ``unlearnkit.bench``),
``unlearnkit eval`` (thin parsing over ``unlearnkit.eval``)."""

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
    from .bench.report import describe, failures

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


def cmd_eval(args) -> int:
    from .eval import format_table, run

    result = run(args.forget, args.retain, args.test, gold_forget=args.gold_forget, gold_retain=args.gold_retain,
                 gold_test=args.gold_test, bank=args.bank, gold_bank=args.gold_bank, features_key=args.features_key,
                 labels_key=args.labels_key, split_key=args.split_key, memory_limit=args.memory_limit, ray=args.ray,
                 ray_num_cpus=args.ray_cpus, out=args.out, seed=args.seed, n_classes=args.n_classes,
                 energy=args.energy, k=args.da_k, center=args.center, knn_k=args.knn_k, knn_queries=args.knn_queries,
                 kmeans_rows=args.kmeans_rows, probe_rows=args.probe_rows, kmeans_n_init=args.kmeans_n_init,
                 chunk_rows=args.chunk_rows, progress=not args.quiet)
    print(format_table(result))
    for note in result["plan"]["notes"]:
        print(f"note: {note}")
    if args.out is not None:
        print(f"\nwrote {args.out}")
    return 0


def _add_eval(sub) -> None:
    e = sub.add_parser("eval", help="feature-space metrics of feature banks on disk (forget/retain/test), "
                                    "within a memory budget, optionally on a Ray cluster")
    g = e.add_argument_group("banks (.npy + <stem>.labels.npy, a folder of .npy, .npz, .safetensors, .parquet)")
    g.add_argument("--forget", metavar="PATH", help="forget-set features and labels")
    g.add_argument("--retain", metavar="PATH", help="retain-set features and labels")
    g.add_argument("--test", metavar="PATH", help="test-set features and labels")
    g.add_argument("--bank", metavar="FILE", help="instead of the three: one Parquet file with a split column")
    g.add_argument("--gold-forget", metavar="PATH", help="the retrained (gold) model's forget features")
    g.add_argument("--gold-retain", metavar="PATH")
    g.add_argument("--gold-test", metavar="PATH")
    g.add_argument("--gold-bank", metavar="FILE", help="gold banks in one Parquet file with a split column")
    g.add_argument("--features-key", default="features", help="array/tensor/column of the features (default: features)")
    g.add_argument("--labels-key", default="labels", help="array/tensor/column of the labels (default: labels)")
    g.add_argument("--split-key", default="split", help="Parquet column naming each row's set (default: split)")
    r = e.add_argument_group("resources")
    r.add_argument("--memory-limit", metavar="SIZE", help="peak resident memory per process, e.g. 4GiB, 512MB")
    r.add_argument("--ray", metavar="ADDRESS", help="run shards on Ray: 'auto' (local, started if needed) or an address")
    r.add_argument("--ray-cpus", type=int, help="CPUs of a Ray started locally by --ray auto (default: all)")
    r.add_argument("--chunk-rows", type=int, help="rows per streamed chunk (default: from --memory-limit)")
    m = e.add_argument_group("metrics")
    m.add_argument("--seed", type=int, default=0, help="fixes every sample and k-means (default 0)")
    m.add_argument("--n-classes", type=int, help="k of k-means (default: distinct labels)")
    m.add_argument("--energy", type=float, default=0.9, help="dimensional alignment: spectrum fraction kept (0.9)")
    m.add_argument("--da-k", type=int, help="dimensional alignment: eigen-directions kept (overrides --energy)")
    m.add_argument("--center", action="store_true", help="dimensional alignment on the covariance, not the second moment")
    m.add_argument("--knn-k", type=int, default=5, help="neighbours of the k-NN membership features (5)")
    m.add_argument("--knn-queries", type=int, default=1000, help="query rows per set for the k-NN attack (1000)")
    m.add_argument("--kmeans-rows", type=int, default=100_000, help="rows per set k-means is fit on (100000)")
    m.add_argument("--probe-rows", type=int, default=50_000, help="retain rows the linear probe trains on (50000)")
    m.add_argument("--kmeans-n-init", type=int, default=1, help="k-means restarts (1)")
    e.add_argument("--out", type=pathlib.Path, metavar="FILE", help="write the result JSON here (atomically)")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    e.set_defaults(func=cmd_eval)


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
    _add_eval(sub)
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
