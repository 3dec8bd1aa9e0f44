"""NegGrad+: the forget (ascent) term does the forgetting (beta = 1, plain fine-tuning on the retain
set, barely moves the forget loss), and the logged loss is the beta-weighted sum of its terms.

On real data (digits), with its digits recipe: the forget loss rises towards the gold model's (the
original memorises every forget sample: loss ~0.001, gold ~0.03), retained and unseen accuracy stay
close to the original's. Its effect and its logging, beside the other baselines', are in
``test_recipes_digits.py``.
"""

import math

import pytest
from helpers import loss_on as _loss

from unlearnkit.bench.recipes import method_recipe
from unlearnkit.methods import get_method


@pytest.fixture(scope="module")
def run(digits_recipe_runs):
    """``run(name, **extra)``: the method's digits-recipe run, made once per session and shared with
    ``test_recipes_digits.py`` (``digits_recipe_runs`` in ``shared_fixtures.py``)."""
    return digits_recipe_runs


def test_neggrad_plus_the_forget_term_does_the_forgetting(run):
    """beta = 1 drops the ascent term (plain fine-tuning on the retain set): the same recipe then
    barely raises the forget loss."""
    split, original, _, out, events = run("neggrad_plus")
    only_retain = get_method("neggrad_plus")(**{**method_recipe("digits", "neggrad_plus"), "beta": 1.0}).unlearn(
        original, split.forget, split.retain, seed=0)
    assert _loss(out, split.forget) > 3 * _loss(only_retain, split.forget)
    beta = method_recipe("digits", "neggrad_plus")["beta"]
    e = events[0].logs
    assert math.isclose(e["loss"], beta * e["retain_loss"] - (1 - beta) * e["forget_loss"], rel_tol=1e-4, abs_tol=1e-6)
    with pytest.raises(ValueError, match="beta"):
        get_method("neggrad_plus")(beta=1.5)
