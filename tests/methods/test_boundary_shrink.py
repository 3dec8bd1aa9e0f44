"""Boundary shrink: the nearest wrong labels against an independent FGSM step, and the fine-tuned
model giving the neighbour class more probability on the forget samples.

On real data (digits), with its digits recipe: the forget loss rises towards the gold model's (the
original memorises every forget sample: loss ~0.001, gold ~0.03), retained and unseen accuracy stay
close to the original's. Its effect and its logging, beside the other baselines', are in
``test_recipes_digits.py``.
"""

import copy

import pytest
import torch
from torch.nn import functional as F

from unlearnkit.bench.recipes import method_recipe
from unlearnkit.methods.boundary_shrink import nearest_wrong_labels
from unlearnkit.training import predict


@pytest.fixture(scope="module")
def run(digits_recipe_runs):
    """``run(name, **extra)``: the method's digits-recipe run, made once per session and shared with
    ``test_recipes_digits.py`` (``digits_recipe_runs`` in ``shared_fixtures.py``)."""
    return digits_recipe_runs


def test_boundary_shrink_trains_towards_the_nearest_wrong_class(run):
    split, original, _, out, _ = run("boundary_shrink")
    x, y = split.forget.tensors
    y_nbi = nearest_wrong_labels(original, x, y, bound=method_recipe("digits", "boundary_shrink").get("bound", 0.1))
    assert (y_nbi != y).all()
    # independent FGSM on a copy: where the step crosses the boundary, the label is its prediction
    m = copy.deepcopy(original).eval()
    xa = x.clone().requires_grad_(True)
    F.cross_entropy(m(xa), y).backward()
    with torch.no_grad():
        pred = m((x + 0.1 * xa.grad.sign()).clamp(0, 1)).argmax(1)
    crossed = pred != y
    assert torch.equal(y_nbi[crossed], pred[crossed])
    # the fine-tuned model gives the neighbour class more probability on forget samples
    p_before = F.softmax(predict(original, x), 1).gather(1, y_nbi[:, None]).mean()
    p_after = F.softmax(predict(out, x), 1).gather(1, y_nbi[:, None]).mean()
    assert p_after > 3 * p_before
