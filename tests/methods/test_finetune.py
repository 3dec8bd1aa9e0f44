"""Fine-tuning on the retain set, on real data (digits) with its digits recipe: the forget loss moves
towards the gold model's, retained accuracy stays, the original is not modified in place."""

import copy

import torch
from helpers import accuracy_on as _acc
from helpers import loss_on as _loss

from unlearnkit.bench.recipes import method_recipe
from unlearnkit.methods import get_method


def test_finetune_moves_forget_loss_towards_gold_and_keeps_retain(digits_models):
    split, original, gold = digits_models
    m = get_method("finetune")(**method_recipe("digits", "finetune"))
    before = {k: copy.deepcopy(v) for k, v in original.state_dict().items()}
    out = m.unlearn(original, split.forget, split.retain, seed=0)
    # never modified in place by default
    assert all(torch.equal(before[k], v) for k, v in original.state_dict().items())
    assert _loss(out, split.forget) > _loss(original, split.forget)
    assert _acc(out, split.retain) >= 0.99
