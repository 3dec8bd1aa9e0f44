"""UNSIR: the error-maximising noise raises the model's loss on its labels; the impair-repair
run forgets a random forget set and removes a whole class.

On real data (digits): the digits original model memorises its forget set (accuracy 1.0, loss
~0.001; the gold model's forget loss is several times larger), so "moves towards gold" is checked as
the forget loss rising well above the original's (or, for a removed class, forget accuracy falling to
the gold model's 0) while retained accuracy stays high.
"""

from __future__ import annotations

import pytest
import torch
from helpers import accuracy_on as _acc
from helpers import loss_on as _loss
from torch.nn import functional as F

from unlearnkit.methods.unsir import error_maximising_noise
from unlearnkit.training import predict


@pytest.fixture(scope="module")
def run(digits_scenario_runs):
    """``run(name, split=None, retain_n=None, scenario=None, **extra)``: the method's digits-recipe run
    (``digits_scenario_runs`` in ``shared_fixtures.py``)."""
    return digits_scenario_runs


def test_unsir_noise_maximises_the_error(digits_models):
    _, original, _ = digits_models
    labels = torch.arange(10).repeat(3)
    g = torch.Generator().manual_seed(0)
    start = torch.randn((30, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    noise = error_maximising_noise(original, labels, (1, 8, 8), lr=0.1, epochs=5, steps=8, reg=0.1, generator=g,
                                   device="cpu")
    assert torch.equal(torch.randn((30, 1, 8, 8), generator=torch.Generator().manual_seed(0)), start)
    ce = lambda x: float(F.cross_entropy(predict(original, x), labels))  # noqa: E731
    assert ce(noise) > ce(start) + 1.0


@pytest.mark.slow  # 180 s at load ~25 on 2 cores
def test_unsir_random_forgetting_moves_forget_loss_and_keeps_retain(run):
    split, original, gold, out = run("unsir")
    assert _loss(out, split.forget) > 3 * _loss(original, split.forget)
    assert _acc(out, split.retain) >= 0.97
    assert _acc(out, split.test) >= _acc(original, split.test) - 0.05


@pytest.mark.slow  # 5,120 noise images + the retain set through Adam: 316 s at load ~25 on 2 cores
def test_unsir_removes_a_class(class_split, run):
    # (a gold model for a removed class has forget accuracy 0 by construction)
    split, original, gold, out = run("unsir", split=class_split, scenario="class-3")
    assert _acc(original, split.forget) >= 0.99  # memorised (measured: all of it; a sample may flip elsewhere)
    assert _acc(out, split.forget) <= 0.05
    assert _acc(out, split.retain) >= 0.95
