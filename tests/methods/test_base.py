"""The three foundation baselines behind the one interface, on real data (digits)."""

import copy

import numpy as np
import pytest
import torch
from helpers import accuracy_on as _acc
from helpers import loss_on as _loss

from unlearnkit.bench.recipes import method_recipe
from unlearnkit.methods import METHODS, get_method


def test_original_memorises_and_gold_does_not(digits_models):
    split, original, gold = digits_models
    assert _acc(original, split.forget) >= 0.99  # memorised (measured: all 144; a sample may flip elsewhere)
    assert _loss(gold, split.forget) > 2 * _loss(original, split.forget)


def test_finetune_moves_forget_loss_towards_gold_and_keeps_retain(digits_models):
    split, original, gold = digits_models
    m = get_method("finetune")(**method_recipe("digits", "finetune"))
    before = {k: copy.deepcopy(v) for k, v in original.state_dict().items()}
    out = m.unlearn(original, split.forget, split.retain, seed=0)
    # never modified in place by default
    assert all(torch.equal(before[k], v) for k, v in original.state_dict().items())
    assert _loss(out, split.forget) > _loss(original, split.forget)
    assert _acc(out, split.retain) >= 0.99


def test_neggrad_lowers_forget_accuracy(digits_models):
    split, original, _ = digits_models
    out = get_method("neggrad")(**method_recipe("digits", "neggrad")).unlearn(original, split.forget, split.retain)
    assert _acc(out, split.forget) < _acc(original, split.forget) - 0.01
    assert _loss(out, split.forget) > 10 * _loss(original, split.forget)


def test_random_labels_raises_forget_loss_and_keeps_test(digits_models):
    split, original, _ = digits_models
    out = get_method("random_labels")(**method_recipe("digits", "random_labels")).unlearn(
        original, split.forget, split.retain)
    assert _loss(out, split.forget) > 10 * _loss(original, split.forget)
    assert _acc(out, split.test) > _acc(original, split.test) - 0.03


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


def test_registry_and_bad_hyperparameters():
    assert {"finetune", "neggrad", "random_labels", "retrain"} <= set(METHODS)
    with pytest.raises(ValueError, match="method"):
        get_method("nope")
    with pytest.raises(TypeError, match="hparams.*lrr"):
        get_method("finetune")(lrr=0.1)


def test_bad_inputs_name_the_argument(digits_models):
    split, original, _ = digits_models
    m = get_method("finetune")(epochs=1)
    x, y = split.forget.tensors
    with pytest.raises(ValueError, match="forget: expected labels in \\[0, 10\\)"):
        m.unlearn(original, (x, y + 10), split.retain)
    with pytest.raises(ValueError, match="forget: expected finite"):
        m.unlearn(original, (x * float("nan"), y), split.retain)
    with pytest.raises(ValueError, match="retain: expected as many labels"):
        m.unlearn(original, split.forget, (x, y[:-1]))
    with pytest.raises(TypeError, match="model"):
        m.unlearn("not a model", split.forget, split.retain)
    with pytest.raises(ValueError, match="forget: expected a non-empty"):
        m.unlearn(original, (x[:0], y[:0]), split.retain)
