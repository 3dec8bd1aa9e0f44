"""Layer: experiment. The configurations of a bench run (:class:`RunConfig`) and of an audit
(:class:`AuditConfig`), declared once, and the checks every front-end runs before any work.

Each field is an :func:`option`: a ``param`` (type, bounds, choices: ``unlearnkit._validation``,
the same schema methods declare their hyper-parameters with) plus its help text and, where the
command line spells it otherwise, its flag. From that one declaration:

- the config validates itself when made (``__post_init__``): every field against its type and
  bounds, then the checks that span fields (registered methods, overrides against each method's
  schema, the audit's pool size); errors start with the field's name (``pool: expected ...``);
- ``unlearnkit bench`` and ``unlearnkit audit`` generate their flags from the fields
  (``unlearnkit.cli._common.add_config_arguments``: ``heldout_fraction`` -> ``--heldout-fraction``)
  and re-word a field's error with its flag (``--pool: expected ...``);
- :func:`check_recipes` then builds each method from its recipe and the overrides (a bad recipe or
  a cross-field rule of a method fails here), and :func:`check_device` makes one scalar on the
  device; both before data is loaded or a model trains.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from .._validation import SCENARIO_HELP, check_params, check_scenario, param
from .recipes import hyperparameters

# Imports torch-free (numpy and the standard library): the command line builds its flags from these
# dataclasses without importing torch (``unlearnkit --help`` stays fast); the checks that need the
# method registry import it when they run.

__all__ = ["CLI_META", "DEFAULT_METHODS", "MIN_POOL", "REPORTED_SEEDS", "AuditConfig", "RunConfig", "TuneConfig",
           "check_device", "check_environment", "check_methods", "check_overrides", "check_pool", "check_recipes", "check_seeds",
           "check_tuning_seed", "check_tuning_seeds", "option", "resolve_methods"]

#: The smallest K the retrained floor can be measured with: halves of 3 (F's bins end at
#: ceil(ln(K/2 - 1)), which is 0 for halves of 2; U-LiRA's leave-one-out needs 3 models per pool).
MIN_POOL = 6

#: Seeds the bench reports (``unlearnkit bench --seeds N`` runs 0..N-1): never a tuning seed.
REPORTED_SEEDS = range(0, 10)

#: the metadata key of a field's command-line facts (help, flag, metavar, parse)
CLI_META = "unlearnkit.cli"
DEFAULT_METHODS = ("finetune", "neggrad", "random_labels")


def option(default, *, help: str, flag: str | None = None, metavar: str | None = None,
           parse: Callable[[str], Any] | None = None, cli: bool = True, **constraints):
    """A config field: ``param(default, **constraints)`` (ge, gt, le, lt, choices, length) plus its
    command-line facts: ``help``; ``flag`` (default ``--field-name``; a ``bool`` field whose default
    is True becomes ``--no-field-name``); ``parse`` turns the flag's text into the value (e.g.
    "a,b" -> ("a", "b")); ``cli=False`` keeps the field off the command line."""
    f = param(default, doc=help, **constraints)
    meta = {**f.metadata, CLI_META: {"help": help, "flag": flag, "metavar": metavar, "parse": parse, "cli": cli}}
    return dataclasses.field(default=default, metadata=meta)


def check_pool(k, name: str = "pool") -> int:
    """``k`` as an int when it is a pool size the audit can score with its retrained floor
    (>= :data:`MIN_POOL`), else ``ValueError`` naming ``name`` and the reason."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"{name}: expected an int >= {MIN_POOL} (models per pool), got {type(k).__name__} {k!r}")
    if k < MIN_POOL:
        half = int(k) // 2
        raise ValueError(f"{name}: expected K >= {MIN_POOL} models per pool, got {k}: the retrained floor compares "
                         f"the two halves of the retrained pool, and with {half} model(s) per half "
                         f"F's bins end at ceil(ln(K/2 - 1)) <= 0, so every example would score 0 points (F = 0 by "
                         f"construction, not a measurement), and U-LiRA's leave-one-out fit needs 3 models per pool")
    return int(k)


def resolve_methods(spec) -> tuple[str, ...]:
    """``"all"`` -> every registered method but ``retrain``; ``"a,b"`` -> ("a", "b"); a sequence of
    names is returned as a tuple."""
    from ..methods import METHODS

    if not isinstance(spec, str):
        return tuple(spec)
    if spec == "all":
        return tuple(m for m in METHODS if m != "retrain")
    names = tuple(m.strip() for m in spec.split(","))
    if not any(names):
        raise ValueError(f"methods: expected comma-separated method names or 'all', got {spec!r}")
    if "" in names:
        raise ValueError(f"methods: expected comma-separated method names, got an empty name in {spec!r}")
    return names


def check_tuning_seed(seed, name: str = "seed") -> int:
    """A tuning seed: an int >= 0 outside :data:`REPORTED_SEEDS` (a recipe is never calibrated on a
    seed whose results are reported)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TypeError(f"{name}: expected a non-negative int, got {type(seed).__name__} {seed!r}")
    if seed in REPORTED_SEEDS:
        raise ValueError(f"{name}: expected a tuning seed outside the reported seeds "
                         f"{REPORTED_SEEDS.start}..{REPORTED_SEEDS.stop - 1} (e.g. 100), got {seed}")
    return int(seed)


def check_tuning_seeds(seeds, name: str = "seed") -> tuple[int, ...]:
    """One tuning seed or several, each a valid tuning seed (never a reported one), distinct."""
    seeds = (seeds,) if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool) else seeds
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise TypeError(f"{name}: expected a tuning seed or a sequence of them, got {type(seeds).__name__} {seeds!r}")
    out = tuple(check_tuning_seed(s, name) for s in seeds)
    if not out:
        raise ValueError(f"{name}: expected at least one tuning seed, got none")
    if len(set(out)) != len(out):
        raise ValueError(f"{name}: expected distinct tuning seeds, got {list(out)}")
    return out


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in str(text).split(",") if s.strip())
    except ValueError:
        raise ValueError(f"tuning_seeds: expected comma-separated integers such as 100,101, got {text!r}") from None


def _tunable(spec) -> tuple[str, ...]:
    """``"all"`` -> every method that declares a search space; else as :func:`resolve_methods`."""
    from .._validation import search_space
    from ..methods import METHODS

    if spec == "all":
        return tuple(m for m, cls in METHODS.items() if search_space(cls.Params))
    return resolve_methods(spec)


def check_seeds(seeds, name: str = "seeds") -> tuple[int, ...]:
    """At least one seed; each a distinct int >= 0 (a repeated seed would repeat a row and shrink the ±)."""
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise TypeError(f"{name}: expected a sequence of ints >= 0, got {type(seeds).__name__} {seeds!r}")
    seeds = tuple(seeds)
    if not seeds:
        raise ValueError(f"{name}: expected at least one seed, got none")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ValueError(f"{name}: expected ints >= 0, got {s!r}")
    dup = [s for s, c in Counter(seeds).items() if c > 1]
    if dup:
        raise ValueError(f"{name}: expected distinct seeds, got {dup[0]} more than once")
    return seeds


def check_methods(methods, name: str = "methods") -> tuple[str, ...]:
    """At least one registered method name, each once."""
    from ..methods import METHODS, get_method

    if isinstance(methods, str):
        raise TypeError(f"{name}: expected a sequence of method names, got the string {methods!r}")
    methods = tuple(methods)
    if not methods:
        raise ValueError(f"{name}: expected at least one method among {sorted(METHODS)}, got none")
    for m in methods:
        get_method(m)  # "method: expected one of [...], got 'x'"
    dup = [m for m, c in Counter(methods).items() if c > 1]
    if dup:
        raise ValueError(f"{name}: expected each method once, got {dup[0]!r} {Counter(methods)[dup[0]]} times")
    return methods


def check_overrides(overrides, methods, name: str = "overrides") -> dict:
    """Every override names a method of the run and fields of its ``Params`` with values its schema
    accepts (``<method>.<field>: expected ..., got ...``). Returns them coerced."""
    from ..methods import get_method

    if not isinstance(overrides, dict):
        raise TypeError(f"{name}: expected {{method: {{field: value}}}}, got {type(overrides).__name__}")
    out = {}
    for method, values in overrides.items():
        if method not in methods:
            raise ValueError(f"{name}: expected overrides of the methods of this run {list(methods)}, got {method!r}")
        if not isinstance(values, dict):
            raise TypeError(f"{name}: expected {{field: value}} for {method}, got {type(values).__name__}")
        out[method] = check_params(get_method(method).Params, values, prefix=f"{method}.")
    return out


def check_recipes(methods, overrides: dict, dataset: str, scenario: str, recipes: str | None = None) -> None:
    """Each method built once with its recipe plus the overrides, so a bad recipe file and a method's
    cross-field rules fail here, before any data is loaded, not after the reference models trained."""
    from ..methods import get_method

    for method in methods:
        get_method(method)(**hyperparameters(dataset, method, scenario, overrides, recipes))


def check_environment(config, recipes: str | None = None, device_name: str = "device") -> None:
    """What a ``RunConfig`` or ``AuditConfig`` cannot check itself, before any data is loaded: each
    method built from its recipe plus the overrides (:func:`check_recipes`), and the device
    (:func:`check_device`, its errors naming ``device_name``, e.g. ``"--device"``)."""
    check_recipes(config.methods, config.overrides, config.dataset, config.scenario, recipes)
    check_device(config.device, device_name)


def check_device(device, name: str = "device") -> str:
    """A device torch knows and this machine has: parsed by ``torch.device`` and one scalar made
    on it, so ``cuda`` without a GPU (or a CPU-only torch), ``cuda:7`` on a one-GPU machine and
    ``tpu`` all fail here."""
    import torch

    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"{name}: expected a device such as 'cpu' or 'cuda', got {type(device).__name__}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"{name}: expected a torch device such as 'cpu', 'cuda', 'cuda:1' or 'mps', got {device!r} "
                         f"({str(exc).splitlines()[0][:120]})") from None
    if dev.type == "meta":  # shapes only, no data: nothing could be trained or evaluated on it
        raise ValueError(f"{name}: expected a device that holds data, got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise ValueError(f"{name}: expected an available device, got {device!r} ({why}; use --device cpu)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"{name}: expected a GPU index below {torch.cuda.device_count()}, got {device!r}")
    try:
        torch.zeros((), device=dev)
    except Exception as exc:  # noqa: BLE001 - any backend failure means this device cannot run the bench
        raise ValueError(f"{name}: expected an available device, got {device!r} "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from None
    return str(device)


def _check_fields(config) -> None:
    """Every option of ``config`` against its type and bounds (coerced in place: lists to tuples),
    and its dataset among the registered ones."""
    from ..data import DATASETS

    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if CLI_META in f.metadata}
    for k, v in check_params(type(config), values).items():
        object.__setattr__(config, k, v)
    if config.dataset not in DATASETS:
        raise ValueError(f"dataset: expected one of {sorted(DATASETS)}, got {config.dataset!r}")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """What one bench run compares (``unlearnkit bench``; :func:`unlearnkit.bench.run`).

    Attributes:
        dataset: a name from ``unlearnkit.data.DATASETS``.
        scenario: see ``parse_scenario`` (e.g. ``"random-10"``, ``"class-3"``, ``"backdoor-10"``).
        seeds: one full experiment per seed (forget set, initialisation, data order).
        methods: registry names of the methods to run.
        overrides: ``{method: {field: value}}`` on top of the recipe.
        device: torch device for training and unlearning.
        features: compute the feature-space metrics (DA, linear probe, clustering) too.
        heldout_fraction: share of the test split held out (and not evaluated) when a method needs
            unseen data to train on (TMU); every model is then evaluated on the same remaining part.
        val_fraction: share of the test split set aside as validation data: what methods receive as
            ``test=`` (to monitor and select on); never evaluated on. The evaluated test part is
            never shown to a method.
        precision: "fp32", "bf16" or "fp16" (autocast; a GradScaler for fp16) for training the
            reference models and for unlearning.
        audit: K > 0 adds the per-example audit's columns (``unlearnkit.audit``: challenge F and
            score, U-LiRA, KLOM, RMIA) from pools of K models per row; 0 (default) skips it.

    Made from bad values it raises ``ValueError``/``TypeError`` naming the field; the device and
    the recipes are checked by the runner before any work (:func:`check_device`, :func:`check_recipes`).
    """

    dataset: str = option("digits", help="dataset name (unlearnkit.data.DATASETS)")
    scenario: str = option("random-10", help=SCENARIO_HELP)
    seeds: tuple[int, ...] = option((0,), help="the seeds, one experiment each", cli=False)
    methods: tuple[str, ...] = option(DEFAULT_METHODS, help="comma-separated registry names, or 'all'",
                                      parse=resolve_methods, metavar="METHODS")
    overrides: dict = dataclasses.field(default_factory=dict)
    device: str = option("cpu", help="torch device: cpu, cuda, cuda:N, mps (checked before any work)")
    features: bool = option(True, help="skip the feature-space metrics")
    heldout_fraction: float = option(0.2, ge=0.0, lt=1.0, help="share of the test split held out for methods that "
                                     "train on unseen data (TMU); default 0.2")
    val_fraction: float = option(0.2, ge=0.0, lt=1.0, help="share of the test split methods may monitor and "
                                 "select on (never evaluated on); default 0.2")
    precision: str = option("fp32", choices=("fp32", "bf16", "fp16"),
                            help="training and unlearning precision (autocast; fp16 with a GradScaler); default fp32")
    audit: int = option(0, ge=0, metavar="K",
                        help=f"add the per-example audit's columns from pools of K >= {MIN_POOL} models (0: no audit)")

    def __post_init__(self):
        _check_fields(self)
        check_scenario(self.scenario)
        check_seeds(self.seeds)
        check_methods(self.methods)
        check_overrides(self.overrides, self.methods)
        if 0 < self.audit < MIN_POOL:
            raise ValueError(f"audit: expected 0 (no audit) or a pool size K >= {MIN_POOL} (the retrained floor splits "
                             f"the pool in halves, and F needs 3 models per half: with 2 it is 0 by construction), "
                             f"got {self.audit!r}")


@dataclasses.dataclass(frozen=True)
class AuditConfig:
    """What one audit compares (``unlearnkit audit``; :func:`unlearnkit.audit.run_audit`).

    Attributes:
        dataset: a name from ``unlearnkit.data.DATASETS``.
        scenario: the scenario syntax (``random-10``, ``class-3``, ...).
        methods: registry names (each gets one unlearned pool).
        pool: K, models per pool (>= 6 = ``MIN_POOL``, what the retrained floor needs; 16 is the
            CPU default).
        seed: chooses the forget set (the pools use seeds 1..K).
        overrides: ``{method: {field: value}}`` on top of the recipe.
        device: torch device of each task.
        threads: torch threads per task.
        heldout_fraction: share of the test split held out for methods that train on unseen
            data (TMU), as the bench does.

    Made from bad values it raises ``ValueError``/``TypeError`` naming the field (a pool under
    :data:`MIN_POOL` with the reason), before anything is loaded or trained.
    """

    dataset: str = option("digits", help="dataset name (unlearnkit.data.DATASETS)")
    scenario: str = option("random-10", help=SCENARIO_HELP)
    methods: tuple[str, ...] = option(("finetune", "neggrad"), help="comma-separated registry names, or 'all'",
                                      parse=resolve_methods, metavar="METHODS")
    pool: int = option(16, metavar="K", help=f"K, models per pool (default 16; at least {MIN_POOL}, what the retrained "
                                             "floor needs; 64+ on a cluster)")
    seed: int = option(0, ge=0, help="chooses the forget set (pools use seeds 1..K)")
    overrides: dict = dataclasses.field(default_factory=dict)
    device: str = option("cpu", help="torch device of each pool task (default cpu)")
    threads: int = option(1, ge=1, help="torch threads per model task (default 1)")
    heldout_fraction: float = option(0.2, ge=0.0, lt=1.0, help="share of the test split held out for methods that "
                                     "train on unseen data (TMU); default 0.2")

    def __post_init__(self):
        check_pool(self.pool)
        _check_fields(self)
        check_scenario(self.scenario)
        check_methods(self.methods)
        check_overrides(self.overrides, self.methods)


@dataclasses.dataclass(frozen=True)
class TuneConfig:
    """What one search tunes (``unlearnkit tune``; :func:`unlearnkit.tune.run_search`).

    Attributes:
        dataset, scenario: as a bench run's.
        methods: registry names, each with a search space (``param(..., space=...)`` fields).
        tuning_seeds: the seeds a trial's objective is averaged over; never a reported seed (0-9).
        trials: trials per method (the first evaluates the hand-made recipe).
        max_rte: a trial's time budget as a fraction of retraining time (over it: infeasible).
        num_cpus: CPUs of the local Ray (None: all).
        cpus_per_trial: CPUs and torch threads per trial.
        retrain_time: the budget's unit: "measure" retraining now or take the "cache"d gold model's time.
        max_retain_drop: a trial whose retain accuracy falls more than this (a fraction: 0.05 = 5
            points) below the original's on a tuning seed is infeasible (None: no limit).
        asha: stop trials whose per-epoch objective falls behind (ASHA).
    """

    dataset: str = option("digits", help="dataset name (unlearnkit.data.DATASETS)")
    scenario: str = option("random-10", help=SCENARIO_HELP)
    methods: tuple[str, ...] = option(DEFAULT_METHODS, parse=_tunable, metavar="METHODS",
                                      help="comma-separated registry names, or 'all' (every method with a search space)")
    tuning_seeds: tuple[int, ...] = option((100, 101), parse=_int_list, metavar="SEEDS",
                                           help="comma-separated tuning seeds (never the reported seeds 0-9); a trial's "
                                                "objective is the mean over them, so a recipe that wins on one seed "
                                                "only does not win (default: 100,101)")
    trials: int = option(20, ge=1, help="trials per method (the first is the hand-made recipe)")
    max_rte: float = option(0.2, gt=0.0, help="time budget of a trial as a fraction of retraining time "
                                             "(over it: infeasible)")
    num_cpus: int | None = option(None, ge=1, help="CPUs of the local Ray (default: all)")
    cpus_per_trial: int = option(1, ge=1, help="CPUs and torch threads per trial")
    retrain_time: str = option("measure", choices=("measure", "cache"),
                               help="the budget's unit: retraining time measured now (one epoch x epochs, a trial's "
                                    "threads) or the cached gold model's recorded time")
    max_retain_drop: float | None = option(None, ge=0.0, le=1.0,
                                           help="a trial whose retain accuracy falls more than this fraction "
                                                "(0.05 = 5 points) below the original's on a tuning seed is "
                                                "infeasible (default: no limit)")
    asha: bool = option(True, help="run every trial to the end (no early stopping)")

    def __post_init__(self):
        from .._validation import search_space
        from ..methods import get_method

        _check_fields(self)
        check_scenario(self.scenario)
        check_methods(self.methods)
        for m in self.methods:
            if not search_space(get_method(m).Params):
                raise ValueError(f"methods: {m} declares no search space (no Params field has space=...)")
        check_tuning_seeds(self.tuning_seeds, "tuning_seeds")
