"""CF-k, EU-k, UNSIR, Fisher forgetting and SISA behind the one interface, on real data (digits).

The digits original model memorises its forget set (accuracy 1.0, loss ~0.001; the gold model's
forget loss is several times larger), so "moves towards gold" is checked as the forget loss rising
well above the original's (or, for a removed class, forget accuracy falling to the gold model's 0)
while retained accuracy stays high. Each method's mechanism is checked against an independent
computation: parameters compared before/after (CF-k, EU-k), a fresh re-initialisation drawn by
hand (EU-k), a brute-force per-sample Fisher (one backward per sample and class), hand-worked
noise variances, and for SISA a from-scratch SISA training without the deleted samples.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from helpers import accuracy_on as _acc
from helpers import loss_on as _loss
from torch import nn
from torch.nn import functional as F

from unlearnkit.bench.recipes import method_recipe
from unlearnkit.data import load_digits, make_split
from unlearnkit.methods import METHODS, get_method
from unlearnkit.methods.cf_k import parameterised_layers
from unlearnkit.methods.fisher import diagonal_fisher, noise_variance
from unlearnkit.methods.sisa import SisaEnsemble, assign, slice_epochs, train_sisa
from unlearnkit.methods.unsir import error_maximising_noise
from unlearnkit.models import SmallCNN
from unlearnkit.training import predict

NEW = ("cf_k", "eu_k", "unsir", "fisher", "sisa")


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def run(digits_models):
    """A function ``run(name, split=None, retain_n=None, scenario=None, **extra)`` returning (split,
    original, gold, unlearned) for ``name`` with its digits recipe for ``scenario`` (each run made once
    per module); ``retain_n``: hand the method only that many retain samples (to keep a slow method's
    test short)."""
    runs: dict = {}

    def get(name, split=None, retain_n=None, scenario=None, **extra):
        key = (name, split is not None, retain_n, scenario, tuple(sorted(extra.items())))
        if key not in runs:
            s, original, gold = digits_models
            split = split or s
            x, y = split.retain.tensors
            retain = (x[:retain_n], y[:retain_n]) if retain_n else split.retain
            out = get_method(name)(**{**method_recipe("digits", name, scenario=scenario), **extra}).unlearn(
                original, split.forget, retain, seed=0)
            runs[key] = (split, original, gold, out)
        return runs[key]

    return get


@pytest.fixture(scope="module")
def class_split(digits_models):
    """The digits split with class 3 forgotten."""
    split, _, _ = digits_models
    return make_split(split.data, forget="class", forget_class=3, seed=0)


def test_registered_with_citations_and_recipes():
    for name in NEW:
        cls = METHODS[name]
        assert cls.paper and cls.name == name
        get_method(name)(**method_recipe("digits", name))  # the recipe passes validation


# --- CF-k / EU-k ------------------------------------------------------------------------------

def test_layers_are_counted_from_the_head_in_forward_order_norms_join_their_layer():
    torch.manual_seed(0)
    cnn = SmallCNN(1, 10, 8, channels=(2, 3), feature_dim=6)
    groups = parameterised_layers(cnn, torch.rand(2, 1, 8, 8))
    assert [g for g in groups] == [[cnn.conv[0]], [cnn.conv[3]], [cnn.fc[1]], [cnn.classifier]]
    # registered head-first, run head-last, with a BatchNorm: the forward order decides
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.out = nn.Linear(4, 3)
            self.conv = nn.Conv2d(1, 4, 3)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            return self.out(self.bn(self.conv(x)).mean((2, 3)))

    odd = Odd()
    assert parameterised_layers(odd, torch.rand(2, 1, 5, 5)) == [[odd.conv, odd.bn], [odd.out]]


@pytest.mark.slow  # 5 epochs on the retain set: 183 s at load ~25 on 2 cores
def test_cf_k_changes_only_the_last_k_layers_and_forgets(run):
    split, original, gold, out = run("cf_k")
    k = method_recipe("digits", "cf_k").get("k", 2)
    before, after = _state(original), _state(out)
    trained = {"fc.1", "classifier"} if k == 2 else None
    assert trained is not None, "the test assumes the digits recipe's k = 2"
    for name in before:
        same = torch.equal(before[name], after[name])
        assert same == (name.rsplit(".", 1)[0] not in trained), name
    # the weakest of the five here: the frozen conv layers keep the memorised features, so the forget
    # loss moves towards gold's only a little (CF-k's known weakness); it must move, not stay
    assert _loss(out, split.forget) > 1.1 * _loss(original, split.forget)
    assert _acc(out, split.retain) >= 0.98
    assert _acc(out, split.test) >= _acc(original, split.test) - 0.03


def test_cf_k_on_a_wrapped_model_and_k_beyond_the_model(digits_models):
    split, original, _ = digits_models

    class Wrapped(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)

    wrapped = Wrapped(copy.deepcopy(original))
    out = get_method("cf_k")(k=1, epochs=1).unlearn(wrapped, split.forget, split.retain)
    for name, v in _state(wrapped).items():
        assert torch.equal(v, out.state_dict()[name]) == (not name.startswith("inner.classifier")), name
    with pytest.raises(ValueError, match=r"^cf_k\.k: expected at most 4 \(the model's parameterised layers\), got 5$"):
        get_method("cf_k")(k=5).unlearn(original, split.forget, split.retain)


def test_eu_k_reinitialises_the_last_k_layers(digits_models):
    split, original, _ = digits_models
    out = get_method("eu_k")(k=2, epochs=0).unlearn(original, split.forget, split.retain, seed=5)
    # oracle: the same draws by hand (torch.manual_seed(seed), reset in forward order)
    fc, head = copy.deepcopy(original.fc[1]), copy.deepcopy(original.classifier)
    torch.manual_seed(5)
    fc.reset_parameters()
    head.reset_parameters()
    assert torch.equal(out.fc[1].weight, fc.weight) and torch.equal(out.classifier.bias, head.bias)
    assert not torch.equal(out.classifier.weight, original.classifier.weight)
    for name in ("conv.0.weight", "conv.3.bias"):
        assert torch.equal(out.state_dict()[name], original.state_dict()[name])


def test_eu_k_forgets_and_keeps_retain(run):
    split, original, gold, out = run("eu_k")
    for name in ("conv.0.weight", "conv.3.weight"):
        assert torch.equal(out.state_dict()[name], original.state_dict()[name])
    assert _loss(out, split.forget) > 3 * _loss(original, split.forget)
    assert _acc(out, split.retain) >= 0.97
    assert _acc(out, split.test) >= _acc(original, split.test) - 0.04


# --- UNSIR ------------------------------------------------------------------------------------

def test_unsir_noise_maximises_the_error(digits_models):
    _, original, _ = digits_models
    labels = torch.arange(10).repeat(3)
    g = torch.Generator().manual_seed(0)
    start = torch.randn((30, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    noise = error_maximising_noise(original, labels, (1, 8, 8), lr=0.1, epochs=5, steps=8, reg=0.1, generator=g,
                                   device="cpu")
    assert torch.equal(torch.randn((30, 1, 8, 8), generator=torch.Generator().manual_seed(0)), start)
    ce = lambda x: float(F.cross_entropy(predict(original, x), labels))  # noqa: E731
    assert ce(noise) > ce(start) + 1.0


@pytest.mark.slow  # 180 s at load ~25 on 2 cores
def test_unsir_random_forgetting_moves_forget_loss_and_keeps_retain(run):
    split, original, gold, out = run("unsir")
    assert _loss(out, split.forget) > 3 * _loss(original, split.forget)
    assert _acc(out, split.retain) >= 0.97
    assert _acc(out, split.test) >= _acc(original, split.test) - 0.05


@pytest.mark.slow  # 5,120 noise images + the retain set through Adam: 316 s at load ~25 on 2 cores
def test_unsir_removes_a_class(class_split, run):
    # (a gold model for a removed class has forget accuracy 0 by construction)
    split, original, gold, out = run("unsir", split=class_split, scenario="class-3")
    assert _acc(original, split.forget) >= 0.99  # memorised (measured: all of it; a sample may flip elsewhere)
    assert _acc(out, split.forget) <= 0.05
    assert _acc(out, split.retain) >= 0.95


# --- Fisher forgetting ------------------------------------------------------------------------

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


# --- SISA -------------------------------------------------------------------------------------

def test_slice_epochs_follow_the_official_schedule():
    assert slice_epochs(30, 4) == [12, 12, 12, 12]
    assert slice_epochs(6, 4) == [2, 2, 3, 2]
    assert slice_epochs(5, 1) == [5]
    for e, r in ((30, 4), (6, 4), (7, 3)):  # each shard sample seen about E times
        seen = sum(ep * (i + 1) / r for i, ep in enumerate(slice_epochs(e, r)))
        assert abs(seen - e) <= 1.5
    a = assign(103, 4, 3, seed=0)
    counts = np.bincount(a[:, 0] * 3 + a[:, 1], minlength=12)
    assert counts.sum() == 103 and counts.max() - counts.min() <= 1


@pytest.fixture(scope="module")
def small_sisa(digits_models):
    split, original, _ = digits_models
    x, y = split.data.x_train[:600], split.data.y_train[:600]
    template = copy.deepcopy(original)
    kw = dict(shards=3, slices=3, epochs=6, batch_size=32, lr=0.05, seed=1)
    return template, x, y, kw, train_sisa(template, x, y, **kw)


def test_sisa_unlearning_is_exact(small_sisa):
    template, x, y, kw, ens0 = small_sisa
    ens = copy.deepcopy(ens0)
    a = ens.assignment
    in_0_1 = np.flatnonzero((a[:, 0] == 0) & (a[:, 1] == 1))[:5]
    in_0_2 = np.flatnonzero((a[:, 0] == 0) & (a[:, 1] == 2))[:3]
    before = [_state(m) for m in ens.constituents]
    report = ens.unlearn(np.r_[in_0_2, in_0_1])
    assert report["shards"] == [0] and report["from_slice"] == {0: 1}
    for s in (1, 2):  # untouched shards: bit-identical
        assert all(torch.equal(before[s][k], v) for k, v in ens.constituents[s].state_dict().items())
    assert not all(torch.equal(before[0][k], v) for k, v in ens.constituents[0].state_dict().items())
    # oracle: SISA trained from scratch without the deleted samples (same assignment and seeds)
    keep = np.setdiff1d(np.arange(len(y)), np.r_[in_0_1, in_0_2])
    ref = train_sisa(template, x[torch.from_numpy(keep)], y[torch.from_numpy(keep)], assignment=a[keep], **kw)
    for m, r in zip(ens.constituents, ref.constituents):
        assert all(torch.equal(v, r.state_dict()[k]) for k, v in m.state_dict().items())
    # the checkpoints before the first dirty slice were reused, not recomputed
    assert all(torch.equal(ens.checkpoints[0][1][k], v) for k, v in ens0.checkpoints[0][1].items())


def test_sisa_ensemble_honours_the_model_contract_and_votes(small_sisa, digits_models):
    _, x, y, _, ens = small_sisa
    xb = x[:50]
    z = ens.features(xb)
    assert z.shape == (50, 3 * ens.constituents[0].feature_dim)
    torch.testing.assert_close(ens(xb), ens.head(z))
    probs = torch.stack([F.softmax(m(xb), 1) for m in ens.constituents])
    torch.testing.assert_close(ens(xb).exp(), probs.mean(0))
    ens.aggregation = "vote"
    try:
        labels = probs.argmax(2)  # (S, N): majority by hand, ties to the highest mean probability
        counts = torch.stack([(labels == c).sum(0) for c in range(10)], 1).float()
        expect = (counts + probs.mean(0) * 0.999).argmax(1)
        assert torch.equal(ens(xb).argmax(1), expect)
        torch.testing.assert_close(ens(xb).exp().sum(1), torch.ones(50))
    finally:
        ens.aggregation = "mean"
    # 3 shards of 200 digits, 6 epochs each: the aggregate has learned (unseen training images 600-999)
    data = digits_models[0].data
    held_x, held_y = data.x_train[600:1000], data.y_train[600:1000]
    assert float((predict(ens, held_x).argmax(1) == held_y).float().mean()) >= 0.7


def test_sisa_method_on_a_trained_ensemble_locates_forget_samples(small_sisa):
    _, x, y, kw, ens0 = small_sisa
    idx = np.flatnonzero(ens0.assignment[:, 0] == 2)[:4]
    keep = np.setdiff1d(np.arange(len(y)), idx)
    sisa = get_method("sisa")(shards=3, slices=3, epochs=6, batch_size=32)
    out = sisa.unlearn(ens0, (x[idx], y[idx]), (x[keep], y[keep]))
    assert isinstance(out, SisaEnsemble) and out is not ens0 and ens0.alive.all()
    assert out.last_unlearn["shards"] == [2] and not out.alive[idx].any()
    with pytest.raises(ValueError, match="forget: expected samples of the SISA training set"):
        sisa.unlearn(ens0, (x[:2] + 0.5, y[:2]), (x, y))


@pytest.mark.slow  # trains a 4-shard SISA ensemble twice over (training + deletion): 543 s at load ~25 on 2 cores
def test_sisa_method_from_a_plain_model_never_saw_the_forget_set(run):
    # the digits recipe (4 shards x 4 slices, 10 epochs): each constituent sees ~360 digits, so the
    # aggregate is well below one model (retain 0.90, test 0.89 on seed 0, measured; 5 epochs gave 0.60);
    # what must hold is that the forget samples are no better known than the retained ones
    split, original, gold, out = run("sisa")
    assert isinstance(out, SisaEnsemble) and out.last_unlearn["shards"] == [0, 1, 2, 3]
    assert _loss(out, split.forget) > 5 * _loss(original, split.forget)
    assert _acc(out, split.forget) <= _acc(out, split.retain) + 0.02
    assert _acc(out, split.retain) >= 0.8 and _acc(out, split.test) >= 0.75


def test_bad_hyperparameters_name_the_field(digits_models):
    with pytest.raises(ValueError, match=r"^cf_k\.k: expected an int >= 1, got 0$"):
        get_method("cf_k")(k=0)
    with pytest.raises(ValueError, match=r"^eu_k\.lr: expected a number > 0"):
        get_method("eu_k")(lr=0.0)
    with pytest.raises(ValueError, match=r"^unsir\.mode: expected one of \['auto', 'class', 'sample'\], got 'x'$"):
        get_method("unsir")(mode="x")
    with pytest.raises(TypeError, match=r"^unsir\.noise_batch: expected an int"):
        get_method("unsir")(noise_batch=2.5)
    with pytest.raises(ValueError, match=r"^fisher\.alpha: expected a number > 0, got -1"):
        get_method("fisher")(alpha=-1.0)
    with pytest.raises(ValueError, match=r"^sisa\.shards: expected an int >= 1, got 0$"):
        get_method("sisa")(shards=0)
    with pytest.raises(ValueError, match=r"^sisa\.aggregation: expected one of \['mean', 'vote'\]"):
        get_method("sisa")(aggregation="median")
    split, original, _ = digits_models
    x, y = split.forget.tensors
    with pytest.raises(ValueError, match=r"^shards, slices: expected at most 10 slices in all"):
        train_sisa(original, x[:10], y[:10], shards=4, slices=3)
    with pytest.raises(ValueError, match=r"^assignment: expected shape \(10, 2\)"):
        train_sisa(original, x[:10], y[:10], assignment=np.zeros((9, 2)))
    with pytest.raises(ValueError, match=r"^executor: expected one of"):
        train_sisa(original, x[:10], y[:10], shards=2, slices=1, epochs=0, executor="dask")


@pytest.mark.slow  # starts a local Ray (about 10 s)
def test_sisa_shards_as_ray_tasks_match_the_serial_run():
    ray = pytest.importorskip("ray")
    data = load_digits()
    x, y = data.x_train[:300], data.y_train[:300]
    torch.manual_seed(0)
    model = SmallCNN(1, 10, 8, channels=(4, 8), feature_dim=16)
    kw = dict(shards=2, slices=2, epochs=2, batch_size=32, seed=3)
    serial = train_sisa(model, x, y, **kw)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = train_sisa(model, x, y, executor="ray", **kw)
        trained = {k: v.clone() for k, v in on_ray.state_dict().items()}
        report = on_ray.unlearn([0, 1], executor="ray")
    finally:
        if started:
            ray.shutdown()
    # workers run torch with their own thread count: equal up to float rounding, not bit for bit
    for k, v in serial.state_dict().items():
        torch.testing.assert_close(trained[k], v, rtol=1e-4, atol=1e-5)
    assert report["shards"] == sorted({int(s) for s in on_ray.assignment[[0, 1], 0]})
