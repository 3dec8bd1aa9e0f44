"""Layer: tune. The search: one Ray Tune experiment per method, Optuna's TPE sampler proposing
points of the method's declared space, ASHA stopping trials whose per-epoch objective falls behind.

The tuning problems, one per tuning seed (data with the reported test rows masked, the original
model's weights, the gold model's validation metrics), are put once into Ray's object store
(``tune.with_parameters``) and shared by every trial; each trial runs on ``cpus_per_trial`` CPUs with
as many torch threads. A trial's objective is the mean over the tuning seeds (``score_seeds``), so a
knife-edge recipe that wins on one seed and collapses on the next does not win.

What is written back: a method's tuned values only when its best trial beats the hand-made recipe
(the first trial) on that mean and does better than doing nothing (objective > 0); otherwise the
hand-made recipe is kept, and ``report.md`` and the command's output say why.
Each experiment lives in ``<out>/ray/<method>``; running the same search again restores it
(``Tuner.restore``) and runs only the trials it had not finished.
"""

from __future__ import annotations

import json
import logging
import math
import pathlib
import time
import warnings

from ..experiment.config import TuneConfig, check_tuning_seeds  # noqa: F401 - check_tuning_seeds re-exported
from .objective import FAILED_SCORE, TuningProblem, score_trial
from .space import method_space, ray_space, start_point

METRIC = "score"


def score_seeds(problems: list[TuningProblem], method: str, config: dict, *, report=None,
                intermediate: bool = True) -> dict:
    """``score_trial`` on every tuning seed's problem; the row of their mean.

    ``objective`` is the mean of the seeds' objectives (``objectives`` lists them, ``objective_sd``
    their spread), ``seconds``/``rte`` the mean and ``rte_max`` the largest; the status is "ok" only
    when every seed's trial is (else the first seed's failure or infeasibility, which stops the trial:
    the next seeds are not run). With one problem this is ``score_trial`` itself; with several, per-epoch
    progress is reported only for the first seed (ASHA judges a point by it)."""
    if len(problems) == 1:
        return score_trial(problems[0], method, config, report=report, intermediate=intermediate)
    rows = []
    for i, problem in enumerate(problems):
        row = score_trial(problem, method, config, report=report if i == 0 else None, intermediate=intermediate)
        rows.append(row)
        if row["status"] != "ok":
            out = dict(row)
            out["error"] = f"tuning seed {problem.seed}: {row['error']}"
            out["objectives"] = [r["objective"] for r in rows]
            return out
    out = {k: v for k, v in rows[0].items() if not k.startswith(("acc_", "closed_")) and k not in ("mia", "ua")}
    objectives = [r["objective"] for r in rows]
    for k in rows[0]:
        if k.startswith(("acc_", "closed_")) or k in ("mia", "ua"):
            vals = [r[k] for r in rows if isinstance(r.get(k), (int, float)) and math.isfinite(r[k])]
            out[k] = sum(vals) / len(vals) if vals else math.nan
    mean = sum(objectives) / len(objectives)
    out.update(objective=mean, objectives=objectives,
               objective_sd=(sum((o - mean) ** 2 for o in objectives) / (len(objectives) - 1)) ** 0.5,
               seconds=sum(r["seconds"] for r in rows) / len(rows), rte=sum(r["rte"] for r in rows) / len(rows),
               rte_max=max(r["rte"] for r in rows), score=max(-1.0, min(1.0, mean)))
    return out


def _trainable(config: dict, problem: list[TuningProblem], method: str, threads: int, asha: bool) -> None:
    """A Ray Tune function trainable: scores one point on every tuning seed, reporting per-epoch
    progress (of the first seed) for ASHA."""
    import torch
    from ray import tune

    torch.set_num_threads(threads)
    started = time.time()
    row = score_seeds(problem, method, config, report=lambda d: tune.report({**d, "started": started}),
                      intermediate=asha)
    final = {k: v for k, v in row.items() if k not in ("params", "method", "objectives")}
    final["objectives"] = json.dumps(row.get("objectives", [row["objective"]]), default=float)
    final.update(final=True, started=started, params=json.dumps(row["params"], sort_keys=True, default=float))
    tune.report(final)


def init_ray(num_cpus: int | None = None, address: str | None = None) -> None:
    """Starts a local Ray with ``num_cpus`` CPUs (default: all), or connects to ``address``."""
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)


def search_method(problem: TuningProblem | list[TuningProblem], method: str, *, trials: int, out_dir: str | pathlib.Path,
                  cpus_per_trial: int = 1, max_concurrent: int | None = None, seed: int = 0,
                  asha: bool = True) -> list[dict]:
    """Runs (or resumes) the search for one method and returns one row per trial (see
    ``score_trial``; plus ``trial`` (0-based, in start order) and ``status`` "early-stopped" for a
    trial ASHA stopped). Ray must be initialised (:func:`init_ray`)."""
    from optuna.samplers import TPESampler
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    if not method_space(method):
        raise ValueError(f"methods: {method} declares no search space (no Params field has space=...)")
    problems = list(problem) if isinstance(problem, (list, tuple)) else [problem]
    problem = problems[0]
    storage = pathlib.Path(out_dir).resolve() / "ray"
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, problem=problems, method=method, threads=cpus_per_trial, asha=asha),
        {"cpu": cpus_per_trial})
    path = storage / method
    if tune.Tuner.can_restore(str(path)):
        tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_errored=True)
    else:
        sampler = TPESampler(seed=seed, n_startup_trials=max(2, min(10, trials // 3)))
        start = start_point(method, problem.recipes.get(method, {}), problem.scenario)
        searcher = OptunaSearch(sampler=sampler, points_to_evaluate=[start])
        # grace 3: a trial is judged after 3 epochs at the earliest (one epoch of fine-tuning says little
        # about where it ends; on digits, grace 1 stopped 3-5 of 8 trials, the hand-made recipe among them)
        scheduler = (ASHAScheduler(time_attr="training_iteration", max_t=10_000, grace_period=3, reduction_factor=3)
                     if asha else None)
        tuner = tune.Tuner(
            trainable, param_space=ray_space(method, problem.scenario),
            tune_config=tune.TuneConfig(metric=METRIC, mode="max", search_alg=searcher, scheduler=scheduler,
                                        num_samples=trials, max_concurrent_trials=max_concurrent,
                                        reuse_actors=True),  # no new process (torch import) per trial
            run_config=tune.RunConfig(name=method, storage_path=str(storage), verbose=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grid = tuner.fit()
    return collect(grid, method)


def collect(grid, method: str) -> list[dict]:
    """Rows of a finished ``ResultGrid``, in trial start order."""
    rows = []
    for r in grid:
        m = dict(r.metrics or {})
        params = {k: (v.item() if hasattr(v, "item") else v) for k, v in (r.config or {}).items()}
        row = {"method": method, "params": params, "status": m.get("status", "failed"),
               "objective": m.get("objective", math.nan), "score": m.get("score", FAILED_SCORE),
               "seconds": m.get("seconds", math.nan), "rte": m.get("rte", math.nan), "error": m.get("error", ""),
               "started": m.get("started", math.inf)}
        for k, v in m.items():
            if k.startswith(("acc_", "closed_")) or k in ("mia", "ua", "objective_sd", "rte_max"):
                row[k] = v
        if "objectives" in m:
            row["objectives"] = json.loads(m["objectives"])
        if r.error is not None:
            row.update(status="failed", score=FAILED_SCORE, error=f"{type(r.error).__name__}: {r.error}"[:500])
        elif m and not m.get("final"):
            row.update(status="early-stopped", error="stopped by ASHA after "
                       f"{m.get('training_iteration', '?')} epoch(s)")
        rows.append(row)
    rows.sort(key=lambda r: r["started"])
    for i, r in enumerate(rows):
        r["trial"] = i
    return rows


def best_trial(rows: list[dict]) -> dict | None:
    """The finished, feasible trial with the highest objective (ties: the earlier), or None."""
    ok = [r for r in rows if r["status"] == "ok" and math.isfinite(r["objective"])]
    return max(ok, key=lambda r: (r["objective"], -r["trial"])) if ok else None


def decide(rows: list[dict], start: dict) -> tuple[dict | None, str]:
    """(the trial whose values are written, or None to keep the hand-made recipe; why), for one method.

    The tuned values are written only when the best feasible trial beats the hand-made recipe's
    objective (the trial at ``start``, whether or not it fitted the budget) and does better than doing
    nothing (objective > 0: the original model scores 0). Otherwise the hand-made recipe stays, with
    one exception: when the hand-made recipe itself *failed* on the tuning seeds (it raised, e.g.
    diverged to NaN), the best trial that finished is written even at objective <= 0, and the reason
    says so: a recipe that barely moves the model is a usable starting point, one that crashes is not
    (NegGrad's random-10 values diverge on random-30)."""
    best = best_trial(rows)
    hand = next((r for r in rows if r["params"] == start), None)
    hand_obj = hand["objective"] if hand is not None and math.isfinite(hand.get("objective", math.nan)) else None
    if best is None:
        counts = {s: sum(r["status"] == s for r in rows) for s in ("infeasible", "failed", "early-stopped")}
        why = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        hint = " (raise --max-rte, or lower the method's epochs in the base recipe)" if counts["infeasible"] else ""
        return None, f"no feasible trial ({why or 'none finished'}){hint}: hand-made recipe kept"
    if hand is not None and hand["status"] == "failed":
        return best, (f"the hand-made recipe failed on the tuning seeds: the best trial that finished is written "
                      f"({best['objective']:.3f}" + (", no better than doing nothing)" if best["objective"] <= 0 else ")"))
    if best["objective"] <= 0:
        return None, (f"the best trial scores {best['objective']:.3f}, no better than doing nothing (0): "
                      "hand-made recipe kept")
    if hand is not None and best is hand:
        return None, f"no trial beat the hand-made recipe ({best['objective']:.3f}): hand-made recipe kept"
    if hand_obj is not None and best["objective"] <= hand_obj:
        return None, (f"the best trial ({best['objective']:.3f}) does not beat the hand-made recipe "
                      f"({hand_obj:.3f}): hand-made recipe kept")
    beat = f" over the hand-made {hand_obj:.3f}" if hand_obj is not None else ""
    return best, f"tuned: {best['objective']:.3f}{beat}"


def run_search(dataset: str, scenario: str, methods, *, trials: int, out_dir: str | pathlib.Path,
               seed: int | tuple[int, ...] | list[int] = (100, 101), max_rte: float = 0.2,
               num_cpus: int | None = None, cpus_per_trial: int = 1, ray_address: str | None = None,
               cache_dir=None, recipes: str | None = None, asha: bool = True,
               progress: bool = False, retrain_time: str = "measure",
               max_retain_drop: float | None = None) -> dict:
    """Tunes each of ``methods`` on ``dataset``/``scenario`` and writes ``<out_dir>/recipes.toml``,
    ``trials.csv``, ``report.md`` and ``objective.png``. Returns ``{"rows", "best", "meta", "paths"}``.

    Args:
        trials: trials per method (the first evaluates the hand-made recipe).
        seed: the tuning seed, or seeds (never a reported one; default 100 and 101): a trial's
            objective is the mean over them; ``max_rte``: the time budget of a trial as a fraction
            of each seed's gold model's retraining time.
        num_cpus: CPUs of the local Ray (default: all); ignored with ``ray_address`` (a cluster).
        cpus_per_trial: CPUs (and torch threads) per trial; trials run concurrently on the rest.
        recipes: base recipes file (default: the shipped one).
        asha: stop trials whose per-epoch objective falls behind (ASHA).
        retrain_time: the budget's unit: "measure" it now or take the "cache"d gold model's time;
            ``max_retain_drop``: a trial losing more retain accuracy than this fraction is infeasible
            (see ``tune.objective.prepare``).
    """
    import os

    from ..checkpoints import default_cache_dir
    from .objective import prepare
    from .report import plot_objective, report_markdown, tuned_recipes, write_recipes, write_trials_csv

    seeds = check_tuning_seeds(seed)
    # every argument checked once, by the schema ``unlearnkit tune`` builds its flags from
    cfg = TuneConfig(dataset=dataset, scenario=scenario, methods=tuple(dict.fromkeys(methods)), tuning_seeds=seeds,
                     trials=trials, max_rte=max_rte, num_cpus=num_cpus, cpus_per_trial=cpus_per_trial,
                     retrain_time=retrain_time, max_retain_drop=max_retain_drop, asha=asha)
    methods = list(cfg.methods)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    problems = [prepare(dataset, scenario, methods, seed=s, max_rte=max_rte,
                        cache_dir=cache_dir or default_cache_dir(), recipes=recipes, progress=progress,
                        threads=cpus_per_trial, retrain_time=retrain_time, max_retain_drop=max_retain_drop)
                for s in seeds]
    problem = problems[0]
    import ray

    started_ray = not ray.is_initialized()
    init_ray(num_cpus, ray_address)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    rows: list[dict] = []
    try:
        for m in methods:
            rows += search_method(problems, m, trials=trials, out_dir=out_dir, cpus_per_trial=cpus_per_trial,
                                  max_concurrent=max(1, cpus // cpus_per_trial), seed=seeds[0], asha=asha)
    finally:
        if started_ray:
            ray.shutdown()
    wall = time.perf_counter() - t0
    starts = {m: start_point(m, problem.recipes.get(m, {}), scenario) for m in methods}
    decisions = {m: decide([r for r in rows if r["method"] == m], starts[m]) for m in methods}
    best = {m: d[0] for m, d in decisions.items()}
    meta = {"dataset": dataset, "scenario": scenario, "seed": problem.seed, "seeds": list(seeds),
            "decisions": {m: d[1] for m, d in decisions.items()}, "max_rte": problem.max_rte,
            "retrain_seconds": problem.retrain_seconds, "cached_retrain_seconds": problem.cached_retrain_seconds,
            "measured_retrain_seconds": problem.measured_retrain_seconds, "retrain_time": problem.retrain_time,
            "max_retain_drop": problem.max_retain_drop,
            "trials": trials, "cpus": cpus,
            "cpus_per_trial": cpus_per_trial, "wall_s": wall, "asha": asha, "gold": problem.gold,
            "original": problem.original, "methods": methods}
    paths = {k: out_dir / v for k, v in (("recipes", "recipes.toml"), ("trials", "trials.csv"),
                                         ("report", "report.md"), ("plot", "objective.png"), ("meta", "meta.json"))}
    tree = tuned_recipes(dataset, scenario, {m: b["params"] for m, b in best.items() if b}, recipes,
                         previous=paths["recipes"])
    header = (f"unlearnkit tune --dataset {dataset} --scenario {scenario} --methods {','.join(methods)} "
              f"--trials {trials} --tuning-seeds {','.join(map(str, seeds))} --max-rte {problem.max_rte:g}"
              + (f" --max-retain-drop {problem.max_retain_drop:g}" if problem.max_retain_drop is not None else "")
              + "\n"
              f"Tuned on the mean over tuning seeds {list(seeds)} (validation data only); see report.md beside this file.")
    write_recipes(paths["recipes"], tree, header)
    write_trials_csv(rows, paths["trials"])
    plot_objective(rows, paths["plot"])
    from .. import io

    io.write_text(paths["report"], report_markdown(rows, best, starts, meta))
    io.write_json(paths["meta"], {**meta, "pid": os.getpid()})
    return {"rows": rows, "best": best, "meta": meta, "paths": paths}


