"""unlearnkit tune: search spaces from Params metadata into Ray/Optuna, an objective that never
touches the reported test split or seeds, failed trials recorded (never a crash), and the CLI
end to end on a local Ray (digits, a cheap training recipe)."""

from __future__ import annotations

import csv
import dataclasses
import json
import math

import numpy as np
import pytest
import torch

pytest.importorskip("optuna", reason="unlearnkit tune needs optuna (the [cluster] extra)")
pytest.importorskip("ray.tune", reason="unlearnkit tune needs ray[tune] (the [cluster] extra)")

from unlearnkit import tune as T  # noqa: E402
from unlearnkit._validation import Space, check_params  # noqa: E402
from unlearnkit.bench.recipes import dataset_recipe, load_recipes, method_recipe  # noqa: E402
from unlearnkit.data import load_dataset  # noqa: E402
from unlearnkit.data.forget import UnlearningSplit  # noqa: E402
from unlearnkit.methods import METHODS, get_method  # noqa: E402

# Digits with a short training recipe: the original and gold models train in about a second.
SMALL_RECIPES = """
[datasets.digits]
model = "small-cnn"
train = { epochs = 4, batch_size = 64, lr = 0.05, momentum = 0.9, weight_decay = 5e-4 }

[datasets.digits.methods]
finetune = { epochs = 2, lr = 0.02, batch_size = 64 }
neggrad = { epochs = 1, lr = 0.01, batch_size = 32 }
"""


@pytest.fixture(scope="module")
def recipes(recipes_file):
    return recipes_file(SMALL_RECIPES, "small.toml")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One checkpoint cache for the module: the tuning seed's two models are trained once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def problem(recipes, cache):
    return T.prepare("digits", "random-10", ["finetune", "neggrad"], recipes=recipes, max_rte=1e3, cache_dir=cache)


# ------------------------------------------------------------------------------------- spaces
@pytest.mark.parametrize("name", sorted(n for n in METHODS if T.method_space(n)))
def test_search_space_round_trips_from_metadata_into_ray_and_optuna(name):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    from ray.tune.search.optuna import OptunaSearch

    declared = T.method_space(name)
    optuna_space = OptunaSearch.convert_search_space(T.ray_space(name))
    assert set(optuna_space) == set(declared)
    for field, s in declared.items():
        d = optuna_space[field]
        if s.kind in ("log", "float"):
            assert d == FloatDistribution(s.low, s.high, log=s.kind == "log"), (field, d)
        elif s.kind == "int":  # both ends included, as declared
            assert d == IntDistribution(int(s.low), int(s.high), log=s.log), (field, d)
        else:
            assert d == CategoricalDistribution(s.choices), (field, d)
    # points sampled by Ray become valid hyper-parameters inside the declared ranges
    ray_space = T.ray_space(name)
    rng_points = [{k: dom.sample() for k, dom in ray_space.items()} for _ in range(25)]
    for point in rng_points:
        hp = T.to_hparams(name, point)
        for field, v in hp.items():
            assert declared[field].contains(v), (field, v)
            assert isinstance(v, int) if declared[field].kind == "int" else True
        get_method(name)(**hp)


@pytest.mark.parametrize("name", sorted(n for n in METHODS if "stop" in T.method_space(n)))
def test_whole_class_scenarios_leave_val_match_out_of_the_space(name):
    # the held-out rule refuses whole-class forgetting: a search there must not draw it
    assert "val-match" in T.method_space(name)["stop"].choices
    assert "val-match" in T.method_space(name, "random-10")["stop"].choices
    assert "val-match" in T.method_space(name, "class-0-10")["stop"].choices  # class-partial: it applies
    assert T.method_space(name, "class-0")["stop"].choices == ("none",)
    assert T.ray_space(name, "class-3")["stop"].categories == ["none"]
    assert T.start_point(name, {"stop": "val-match"}, "class-0")["stop"] == "none"
    assert T.start_point(name, {"stop": "val-match"}, "random-10")["stop"] == "val-match"


def test_a_none_default_starts_in_the_middle_of_its_range():
    # DLFD's epsilon defaults to None (the method picks its ball); a recipe without it starts the
    # search at the geometric middle of its log range, 1e-3..0.3
    start = T.start_point("dlfd", {})
    assert start["epsilon"] == pytest.approx((1e-3 * 0.3) ** 0.5)
    assert T.start_point("dlfd", {"epsilon": 0.1})["epsilon"] == 0.1


def test_integer_ranges_reach_both_ends():
    # Ray's randint excludes its upper bound; the declared range includes it
    dom = T.ray_domain(Space("int", 1, 3))
    seen = {dom.sample() for _ in range(200)}
    assert seen == {1, 2, 3}


def test_hand_made_recipes_lie_inside_the_search_spaces():
    # the search starts from the hand-made recipe, so every shipped value must be inside its range
    for ds, sec in load_recipes()["datasets"].items():
        tables = [sec.get("methods", {})] + [v.get("methods", {}) for v in sec.get("scenarios", {}).values()]
        for table in tables:
            for m, hp in table.items():
                for field, s in T.method_space(m).items():
                    if field in hp:
                        assert s.contains(hp[field]), (ds, m, field, hp[field], s)
    start = T.start_point("scrub", method_recipe("digits", "scrub"))
    assert start["lr"] == 0.025 and start["forget_batch_size"] == 32
    assert T.start_point("finetune", {"lr": 5.0})["lr"] == 0.1  # clipped into the range


# ------------------------------------------------------------------------------------ isolation
def test_the_objective_never_touches_the_test_split_or_a_reported_seed(problem, recipes, cache, tmp_path,
                                                                       monkeypatch):
    for seed in (0, 1, 2, 9):
        with pytest.raises(ValueError, match=r"^seed: expected a tuning seed outside the reported seeds 0\.\.9"):
            T.prepare("digits", "random-10", ["finetune"], seed=seed, recipes=recipes, cache_dir=tmp_path)
    assert problem.seed == 100
    # the budget's unit: one epoch of retraining timed now x 4 epochs; the cached time kept beside it
    assert 0 < problem.retrain_seconds < math.inf and problem.cached_retrain_seconds > 0
    data = load_dataset("digits")
    # validation and the reported test part are disjoint pieces of the test split
    assert np.intersect1d(problem.val_idx, problem.test_idx).size == 0
    assert len(problem.val_idx) + len(problem.test_idx) + len(problem.heldout_idx) == len(data.y_test)
    assert 0.1 < len(problem.val_idx) / len(data.y_test) < 0.3
    # the trials' data holds no reported test sample (the tripwire) and the validation rows intact
    assert torch.isnan(problem.data.x_test[torch.from_numpy(problem.test_idx)]).all()
    assert torch.equal(problem.data.x_test[torch.from_numpy(problem.val_idx)],
                       data.x_test[torch.from_numpy(problem.val_idx)])
    assert torch.equal(problem.data.x_train, data.x_train)

    # every split the objective makes is the tuning seed's
    import unlearnkit.tune.objective as O

    seeds = []
    real = O.make_split
    monkeypatch.setattr(O, "make_split", lambda *a, **k: seeds.append(k["seed"]) or real(*a, **k))
    again = T.prepare("digits", "random-10", ["finetune"], recipes=recipes, cache_dir=cache)  # from the cache
    assert seeds == [100] and again.seed == 100 and np.array_equal(again.val_idx, problem.val_idx)

    row = T.score_trial(problem, "finetune", {"lr": 0.02, "epochs": 2})
    assert row["status"] == "ok" and math.isfinite(row["objective"]), row

    # the objective's metrics are the bench's on validation data (evaluate_model on a view whose
    # evaluated part is the validation part: the same rows, the same seed)
    from unlearnkit.bench.evaluate import evaluate_model

    model = problem.build_original()
    extra = {"val_idx": np.zeros(0, np.int64)} if "val_idx" in {f.name for f in dataclasses.fields(UnlearningSplit)} \
        else {}
    view = UnlearningSplit(problem.data, problem.forget_idx, problem.retain_idx, "random-10", problem.seed,
                           test_idx=problem.val_idx, **extra)
    ref = evaluate_model(model, view, seed=problem.seed, features=False)
    ours = T.evaluate_val(model, problem)
    for k_ours, k_ref in (("acc_forget", "acc_forget"), ("acc_retain", "acc_retain"), ("acc_val", "acc_test"),
                          ("mia", "mia"), ("ua", "ua")):
        assert ours[k_ours] == pytest.approx(ref[k_ref], abs=1e-12), k_ours

    # a problem whose validation overlaps the reported test part is refused loudly, not scored
    leaky = dataclasses.replace(problem, val_idx=np.union1d(problem.val_idx, problem.test_idx[:3]))
    with pytest.raises(T.LeakError):
        T.score_trial(leaky, "finetune", {"lr": 0.02, "epochs": 1})
    with pytest.raises(T.LeakError):
        T.score_trial(dataclasses.replace(problem, seed=1), "finetune", {"lr": 0.02, "epochs": 1})


def test_a_cached_unit_far_from_retraining_timed_now_is_named(problem, recipes, cache, monkeypatch):
    # hand-worked ratios: within 1.5 x either way, silence; beyond, a warning naming both times
    import warnings

    from unlearnkit.tune import objective as O
    from unlearnkit.tune.report import _unit

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert O.check_cached_unit(60.0, 50.0) == pytest.approx(1.2)
        assert O.check_cached_unit(40.0, 59.0) == pytest.approx(40 / 59)
    with pytest.warns(UserWarning, match=r"took 238\.4 s, 4\.00 x retraining timed now \(59\.6 s.*4\.00 x looser"):
        O.check_cached_unit(238.4, 59.6)
    with pytest.warns(UserWarning, match=r"0\.25 x tighter"):
        O.check_cached_unit(10.0, 40.0)
    # prepare() in cache mode: the cached gold's recorded time, made 20 x what it was, is the unit;
    # the warning says so, and retraining is timed now in both modes
    real = O._train_reference

    def slow_gold(kind, *a, **k):
        model, meta = real(kind, *a, **k)
        return model, ({**meta, "seconds": 20 * meta["seconds"]} if kind == "gold" else meta)

    monkeypatch.setattr(O, "_train_reference", slow_gold)
    with pytest.warns(UserWarning, match=r"retrain_time: the cached gold model's training took .* looser"):
        cached = T.prepare("digits", "random-10", ["finetune"], recipes=recipes, max_rte=1e3, cache_dir=cache,
                           retrain_time="cache")
    assert cached.retrain_time == "cache" and cached.retrain_seconds == cached.cached_retrain_seconds
    assert cached.cached_retrain_seconds == pytest.approx(20 * problem.cached_retrain_seconds)
    assert 0 < cached.measured_retrain_seconds < cached.retrain_seconds
    assert problem.retrain_time == "measure" and problem.retrain_seconds == problem.measured_retrain_seconds
    # the report states which unit the budget used and flags the disagreement
    meta = {"retrain_seconds": 238.4, "cached_retrain_seconds": 238.4, "measured_retrain_seconds": 59.6,
            "retrain_time": "cache"}
    assert "238.4 s: the cached gold model's recorded training time; retraining timed now: 59.6 s; ⚠ 4.00 x" in _unit(meta)
    assert "⚠" not in _unit({**meta, "measured_retrain_seconds": 200.0})
    assert _unit({**meta, "retrain_time": "measure", "retrain_seconds": 59.6}).startswith("59.6 s: one epoch timed now")


def test_a_trial_that_loses_more_retain_accuracy_than_allowed_is_infeasible(problem, recipes, cache):
    import dataclasses

    # a damaging point: gradient ascent at a large step; its retain drop, measured without a limit, is the oracle
    config = {"lr": 0.01, "epochs": 1, "batch_size": 32}  # digits: ~14 points of retain accuracy lost
    free = T.score_trial(problem, "neggrad", config, intermediate=False)
    assert free["status"] == "ok"
    drop = problem.original["acc_retain"] - free["acc_retain"]
    assert drop > 0.02
    tight = T.score_trial(dataclasses.replace(problem, max_retain_drop=drop / 2), "neggrad", config, intermediate=False)
    assert tight["status"] == "infeasible" and tight["score"] == T.INFEASIBLE_SCORE
    assert f"retain accuracy {100 * drop:.1f} points below the original's" in tight["error"]
    assert tight["objective"] == pytest.approx(free["objective"])  # scored, then ruled out
    loose = T.score_trial(dataclasses.replace(problem, max_retain_drop=drop + 0.01), "neggrad", config,
                          intermediate=False)
    assert loose["status"] == "ok"
    with pytest.raises(ValueError, match=r"^max_retain_drop: expected None or a fraction in \[0, 1\].*got 5"):
        T.prepare("digits", "random-10", ["finetune"], recipes=recipes, cache_dir=cache, max_retain_drop=5)


def test_objective_is_mean_closed_and_falls_back_to_the_average_gap():
    o = {"acc_forget": 1.0, "acc_retain": 1.0, "acc_val": 0.9, "mia": 0.10}
    g = {"acc_forget": 0.9, "acc_retain": 0.995, "acc_val": 0.9, "mia": 0.30}
    m = {"acc_forget": 0.95, "acc_retain": 0.99, "acc_val": 0.9, "mia": 0.25}
    obj, per = T.mean_closed(m, o, g)
    # by hand: forget 1 - 5/10 = 0.5; MIA 1 - 5/20 = 0.75; retain (0.5 point) and val (0) undefined
    assert per["acc_forget"] == pytest.approx(0.5) and per["mia"] == pytest.approx(0.75)
    assert math.isnan(per["acc_retain"]) and math.isnan(per["acc_val"])
    assert obj == pytest.approx(0.625)
    near = {k: v + 0.001 for k, v in g.items()}
    obj2, _ = T.mean_closed(m, near, g)  # original within 1 point everywhere: 1 - avg gap / original's
    gap = np.mean([abs(m[k] - g[k]) for k in g])
    assert obj2 == pytest.approx(1 - gap / 0.001)


# ------------------------------------------------------------------------------------- failures
def test_a_diverging_trial_is_recorded_as_failed(problem):
    row = T.score_trial(problem, "finetune", {"lr": 1e6, "epochs": 1})  # lr far outside any sane range
    assert row["status"] == "failed" and row["score"] == T.FAILED_SCORE and math.isnan(row["objective"])
    assert "non-finite" in row["error"] or "NaN" in row["error"], row["error"]
    bad = T.score_trial(problem, "finetune", {"epochs": -1})  # a method that refuses its values
    assert bad["status"] == "failed" and "finetune.epochs" in bad["error"]
    slow = T.score_trial(dataclasses.replace(problem, max_rte=1e-6), "finetune", {"lr": 0.02, "epochs": 3})
    assert slow["status"] == "infeasible" and slow["score"] == T.INFEASIBLE_SCORE
    assert slow["seconds"] < 0.5 * problem.retrain_seconds + 1  # stopped at the budget, not run to the end


def test_a_trials_cost_counts_what_the_method_loaded_from_a_cache(problem, monkeypatch):
    """``Method.last_cached_seconds`` (TMU's cached curriculum model) is part of a trial's time: a
    trial after another on the same tuning seed is not made cheaper by the cache."""
    from unlearnkit.methods.base import Method

    real = Method.unlearn
    budget = problem.max_rte * problem.retrain_seconds

    def unlearn(self, *a, **k):
        out = real(self, *a, **k)
        self.last_cached_seconds = 2 * budget
        return out

    plain = T.score_trial(problem, "finetune", {"lr": 0.02, "epochs": 1})
    monkeypatch.setattr(Method, "unlearn", unlearn)
    row = T.score_trial(problem, "finetune", {"lr": 0.02, "epochs": 1})
    assert plain["status"] == "ok" and plain["seconds"] < budget
    assert row["status"] == "infeasible" and row["seconds"] >= 2 * budget
    assert row["rte"] == pytest.approx(row["seconds"] / problem.retrain_seconds)


@pytest.mark.slow  # a Ray experiment (actor start-up, Optuna): 80 s at load ~25 on 2 cores
def test_failed_trials_on_ray_are_rows_not_a_crash(problem, local_ray, tmp_path):
    # an original model with a NaN weight: every trial diverges; the search finishes and records them
    state = {k: v.clone() for k, v in problem.original_state.items()}
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first].view(-1)[0] = float("nan")
    broken = dataclasses.replace(problem, original_state=state)
    rows = T.search_method(broken, "neggrad", trials=2, out_dir=tmp_path, asha=False)
    assert len(rows) == 2
    assert all(r["status"] == "failed" and r["score"] == T.FAILED_SCORE for r in rows), rows
    assert all(r["error"] for r in rows)


# ------------------------------------------------------------------------------------------ CLI
@pytest.mark.slow  # two Ray experiments of 4 trials, then their restore: 190 s at load ~25 on 2 cores
def test_cli_tune_digits_finetune_neggrad_on_a_local_ray(recipes, cache, tmp_path, local_ray):
    from unlearnkit.cli import main

    out = tmp_path / "tuned"
    argv = ["tune", "--dataset", "digits", "--methods", "finetune,neggrad", "--trials", "4", "--max-rte", "10", "--seed", "100",
            "--recipes", recipes, "--out", str(out), "--cache-dir", str(cache), "--quiet"]
    assert main(argv) == 0
    with open(out / "trials.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8 and {r["method"] for r in rows} == {"finetune", "neggrad"}
    assert {r["status"] for r in rows} <= {"ok", "infeasible", "failed", "early-stopped"}
    assert all(r["params"] and r["seconds"] for r in rows)
    # the first point of each search is the hand-made recipe
    for m, start in (("finetune", {"batch_size": 64, "epochs": 2, "lr": 0.02, "stop": "none"}),
                     ("neggrad", {"batch_size": 32, "epochs": 1, "lr": 0.01, "stop": "none"})):
        assert start in [json.loads(r["params"]) for r in rows if r["method"] == m]
    # recipes.toml: a complete digits section bench can load, holding the best feasible trial's values
    tuned = str(out / "recipes.toml")
    load_recipes.cache_clear()
    assert dataset_recipe("digits", tuned)["train"] == dataset_recipe("digits", recipes)["train"]
    starts = {"finetune": {"batch_size": 64, "epochs": 2, "lr": 0.02, "stop": "none"},
              "neggrad": {"batch_size": 32, "epochs": 1, "lr": 0.01, "stop": "none"}}
    for m in ("finetune", "neggrad"):
        ok = [r for r in rows if r["method"] == m and r["status"] == "ok"]
        rec = method_recipe("digits", m, tuned)
        get_method(m)(**rec)
        check_params(get_method(m).Params, rec)
        hand = [r for r in rows if r["method"] == m and json.loads(r["params"]) == starts[m]][0]
        best = max(ok, key=lambda r: float(r["objective"]), default=None)
        hand_obj = float(hand["objective"]) if hand["objective"] not in ("", "nan") else math.nan
        if best is not None and float(best["objective"]) > 0 and best is not hand and not (
                float(best["objective"]) <= hand_obj):
            # the tuned values are written only when they beat the hand-made recipe and doing nothing
            assert {k: rec[k] for k in json.loads(best["params"])} == json.loads(best["params"])
        else:  # otherwise the hand-made recipe stays, as it was
            assert rec == method_recipe("digits", m, recipes)
    report = (out / "report.md").read_text()
    assert "| finetune |" in report and "| neggrad |" in report and "objective.png" in report
    assert (out / "objective.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # resumable: the same command restores the finished experiments and runs no new trial
    assert main(argv) == 0
    with open(out / "trials.csv") as fh:
        again = list(csv.DictReader(fh))
    assert [(r["method"], r["params"], r["objective"]) for r in again] == \
        [(r["method"], r["params"], r["objective"]) for r in rows]
