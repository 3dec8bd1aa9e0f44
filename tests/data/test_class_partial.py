"""The class-partial scenario ``class-C-P`` (TMU's setting: P% of one class) and the scenario syntax.

Oracle: counting by hand on the labels (numpy), and the split's own invariants recomputed here.
"""

from __future__ import annotations

import numpy as np
import pytest

from unlearnkit._validation import SCENARIO_HELP, check_scenario
from unlearnkit.data import load_digits, make_split


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.mark.parametrize("c, pct", [(0, 10), (3, 25), (9, 50)])
def test_selects_p_percent_of_class_c_only(digits, c, pct):
    split = make_split(digits, **check_scenario(f"class-{c}-{pct}", parsed=True), seed=0, heldout_fraction=0.2)
    y = digits.y_train.numpy()
    members = np.flatnonzero(y == c)
    assert split.description == f"class-{c}-{pct}"
    assert set(y[split.forget_idx]) == {c}
    assert len(split.forget_idx) == max(1, round(pct / 100 * len(members)))
    # the rest of the class stays: retained class-c samples = members - forgotten
    assert np.isin(members, split.retain_idx).sum() == len(members) - len(split.forget_idx)
    # held-out part (TMU's D_twin): only class c, disjoint from val and the evaluated test part
    yt = digits.y_test.numpy()
    ho = split.heldout_idx
    assert len(ho) > 0 and set(yt[ho]) == {c}
    assert not np.intersect1d(ho, split.test_idx).size and not np.intersect1d(ho, split.val_idx).size
    # every class-c test sample that is neither val nor evaluated is held out
    rest = np.setdiff1d(np.arange(len(yt)), np.union1d(split.test_idx, split.val_idx))
    assert np.array_equal(ho, rest[yt[rest] == c])


def test_deterministic_in_the_seed(digits):
    a = make_split(digits, forget="class_partial", forget_class=2, fraction=0.1, seed=5)
    b = make_split(digits, forget="class_partial", forget_class=2, fraction=0.1, seed=5)
    c = make_split(digits, forget="class_partial", forget_class=2, fraction=0.1, seed=6)
    assert np.array_equal(a.forget_idx, b.forget_idx) and a.fingerprint() == b.fingerprint()
    assert not np.array_equal(a.forget_idx, c.forget_idx)


def test_scenario_syntax_one_parser():
    assert check_scenario("class-0-10", parsed=True) == {"forget": "class_partial", "forget_class": 0, "fraction": 0.1}
    assert check_scenario("class-3", parsed=True) == {"forget": "class", "forget_class": 3}
    assert check_scenario("random-30", parsed=True) == {"forget": "random", "fraction": 0.3}
    assert check_scenario("backdoor-10", parsed=True) == {"forget": "backdoor", "fraction": 0.1}
    assert check_scenario("class-0-10") == "class-0-10"
    for bad, msg in [("class-0-0", "percent in \\(0, 100\\)"), ("class-0-100", "percent in \\(0, 100\\)"),
                     ("class-x-10", "integer label"), ("subclass-1-10", "no percent"), ("rand-10", "expected random"),
                     ("class-0-ten", "percent")]:
        with pytest.raises(ValueError, match=msg):
            check_scenario(bad, "--scenario")
    with pytest.raises(TypeError, match="--scenario: expected a string"):
        check_scenario(10, "--scenario")
    assert "class-<label>-<percent>" in SCENARIO_HELP


def test_class_partial_recipes_fall_back_and_override(recipes_file):
    from unlearnkit.bench.recipes import method_recipe

    path = recipes_file('''
[datasets.digits]
model = "mlp"
train = { epochs = 1 }
[datasets.digits.methods]
finetune = { epochs = 3, lr = 0.1 }
[datasets.digits.scenarios.class.methods]
finetune = { epochs = 9 }
[datasets.digits.scenarios.class_partial.methods]
finetune = { epochs = 5 }
[datasets.digits.scenarios."random-30".methods]
finetune = { lr = 0.2 }
''')
    assert method_recipe("digits", "finetune", path, "class-0") == {"epochs": 9, "lr": 0.1}
    assert method_recipe("digits", "finetune", path, "class-0-10") == {"epochs": 5, "lr": 0.1}
    assert method_recipe("digits", "finetune", path, "random-10") == {"epochs": 3, "lr": 0.1}
    assert method_recipe("digits", "finetune", path, "random-30") == {"epochs": 3, "lr": 0.2}


@pytest.mark.parametrize("scenario", ["class-0-10", "random-30"])
def test_every_method_runs_end_to_end_on_the_papers_scenarios(scenario, tmp_path):
    """``unlearnkit bench --scenario class-0-10`` (TMU's setting) and ``random-30`` (DLFD's) run every
    method to a row; on class-0-10 the forget set is class 0 only and gold forgets it selectively or
    not at all, never by more than it forgets retain."""
    from unlearnkit.bench import RunConfig, run
    from unlearnkit.methods import METHODS

    # class-0-10: every method; random-30: the random-forgetting methods of the papers (DLFD's setting) and
    # the ascent baselines whose recipe the larger share stresses
    methods = (tuple(m for m in METHODS if m != "retrain") if scenario == "class-0-10"
               else ("finetune", "neggrad", "neggrad_plus", "dlfd", "muda"))
    config = RunConfig(dataset="digits", scenario=scenario, seeds=(0,), methods=methods, features=False)
    with pytest.warns(UserWarning):  # DLFD's "targets random forgetting" (class-0-10) or its threshold note
        result = run(config, out_dir=tmp_path / "out", cache_dir=tmp_path / "cache", progress=False)
    rows = {r["model"]: r for r in result["rows"]}
    failed = {m: r["error"] for m, r in rows.items() if "error" in r}
    assert not failed, failed
    assert set(rows) == {"original", "gold", *methods}
    n_forget = rows["gold"]["n_forget"]
    if scenario == "class-0-10":
        y = load_digits().y_train.numpy()
        assert n_forget == round(0.1 * (y == 0).sum())
    else:
        assert n_forget == round(0.3 * len(load_digits().y_train))
    for r in rows.values():
        assert "selectivity" in r and 0.0 <= r["acc_forget"] <= 1.0
