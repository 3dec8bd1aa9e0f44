"""l1-sparse: the penalty shrinks the weights' l1 norm more than the same run without it, and its
weight alpha decays linearly over the epochs.

On real data (digits), with its digits recipe: the forget loss rises towards the gold model's (the
original memorises every forget sample: loss ~0.001, gold ~0.03), retained and unseen accuracy stay
close to the original's. Its effect and its logging, beside the other baselines', are in
``test_recipes_digits.py``.
"""

import numpy as np
import pytest
import torch

from unlearnkit.bench.recipes import method_recipe
from unlearnkit.methods import get_method
from unlearnkit.methods.l1_sparse import l1_norm


@pytest.fixture(scope="module")
def run(digits_recipe_runs):
    """``run(name, **extra)``: the method's digits-recipe run, made once per session and shared with
    ``test_recipes_digits.py`` (``digits_recipe_runs`` in ``shared_fixtures.py``)."""
    return digits_recipe_runs


def test_l1_sparse_shrinks_the_l1_norm_more_than_without_penalty(digits_models):
    split, original, _ = digits_models
    recipe = method_recipe("digits", "l1_sparse")
    with_l1 = get_method("l1_sparse")(**recipe).unlearn(original, split.forget, split.retain)
    without = get_method("l1_sparse")(**{**recipe, "alpha": 0.0}).unlearn(original, split.forget, split.retain)
    with torch.no_grad():
        n_o, n_l1, n_0 = float(l1_norm(original)), float(l1_norm(with_l1)), float(l1_norm(without))
    assert n_l1 < n_0 - 0.01 * n_o and n_l1 < n_o


def test_l1_sparse_alpha_decays_linearly(run):
    _, _, _, _, events = run("l1_sparse")
    epochs = method_recipe("digits", "l1_sparse")["epochs"]
    alpha = method_recipe("digits", "l1_sparse")["alpha"]
    per_epoch = len(events) // epochs
    seen = [events[e * per_epoch].logs["alpha"] for e in range(epochs)]
    assert np.allclose(seen, [alpha * (1 - e / epochs) for e in range(epochs)])
