"""CF-k, EU-k, UNSIR, Fisher forgetting and SISA on streamed data (issue 17): given a map-style
Dataset or a DataLoader over the same images, each method gives bit for bit the weights it gives
on the in-memory tensors (the oracle), and it never materialises the streamed forget or retain
set: ``LoaderSource.tensors`` (what ``data.x_retain`` and friends call) raises during those runs."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from unlearnkit.data import LoaderSource, load_digits
from unlearnkit.methods import get_method
from unlearnkit.methods.base import UnlearnData
from unlearnkit.methods.sisa import SisaEnsemble, train_sisa
from unlearnkit.models import SmallCNN
from unlearnkit.training import TrainConfig, fit


class Items(Dataset):
    """A user's dataset read item by item; ``targets`` (labels known without reading the images)
    only when asked, so both ways of finding the labels are exercised."""

    def __init__(self, x, y, targets=False):
        self.x, self.y = x, y
        if targets:
            self.targets = y.tolist()

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    # load_digits' images have strides (64, 1, 8, 1), which torch also reads as channels-last (one
    # channel): a conv then takes another kernel than on the stacked items of a Dataset (strides
    # (64, 64, 8, 1)) and rounds differently. Same values in the standard layout on both paths:
    x, y = d.x_train[:600].clone(memory_format=torch.contiguous_format), d.y_train[:600]
    torch.manual_seed(0)
    model = SmallCNN(1, 10, 8, channels=(4, 8), feature_dim=16)
    fit(model, x, y, TrainConfig(epochs=4, batch_size=32, lr=0.05), seed=0)
    return x, y, model


def _splits(x, y, kind):
    if kind == "class":
        f = y == 3
    else:
        f = torch.zeros(len(y), dtype=torch.bool)
        f[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:60]] = True
    return (x[f], y[f]), (x[~f], y[~f])


def _streamed(pair, how):
    x, y = pair
    if how == "dataset":
        return Items(x, y)  # no targets: labels are read through minibatches
    return DataLoader(Items(x, y, targets=True), batch_size=7, shuffle=True)  # batch size and order are replaced


@pytest.fixture
def no_materialising(monkeypatch):
    def refuse(self):
        raise AssertionError(f"{self.name}: a streamed source was read whole into memory")

    monkeypatch.setattr(LoaderSource, "tensors", refuse)


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


CASES = {  # (method, hyper-parameters, forget kind): short runs that still take every branch
    "cf_k": ("cf_k", dict(k=2, epochs=2, batch_size=32), "random"),
    "eu_k": ("eu_k", dict(k=2, epochs=2, batch_size=32), "random"),
    "unsir-sample": ("unsir", dict(noise_epochs=1, noise_steps=3, noise_batch=32, retain_per_class=20, batch_size=32,
                                   repair_epochs=2), "random"),
    "unsir-class": ("unsir", dict(noise_epochs=1, noise_steps=3, noise_batch=16, noise_repeats=2, retain_per_class=20,
                                  batch_size=32), "class"),
    "fisher-random": ("fisher", dict(batch_size=64), "random"),
    "fisher-class": ("fisher", dict(batch_size=64), "class"),
    "sisa": ("sisa", dict(shards=2, slices=2, epochs=2, batch_size=32), "random"),
}


@pytest.mark.parametrize("how", ["dataset", "loader"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_streamed_equals_tensors_and_never_materialises(digits, case, how, monkeypatch):
    x, y, model = digits
    name, hp, kind = CASES[case]
    forget, retain = _splits(x, y, kind)
    method = get_method(name)(**hp)
    oracle = method.unlearn(model, forget, retain, seed=3)
    history = [(e.phase, e.step) for e in method.last_history]

    def refuse(self):
        raise AssertionError(f"{self.name}: a streamed source was read whole into memory")

    monkeypatch.setattr(LoaderSource, "tensors", refuse)
    out = method.unlearn(model, _streamed(forget, how), _streamed(retain, how), seed=3)
    assert [(e.phase, e.step) for e in method.last_history] == history
    _same_weights(out, oracle)
    if name == "sisa":
        assert isinstance(out, SisaEnsemble) and out.last_unlearn["shards"] == [0, 1]
    else:
        assert not all(torch.equal(v, model.state_dict()[k]) for k, v in out.state_dict().items())


def test_the_guard_catches_materialising(digits, no_materialising):
    # what the methods used to do (data.x_retain / y_forget without known labels) fails under the guard
    x, y, _ = digits
    forget, retain = _splits(x, y, "random")
    from unlearnkit.data import as_source
    data = UnlearnData(forget=as_source(Items(*forget), "forget"), retain=as_source(Items(*retain), "retain"),
                       num_classes=10)
    with pytest.raises(AssertionError, match="retain: a streamed source was read whole"):
        _ = data.x_retain
    with pytest.raises(AssertionError, match="forget: a streamed source was read whole"):
        _ = data.y_forget


def test_sisa_ensemble_deletes_a_streamed_forget_set_as_the_tensor_one(digits):
    x, y, model = digits
    x, y = x[:200], y[:200]
    ens0 = train_sisa(copy.deepcopy(model), x, y, shards=2, slices=2, epochs=2, batch_size=32, seed=1)
    # a SISA ensemble trained on a streamed training set is the tensor-trained one
    streamed = train_sisa(copy.deepcopy(model), Items(x, y), shards=2, slices=2, epochs=2, batch_size=32, seed=1)
    _same_weights(streamed, ens0)
    idx = torch.tensor([5, 17, 150])
    keep = torch.tensor([i for i in range(len(y)) if i not in idx.tolist()])
    sisa = get_method("sisa")(shards=2, slices=2, epochs=2, batch_size=32)
    oracle = sisa.unlearn(ens0, (x[idx], y[idx]), (x[keep], y[keep]))
    out = sisa.unlearn(streamed, Items(x[idx], y[idx]), Items(x[keep], y[keep]))
    assert sorted(out.last_unlearn["shards"]) == sorted(oracle.last_unlearn["shards"])
    assert (~out.alive).nonzero()[0].tolist() == idx.tolist()
    _same_weights(out, oracle)


@pytest.mark.parametrize("case", ["fisher-random", "sisa", "unsir-sample"])
def test_streamed_runs_under_the_calls_precision(digits, case):
    # bf16 autocast reaches the converted loops (Fisher's per-sample gradients, UNSIR's noise, SISA's
    # shards): the weights move off the fp32 ones, by bf16 rounding only for Fisher and SISA (measured
    # max |diff| with a 300-digit model of this shape: Fisher 2e-3, SISA 3e-4; UNSIR's Adam steps: 0.15)
    x, y, model = digits
    name, hp, kind = CASES[case]
    forget, retain = _splits(x, y, kind)
    fp32 = get_method(name)(**hp).unlearn(model, forget, retain, seed=3)
    bf16 = get_method(name)(**hp).unlearn(model, _streamed(forget, "loader"), _streamed(retain, "loader"), seed=3,
                                          precision="bf16")
    diff = max((fp32.state_dict()[k].float() - v.float()).abs().max().item() for k, v in bf16.state_dict().items())
    assert diff > 0
    assert diff < (1.0 if name == "unsir" else 0.02)
    assert all(torch.isfinite(v).all() for v in bf16.state_dict().values() if v.is_floating_point())


def test_unsir_with_the_users_collate_reads_only_its_retain_subset(digits, monkeypatch):
    # a custom collate_fn cannot be mixed with the noise's tensor items: UNSIR then reads the impair
    # retain subset (retain_per_class per class, here 20 x 10 of 540) into memory, and nothing else
    x, y, model = digits
    name, hp, kind = CASES["unsir-sample"]
    forget, retain = _splits(x, y, kind)
    method = get_method(name)(**hp)
    oracle = method.unlearn(model, forget, retain, seed=3)

    def collate(items):
        return {"image": torch.stack([i[0] for i in items]), "label": torch.tensor([i[1] for i in items])}

    read = []
    tensors = LoaderSource.tensors
    monkeypatch.setattr(LoaderSource, "tensors", lambda self: read.append(len(self)) or tensors(self))
    out = method.unlearn(model, DataLoader(Items(*forget), collate_fn=collate),
                         DataLoader(Items(*retain), collate_fn=collate), seed=3)
    assert read == [200]
    _same_weights(out, oracle)
