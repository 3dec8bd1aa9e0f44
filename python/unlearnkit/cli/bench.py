"""Layer: cli. ``unlearnkit demo`` and ``unlearnkit bench`` (alias ``run``): thin parsing over
``unlearnkit.bench``.

Every argument is checked before any data is loaded or any model trained (``bench.config``):
``--seeds``, ``--methods`` (known, each once, not empty), every ``--set`` against its method's
parameter schema, the scenario's range and ``--device``; then the ``--out`` folder is claimed
(``bench.units.claim_out``: one run at a time, and not a folder holding a run with other
settings unless ``--force``). Bad input exits with status 2 and ``unlearnkit: error: <argument>: ...``.
"""

from __future__ import annotations

import pathlib
import sys
import time

from ._common import add_common, add_config_arguments, config_from_args, default_out


def _run_config():
    from ..experiment.config import RunConfig  # torch-free: the parser is built without torch

    return RunConfig


def _parse_set(values: list[str]) -> dict:
    """``--set neggrad.lr=0.001`` -> {"neggrad": {"lr": 0.001}}. A value is read as a TOML value
    (``0.001``, ``5``, ``true``, ``"text"``, ``[1, 2]``), and when it is not one, as a bare string
    (``dlfd.layer=features``); the method's parameter schema then decides whether it fits."""
    from ..io import tomllib

    out: dict = {}
    for item in values or []:
        lhs, eq, rhs = item.partition("=")
        method, dot, fieldname = lhs.strip().partition(".")
        if not (eq and dot and method and fieldname.strip() and rhs.strip()):
            raise ValueError(f"--set: expected METHOD.FIELD=VALUE (e.g. neggrad.lr=0.001), got {item!r}")
        try:
            value = tomllib.loads(f"v = {rhs}")["v"]
        except tomllib.TOMLDecodeError:
            value = rhs.strip()
        fieldname = fieldname.strip()
        if fieldname in out.get(method, {}):
            raise ValueError(f"--set: expected each METHOD.FIELD once, got {method}.{fieldname} twice")
        out.setdefault(method, {})[fieldname] = value
    return out


def _check_args(config, recipes) -> None:
    """What ``bench.run`` would check first beyond the config itself, with the command line's
    argument names: each method from its recipe plus ``--set``, and ``--device``."""
    from ..experiment.config import check_environment

    check_environment(config, str(recipes) if recipes else None, "--device")


def _run_and_report(config, out: pathlib.Path, cache_dir, quiet: bool, plots: bool = True, recipes=None,
                    force: bool = False, columns=None) -> int:
    from dataclasses import asdict

    from ..bench import run, table, write_report
    from ..bench.report import describe, failures, regime_notes, verdict
    from ..bench.units import claim_out

    _check_args(config, recipes)
    t0 = time.perf_counter()
    settings = {"config": asdict(config), "recipes": str(recipes) if recipes else None}
    with claim_out(out, settings, force=force) as out:  # one run at a time; no mixing of configurations
        result = run(config, out_dir=out, cache_dir=cache_dir, progress=not quiet,
                     recipes=str(recipes) if recipes else None)
        paths = write_report(result, out, plots=plots)
    print(f"\n{describe(result['meta'])}")
    print("accuracies, MIA and gaps in %; |Δ| = |value - gold value|\n")
    print(table(result["rows"], columns=columns))
    for line in [verdict(result["rows"])] + regime_notes(result["rows"]):
        if line:
            print("- " + line.replace("**", ""))
    failed = failures(result["rows"])
    for r in failed:
        print(f"FAILED {r['model']} (seed {r['seed']}): {r['error']}")
    print(f"\nwrote {paths['json']}, {paths['csv']} and {paths['markdown']} ({time.perf_counter() - t0:.1f} s)")
    return 1 if failed else 0


def cmd_demo(args) -> int:
    from ..bench import RunConfig
    from ..bench.report import DEMO_COLUMNS

    if args.seed < 0:
        raise ValueError(f"--seed: expected an int >= 0, got {args.seed}")
    dataset = _demo_dataset() if args.dataset == "auto" else args.dataset
    if dataset == "digits" and args.dataset == "auto":
        print("unlearnkit demo: Fashion-MNIST is not installed (Debian's dataset-fashion-mnist; `make demo` installs "
              "it where apt-get can), so this runs on scikit-learn's digits, where the original model is only a few "
              "points from the retrained one: install it to see the memorising regime", file=sys.stderr)
    elif dataset == "digits":
        print("unlearnkit demo: digits (as asked): the original model is only a few points from the retrained one "
              "here", file=sys.stderr)
    else:
        print("unlearnkit demo: fashion-mnist-10k, random 10% forgetting: a small CNN that memorises its 10,000 "
              "training images (train 99.9%, test ~88%), so the retrained (gold) model forgets ~9 points of the "
              "forget set that the original still knows; MUDA, DLFD and TMU beside EU-k, the best baseline there",
              file=sys.stderr)
    config = RunConfig(dataset=dataset, scenario="random-10", seeds=(args.seed,), features=not args.quick,
                       methods=DEMO_METHODS)
    args.resolved_out = args.out or default_out("demo")  # named by the Ctrl-C message (cli.main)
    return _run_and_report(config, args.resolved_out, args.cache_dir, args.quiet, plots=not args.quick,
                           force=args.force, columns=DEMO_COLUMNS)


#: the demo: the three methods this library exists for, beside the best baseline of the memorising regime
DEMO_METHODS = ("muda", "dlfd", "tmu", "eu_k")


def _demo_dataset() -> str:
    """fashion-mnist-10k where Debian's Fashion-MNIST is installed, digits otherwise."""
    from ..data import load_dataset

    try:
        load_dataset("fashion-mnist-10k")
    except (FileNotFoundError, ValueError, OSError):
        return "digits"
    return "fashion-mnist-10k"


def cmd_run(args) -> int:
    from ..bench import RunConfig

    if args.precision == "fp16" and str(args.device).split(":")[0] == "cpu":
        print("unlearnkit: warning: --precision fp16 on a CPU is emulated (no fast float16 kernels there): training "
              "runs tens of times slower than with fp32; use fp32, or bf16 on a CPU with bfloat16 support", file=sys.stderr)
    if args.seeds < 1:
        raise ValueError(f"--seeds: expected an int >= 1 (the number of seeds, run as 0..N-1), got {args.seeds}")
    config = config_from_args(RunConfig, args, args.config_flags,
                              {"seeds": tuple(range(args.seeds)), "overrides": _parse_set(args.set)},
                              {"seeds": "--seeds", "overrides": "--set"})
    args.resolved_out = args.out or default_out(f"{config.dataset}-{config.scenario}")  # for the Ctrl-C message
    return _run_and_report(config, args.resolved_out, args.cache_dir, args.quiet, plots=not args.no_plots,
                           recipes=args.recipes, force=args.force)


def add_parser(sub) -> None:
    d = sub.add_parser("demo", help="random 10%% forgetting on a memorising Fashion-MNIST subset (digits without it): "
                                    "MUDA, DLFD, TMU and the best baseline against the original and retraining")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--dataset", choices=("auto", "fashion-mnist-10k", "digits"), default="auto",
                   help="auto: the memorising fashion-mnist-10k where Fashion-MNIST is installed, else digits")
    d.add_argument("--quick", action="store_true", help="output-space metrics only, no plots")
    add_common(d)
    d.add_argument("--force", action="store_true", help="replace the results of a run with other settings in --out")
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser("bench", aliases=["run"], help="compare methods on one dataset and scenario over several seeds")
    # the run's settings: generated from RunConfig's fields (unlearnkit.experiment.config)
    flags = add_config_arguments(r, _run_config())
    r.add_argument("--seeds", type=int, default=1, help="number of seeds (0..N-1)")
    r.add_argument("--set", action="append", metavar="METHOD.FIELD=VALUE", help="override one hyper-parameter")
    r.add_argument("--no-plots", action="store_true", help="skip the plots")
    r.add_argument("--recipes", type=pathlib.Path, help="recipes file (default: the shipped one), e.g. from tune")
    add_common(r)
    r.add_argument("--force", action="store_true", help="replace the results of a run with other settings in --out")
    r.set_defaults(config_flags=flags)
    r.set_defaults(func=cmd_run)
