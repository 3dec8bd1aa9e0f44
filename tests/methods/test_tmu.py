"""TMU (twin machine unlearning): its parts against independent computations, and its behaviour on
real data.

Real data: a Fashion-MNIST subset (6,000 training images, the official 10,000 test images of which
20% are held out as the twin set D_twin and the rest evaluated), small CNN, random 10% forgetting.
Without Debian's dataset-fashion-mnist the data-dependent checks run on digits instead (weaker:
digits' twin set has only a handful of hard samples). The original and gold models are trained
once per process (and once per machine when $UNLEARNKIT_CACHE names a checkpoint cache).

Its settings (issue 27, the second half of the file): the easy/hard cut (threshold, hard_fraction),
feature sets and scaling, the model it unlearns, the class-partial setting and the cost record:
hand-worked cases, and short runs on digits checked against the original model's own predictions.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from helpers import state_copy
from shared_fixtures import FASHION_EPOCHS, MEMORISING_SUBSET
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.nn import functional as F

from unlearnkit._validation import params_dict
from unlearnkit.bench.recipes import method_recipe
from unlearnkit.data import fashion_mnist_available, make_split
from unlearnkit.methods import METHODS, TMU, get_method
from unlearnkit.methods.base import Context, UnlearnData
from unlearnkit.methods.tmu import (
    FEATURE_SETS,
    RELEASED_THRESHOLD,
    TMUParams,
    adversarial_feature,
    classwise_standardise,
    curriculum_feature,
    distance_feature,
    fit_predictor,
    generalisation_labels,
    least_easy,
    pgd_attack,
    robust_minmax,
    select_hard,
)
from unlearnkit.training import predict

FASHION = fashion_mnist_available()
DATASET = "fashion-mnist" if FASHION else "digits"
NO_FASHION = "Debian's dataset-fashion-mnist is not installed (`make fashion-data`): checked on digits instead"

# The Fashion-MNIST subset and how its reference models are trained (a small-data version of the
# fashion-mnist recipe: more epochs on fewer images).
N_TRAIN = 6000  # the fashion_models fixture trains FASHION_EPOCHS (8) epochs, lr 0.05
# TMU on that subset: the fashion-mnist recipe, but two unlearning epochs (the subset has a tenth of
# the steps per epoch of the full set).
SUBSET_OVERRIDES = {"epochs": 2}


def _acc(model, x, y):
    return float((predict(model, x).argmax(1) == y).float().mean())


@pytest.fixture(scope="module")
def reference_models(request):
    """(split with a held-out twin set, original, gold) on Fashion-MNIST (subset) or digits."""
    if not FASHION:
        split, original, gold = request.getfixturevalue("digits_models")
        # The same forget set (same seed), now with 20% of the test split held out as D_twin.
        split = make_split(split.data, forget="random", fraction=0.1, seed=0, heldout_fraction=0.2)
        return split, original, gold
    return request.getfixturevalue("fashion_models")(n_train=N_TRAIN, epochs=FASHION_EPOCHS, heldout_fraction=0.2)


@pytest.fixture(scope="module")
def tmu_run(reference_models):
    """(split, original, gold, TMU method, unlearned model, events): one run with the recipe, shown
    the validation part of the test split (as the bench runner does), never the evaluated part."""
    split, original, gold = reference_models
    hparams = method_recipe(DATASET, "tmu")
    if FASHION:
        hparams.update(SUBSET_OVERRIDES)
    method = TMU(**hparams)
    events: list = []
    out = method.unlearn(original, split.forget, split.retain, test=split.val, heldout=split.heldout, seed=0,
                         callbacks=[events.append])
    return split, original, gold, method, out, events


# --- interface, defaults and validation ----------------------------------------------------------------

def test_defaults_are_the_papers():
    p = TMUParams()
    assert (p.k, p.pgd_steps, p.curriculum_epochs) == (5, 5, 2)
    assert math.isclose(p.pgd_epsilon, 4 / 255) and p.pgd_step_size is None  # None: epsilon / 3
    assert p.features == ("df", "af", "cf") and p.iqr_factor == 1.5
    assert (p.hidden, p.predictor_lr, p.predictor_epochs, p.predictor_batch_size, p.threshold) == (
        (32, 16), 0.01, 200, 128, 0.5)
    assert (p.epochs, p.lr, p.momentum, p.weight_decay, p.batch_size, p.noise_std) == (5, 0.01, 0.9, 5e-4, 64, 0.05)
    assert TMU.needs_heldout and "2408.11433" in TMU.paper and TMU.__doc__


def test_registered_with_valid_recipes():
    assert METHODS["tmu"] is TMU and get_method("tmu") is TMU
    for dataset in ("digits", "fashion-mnist"):
        recipe = method_recipe(dataset, "tmu")
        assert recipe, f"no {dataset} recipe for tmu"
        TMU(**recipe)  # every recipe field is a real hyper-parameter
    assert TMU(features=["df", "cf"]).params.features == ("df", "cf")  # TOML lists become tuples


@pytest.mark.parametrize("field, value, match", [
    ("features", ("df", "xf"), "features"), ("features", (), "features"), ("features", "df", "features"),
    ("k", 0, "k"), ("pgd_steps", -1, "pgd_steps"), ("pgd_epsilon", -0.1, "pgd_epsilon"),
    ("pgd_step_size", 0.0, "pgd_step_size"), ("threshold", 1.0, "threshold"), ("lr", 0.0, "lr"),
    ("noise_std", -1.0, "noise_std"), ("hidden", (32, 0), "hidden"), ("predictor_batch_size", 0, "predictor_batch_size"),
])
def test_bad_hyperparameters_name_the_field(field, value, match):
    with pytest.raises((ValueError, TypeError), match=match):
        TMU(**{field: value})


def test_heldout_is_required_and_checked(digits_models):
    split, original, _ = digits_models
    with pytest.raises(ValueError, match="heldout: tmu needs unseen samples"):
        TMU().unlearn(original, split.forget, split.retain)
    x, y = split.data.x_test[:20], split.data.y_test[:20]
    with pytest.raises(ValueError, match="heldout: expected images of the forget set's shape"):
        TMU().unlearn(original, split.forget, split.retain, heldout=(x[:, :, :4, :4], y))
    with pytest.raises(ValueError, match="heldout: expected at least 2"):
        TMU().unlearn(original, split.forget, split.retain, heldout=(x[:1], y[:1]))
    with pytest.raises(ValueError, match="heldout: expected labels"):
        TMU().unlearn(original, split.forget, split.retain, heldout=(x, y + 10))


# --- the parts ------------------------------------------------------------------------------------------

def _shifted(model):
    """A copy of ``model`` predicting class (c + 1) mod K wherever ``model`` predicts c."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        m.classifier.weight.copy_(model.classifier.weight.roll(1, dims=0))
        m.classifier.bias.copy_(model.classifier.bias.roll(1, dims=0))
    return m


class _Constant(nn.Module):
    def forward(self, x):
        return torch.tensor([0.0, 5.0, 0.0]).expand(len(x), 3)  # always class 1


def test_generalisation_labels_come_from_predictions(digits_models):
    split, original, _ = digits_models
    x, y = split.data.x_test, split.data.y_test
    labels = generalisation_labels(original, x, y)
    assert torch.equal(labels, predict(original, x).argmax(1) == y)
    assert 0.9 < labels.float().mean() < 1.0  # mostly easy, some hard
    # Same inputs and labels, another model: other labels. A shifted model is wrong wherever the
    # original was right, a constant model is right exactly on its class.
    assert not (generalisation_labels(_shifted(original), x, y) & labels).any()
    yc = torch.arange(30) % 3
    assert torch.equal(generalisation_labels(_Constant(), x[:30], yc), yc == 1)


def test_twin_labels_inside_tmu_follow_the_original_model(digits_models):
    """The labels TMU trains its predictor on are the original model's correctness on D_twin: give it
    a model whose predictions are shifted by one class and they flip."""
    split, original, _ = digits_models
    split = make_split(split.data, forget="random", fraction=0.1, seed=0, heldout_fraction=0.2)
    fast = dict(twin_epochs=1, curriculum_epochs=1, predictor_epochs=2, epochs=0, features=("af",))
    xh, yh = split.heldout.tensors
    for model in (original, _shifted(original)):
        m = TMU(**fast)
        m.unlearn(model, split.forget, split.retain, heldout=split.heldout)
        assert torch.equal(m.last_details["twin_labels"], predict(model, xh).argmax(1) == yh)
    assert m.last_details["twin_labels"].float().mean() < 0.1  # the shifted model: nearly all hard


def test_warns_when_the_twin_set_has_one_generalisation_label(digits_models):
    split, original, _ = digits_models
    x, y = split.data.x_test, split.data.y_test
    right = predict(original, x).argmax(1) == y
    fast = TMU(twin_epochs=0, epochs=0, features=("af",))
    with pytest.warns(UserWarning, match="heldout: the original model classifies all of the 20 twin samples"):
        fast.unlearn(original, split.forget, split.retain, heldout=(x[right][:20], y[right][:20]))
    assert not fast.last_details["forget_hard"].any()


def test_robust_minmax_clips_outliers_and_scales_per_column():
    f = torch.tensor([[0.0, 3.0], [1.0, 3.0], [2.0, 3.0], [3.0, 3.0], [100.0, 3.0]])
    s = robust_minmax(f)
    assert s.shape == f.shape and float(s.min()) == 0.0 and float(s[:, 0].max()) == 1.0
    assert torch.all(s[:, 1] == 0)  # a constant column
    # Q1 = 1, Q3 = 3, IQR = 2: 100 is clipped to 6, so 3 maps to 3/6 rather than 3/100.
    assert torch.allclose(s[:, 0], torch.tensor([0.0, 1 / 6, 2 / 6, 3 / 6, 1.0]))
    with pytest.raises(ValueError, match="features"):
        robust_minmax(torch.zeros(5))


def test_pgd_and_adversarial_feature(digits_models):
    split, original, _ = digits_models
    x, y = split.data.x_test[:64], split.data.y_test[:64]
    eps = 4 / 255
    x_adv = pgd_attack(original, x, y, epsilon=eps, steps=5, step_size=eps / 3)
    assert (x_adv - x).abs().max() <= eps + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert F.cross_entropy(original(x_adv), y) > F.cross_entropy(original(x), y)
    af = adversarial_feature(original, x, y)
    with torch.no_grad():
        p = F.softmax(original(x), 1)
        entropy = -(p * p.clamp_min(1e-30).log()).sum(1)
        expected = -(p * F.log_softmax(original(x_adv), 1)).sum(1)
    assert torch.allclose(af, expected, atol=1e-5)
    assert torch.all(af >= entropy - 1e-5)  # cross-entropy >= entropy, equality without attack
    assert torch.allclose(adversarial_feature(original, x, y, epsilon=0.0), entropy, atol=1e-5)


def test_distance_feature_matches_brute_force_same_class_neighbours(digits_models):
    split, original, _ = digits_models
    xq, yq = split.forget.tensors
    xo, yo = split.retain.tensors
    df = distance_feature(original, xq, yq, xo, yo, k=5)
    with torch.no_grad():
        q, o = F.normalize(original.features(xq), dim=1), F.normalize(original.features(xo), dim=1)
    # The bank is every training sample, the queries included; none is its own neighbour.
    d = torch.cdist(q, torch.cat([q, o]))
    d[yq[:, None] != torch.cat([yq, yo])[None, :]] = float("inf")
    d[torch.arange(len(q)), torch.arange(len(q))] = float("inf")
    expected = d.topk(5, largest=False).values.mean(1)
    assert torch.allclose(df, expected, atol=1e-4)
    assert df.min() > 0 and df.max() <= 2  # Euclidean (not squared) distances of unit vectors
    lone = yq[:1]
    with pytest.raises(ValueError, match="others_y"):
        distance_feature(original, xq[:1], lone, xo[yo != lone], yo[yo != lone])


def test_curriculum_feature_is_per_sample_cross_entropy(digits_models):
    split, original, _ = digits_models
    x, y = split.forget.tensors
    cf = curriculum_feature(original, x, y)
    assert cf.shape == y.shape
    assert math.isclose(float(cf.mean()), float(F.cross_entropy(predict(original, x), y)), rel_tol=1e-5)


def test_predictor_learns_a_separable_rule():
    g = torch.Generator().manual_seed(0)
    f = torch.rand(400, 3, generator=g)
    labels = f[:, 0] + 0.5 * f[:, 2] < 0.8
    torch.manual_seed(0)
    net = fit_predictor(f, labels, epochs=50, generator=g)
    assert roc_auc_score(labels.numpy(), net.predict_proba(f).numpy()) > 0.95
    assert [m.out_features for m in net.modules() if isinstance(m, nn.Linear)] == [32, 16, 1]


class _Recorder(nn.Module):
    """A tiny classifier recording every input batch it sees in train mode."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(16, 3)
        self.seen: list = []

    def forward(self, x):
        if self.training:
            self.seen.append(x.detach().clone())
        return self.lin(x.flatten(1))


def test_finetune_perturbs_only_predicted_easy_forget_samples_and_relabels_hard_ones(monkeypatch):
    # Retain images are all 0.3, forget images 0.5 (predicted easy) or 0.7 (predicted hard).
    n_r, n_f = 40, 20
    hard = torch.arange(n_f) % 4 == 0
    xr, xf = torch.full((n_r, 1, 4, 4), 0.3), torch.full((n_f, 1, 4, 4), 0.5)
    xf[hard] = 0.7
    yr, yf = torch.zeros(n_r, dtype=torch.long), torch.ones(n_f, dtype=torch.long)
    data = UnlearnData(xf, yf, xr, yr, None, None, 3)
    model, labels_seen = _Recorder(), []
    cross_entropy = F.cross_entropy

    def spy(logits, y, *a, **k):
        labels_seen.append(y.clone())
        return cross_entropy(logits, y, *a, **k)

    monkeypatch.setattr(F, "cross_entropy", spy)
    TMU(epochs=2, batch_size=8, lr=1e-3, noise_std=0.05)._finetune(model, data, hard,
                                                                  Context("tmu", torch.device("cpu"), 0, []))
    monkeypatch.undo()
    x = torch.cat(model.seen).flatten(1)
    y = torch.cat(labels_seen)
    assert len(x) == 2 * (n_r + n_f)
    mean = x.mean(1)
    is_r, is_h = (x == 0.3).all(1), (x == 0.7).all(1)
    is_e = ~is_r & ~is_h
    assert is_r.sum() == 2 * n_r and is_h.sum() == 2 * int(hard.sum()) and is_e.sum() == 2 * int((~hard).sum())
    assert torch.allclose(mean[is_e], torch.full_like(mean[is_e], 0.5), atol=0.05)
    assert 0.03 < float((x[is_e] - 0.5).std()) < 0.07  # Gaussian noise of std 0.05 on easy forget images only
    assert torch.all(y[is_r] == 0) and torch.all(y[is_e] == 1)
    assert torch.all(y[is_h] != 1)  # hard forget samples carry wrong labels


# --- on real data ----------------------------------------------------------------------------------------

@pytest.mark.skipif(not FASHION, reason=NO_FASHION)
def test_predictor_tells_easy_from_hard_on_the_fashion_twin_set(tmu_run):
    """Cross-validated on D_twin (train the MLP on one half of its features and labels, score the other
    half, both ways), and applied to D_f against the gold model's own correctness."""
    split, original, gold, method, _, _ = tmu_run
    d = method.last_details
    labels = d["twin_labels"].numpy()
    perm = np.random.default_rng(0).permutation(len(labels))
    halves = perm[: len(perm) // 2], perm[len(perm) // 2:]
    aucs = []
    for a, b in (halves, halves[::-1]):
        torch.manual_seed(0)
        net = fit_predictor(d["twin_features"][a], d["twin_labels"][a])
        aucs.append(roc_auc_score(labels[b], net.predict_proba(d["twin_features"][b]).numpy()))
    xf, yf = split.forget.tensors
    gold_easy = (predict(gold, xf).argmax(1) == yf).numpy()
    forget_auc = roc_auc_score(gold_easy, d["forget_p_easy"].numpy())
    print(f"\nfashion-mnist: twin-set AUC (2-fold) {aucs}, n_twin {len(labels)} ({int((~d['twin_labels']).sum())} "
          f"hard); forget-set AUC against the gold model's correctness {forget_auc:.3f}")
    assert min(aucs) > 0.6 and forget_auc > 0.6


@pytest.mark.skipif(FASHION, reason="Fashion-MNIST is installed: the stronger twin-set test runs instead")
def test_predictor_fits_the_digits_twin_set(tmu_run):
    """The weaker check without Fashion-MNIST: digits' twin set holds only a few hard samples, too
    few to cross-validate, so the AUC is in-sample."""
    _, _, _, method, _, _ = tmu_run
    d = method.last_details
    labels = d["twin_labels"].numpy()
    assert 0 < labels.sum() < len(labels), "the twin set needs easy and hard samples"
    torch.manual_seed(0)
    net = fit_predictor(d["twin_features"], d["twin_labels"])
    assert roc_auc_score(labels, net.predict_proba(d["twin_features"]).numpy()) > 0.6


def test_forget_accuracy_moves_to_gold_and_test_accuracy_stays(tmu_run):
    split, original, gold, method, out, _ = tmu_run
    xf, yf = split.forget.tensors
    xt, yt = split.test.tensors
    acc = {name: (_acc(m, xf, yf), _acc(m, xt, yt)) for name, m in
           (("original", original), ("gold", gold), ("tmu", out))}
    hard = method.last_details["forget_hard"]
    print(f"\n{DATASET}: (forget, test) accuracy {acc}; {int(hard.sum())} of {len(hard)} predicted hard")
    gap_tmu, gap_original = abs(acc["tmu"][0] - acc["gold"][0]), abs(acc["original"][0] - acc["gold"][0])
    if not FASHION:
        # digits: the original classifies every forget sample, the gold model 2 of 144 fewer, and the
        # predictor marks none hard, so TMU can only keep the gap there (measured: it does). On
        # Fashion-MNIST the direction is checked on the memorising subset (the next test): on this
        # subset the original barely memorises (forget 88.8 vs gold 84.3) and TMU's move is a handful
        # of samples, which one torch thread more or less reversed (measured: 87.7 and 89.3).
        assert gap_tmu <= gap_original
    assert acc["tmu"][1] >= acc["original"][1] - 0.03
    # The mechanism: accuracy falls on the forget samples marked hard, not on those marked easy. The
    # recipe's predictor marks some hard on Fashion-MNIST (41 of 600 measured), none on digits (its
    # twin set holds a handful of hard samples), so the mechanism is checked unconditionally on the
    # fine-tuning step given a fixed mask (every fourth forget sample hard), then on the run's own mask.
    forced = torch.arange(len(yf)) % 4 == 0
    ctx = Context("tmu", torch.device("cpu"), 0, [])
    fixed = copy.deepcopy(original)
    xr, yr = split.retain.tensors
    fast = TMU(**{**params_dict(method.params), "lr": 0.05})
    fast._finetune(fixed, UnlearnData(xf, yf, xr, yr, None, None, split.data.num_classes), forced, ctx)

    def loss(m, mask):
        return float(F.cross_entropy(predict(m, xf[mask]), yf[mask]))

    print(f"\nforced mask: forget loss on hard {loss(original, forced):.3f} -> {loss(fixed, forced):.3f}, on easy "
          f"{loss(original, ~forced):.3f} -> {loss(fixed, ~forced):.3f}; accuracy on hard "
          f"{_acc(original, xf[forced], yf[forced]):.3f} -> {_acc(fixed, xf[forced], yf[forced]):.3f}")
    # measured on Fashion-MNIST: loss on hard +0.085, on easy +0.033 (the noise); accuracy on hard -6.7 points
    assert loss(fixed, forced) - loss(original, forced) > 1.5 * max(loss(fixed, ~forced) - loss(original, ~forced), 0.01)
    assert _acc(fixed, xf[forced], yf[forced]) < _acc(original, xf[forced], yf[forced]) - 0.02
    assert _acc(fixed, xf[~forced], yf[~forced]) >= _acc(original, xf[~forced], yf[~forced]) - 0.05
    # (On the run's own mask the mechanism is checked on the memorising subset, the next test: here
    # about 20 samples are marked hard and the run moves their loss by noise, either way.)
    assert _acc(out, xf[~hard], yf[~hard]) >= _acc(original, xf[~hard], yf[~hard]) - 0.05
    # The twin set is not part of evaluation.
    assert np.intersect1d(split.test_idx, split.heldout_idx).size == 0 and len(split.heldout_idx) > 0


def test_on_a_memorising_regime_tmu_closes_the_forget_gap_and_keeps_the_rest(request):
    """The direction, where there is one to see: the memorising Fashion-MNIST subset (3,000 images, 25
    epochs: forget 97.3 against gold's 84.3, retain 98.2, test 86.1) with the fashion-mnist-10k recipe,
    the regime it was tuned for. Measured (forget, retain, test) after TMU, reference models trained
    under 2 / 1 threads x TMU run under 2 / 1: 91.0 / 98.2 / 85.5, 89.0 / 97.4 / 84.4, 89.3 / 98.7 /
    85.3 and 91.7 / 98.7 / 85.7; the gap to gold went from 13.0-13.3 points to 4.7-7.7. The mechanism
    on the run's own mask (41 of 600 marked hard in all four): their loss rose by 0.85-1.60, the
    others' by -0.004 to 0.029."""
    if not FASHION:
        pytest.skip(NO_FASHION + " (the digits direction check is in the test above)")
    split, original, gold = request.getfixturevalue("fashion_models")(**MEMORISING_SUBSET)
    method = TMU(**method_recipe("fashion-mnist-10k", "tmu"))
    out = method.unlearn(original, split.forget, split.retain, test=split.val, heldout=split.heldout, seed=0)
    acc = {name: [_acc(m, *s.tensors) for s in (split.forget, split.retain, split.test)]
           for name, m in (("original", original), ("gold", gold), ("tmu", out))}
    print(f"\n(forget, retain, test) accuracy {acc}")
    gap_original = acc["original"][0] - acc["gold"][0]
    assert gap_original > 0.08  # the regime memorises: there is a gap to close
    assert abs(acc["tmu"][0] - acc["gold"][0]) < 0.75 * gap_original
    assert acc["tmu"][1] >= acc["original"][1] - 0.02  # retain stays (measured: -0.8 points at most)
    assert acc["tmu"][2] >= acc["original"][2] - 0.03  # test stays (measured: -1.7 points at most)
    # the mechanism: the loss rises on the forget samples the predictor marked hard, not on the others
    hard = method.last_details["forget_hard"]
    xf, yf = split.forget.tensors
    rise = {k: float(F.cross_entropy(predict(out, xf[m]), yf[m]) - F.cross_entropy(predict(original, xf[m]), yf[m]))
            for k, m in (("hard", hard), ("easy", ~hard))}
    assert hard.any() and rise["hard"] > 0.5 and rise["hard"] > 5 * max(rise["easy"], 0.01), rise


def test_logs_each_phase_and_keeps_the_original(tmu_run):
    split, original, _, method, out, events = tmu_run
    phases = [e.phase for e in events]
    assert {"twin_check", "curriculum", "features", "predictor", "split", "unlearn"} <= set(phases)
    for phase in set(phases) - {"twin", "twin_check"}:
        steps = [e for e in events if e.phase == phase]
        assert [e.step for e in steps] == list(range(1, len(steps) + 1)) and steps[-1].total == len(steps)
    # the twin is fine-tuned one epoch at a time until it memorises D_twin (then it stops early):
    # twin_check logs epochs 0 (before) .. n, and each epoch's "twin" steps count 1 .. batches. On
    # some machines the twin already matches at epoch 0 and no twin step runs: the logged decision
    # is what is asserted, whichever epoch it falls on.
    p = method.params
    checks = [e for e in events if e.phase == "twin_check"]
    n_epochs = method.twin_check["epochs"]
    assert [e.step for e in checks] == list(range(len(checks))) and len(checks) - 1 == n_epochs
    reached = [c.logs["twin_acc_twin"] >= c.logs["orig_acc_forget"] - p.twin_tolerance for c in checks]
    assert not any(reached[:-1])  # it stopped at the first check that reached the target...
    assert reached[-1] or n_epochs == p.twin_epochs  # ...or when its epochs ran out
    twin = [e for e in events if e.phase == "twin"]
    per_epoch = math.ceil((len(split.retain_idx) + len(split.forget_idx) + len(split.heldout_idx)) / p.twin_batch_size)
    assert len(twin) == per_epoch * n_epochs
    assert [e.step for e in twin] == list(range(1, per_epoch + 1)) * n_epochs
    assert all(e.total == per_epoch for e in twin)
    assert all(e.source == "tmu" and all(np.isfinite(v) for v in e.logs.values()) for e in events)
    split_log = next(e.logs for e in events if e.phase == "split")
    assert split_log["forget_hard"] == int(method.last_details["forget_hard"].sum())
    assert out is not original


def test_twin_is_fine_tuned_until_it_memorises_its_twin_set_as_the_original_memorises_d_f(digits_models):
    """The stop rule: the first epoch where M_t's accuracy on D_twin reaches M_o's on D_f (minus the
    tolerance); the target is M_o's forget accuracy, recomputed here from its predictions."""
    split, original, _ = digits_models
    split = make_split(split.data, forget="random", fraction=0.1, seed=0, heldout_fraction=0.2)
    xf, yf = split.forget.tensors
    target = float((predict(original, xf).argmax(1) == yf).float().mean())
    m = TMU(twin_epochs=6, twin_lr=0.05, curriculum_epochs=1, predictor_epochs=2, epochs=0, features=("af",))
    m.unlearn(original, split.forget, split.retain, heldout=split.heldout)
    checks = [e.logs for e in m.last_history if e.phase == "twin_check"]
    assert checks[0]["orig_acc_forget"] == pytest.approx(target)
    accs = [c["twin_acc_twin"] for c in checks]
    tc = m.last_details["twin_check"]
    assert tc["epochs"] == len(accs) - 1 and tc["twin_acc_twin"] == accs[-1]
    assert all(a < target - 0.01 for a in accs[:-1])  # it did not stop early...
    assert accs[-1] >= target - 0.01 or tc["epochs"] == 6  # ...nor late
    assert len(accs) == 1 or accs[-1] > accs[0]  # fine-tuning on D_twin raised the twin's accuracy on it
    # twin_match off: all epochs run
    m2 = TMU(twin_epochs=2, twin_match=False, curriculum_epochs=1, predictor_epochs=2, epochs=0, features=("af",))
    m2.unlearn(original, split.forget, split.retain, heldout=split.heldout)
    assert m2.last_details["twin_check"]["epochs"] == 2


def test_easy_hard_deltas_by_hand():
    from unlearnkit.bench.evaluate import easy_hard_deltas

    y = np.array([0, 1, 2, 0])
    gold = np.eye(3)[[0, 1, 0, 1]]  # gold right on samples 0, 1 (easy), wrong on 2, 3 (hard)
    mine = np.eye(3)[[0, 2, 2, 1]]  # right on 0 (easy) and 2 (hard)
    d = easy_hard_deltas(mine, gold, y)
    assert d == {"delta_easy": 0.5, "delta_hard": 0.5, "hard_fraction": 0.5}
    assert easy_hard_deltas(mine, np.eye(3)[y], y)["delta_hard"] is None


# ===== TMU's settings (issue 27): the easy/hard cut, feature sets and scaling, the model it unlearns,
# the class-partial setting and the cost record (from test_tmu_params.py)

# a run that only exercises the twin problem and the split: one twin epoch, AF only, no unlearning
FAST = dict(twin_epochs=1, curriculum_epochs=1, predictor_epochs=2, epochs=0, features=("af",))


# --- parameters -------------------------------------------------------------------------------------------

def test_feature_sets_threshold_and_model_settings():
    assert TMU(feature_set="df_cf").params.features == ("df", "cf") == FEATURE_SETS["df_cf"]
    assert TMU(feature_set="df_af_cf").params.features == ("df", "af", "cf") == TMUParams().features
    assert TMU(feature_set="df_cf", features=("df", "cf")).params.features == ("df", "cf")
    assert TMU(features=["af", "df"]).params.features == ("af", "df")
    # the released code compares the raw output with 0.5, its sigmoid commented out
    assert math.isclose(RELEASED_THRESHOLD, 1 / (1 + math.exp(-0.5))) and 0.622 < RELEASED_THRESHOLD < 0.623
    p = TMUParams()
    assert (p.hard_fraction, p.unlearn_model, p.feature_scaling) == (None, "original", "auto")
    assert TMU(hard_fraction="auto").params.hard_fraction == "auto"
    assert TMU(hard_fraction=0).params.hard_fraction == 0.0 and TMU(hard_fraction=1).params.hard_fraction == 1.0


@pytest.mark.parametrize("field, value", [
    ("hard_fraction", "most"), ("hard_fraction", 1.5), ("hard_fraction", -0.1), ("hard_fraction", True),
    ("unlearn_model", "gold"), ("feature_scaling", "global"), ("feature_set", "df_af"), ("features", ("df", "zf")), ("features", "df_cf"),
    ("features", ("df", "df")),
])
def test_bad_settings_name_the_field(field, value):
    with pytest.raises((ValueError, TypeError), match=field):
        TMU(**{field: value})


def test_a_named_feature_set_and_other_features_conflict():
    with pytest.raises(ValueError, match="feature_set: 'df_cf' names the features"):
        TMU(feature_set="df_cf", features=("af",))


# --- the easy/hard cut ------------------------------------------------------------------------------------

def test_threshold_is_strict_on_p_easy():
    p = torch.tensor([0.1, 0.5, 0.62, RELEASED_THRESHOLD, 0.7, 0.99])
    y = torch.zeros(6, dtype=torch.long)
    assert select_hard(p, y, threshold=0.5).tolist() == [True, False, False, False, False, False]
    # the released cut: easy only when P(easy) > 0.6225; exactly at the threshold counts as easy
    assert select_hard(p, y, threshold=RELEASED_THRESHOLD).tolist() == [True, True, True, False, False, False]


def test_hard_fraction_picks_exactly_the_k_least_easy():
    p = torch.tensor([0.9, 0.2, 0.7, 0.2, 0.05, 0.8, 0.6, 0.3, 0.95, 0.4])
    y = torch.zeros(10, dtype=torch.long)
    # 30%: the three lowest, 0.05 (4) and the tied 0.2s (1, 3)
    assert torch.nonzero(select_hard(p, y, hard_fraction=0.3)).flatten().tolist() == [1, 3, 4]
    # 20%: 0.05, then the earlier of the tied 0.2s
    assert torch.nonzero(least_easy(p, 2)).flatten().tolist() == [1, 4]
    assert not select_hard(p, y, hard_fraction=0.0).any() and select_hard(p, y, hard_fraction=1.0).all()
    assert int(select_hard(p, y, hard_fraction=0.26).sum()) == 3  # round(2.6)
    # whatever the threshold, a hard_fraction overrides it
    assert int(select_hard(p, y, threshold=0.99, hard_fraction=0.1).sum()) == 1
    with pytest.raises(ValueError, match="k"):
        least_easy(p, 11)


def test_auto_hard_fraction_matches_the_original_error_rate_per_class():
    # D_twin: class 0 has 2 of 4 wrong (50%), class 1 none of 4 (0%): overall 2 of 8 (25%)
    twin_classes = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    twin_labels = torch.tensor([True, False, True, False, True, True, True, True])
    # D_f: six of class 0, three of class 1, four of class 2 (no class-2 twin sample: the overall rate)
    y = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    p = torch.tensor([0.9, 0.1, 0.8, 0.3, 0.2, 0.7, 0.01, 0.02, 0.03, 0.6, 0.5, 0.4, 0.9])
    hard = select_hard(p, y, hard_fraction="auto", twin_labels=twin_labels, twin_classes=twin_classes)
    # class 0: round(0.5 * 6) = 3 lowest (0.1, 0.2, 0.3); class 1: none, although its P(easy) are the
    # lowest of all; class 2: round(0.25 * 4) = 1 (0.4)
    assert torch.nonzero(hard).flatten().tolist() == [1, 3, 4, 11]
    with pytest.raises(ValueError, match="twin_labels"):
        select_hard(p, y, hard_fraction="auto")


def test_classwise_standardise_removes_what_a_class_shares():
    g = torch.Generator().manual_seed(0)
    f = torch.rand(60, 3, generator=g)
    y = torch.arange(60) % 3
    z = classwise_standardise(f, y)
    for c in range(3):
        block = f[y == c].double().numpy()
        expected = (block - block.mean(0)) / block.std(0)
        assert np.allclose(z[y == c].numpy(), expected, atol=1e-5)
    # a class-dependent shift and scale of the raw features (the confound) changes nothing
    shifted = f * (1 + y[:, None].float()) + 5 * y[:, None].float()
    assert torch.allclose(classwise_standardise(shifted, y), z, atol=1e-5)
    # while per-set scaling keeps it: there class 2 sits above class 0 on every feature
    s = robust_minmax(shifted)
    assert s[y == 2].min() > s[y == 0].max()
    # one-sample classes and constant columns give 0
    lone = classwise_standardise(torch.tensor([[1.0, 2.0], [3.0, 2.0], [5.0, 2.0]]), torch.tensor([0, 0, 1]))
    assert torch.allclose(lone, torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, 0.0]]))


# --- in a run -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def splits(digits_models):
    split, original, _ = digits_models
    random = make_split(split.data, forget="random", fraction=0.1, seed=0, heldout_fraction=0.2)
    partial = make_split(split.data, forget="class_partial", forget_class=3, fraction=0.3, seed=0,
                         heldout_fraction=0.5)
    return random, partial, original


def test_class_partial_twin_set_is_that_class_and_the_predictor_is_trained_on_it(splits):
    _, partial, original = splits
    xh, yh = partial.heldout.tensors
    assert len(yh) > 10 and torch.all(yh == 3)  # D_twin: class 3's unseen images only
    assert torch.all(partial.forget.tensors[1] == 3)
    m = TMU(**FAST)
    m.unlearn(original, partial.forget, partial.retain, heldout=partial.heldout)
    d = m.last_details
    assert torch.all(d["twin_classes"] == 3) and len(d["twin_features"]) == len(yh)
    assert torch.equal(d["twin_labels"], predict(original, xh).argmax(1) == yh)
    assert d["feature_scaling"] == "set"  # one class: per-class scaling is the same thing


def test_random_forgetting_scales_features_per_class_by_default(splits):
    random, _, original = splits
    m = TMU(**FAST)
    m.unlearn(original, random.forget, random.retain, heldout=random.heldout)
    assert m.last_details["feature_scaling"] == "class" and len(torch.unique(m.last_details["twin_classes"])) > 1
    m2 = TMU(**FAST, feature_scaling="set")
    m2.unlearn(original, random.forget, random.retain, heldout=random.heldout)
    assert m2.last_details["feature_scaling"] == "set"


def test_auto_hard_fraction_in_a_run_follows_the_original_errors_on_d_twin(splits):
    random, _, original = splits
    xh, yh = random.heldout.tensors
    yf = random.forget.tensors[1]
    wrong = predict(original, xh).argmax(1) != yh
    expected = sum(round(float(wrong[yh == c].float().mean()) * int((yf == c).sum())) for c in torch.unique(yf))
    m = TMU(**FAST, hard_fraction="auto")
    m.unlearn(original, random.forget, random.retain, heldout=random.heldout)
    hard = m.last_details["forget_hard"]
    assert int(hard.sum()) == expected
    # and they are the least-easy of their class
    p = m.last_details["forget_p_easy"]
    for c in torch.unique(yf):
        rows = yf == c
        if hard[rows].any() and (~hard[rows]).any():
            assert p[rows][hard[rows]].max() <= p[rows][~hard[rows]].min()


def test_unlearn_model_twin_hands_back_the_twin(splits):
    """With no unlearning epochs, "original" returns M_o unchanged, "twin" the twin M_t: the one that
    was fine-tuned on D_twin, so it fits D_twin better than M_o does."""
    random, _, original = splits
    xh, yh = random.heldout.tensors
    settings = dict(FAST, twin_match=False, twin_lr=0.05)
    out_o = TMU(**settings).unlearn(original, random.forget, random.retain, heldout=random.heldout)
    out_t = TMU(**settings, unlearn_model="twin").unlearn(original, random.forget, random.retain,
                                                          heldout=random.heldout)
    same = all(torch.equal(a, b) for a, b in zip(out_o.state_dict().values(), original.state_dict().values()))
    assert same
    assert not all(torch.equal(a, b) for a, b in zip(out_t.state_dict().values(), original.state_dict().values()))
    loss = torch.nn.functional.cross_entropy
    assert float(loss(predict(out_t, xh), yh)) < float(loss(predict(original, xh), yh))


def test_each_phase_cost_is_logged(splits):
    import time

    random, _, original = splits
    m = TMU(**dict(FAST, epochs=1, twin_match=False))
    t0 = time.perf_counter()
    m.unlearn(original, random.forget, random.retain, heldout=random.heldout)
    wall = time.perf_counter() - t0
    cost = [e for e in m.last_history if e.phase == "cost"]
    assert len(cost) == 1
    logs = cost[0].logs
    phases = ("twin", "curriculum", "features", "predictor", "unlearn")
    assert set(logs) == {f"{k}_s" for k in (*phases, "total")} | {
        f"{k}_samples" for k in ("twin", "curriculum", "features", "unlearn", "total")} | {"curriculum_cached"}
    assert logs["curriculum_cached"] == 0  # cache_curriculum is off by default
    # samples through a backward pass: one twin epoch over D_r + D_f + D_twin, one curriculum epoch
    # over the same, 5 PGD steps per D_twin and D_f sample (AF), one unlearning epoch over D_r + D_f
    n_f, n_r, n_h = len(random.forget_idx), len(random.retain_idx), len(random.heldout_idx)
    assert (logs["twin_samples"], logs["curriculum_samples"], logs["features_samples"], logs["unlearn_samples"]) == (
        n_r + n_f + n_h, 0, 5 * (n_h + n_f), n_r + n_f)
    assert m.last_details["samples"]["total"] == logs["total_samples"] == 2 * (n_r + n_f) + n_h + 5 * (n_h + n_f)
    assert all(logs[f"{k}_s"] >= 0 for k in phases) and logs["unlearn_s"] > 0 and logs["twin_s"] > 0
    assert math.isclose(logs["total_s"], sum(logs[f"{k}_s"] for k in phases), rel_tol=1e-9)
    assert logs["total_s"] <= wall
    assert m.last_details["seconds"]["total"] == logs["total_s"]


def test_twin_checked_every_few_steps_stops_at_the_first_check_that_reaches_the_target(splits):
    random, _, original = splits
    xf, yf = random.forget.tensors
    target = float((predict(original, xf).argmax(1) == yf).float().mean())
    n_train = len(random.retain_idx) + len(random.forget_idx) + len(random.heldout_idx)
    per_epoch = math.ceil(n_train / 64)
    m = TMU(**dict(FAST, twin_epochs=4, twin_lr=0.05, twin_check_every=5))
    m.unlearn(original, random.forget, random.retain, heldout=random.heldout)
    checks = [e for e in m.last_history if e.phase == "twin_check"]
    twin_steps = [e for e in m.last_history if e.phase == "twin"]
    tc = m.last_details["twin_check"]
    assert checks[0].step == 0 and checks[0].logs["orig_acc_forget"] == pytest.approx(target)
    # checks every 5 steps and at each epoch's end, at the step counts logged
    assert all(c.step % 5 == 0 or c.step % per_epoch == 0 for c in checks[1:])
    assert [c.step for c in checks] == sorted({c.step for c in checks})
    reached = [c.logs["twin_acc_twin"] >= target - 0.01 for c in checks]
    assert not any(reached[:-1]) and (reached[-1] or tc["steps"] == 4 * per_epoch)
    # it trained exactly up to its last check, no further
    assert tc["steps"] == len(twin_steps) == checks[-1].step
    assert tc["epochs"] == pytest.approx(tc["steps"] / per_epoch)
    assert tc["samples"] == min(tc["steps"] * 64, tc["steps"] // per_epoch * n_train + tc["steps"] % per_epoch * 64)


def test_twin_others_fine_tunes_on_d_twin_and_a_fresh_draw_of_the_rest(splits, monkeypatch):
    """Each twin epoch: every D_twin sample once, plus round(r * |D_twin|) other training samples,
    drawn afresh (different ones each epoch)."""
    from unlearnkit.data.batches import TensorSource

    random, _, original = splits
    n_h = len(random.heldout_idx)
    n_train = len(random.retain_idx) + len(random.forget_idx)
    picked = []
    subset = TensorSource.subset

    def spy(self, idx):
        if self.name == "twin_train":
            picked.append(torch.as_tensor(idx).clone())
        return subset(self, idx)

    monkeypatch.setattr(TensorSource, "subset", spy)
    m = TMU(**dict(FAST, twin_epochs=3, twin_match=False, twin_others=1.5))
    m.unlearn(original, random.forget, random.retain, heldout=random.heldout)
    monkeypatch.undo()
    assert len(picked) == 3
    for idx in picked:
        assert len(idx) == n_h + round(1.5 * n_h) and len(torch.unique(idx)) == len(idx)
        assert torch.equal(idx[:n_h], torch.arange(n_train, n_train + n_h))  # all of D_twin (placed last)
        assert bool((idx[n_h:] < n_train).all())
    assert not torch.equal(picked[0][n_h:], picked[1][n_h:])
    tc = m.last_details["twin_check"]
    assert tc["epochs"] == 3 and tc["samples"] == 3 * (n_h + round(1.5 * n_h))
    assert [e.step for e in m.last_history if e.phase == "twin_check"] == [0, 1, 2, 3]


# --- the curriculum model: seeded on its own, cached across calls on the same data -------------------------

CF_ONLY = dict(twin_epochs=1, curriculum_epochs=1, predictor_epochs=2, epochs=1, features=("cf",))


def _cf_forget(method):
    """The mean raw CF of D_f that the call logged (computed with the curriculum model on D_f)."""
    return next(e.logs["cf_forget"] for e in method.last_history if e.phase == "features" and "cf_forget" in e.logs)


def test_a_cached_curriculum_model_gives_the_result_of_training_it(splits, tmp_path, monkeypatch):
    """The oracle is the call without a cache: a cold cached call and a warm one (the model loaded,
    no curriculum step run) return the very same weights; the warm call counts the cold call's
    training seconds as its cost."""
    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path))
    random, _, original = splits
    args = (original, random.forget, random.retain)
    plain = TMU(**CF_ONLY)
    expected = state_copy(plain.unlearn(*args, heldout=random.heldout, seed=3))
    assert not list(tmp_path.iterdir())  # off by default: nothing written

    cold, warm = TMU(**CF_ONLY, cache_curriculum=True), TMU(**CF_ONLY, cache_curriculum=True)
    got_cold = state_copy(cold.unlearn(*args, heldout=random.heldout, seed=3))
    files = sorted(tmp_path.glob("tmu-curriculum-*.pt"))
    assert len(files) == 1
    got_warm = state_copy(warm.unlearn(*args, heldout=random.heldout, seed=3))
    assert sorted(tmp_path.glob("tmu-curriculum-*.pt")) == files
    for name, e in expected.items():
        assert torch.equal(e, got_cold[name]) and torch.equal(e, got_warm[name])

    assert cold.last_cached_seconds == 0.0 and not cold.last_details["curriculum_cached"]
    assert any(e.phase == "curriculum" for e in cold.last_history)
    assert warm.last_details["curriculum_cached"] and not any(e.phase == "curriculum" for e in warm.last_history)
    stored = torch.load(files[0], weights_only=True)["meta"]["seconds"]
    assert warm.last_cached_seconds == pytest.approx(stored) and stored > 0
    cost = next(e.logs for e in warm.last_history if e.phase == "cost")
    assert cost["curriculum_cached"] == 1 and cost["curriculum_s"] == pytest.approx(stored)
    phases = ("twin", "curriculum", "features", "predictor", "unlearn")
    assert cost["total_s"] == pytest.approx(sum(cost[f"{k}_s"] for k in phases))  # the load is not booked twice
    assert cost["curriculum_loaded_s"] >= 0 and "curriculum_loaded_s" not in next(
        e.logs for e in cold.last_history if e.phase == "cost")
    assert cost["curriculum_samples"] == len(random.retain_idx) + len(random.forget_idx) + len(random.heldout_idx)


def test_the_curriculum_model_depends_on_its_data_and_seed_not_on_the_phases_before_it(splits, tmp_path, monkeypatch):
    """Another twin schedule (more draws from the call's generator before the curriculum phase)
    leaves the curriculum model, so CF of D_f, unchanged and hits the cache; another seed or another
    forget set is a new model (a miss)."""
    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path))
    random, _, original = splits
    args = (original, random.forget, random.retain)
    base = TMU(**CF_ONLY)
    base.unlearn(*args, heldout=random.heldout, seed=3)
    other_twin = TMU(**dict(CF_ONLY, twin_epochs=3, twin_match=False))
    other_twin.unlearn(*args, heldout=random.heldout, seed=3)
    assert _cf_forget(other_twin) == _cf_forget(base)

    first = TMU(**CF_ONLY, cache_curriculum=True)
    first.unlearn(*args, heldout=random.heldout, seed=3)
    hit = TMU(**dict(CF_ONLY, twin_epochs=3, twin_match=False, lr=0.02), cache_curriculum=True)
    hit.unlearn(*args, heldout=random.heldout, seed=3)
    assert hit.last_details["curriculum_cached"] and _cf_forget(hit) == _cf_forget(base)
    assert len(list(tmp_path.glob("tmu-curriculum-*.pt"))) == 1

    other_seed = TMU(**CF_ONLY, cache_curriculum=True)
    other_seed.unlearn(*args, heldout=random.heldout, seed=4)
    other = make_split(random.data, forget="random", fraction=0.1, seed=1, heldout_fraction=0.2)
    other_data = TMU(**CF_ONLY, cache_curriculum=True)
    other_data.unlearn(original, other.forget, other.retain, heldout=other.heldout, seed=3)
    assert not other_seed.last_details["curriculum_cached"] and not other_data.last_details["curriculum_cached"]
    assert len(list(tmp_path.glob("tmu-curriculum-*.pt"))) == 3


def test_a_cache_dir_that_is_not_a_path_is_refused_before_any_work(splits):
    random, _, original = splits
    with pytest.raises(TypeError, match=r"cache_dir: expected a folder path \(str or os.PathLike\) or None, got int"):
        TMU(**CF_ONLY, cache_curriculum=True).unlearn(original, random.forget, random.retain, heldout=random.heldout,
                                                      cache_dir=3)


def test_streamed_data_trains_the_curriculum_model_every_call(splits, tmp_path, monkeypatch):
    """Data the cache cannot key by content (a Dataset, read in batches) is never cached."""
    from torch.utils.data import TensorDataset

    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path))
    random, _, original = splits
    streamed = [TensorDataset(*s.tensors) for s in (random.forget, random.retain, random.heldout)]

    class Items(torch.utils.data.Dataset):  # not a TensorDataset: streamed, item by item
        def __init__(self, ds):
            self.ds = ds

        def __len__(self):
            return len(self.ds)

        def __getitem__(self, i):
            return self.ds[i]

    m = TMU(**CF_ONLY, cache_curriculum=True)
    m.unlearn(original, Items(streamed[0]), Items(streamed[1]), heldout=Items(streamed[2]), seed=3)
    assert not m.last_details["curriculum_cached"] and m.last_cached_seconds == 0.0
    assert not list(tmp_path.iterdir())
