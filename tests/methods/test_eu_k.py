"""EU-k (exact unlearning of the last k layers): the last k layers re-initialised (against the
same draws made by hand), the others kept, and the retrained head forgets.

On real data (digits): the digits original model memorises its forget set (accuracy 1.0, loss
~0.001; the gold model's forget loss is several times larger), so "moves towards gold" is checked as
the forget loss rising well above the original's (or, for a removed class, forget accuracy falling to
the gold model's 0) while retained accuracy stays high.
"""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import accuracy_on as _acc
from helpers import loss_on as _loss

from unlearnkit.methods import get_method


@pytest.fixture(scope="module")
def run(digits_scenario_runs):
    """``run(name, split=None, retain_n=None, scenario=None, **extra)``: the method's digits-recipe run
    (``digits_scenario_runs`` in ``shared_fixtures.py``)."""
    return digits_scenario_runs


def test_eu_k_reinitialises_the_last_k_layers(digits_models):
    split, original, _ = digits_models
    out = get_method("eu_k")(k=2, epochs=0).unlearn(original, split.forget, split.retain, seed=5)
    # oracle: the same draws by hand (torch.manual_seed(seed), reset in forward order)
    fc, head = copy.deepcopy(original.fc[1]), copy.deepcopy(original.classifier)
    torch.manual_seed(5)
    fc.reset_parameters()
    head.reset_parameters()
    assert torch.equal(out.fc[1].weight, fc.weight) and torch.equal(out.classifier.bias, head.bias)
    assert not torch.equal(out.classifier.weight, original.classifier.weight)
    for name in ("conv.0.weight", "conv.3.bias"):
        assert torch.equal(out.state_dict()[name], original.state_dict()[name])


def test_eu_k_forgets_and_keeps_retain(run):
    split, original, gold, out = run("eu_k")
    for name in ("conv.0.weight", "conv.3.weight"):
        assert torch.equal(out.state_dict()[name], original.state_dict()[name])
    assert _loss(out, split.forget) > 3 * _loss(original, split.forget)
    assert _acc(out, split.retain) >= 0.97
    assert _acc(out, split.test) >= _acc(original, split.test) - 0.04
