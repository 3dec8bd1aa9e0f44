"""What every ``Method.unlearn`` call shares (``methods/base.py``), on real data (digits), shown with the
foundation baselines: the same seed gives the same model, ``inplace=True`` returns the model given,
callbacks see every step; and the digits reference models the method tests start from (the original
memorises its forget set, the gold model does not). The contract checks on the call's inputs are in
``test_contract.py``, the hyper-parameter schema and the registry in ``test_params.py``."""

import copy

import numpy as np
import torch
from helpers import accuracy_on as _acc
from helpers import loss_on as _loss

from unlearnkit.methods import get_method


def test_original_memorises_and_gold_does_not(digits_models):
    split, original, gold = digits_models
    assert _acc(original, split.forget) >= 0.99  # memorised (measured: all 144; a sample may flip elsewhere)
    assert _loss(gold, split.forget) > 2 * _loss(original, split.forget)


def test_same_seed_same_model_and_inplace_option(digits_models):
    split, original, _ = digits_models
    m = get_method("finetune")(epochs=1)
    a = m.unlearn(original, split.forget, split.retain, seed=3)
    b = m.unlearn(original, split.forget, split.retain, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    clone = copy.deepcopy(original)
    c = m.unlearn(clone, split.forget, split.retain, seed=3, inplace=True)
    assert c is clone


def test_callbacks_see_every_step(digits_models):
    split, original, _ = digits_models
    events = []
    get_method("neggrad")(epochs=2, batch_size=32).unlearn(original, split.forget, split.retain,
                                                           callbacks=[events.append])
    steps = 2 * int(np.ceil(len(split.forget_idx) / 32))
    assert len(events) == steps and events[-1].step == events[-1].total == steps
    assert all(np.isfinite(e.logs["loss"]) for e in events)
