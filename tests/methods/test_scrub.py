"""SCRUB: the same seed gives the same model; the student leaves the teacher on the forget set more
than on the retain set, with as many max-steps as the recipe says.

On real data (digits), with its digits recipe: the forget loss rises towards the gold model's (the
original memorises every forget sample: loss ~0.001, gold ~0.03), retained and unseen accuracy stay
close to the original's. Its effect and its logging, beside the other baselines', are in
``test_recipes_digits.py``.
"""

import math

import pytest
import torch
from torch.nn import functional as F

from unlearnkit.bench.recipes import method_recipe
from unlearnkit.methods import get_method
from unlearnkit.training import predict


@pytest.fixture(scope="module")
def run(digits_recipe_runs):
    """``run(name, **extra)``: the method's digits-recipe run, made once per session and shared with
    ``test_recipes_digits.py`` (``digits_recipe_runs`` in ``shared_fixtures.py``)."""
    return digits_recipe_runs


def test_same_seed_same_model(digits_models):
    split, original, _ = digits_models
    m = get_method("scrub")(**method_recipe("digits", "scrub"))
    a = m.unlearn(original, split.forget, split.retain, seed=4)
    b = m.unlearn(original, split.forget, split.retain, seed=4)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_scrub_student_leaves_teacher_on_forget_more_than_on_retain(run):
    split, original, _, out, events = run("scrub")
    recipe = method_recipe("digits", "scrub")
    assert {e.phase for e in events} == {"max-forget", "min-retain"}

    def kl(ds):
        x, _ = ds.tensors
        t, s = F.log_softmax(predict(original, x), 1), F.log_softmax(predict(out, x), 1)
        return float(F.kl_div(s, t, log_target=True, reduction="batchmean"))

    assert kl(split.forget) > 2 * kl(split.retain)
    n_max = sum(e.phase == "max-forget" for e in events)
    assert n_max == min(recipe.get("msteps", 2), recipe.get("epochs", 3)) * math.ceil(
        len(split.forget_idx) / recipe["forget_batch_size"])
