"""The seven baselines of 2023/24 (NegGrad+, boundary shrink, l1-sparse, SCRUB, SalUn, bad teacher, SSD)
side by side, each with its shipped recipes: registered with its paper and a valid recipe for each
dataset; on real data (digits), with its digits recipe, the effect a broken method would not show;
the original left untouched and every step logged. Each method's own mechanism is checked in its own
file (``test_<method>.py``), on the same runs (``digits_recipe_runs`` in ``shared_fixtures.py``).

The forget loss rises towards the gold model's (the original memorises every forget sample: loss
~0.001, gold ~0.03, so 'moves towards gold' means at least several times the original's), retained
and unseen accuracy stay close to the original's.
"""

import numpy as np
import pytest
import torch
from helpers import accuracy_on as _acc
from helpers import loss_on as _loss
from helpers import state_copy as _state

from unlearnkit.bench.recipes import method_recipe
from unlearnkit.methods import METHODS, get_method

NEW = ("neggrad_plus", "boundary_shrink", "l1_sparse", "scrub", "salun", "bad_teacher", "ssd")


@pytest.fixture(scope="module")
def run(digits_recipe_runs):
    """``run(name, **extra)``: the method's digits-recipe run, made once per session and shared with
    the method's own file (``digits_recipe_runs`` in ``shared_fixtures.py``)."""
    return digits_recipe_runs


def test_all_registered_with_paper_and_recipes():
    assert set(NEW) <= set(METHODS)
    for name in NEW:
        cls = METHODS[name]
        assert cls.__doc__ and cls.paper and any(str(y) in cls.paper for y in (2023, 2024))
        for dataset in ("digits", "fashion-mnist"):
            recipe = method_recipe(dataset, name)
            assert recipe, f"no {dataset} recipe for {name}"
            cls(**recipe)  # every recipe field is a real hyper-parameter


@pytest.mark.parametrize("name", NEW)
def test_effect_on_digits(name, run):
    """Forget loss rises to at least 5x the original's and within reach of gold's; forget accuracy
    does not rise; retain and test accuracy stay within 3 points of the original."""
    split, original, gold, out, _ = run(name)
    lo, lg, lu = _loss(original, split.forget), _loss(gold, split.forget), _loss(out, split.forget)
    assert lu > 5 * lo, (name, lo, lu, lg)
    assert lu < 10 * lg + 0.5, (name, lo, lu, lg)  # not destroyed
    assert _acc(out, split.forget) <= _acc(original, split.forget)
    assert _acc(out, split.retain) >= _acc(original, split.retain) - 0.03
    assert _acc(out, split.test) >= _acc(original, split.test) - 0.03


@pytest.mark.parametrize("name", NEW)
def test_original_untouched_and_steps_logged(name, run):
    split, original, _, _, events = run(name)
    before = _state(original)
    get_method(name)(**method_recipe("digits", name)).unlearn(original, split.forget, split.retain, seed=1)
    assert all(torch.equal(before[k], v) for k, v in original.state_dict().items())
    assert events and all(e.source == name for e in events)
    for phase in {e.phase for e in events}:
        steps = [e for e in events if e.phase == phase]
        assert [e.step for e in steps] == list(range(1, len(steps) + 1))
        assert steps[-1].total == len(steps)
    assert all(np.isfinite(v) for e in events for v in e.logs.values())
