"""Random labels (fine-tuning with the forget set relabelled at random), on real data (digits) with its
digits recipe: the forget loss rises far above the original's, test accuracy stays."""

from helpers import accuracy_on as _acc
from helpers import loss_on as _loss

from unlearnkit.bench.recipes import method_recipe
from unlearnkit.methods import get_method


def test_random_labels_raises_forget_loss_and_keeps_test(digits_models):
    split, original, _ = digits_models
    out = get_method("random_labels")(**method_recipe("digits", "random_labels")).unlearn(
        original, split.forget, split.retain)
    assert _loss(out, split.forget) > 10 * _loss(original, split.forget)
    assert _acc(out, split.test) > _acc(original, split.test) - 0.03
