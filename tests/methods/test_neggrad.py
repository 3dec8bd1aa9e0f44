"""NegGrad (gradient ascent on the forget set), on real data (digits) with its digits recipe: forget
accuracy falls and the forget loss rises far above the original's."""

from helpers import accuracy_on as _acc
from helpers import loss_on as _loss

from unlearnkit.bench.recipes import method_recipe
from unlearnkit.methods import get_method


def test_neggrad_lowers_forget_accuracy(digits_models):
    split, original, _ = digits_models
    out = get_method("neggrad")(**method_recipe("digits", "neggrad")).unlearn(original, split.forget, split.retain)
    assert _acc(out, split.forget) < _acc(original, split.forget) - 0.01
    assert _loss(out, split.forget) > 10 * _loss(original, split.forget)
