"""Layer: audit. One audit from a dataset, a scenario and a list of methods: the split, the
recipes, the pools (:mod:`.pools`), the scores (:mod:`.scores`) and the report (:mod:`.report`).

:func:`run_audit` builds the split and the recipes from an :class:`AuditConfig`, then calls
:func:`unlearnkit.audit.engine.audit_split` (which a caller with its own split uses directly).
"""

from __future__ import annotations

import os
import pathlib
import time
from dataclasses import asdict, dataclass, field

from ..checkpoints import default_cache_dir
from ..data import group_classes, load_dataset, make_split
from ..methods import METHODS, get_method
from ..training import TrainConfig
from .engine import audit_split
from .pools import PoolSetup, monitor_set

__all__ = ["AuditConfig", "resolve_methods", "run_audit"]


@dataclass(frozen=True)
class AuditConfig:
    """What one audit compares.

    Attributes:
        dataset: a name from ``unlearnkit.data.DATASETS``.
        scenario: ``random-<percent>``, ``class-<label>``, ``subclass-<fine label>`` or
            ``backdoor-<percent>``.
        methods: registry names (each gets one unlearned pool).
        pool: K, models per pool (>= 4 for the retrained floor; 16 is the CPU default).
        seed: chooses the forget set (the pools use seeds 1..K).
        overrides: ``{method: {field: value}}`` on top of the recipe.
        device: torch device of each task.
        threads: torch threads per task.
        heldout_fraction: share of the test split held out for methods that train on unseen
            data (TMU), as the bench does.
    """

    dataset: str = "digits"
    scenario: str = "random-10"
    methods: tuple[str, ...] = ("finetune", "neggrad")
    pool: int = 16
    seed: int = 0
    overrides: dict = field(default_factory=dict)
    device: str = "cpu"
    threads: int = 1
    heldout_fraction: float = 0.2


def resolve_methods(spec: str) -> tuple[str, ...]:
    """``"all"`` -> every registered method but ``retrain``; ``"a,b"`` -> ("a", "b")."""
    if spec == "all":
        return tuple(m for m in METHODS if m != "retrain")
    names = tuple(m.strip() for m in str(spec).split(",") if m.strip())
    if not names:
        raise ValueError(f"methods: expected comma-separated method names or 'all', got {spec!r}")
    for m in names:
        get_method(m)
    return names


def run_audit(config: AuditConfig, *, cache_dir: str | os.PathLike | None = None, executor: str = "ray",
              ray_address: str | None = None, num_cpus: int | None = None, progress: bool = True,
              recipes: str | None = None) -> dict:
    """Runs the audit of ``config``; returns :func:`audit_split`'s result plus ``"meta"``."""
    from ..bench.recipes import dataset_recipe, method_recipe
    from ..bench.runner import environment, parse_scenario

    t0 = time.perf_counter()
    if isinstance(config.pool, bool) or not isinstance(config.pool, int) or config.pool < 2:
        raise ValueError(f"pool: expected an int >= 2 (models per pool), got {config.pool!r}")
    recipe = dataset_recipe(config.dataset, recipes)
    for m in config.methods:
        get_method(m)
    scenario = parse_scenario(config.scenario)
    data = load_dataset(config.dataset)
    if scenario["forget"] == "subclass":
        data = group_classes(data)
    needs_heldout = any(getattr(get_method(m), "needs_heldout", False) for m in config.methods)
    split = make_split(data, **scenario, seed=config.seed,
                       heldout_fraction=config.heldout_fraction if needs_heldout else 0.0)
    setup = PoolSetup(model=recipe["model"], model_kwargs=dict(recipe.get("model_kwargs", {})),
                      train=TrainConfig(**recipe["train"]),
                      cache_dir=str(pathlib.Path(cache_dir) if cache_dir else default_cache_dir()),
                      device=config.device, threads=config.threads)
    methods = {m: {**method_recipe(config.dataset, m, recipes, config.scenario), **config.overrides.get(m, {})}
               for m in config.methods}
    result = audit_split(split, setup, methods, config.pool, executor=executor, ray_address=ray_address,
                         num_cpus=num_cpus, progress=progress)
    result["meta"] = {"config": asdict(config), "dataset": config.dataset, "scenario": config.scenario,
                      "k": config.pool, "seed": config.seed, "pool_seeds": [1, config.pool],
                      "n_forget": int(len(split.forget_idx)), "n_retain": int(len(split.retain_idx)),
                      "n_test": int(len(split.test_idx)),
                      "monitor": "split.val" if monitor_set(split) is not None else "nothing (no validation part)",
                      "model": setup.model, "train": setup.train.to_dict(), "hparams": methods,
                      "executor": result["pools"]["executor"], "threads_per_task": setup.threads,
                      "pool_wall_seconds": result["pools"]["wall_seconds"],
                      "metric_seconds": result["scores"]["metric_seconds"],
                      "wall_seconds": time.perf_counter() - t0, "env": environment(config.device),
                      "forget_idx": split.forget_idx}
    return result
