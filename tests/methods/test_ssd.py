"""SSD (selective synaptic dampening): exactly the selected weights change, by the formula, against
importances computed here with torch.func; a huge selection threshold changes nothing.

On real data (digits), with its digits recipe: the forget loss rises towards the gold model's (the
original memorises every forget sample: loss ~0.001, gold ~0.03), retained and unseen accuracy stay
close to the original's. Its effect and its logging, beside the other baselines', are in
``test_recipes_digits.py``.
"""

import copy
import math

import pytest
import torch
from torch.nn import functional as F

from unlearnkit.bench.recipes import method_recipe
from unlearnkit.methods import METHODS, get_method


@pytest.fixture(scope="module")
def run(digits_recipe_runs):
    """``run(name, **extra)``: the method's digits-recipe run, made once per session and shared with
    ``test_recipes_digits.py`` (``digits_recipe_runs`` in ``shared_fixtures.py``)."""
    return digits_recipe_runs


def _direct_importance(model, x, y, batch_size):
    """mean over consecutive batches of the squared gradient of the batch-mean CE (computed here
    with torch.func on a copy, independently of the method's code)."""
    m = copy.deepcopy(model).eval()
    params = {k: v.detach() for k, v in m.named_parameters()}
    out = {k: torch.zeros_like(v) for k, v in params.items()}
    n_b = math.ceil(len(y) / batch_size)

    def batch_loss(p, xb, yb):
        return F.cross_entropy(torch.func.functional_call(m, p, (xb,)), yb)

    for b in range(n_b):
        g = torch.func.grad(batch_loss)(params, x[b * batch_size:(b + 1) * batch_size],
                                        y[b * batch_size:(b + 1) * batch_size])
        for k in out:
            out[k] += g[k] ** 2
    return {k: v / n_b for k, v in out.items()}


def test_ssd_changes_exactly_the_selected_weights_by_the_formula(run):
    split, original, _, out, _ = run("ssd")
    p = METHODS["ssd"].Params(**method_recipe("digits", "ssd"))
    xf, yf = split.forget.tensors
    xr, yr = split.retain.tensors
    i_f = _direct_importance(original, xf, yf, p.batch_size)
    i_d = _direct_importance(original, torch.cat([xr, xf]), torch.cat([yr, yf]), p.batch_size)
    n_sel = 0
    for (n, w0), (_, w1) in zip(original.named_parameters(), out.named_parameters()):
        sel = i_f[n] > p.selection * i_d[n]
        # borderline ties within float error may go either way; everything else must match
        near = (i_f[n] - p.selection * i_d[n]).abs() <= 1e-4 * i_f[n].abs()
        expect = torch.where(sel, w0 * torch.clamp(p.dampening * i_d[n] / i_f[n], max=1.0), w0)
        ok = torch.isclose(w1, expect, rtol=1e-4, atol=1e-7) | near
        assert ok.all(), n
        assert torch.equal(w1[~sel & ~near], w0[~sel & ~near])
        n_sel += int(sel.sum())
    assert n_sel > 0
    # a huge alpha selects nothing: the model comes back unchanged
    same = get_method("ssd")(selection=1e12).unlearn(original, split.forget, split.retain)
    assert all(torch.equal(a, b) for a, b in zip(original.parameters(), same.parameters()))
