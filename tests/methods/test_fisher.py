"""Fisher forgetting: the diagonal Fisher against a brute-force per-sample loop (one backward per
sample and class), the noise variances against a hand-worked case, and the run forgetting a random
forget set and a whole class (through the head's rows).

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

from unlearnkit.data import load_digits
from unlearnkit.methods.fisher import diagonal_fisher, noise_variance
from unlearnkit.models import SmallCNN


@pytest.fixture(scope="module")
def run(digits_scenario_runs):
    """``run(name, split=None, retain_n=None, scenario=None, **extra)``: the method's digits-recipe run
    (``digits_scenario_runs`` in ``shared_fixtures.py``)."""
    return digits_scenario_runs


def test_diagonal_fisher_equals_brute_force_per_sample_loop():
    torch.manual_seed(0)
    model = SmallCNN(1, 10, 8, channels=(2, 3), feature_dim=6)
    x = torch.from_numpy(load_digits().x_train[:13].numpy())
    ours = diagonal_fisher(model, x, batch_size=5)
    brute = {n: torch.zeros_like(q) for n, q in model.named_parameters()}
    model.eval()
    for i in range(len(x)):
        out = model(x[i:i + 1])
        prob = F.softmax(out, 1).detach()[0]
        for c in range(10):
            model.zero_grad()
            F.cross_entropy(out, torch.tensor([c])).backward(retain_graph=True)
            for n, q in model.named_parameters():
                brute[n] += prob[c] * q.grad.pow(2)
    for n in brute:
        torch.testing.assert_close(ours[n], brute[n] / len(x), rtol=1e-4, atol=1e-9)


def test_noise_variance_hand_worked():
    fisher = {"w": torch.tensor([[1.0, 1e-6], [4.0, 0.0]]), "b": torch.tensor([0.5, 1e4]),
              "head.w": torch.tensor([[1e-4, 1.0], [2.0, 1.0]])}
    v = noise_variance(fisher, alpha=0.1, head={"head.w"}, clamp=1e3, head_clamp=1e2, forget_classes=[1])
    # w: 1/F clamped at 1e3 -> [[1, 1e3], [0.25, 1e3]] * 0.1, row means
    torch.testing.assert_close(v["w"], torch.tensor([[50.05, 50.05], [50.0125, 50.0125]]), rtol=1e-5, atol=0)
    # b (1-D): [2, 1e-4] * 0.1 * 10
    torch.testing.assert_close(v["b"], torch.tensor([2.0, 1e-4]), rtol=1e-3, atol=0)
    # head: clamp 1e2 -> [[100, 1], [0.5, 1]] * 0.1 -> row means [5.05, 0.075]; class 1's row 1e-4; x10
    torch.testing.assert_close(v["head.w"], torch.tensor([[50.5, 50.5], [1e-3, 1e-3]]), rtol=1e-5, atol=0)


def test_fisher_forgetting_moves_forget_loss_and_keeps_retain(run):
    split, original, gold, out = run("fisher", retain_n=500)  # the Fisher is a mean: 500 samples estimate it
    assert _loss(out, split.forget) > 3 * _loss(original, split.forget)
    assert _acc(out, split.retain) >= 0.95


def test_fisher_removes_a_class_through_the_head_rows(class_split, run):
    split, original, gold, out = run("fisher", split=class_split, retain_n=500, scenario="class-3")
    assert _acc(out, split.forget) <= 0.05
    row = lambda m: float(m.classifier.weight[3].detach().abs().max())  # noqa: E731
    assert row(out) < 0.2 < row(original)
    assert _acc(out, split.retain) >= 0.9
