"""MUDA, DLFD and TMU on the streaming path (issue 17, item 2): given the same data as a plain
map-style Dataset (or a DataLoader) they return the same weights, bit for bit, as given tensors,
and they read the streamed sets only in minibatches and small index sets, never whole.

Oracles: the tensor-path run of the same method and seed (whose bit-identity with the code before
the conversion is checked by ``/work/runs/bitcheck_seeds.py`` on the digits recipes); a hand count
of the items MUDA must read.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from unlearnkit.data import LoaderSource, load_digits
from unlearnkit.methods import get_method
from unlearnkit.methods._contract import SAMPLE_SIZE
from unlearnkit.models import build_model
from unlearnkit.training import TrainConfig, fit


class Items(Dataset):
    """A user's dataset over the same tensors: tuple or dict items, read one by one, counted."""

    def __init__(self, x, y, as_dict=False):
        self.x, self.y, self.as_dict, self.reads = x, y, as_dict, 0

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        self.reads += 1
        if self.as_dict:
            return {"image": self.x[i], "label": int(self.y[i])}
        return self.x[i], int(self.y[i])


@pytest.fixture(scope="module")
def setup():
    data = load_digits()
    x, y = data.x_train[:300], data.y_train[:300]
    xt, yt = data.x_test[:100], data.y_test[:100]
    torch.manual_seed(0)
    model = build_model("small-cnn", data)
    fit(model, x, y, TrainConfig(epochs=4, batch_size=32, lr=0.05), seed=0)
    parts = {"forget": (x[:40], y[:40]), "retain": (x[40:], y[40:]), "test": (xt[:50], yt[:50]),
             "heldout": (xt[50:], yt[50:])}
    return model, parts


CASES = {
    "muda": dict(epochs=2, batch_size=16, bank_size=64, refresh=2, probe_every=3, probe_samples=20,
                 forget_loss="neg_ce", recover_ratio=2.0),
    # threshold 0: the synthesis (forget cycle, OT) runs at every step; 0.5: validation at every check
    "dlfd": dict(epochs=1, batch_size=32, steps=2, alpha=0.01, forget_threshold=0.0, max_forgetting_score=0.5,
                 mia_samples=20, mia_splits=2, check_every=2, val_samples=30),
    "tmu": dict(twin_epochs=1, twin_match=False, pgd_steps=2, curriculum_epochs=1, predictor_epochs=5,
                epochs=1, batch_size=32, twin_batch_size=64, curriculum_batch_size=64),
}


def _params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _run(name, model, forget, retain, test, heldout):
    method = get_method(name)(**CASES[name])
    extra = {"heldout": heldout} if method.needs_heldout else {}
    with warnings.catch_warnings():  # the methods' data-quality warnings on tiny sets
        warnings.simplefilter("ignore")
        out = method.unlearn(model, forget, retain, test=test, seed=3, **extra)
    return out, method.last_history


@pytest.mark.parametrize("name", list(CASES))
def test_streamed_is_bit_identical_to_tensors_and_never_materialised(setup, name, monkeypatch):
    model, parts = setup
    fast, fast_history = _run(name, model, *parts.values())

    items = {k: Items(x, y, as_dict=(k == "retain")) for k, (x, y) in parts.items()}
    streamed_args = dict(items)
    if name == "tmu":  # a DataLoader too (its batch size and order are replaced by the method's)
        streamed_args["heldout"] = DataLoader(items["heldout"], batch_size=7, shuffle=True)

    def no_materialising(self):
        raise AssertionError(f"{self.name}: a streamed source was materialised whole")

    monkeypatch.setattr(LoaderSource, "tensors", no_materialising)
    streamed, streamed_history = _run(name, model, *streamed_args.values())
    monkeypatch.undo()

    a, b, orig = _params(fast), _params(streamed), _params(model)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    assert any(not torch.equal(a[k], orig[k]) for k in a)  # the method did change the model
    # the same steps with the same logged values (losses, OT, forgetting scores, probes); wall-clock
    # seconds (TMU's cost event: keys ending in _s) are the one thing two runs cannot share
    def untimed(history):
        return [(e.phase, e.step, {k: v for k, v in e.logs.items() if not k.endswith("_s")}) for e in history]

    assert untimed(fast_history) == untimed(streamed_history)


def test_muda_reads_exactly_its_passes_bank_and_probe(setup):
    """Hand count: MUDA reads D_f once per forget phase, D_r only through its retain cycle (recover
    steps), the bank and the probe subsamples, each item once; plus the one item each source
    reads when built (to check its format) and the sample of each set the call's contract check
    reads (``_contract.SAMPLE_SIZE`` items). Materialising either set would add a whole pass."""
    model, parts = setup
    (xf, yf), (xr, yr) = parts["forget"], parts["retain"]
    n_f, n_r = len(yf), len(yr)  # 40, 260
    forget, retain = Items(xf, yf), Items(xr, yr)
    hp = dict(epochs=2, batch_size=20, bank_size=50, refresh=1, recover_ratio=3.0, probe_every=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        get_method("muda")(**hp).unlearn(model, forget, retain, seed=0)
    forget_steps = -(-n_f // 20)  # 2
    recover = 2 * int(3.0 * forget_steps) * 20  # 12 retain batches of 20 = 240 items, within one pass of 260
    assert recover <= n_r
    assert forget.reads == 1 + SAMPLE_SIZE + 2 * n_f
    assert retain.reads == 1 + SAMPLE_SIZE + 50 + recover


@pytest.mark.parametrize("name", list(CASES))
def test_streamed_runs_under_the_calls_precision(setup, name):
    # bf16 autocast reaches the converted loops: the weights move off the fp32 ones by bf16 rounding
    # only (measured max |diff| on this setup: MUDA 9e-4, DLFD 2e-4, TMU 5e-4)
    model, parts = setup
    fp32, _ = _run(name, model, *parts.values())
    items = [Items(x, y) for x, y in parts.values()]
    method = get_method(name)(**CASES[name])
    extra = {"heldout": items[3]} if method.needs_heldout else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bf16 = method.unlearn(model, items[0], items[1], test=items[2], seed=3, precision="bf16", **extra)
    a, b = _params(fp32), _params(bf16)
    diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert 0 < diff < 0.02
    assert all(torch.isfinite(v).all() for v in b.values() if v.is_floating_point())


def test_tmu_with_the_users_collate_reads_into_memory_with_a_warning(setup):
    # a custom collate_fn cannot be concatenated item by item: TMU reads its sets into memory, says
    # so, and gives the tensor path's weights
    model, parts = setup
    oracle, _ = _run("tmu", model, *parts.values())

    def collate(items):
        return {"image": torch.stack([i[0] for i in items]), "label": torch.tensor([i[1] for i in items])}

    loaders = [DataLoader(Items(x, y), collate_fn=collate) for x, y in parts.values()]
    method = get_method("tmu")(**CASES["tmu"])
    with pytest.warns(UserWarning, match="custom collate_fn"):
        out = method.unlearn(model, loaders[0], loaders[1], heldout=loaders[3], seed=3)
    a, b = _params(oracle), _params(out)
    assert all(torch.equal(a[k], b[k]) for k in a)
