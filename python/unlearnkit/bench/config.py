"""Layer: bench. Checks a bench run's whole configuration before any work: the seeds, the
methods, every ``--set`` override against its method's parameter schema, the scenario's range
and the device. ``runner.run`` calls :func:`validate` first, so that a typo fails in a second
with ``<argument>: expected ..., got ...`` instead of after the original and gold models trained.

Nothing here trains, loads data or allocates more than one scalar on the device.
"""

from __future__ import annotations

from collections import Counter

from .._validation import SCENARIO_HELP, check_params, check_scenario
from ..methods import METHODS, get_method
from .recipes import method_recipe

__all__ = ["SCENARIO_HELP", "check_device", "check_methods", "check_overrides", "check_scenario", "check_seeds", "validate"]

# The scenario syntax and its one parser live in _validation (torch-free: `unlearnkit --help` imports no torch).



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


def check_overrides(overrides: dict, methods, dataset: str, scenario: str, recipes: str | None = None,
                    name: str = "overrides") -> None:
    """Every override names a method of the run and fields of its ``Params`` with values its schema
    accepts (``<method>.<field>: expected ..., got ...``); then each method is built once with its
    recipe plus overrides, so cross-field checks and a bad recipe fail here too, not after training."""
    if not isinstance(overrides, dict):
        raise TypeError(f"{name}: expected {{method: {{field: value}}}}, got {type(overrides).__name__}")
    for method, values in overrides.items():
        if method not in methods:
            raise ValueError(f"{name}: expected overrides of the methods of this run {list(methods)}, got {method!r}")
        if not isinstance(values, dict):
            raise TypeError(f"{name}: expected {{field: value}} for {method}, got {type(values).__name__}")
        check_params(get_method(method).Params, values, prefix=f"{method}.")
    for method in methods:
        hparams = {**method_recipe(dataset, method, recipes, scenario), **overrides.get(method, {})}
        get_method(method)(**hparams)


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


def validate(config, recipes: str | None = None) -> None:
    """Every check above on a ``RunConfig``; raises the first problem found."""
    check_scenario(config.scenario)
    check_seeds(config.seeds)
    check_methods(config.methods)
    check_overrides(config.overrides, config.methods, config.dataset, config.scenario, recipes)
    check_device(config.device)
    if config.precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"precision: expected one of ['fp32', 'bf16', 'fp16'], got {config.precision!r}")
    if isinstance(config.audit, bool) or not isinstance(config.audit, int) or config.audit < 0 or 0 < config.audit < 6:
        raise ValueError(f"audit: expected 0 (no audit) or a pool size K >= 6 (the retrained floor splits the pool "
                         f"in halves, and F needs 3 models per half: with 2 it is 0 by construction), "
                         f"got {config.audit!r}")
