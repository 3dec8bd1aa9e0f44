"""Layer: methods (tests). Every registered method held to direction on a memorising toy regime (issue 24).

The regime, built here: digits (1,437 training images) with 5% of them given a wrong label (the
forget set: a deletion request for mislabelled data). The original model (the digits recipe: small
CNN, 30 epochs) memorises part of the wrong labels, so its forget accuracy, measured against the
wrong labels, is 0.5 to 0.6; the gold model, retrained on the retain set only, predicts the true classes:
forget accuracy ~0. A method forgets when its forget accuracy moves from the original's toward the
gold model's, and is selective when its retain accuracy stays where gold's is (1.0).

For each method, with its digits recipe (``recipes.toml``), on two seeds (each its own forget set,
original and gold models, and method seed), the test asserts on each seed:

- ``closed = 1 - |acc_f(method) - acc_f(gold)| / |acc_f(original) - acc_f(gold)| >= forget``,
- ``acc_r(method) >= acc_r(gold) - retain_band``,

with the values of ``EXPECT`` below; what a method does NOT do in this regime is stated there, with
what was measured, and only what is true is asserted (a finding, never a vacuous bound). ``retrain``
is held to more: it equals training from scratch on the retain set, weight for weight.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unlearnkit.bench.recipes import dataset_recipe, method_recipe
from unlearnkit.data import load_digits
from unlearnkit.methods import METHODS, get_method
from unlearnkit.models import build_model
from unlearnkit.training import TrainConfig, fit, predict

SEEDS = (0, 1)
NOISE = 0.05  # share of the training images relabelled (the forget set)

MOVES = 0.5   # at least half of the original's distance to gold closed, on each seed
BAND = 0.03   # retain accuracy at most 3 points below gold's

# name: (forget, retain_band): forget is the least share of the gap closed, or "no-gain" (forget accuracy
# at most NO_GAIN above the original's); None: not asserted, for the reason given. Measured before this file
# was written, seeds 0 / 1 / 2 / 3 on one thread (and 0 / 1 on two): closed; retain accuracy (gold's 1.000).
EXPECT = {
    "cf_k": (MOVES, BAND),            # closed 0.70 to 0.84; retain 1.000
    "eu_k": (MOVES, BAND),            # 0.95 to 1.00; 0.992 to 0.996
    "finetune": (MOVES, BAND),        # 0.79 to 0.88; 1.000
    "l1_sparse": (MOVES, BAND),       # 0.93 to 0.98; 0.999 to 1.000
    "muda": (MOVES, BAND),            # 0.78 to 0.86; 0.999 to 1.000
    "random_labels": (MOVES, BAND),   # 0.67 to 0.76; 1.000
    "salun": (MOVES, BAND),           # 0.85 to 0.96; 0.996 to 0.999
    "unsir": (MOVES, BAND),           # 0.91 to 0.98; 1.000
    # DLFD moves about half-way (0.40 to 0.63) and costs up to 5 points of retain accuracy (0.949 to 0.996)
    "dlfd": (0.25, 0.08),
    # SISA's answer is an ensemble of 4 shard models trained on a quarter of the data each: its
    # retain accuracy is the ensemble's (0.89 to 0.91), not a single model's; closed 0.93 to 1.00
    "sisa": (MOVES, 0.15),
    # Not selective here: SCRUB forgets (0.86 to 0.98) at a cost in retain accuracy that varies from
    # seed to seed (0.552 to 0.980); SSD forgets (0.69 to 0.80) and loses retain accuracy (0.312 to 0.700)
    "scrub": (MOVES, None),
    "ssd": (MOVES, None),
    # These do not move the memorised wrong labels with their digits recipes (closed: bad_teacher
    # -0.17 to 0.04, boundary_shrink 0.07 to 0.24, fisher -0.07 to 0.24): the recipes were set on
    # random forgetting of clean images, where little has to move. What is true: they keep the retain
    # accuracy (Fisher's noise costs up to 3.4 points) and do not learn the wrong labels more.
    "bad_teacher": ("no-gain", BAND),
    "boundary_shrink": ("no-gain", BAND),
    "fisher": ("no-gain", 0.06),
    # TMU keeps the retain accuracy but may learn the wrong labels MORE (closed -0.49 to 0.16; seed 1:
    # forget accuracy 0.486 -> 0.722): its predictor calls some mislabelled samples "easy", and easy
    # forget samples are fine-tuned on with their (here wrong) labels.
    "tmu": (None, BAND),
    # NegGrad and NegGrad+ diverge (NaN weights) with their digits recipes here, or collapse (retain
    # accuracy ~0.1): ascent on samples the original already misclassifies has full-size gradients
    # from the first step. What is true: a divergence is reported as an error, never handed back, and
    # what is handed back has not learned the wrong labels more.
    "neggrad": ("no-gain", None),
    "neggrad_plus": ("no-gain", None),
}
NO_GAIN = 0.15  # what a method that does not move may add to the original's forget accuracy (11 of 72 samples)


def _acc(model, x, y) -> float:
    return float((predict(model, x).argmax(1) == y).float().mean())


def _train(data, x, y, seed):
    torch.manual_seed(seed)
    model = build_model(dataset_recipe("digits")["model"], data)
    return fit(model, x, y, TrainConfig(**dataset_recipe("digits")["train"]), seed=seed)


def _regime(seed: int) -> dict:
    data = load_digits()
    rng = np.random.default_rng(seed)
    n = len(data.y_train)
    forget = np.sort(rng.permutation(n)[: round(NOISE * n)])
    retain = np.setdiff1d(np.arange(n), forget)
    y = data.y_train.clone()
    y[forget] = (y[forget] + torch.from_numpy(rng.integers(1, 10, len(forget)))) % 10  # always a wrong label
    f, r = torch.from_numpy(forget), torch.from_numpy(retain)
    perm = torch.from_numpy(rng.permutation(len(data.y_test)))
    val, held = perm[:72], perm[72:144]  # what methods may monitor (val) and train on (TMU's heldout)
    reg = {"data": data, "seed": seed, "forget": (data.x_train[f], y[f]), "retain": (data.x_train[r], y[r]),
           "val": (data.x_test[val], data.y_test[val]), "heldout": (data.x_test[held], data.y_test[held])}
    reg["original"] = _train(data, data.x_train, y, seed)
    reg["gold"] = _train(data, data.x_train[r], y[r], seed)
    for name in ("original", "gold"):
        reg[f"{name}_forget"] = _acc(reg[name], *reg["forget"])
        reg[f"{name}_retain"] = _acc(reg[name], *reg["retain"])
    return reg


@pytest.fixture(scope="module")
def regimes():
    return [_regime(seed) for seed in SEEDS]


def _unlearn(name: str, reg: dict, **hp):
    method = get_method(name)(**(hp or method_recipe("digits", name)))
    return method.unlearn(reg["original"], reg["forget"], reg["retain"], test=reg["val"], heldout=reg["heldout"],
                          seed=reg["seed"])


def test_every_method_has_a_stated_expectation():
    assert set(EXPECT) | {"retrain"} == set(METHODS)


def test_the_regime_memorises_and_gold_does_not(regimes):
    for reg in regimes:
        assert reg["original_forget"] - reg["gold_forget"] >= 0.3  # a gap worth closing (measured ~0.6)
        assert reg["gold_forget"] <= 0.05 and reg["gold_retain"] >= 0.99 and reg["original_retain"] >= 0.99


@pytest.mark.parametrize("name", sorted(EXPECT))
def test_method_moves_forget_accuracy_toward_gold_and_keeps_retain(regimes, name):
    forget, band = EXPECT[name]
    seen = []
    for reg in regimes:
        try:
            model = _unlearn(name, reg)
        except (FloatingPointError, ValueError) as exc:
            # the divergence guard: an error naming it (neggrad, neggrad_plus) instead of NaN weights
            assert name in ("neggrad", "neggrad_plus") and "diverged" in str(exc), f"{name} (seed {reg['seed']}): {exc!r}"
            continue
        assert all(torch.isfinite(p).all() for p in model.parameters()), f"{name}: non-finite weights handed back"
        acc_f, acc_r = _acc(model, *reg["forget"]), _acc(model, *reg["retain"])
        closed = 1 - abs(acc_f - reg["gold_forget"]) / abs(reg["original_forget"] - reg["gold_forget"])
        seen.append(f"seed {reg['seed']}: closed {closed:.2f}, retain {acc_r:.3f}")
        if forget == "no-gain":  # it may not move, but it must not learn the wrong labels more
            assert acc_f <= reg["original_forget"] + NO_GAIN, f"{name}: {seen}"
        elif forget is not None:
            assert closed >= forget, f"{name}: {seen}"
        if band is not None:
            assert acc_r >= reg["gold_retain"] - band, f"{name}: {seen}"


def test_retrain_equals_training_from_scratch_on_the_retain_set(regimes):
    for reg in regimes:
        out = _unlearn("retrain", reg, **dataset_recipe("digits")["train"])
        gold = reg["gold"].state_dict()
        assert out.state_dict().keys() == gold.keys()
        for key, value in out.state_dict().items():
            assert torch.equal(value, gold[key]), key
        assert _acc(out, *reg["forget"]) == reg["gold_forget"]
