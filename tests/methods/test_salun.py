"""SalUn: the saliency mask's density and ranking (against the forget-gradient magnitudes computed
here), and only the salient weights moving.

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
from unlearnkit.methods import METHODS
from unlearnkit.methods.salun import saliency_mask


@pytest.fixture(scope="module")
def run(digits_recipe_runs):
    """``run(name, **extra)``: the method's digits-recipe run, made once per session and shared with
    ``test_recipes_digits.py`` (``digits_recipe_runs`` in ``shared_fixtures.py``)."""
    return digits_recipe_runs


def _salun_threshold():
    return method_recipe("digits", "salun").get("threshold", METHODS["salun"].Params().threshold)


def test_salun_mask_density_and_only_salient_weights_move(run):
    split, original, _, out, _ = run("salun")
    x, y = split.forget.tensors
    for fraction in (0.1, 0.5):
        mask = saliency_mask(original, x, y, fraction)
        n = sum(m.numel() for m in mask.values())
        assert sum(int(m.sum()) for m in mask.values()) == round(fraction * n)
    mask = saliency_mask(original, x, y, _salun_threshold())
    # the mask really ranks by forget-gradient magnitude: every salient |g| >= every other |g|
    m = copy.deepcopy(original).eval()
    F.cross_entropy(m(x), y).backward()
    g = torch.cat([q.grad.abs().flatten() for _, q in m.named_parameters()])
    flat = torch.cat([mask[n].flatten() for n, _ in m.named_parameters()])
    assert g[flat].min() >= g[~flat].max() * (1 - 1e-5)
    # unlearning changed salient weights only (and did change them)
    changed = moved = 0
    for (n, p0), (_, p1) in zip(original.named_parameters(), out.named_parameters()):
        assert torch.equal(p0[~mask[n]], p1[~mask[n]]), n
        moved += int((p0[mask[n]] != p1[mask[n]]).sum())
        changed += int(mask[n].sum())
    assert moved > 0.5 * changed
