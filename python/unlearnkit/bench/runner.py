"""The runner: data + models + methods + metrics for one scenario and several seeds.

For each seed: choose the forget set, train (or load from the cache) the original model on the
whole training set and the gold model on the retain set only, run every method on a copy of
the original, evaluate every model on the same sets, and compute each row's gap to gold.
Each finished (seed, model) unit is written to ``<out>/units/`` at once, so an interrupted run
started again with the same arguments resumes after its last finished unit.
"""

from __future__ import annotations

import pathlib
import time
import warnings
from dataclasses import asdict

import numpy as np
import torch

from ..checkpoints import cache_key, default_cache_dir
from ..data import group_classes, load_dataset, make_split
from ..data.forget import UnlearningSplit
from ..experiment.config import DEFAULT_METHODS, RunConfig  # noqa: F401 - re-exported (bench.RunConfig)
from ..experiment.evaluate import add_closed, add_gaps, evaluate_model
from ..experiment.recipes import dataset_recipe, hyperparameters
from ..experiment.reference import _train_reference, environment, parse_scenario  # noqa: F401 - re-exported
from ..methods import get_method
from ..progress import ProgressBars
from ..training import TrainConfig, extract_features
from .config import SCENARIO_HELP, check_scenario, validate  # noqa: F401 - SCENARIO_HELP re-exported
from .units import prepare_out, read_unit, write_unit


def _add_audit(rows: list[dict], split: UnlearningSplit, recipe: dict, train_cfg: TrainConfig, config: RunConfig,
               recipes: str | None, cache_dir: pathlib.Path, progress: bool) -> None:
    """Adds the per-example audit's ``audit_*`` columns to this seed's rows (``--audit K``): pools of
    K original, retrained and unlearned models, content-keyed checkpoints shared with the bench and
    with ``unlearnkit audit`` (pool seeds 1..K), scored as in ``unlearnkit.audit``."""
    from ..experiment.engine import bench_columns

    methods = {m: hyperparameters(config.dataset, m, config.scenario, config.overrides, recipes)
               for m in config.methods}
    cols, _ = bench_columns(split, model=recipe["model"], model_kwargs=recipe.get("model_kwargs", {}), train=train_cfg,
                            methods=methods, k=config.audit, cache_dir=str(cache_dir), device=config.device,
                            executor="ray", progress=progress)
    for row in rows:
        if "error" not in row:
            row.update(cols.get(row["model"], {}))


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """True when every parameter and buffer of ``a`` equals ``b``'s bit for bit (a method that "did nothing")."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


def warn_untargeted(methods, kind: str) -> None:
    """Warns once per method whose paper did not target this kind of scenario (a ``targets``
    class attribute, e.g. DLFD's and TMU's ``("random",)``): its recipe and claims may not hold."""
    for m in dict.fromkeys(methods):
        targets = getattr(get_method(m), "targets", None)
        if targets and kind not in targets:
            warnings.warn(f"{m}: its paper targets {' / '.join(targets)} forgetting, not {kind!r}; its results on this "
                          "scenario are outside what the method was designed and tuned for", stacklevel=3)


def plot_features(model, split: UnlearningSplit, seed: int, n_forget: int = 500, n_retain: int = 1500):
    """Penultimate features of up to ``n_forget`` forget and ``n_retain`` retain samples (the same
    samples for every model of a seed), for the embedding plot."""
    rng = np.random.default_rng(seed)
    f = rng.permutation(split.forget_idx)[:n_forget]
    r = rng.permutation(split.retain_idx)[:n_retain]
    idx = torch.from_numpy(np.concatenate([f, r]))
    z = extract_features(model, split.data.x_train[idx]).numpy()
    return z, np.r_[np.ones(len(f), bool), np.zeros(len(r), bool)], split.data.y_train[idx].numpy()


def run(config: RunConfig, *, out_dir: str | pathlib.Path, cache_dir: str | pathlib.Path | None = None,
        progress: bool = True, recipes: str | None = None) -> dict:
    """Runs the comparison and returns ``{"meta": ..., "rows": [...]}`` (also written as units)."""
    validate(config, recipes)  # seeds, methods, --set overrides, scenario range, device: before any work
    out_dir = prepare_out(out_dir)  # refuses "" (the current folder); creates out_dir/units
    units_dir = out_dir / "units"
    cache_dir = pathlib.Path(cache_dir) if cache_dir else default_cache_dir()
    recipe = dataset_recipe(config.dataset, recipes)
    train_cfg = TrainConfig(**recipe["train"])
    for m in config.methods:
        get_method(m)  # fail before any training on a misspelt name
    data = load_dataset(config.dataset)
    scenario = parse_scenario(config.scenario)
    if scenario["forget"] == "subclass":
        data = group_classes(data)
    needs_heldout = any(getattr(get_method(m), "needs_heldout", False) for m in config.methods)
    warn_untargeted(config.methods, scenario["forget"])
    bars = ProgressBars(disable=not progress)
    meta = {"config": asdict(config), "scenario": config.scenario, "dataset": config.dataset,
            "model": recipe["model"], "train": train_cfg.to_dict(), "env": environment(config.device)}
    rows: list[dict] = []
    for seed in config.seeds:
        split = make_split(data, **scenario, seed=seed, val_fraction=config.val_fraction,
                           heldout_fraction=config.heldout_fraction if needs_heldout else 0.0)
        seed_start = len(rows)
        ref = (recipe["model"], recipe.get("model_kwargs", {}), train_cfg, seed, cache_dir, config.device, bars,
               config.precision)
        original, o_meta = _train_reference("original", split, *ref)
        gold, g_meta = _train_reference("gold", split, *ref)
        retrain_s = g_meta["seconds"]
        gold_row = evaluate_model(gold, split, seed=seed, features=config.features)
        units = [("original", None), ("gold", None)] + [(m, m) for m in config.methods]
        for name, method_name in units:
            hparams = {}
            if method_name is not None:
                hparams = hyperparameters(config.dataset, method_name, config.scenario, config.overrides, recipes)
            # A unit is identified by everything that decides its result, so resuming never
            # reuses a row computed under other settings.
            unit_key = cache_key(split=split.fingerprint(), original=o_meta["key"], gold=g_meta["key"],
                                 method=name, hparams=hparams, seed=seed)
            unit_path = units_dir / f"seed{seed}-{name}-{unit_key}.json"
            done = read_unit(unit_path)  # None: never written, or unreadable (warned, computed again)
            if done is not None:
                rows.append(done)
                continue
            if method_name is None:
                model, seconds = (original, o_meta["seconds"]) if name == "original" else (gold, retrain_s)
                # gold was evaluated once above; a copy, because gold_row keeps its arrays for the gaps
                row = add_gaps(dict(gold_row) if name == "gold" else
                               evaluate_model(model, split, seed=seed, features=config.features), gold_row)
            else:
                method = get_method(method_name)(**hparams)
                try:
                    t0 = time.perf_counter()
                    # validation data only: the evaluated test part is never shown to a method
                    model = method.unlearn(original, split.forget, split.retain, test=split.val, seed=seed,
                                           callbacks=[bars], precision=config.precision,
                                           heldout=split.heldout if method.needs_heldout else None,
                                           cache_dir=cache_dir)
                    # a cold call's cost: work the method loaded from a cache counts as when it ran
                    seconds = time.perf_counter() - t0 + method.last_cached_seconds
                    bars.close()
                    did_nothing = _same_weights(model, original)
                    # inside the try: a method that diverged (NaN weights) fails here, in validation
                    row = add_gaps(evaluate_model(model, split, seed=seed, features=config.features), gold_row)
                except Exception as exc:  # noqa: BLE001 - one diverging method must not cost the others' results
                    bars.close()
                    error = f"{type(exc).__name__}: {exc}"
                    warnings.warn(f"{name} (seed {seed}) failed and is left out of the tables: {error}", stacklevel=2)
                    # not written as a unit, so a resumed run tries it again
                    rows.append({"model": name, "seed": seed, "scenario": config.scenario, "error": error,
                                 "hparams": hparams})
                    continue
            bars.close()
            arrays = {k.lstrip("_"): row.pop(k) for k in [k for k in row if k.startswith("_")]}
            if seed == config.seeds[0] and config.features:  # the embedding plot's feature sample (not with --no-features)
                arrays["features"], arrays["is_forget"], arrays["labels"] = plot_features(model, split, seed)
            row.update(model=name, seed=seed, scenario=config.scenario, seconds=seconds, unit=unit_path.stem,
                       rte=seconds / retrain_s, hparams=hparams, n_forget=len(split.forget_idx))
            if method_name is not None:
                row["did_nothing"] = did_nothing
            write_unit(unit_path, row, arrays)  # .npz then .json, each atomically
            rows.append(row)
        add_closed(rows[seed_start:])  # needs this seed's original and gold rows, so after its units
        if config.audit:
            _add_audit(rows[seed_start:], split, recipe, train_cfg, config, recipes, cache_dir, progress)
    bars.close()
    return {"meta": meta, "rows": rows}
