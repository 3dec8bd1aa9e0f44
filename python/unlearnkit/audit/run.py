"""Layer: audit. One audit from a dataset, a scenario and a list of methods: the split, the
recipes, the pools (:mod:`.pools`), the scores (:mod:`.scores`) and the report (:mod:`.report`).

:func:`run_audit` builds the split and the recipes from an :class:`AuditConfig`, then calls
:func:`unlearnkit.audit.engine.audit_split` (which a caller with its own split uses directly).
"""

from __future__ import annotations

import os
import pathlib
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict

import torch

from ..checkpoints import checkpoint_path, default_cache_dir
from ..data import group_classes, load_dataset, make_split
from ..experiment.config import AuditConfig, check_recipes, resolve_methods
from ..experiment.engine import audit_split
from ..experiment.pools import Member, PoolSetup, member_keys, monitor_set, pool_members, run_member
from ..methods import get_method
from ..models import build_model
from ..training import TrainConfig

__all__ = ["AuditConfig", "estimate_pools", "prepare_audit", "resolve_methods", "run_audit"]


def prepare_audit(config: AuditConfig, *, cache_dir: str | os.PathLike | None = None, recipes: str | None = None):
    """(split, :class:`~unlearnkit.audit.pools.PoolSetup`, ``{method: hyper-parameters}``) of ``config``:
    the data loaded, the forget set chosen, the recipes read; nothing trained."""
    from ..experiment.recipes import dataset_recipe, hyperparameters
    from ..experiment.reference import parse_scenario

    recipe = dataset_recipe(config.dataset, recipes)
    check_recipes(config.methods, config.overrides, config.dataset, config.scenario, recipes)
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
    methods = {m: hyperparameters(config.dataset, m, config.scenario, config.overrides, recipes)
               for m in config.methods}
    return split, setup, methods


def _member_path(member: Member, split, setup: PoolSetup, key: str) -> pathlib.Path:
    kind = {"original": "original", "retrained": "gold"}.get(member.kind)
    name = f"{split.data.name}-{kind}" if kind else f"{split.data.name}-unlearned-{member.method}"
    return checkpoint_path(setup.cache_dir, name, key)


def estimate_pools(split, setup: PoolSetup, methods: dict[str, dict], k: int, *, workers: int | None = None,
                   measure: bool = True) -> dict:
    """What the pools will cost before they run: how many of their models are not in the cache yet,
    the seconds one takes and the bytes its checkpoint holds.

    The seconds come from the reference models (original or retrained) already in the cache (the
    median of their recorded training times), else, with ``measure``, from training the first missing reference
    model now, in this process (it is one the pools need: it is cached and not trained again).
    An unlearned model is counted at the cost of one training (a rough guess: a method's own time
    is not known before it runs).

    Returns:
        ``{"models", "to_train", "cached", "seconds_per_model", "seconds_source", "bytes_per_model",
        "cpu_seconds", "workers", "wall_seconds" (None when ``workers`` is None), "disk_bytes"}``.
    """
    members = pool_members(int(k), methods)
    keys = member_keys(members, split, setup)
    paths = {m.ident: _member_path(m, split, setup, keys[m.ident]) for m in members}
    missing = [m for m in members if not paths[m.ident].exists()]
    refs = [m for m in members if m.kind != "unlearned"]
    seconds = nbytes = None
    source = "nothing to train"
    # Every reference model already in the cache knows its training time; the median of them, as one
    # model trained on a loaded machine is no guide (measured on fashion-mnist-10k: the estimate took
    # 244 s per model from the one cached original; the 19 originals cached after that pool trained
    # recorded 50-273 s, median 58 s).
    recorded: list[tuple[float, Member]] = []
    for m in refs:
        if paths[m.ident].exists():
            try:
                # mmap: only the metadata is read, not every cached model's weights
                meta = torch.load(paths[m.ident], map_location="cpu", weights_only=True, mmap=True).get("meta", {})
                recorded.append((float(meta["seconds"]), m))
            except Exception:  # noqa: BLE001 - an unreadable entry is trained again by the pools; measure instead
                continue
    if recorded:
        seconds = float(statistics.median(t for t, _ in recorded))
        m = recorded[0][1]
        nbytes = paths[m.ident].stat().st_size
        source = (f"the recorded training time of the cached {m.kind} model k = {m.k}" if len(recorded) == 1 else
                  f"the median recorded training time of {len(recorded)} cached reference models")
    if seconds is None and missing and measure:
        first = next((m for m in missing if m.kind != "unlearned"), None)
        if first is not None:
            r = run_member(split, setup, first, keys[first.ident])  # restores this process's torch threads
            seconds, nbytes = float(r["seconds"]), paths[first.ident].stat().st_size
            source = f"one {first.kind} model (k = {first.k}) trained now, {setup.threads} torch thread(s)"
            missing.remove(first)
    if nbytes is None:  # no checkpoint to measure: the state of a fresh model
        model = build_model(setup.model, split.data, **setup.model_kwargs)
        nbytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    cpu = None if seconds is None else seconds * len(missing)
    return {"models": len(members), "to_train": len(missing), "cached": len(members) - len(missing),
            "seconds_per_model": seconds, "seconds_source": source, "bytes_per_model": int(nbytes), "cpu_seconds": cpu,
            "workers": workers, "wall_seconds": None if cpu is None or not workers else cpu / workers,
            "disk_bytes": int(nbytes) * len(missing)}


def run_audit(config: AuditConfig, *, cache_dir: str | os.PathLike | None = None, executor: str = "ray",
              ray_address: str | None = None, num_cpus: int | None = None, progress: bool = True,
              recipes: str | None = None, confirm: Callable[[dict], None] | None = None) -> dict:
    """Runs the audit of ``config``; returns :func:`audit_split`'s result plus ``"meta"``.

    ``confirm``: called with :func:`estimate_pools`'s estimate before the pools are trained (the
    CLI prints it and refuses a long run without ``--yes`` by raising); None skips the estimate.
    ``config.pool`` must be at least :data:`~unlearnkit.audit.scores.MIN_POOL` (the retrained floor).
    """
    from ..experiment.reference import environment

    t0 = time.perf_counter()
    split, setup, methods = prepare_audit(config, cache_dir=cache_dir, recipes=recipes)
    if confirm is not None:
        workers = 1 if executor == "serial" else (
            max(1, (num_cpus or os.cpu_count() or 1) // setup.threads) if ray_address in (None, "local") else None)
        confirm(estimate_pools(split, setup, methods, config.pool, workers=workers))
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
