"""The contract every ``Method.unlearn`` call is checked against (``unlearnkit.methods._contract``),
before any work and on its result (issue 23, items 2 and 3).

Each bad input gets its own error, naming the argument, what was expected and what arrived, before
any training; good inputs still pass. The oracles are hand-built cases: a softmax after the head, a
model returning a tuple, ``model.half()``, Subsets whose overlaps and duplicates are counted by
hand, a dataset counting its reads; and a NaN result (NegGrad at lr 10, the issue's case).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from unlearnkit.data import load_digits
from unlearnkit.data.batches import as_source
from unlearnkit.methods import METHODS, get_method
from unlearnkit.methods._contract import SAMPLE_SIZE, DivergedError, check_call
from unlearnkit.methods.base import Method
from unlearnkit.models import FeatureClassifier, WrappedClassifier, build_model, wrap


@pytest.fixture(scope="module")
def small():
    """(model, data): an untrained small CNN on 8x8 digits and the digits training set (contract
    checks need no training; each call below runs at most one short epoch)."""
    data = load_digits()
    torch.manual_seed(0)
    return build_model("small-cnn", data), data


def _quick(name="finetune"):
    return get_method(name)(epochs=1, batch_size=64)


def _parts(data, n_forget=40, n_retain=200):
    x, y = data.x_train, data.y_train
    return (x[:n_forget], y[:n_forget]), (x[n_forget:n_forget + n_retain], y[n_forget:n_forget + n_retain])


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


# --- seed ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed, error, match", [
    (0.5, TypeError, "seed: expected a non-negative integer, got float 0.5"),
    (True, TypeError, "seed: expected a non-negative integer, got bool"),
    ("1", TypeError, "seed: expected a non-negative integer, got str"),
    (-1, ValueError, "seed: expected a non-negative integer below 2\\*\\*63, got -1"),
])
def test_bad_seed_is_named(small, seed, error, match):
    model, data = small
    forget, retain = _parts(data)
    with pytest.raises(error, match=match):
        _quick().unlearn(model, forget, retain, seed=seed)


def test_numpy_integer_seed_is_the_same_seed(small):
    model, data = small
    forget, retain = _parts(data)
    a = _quick().unlearn(model, forget, retain, seed=np.int64(3))
    b = _quick().unlearn(model, forget, retain, seed=3)
    assert torch.equal(_params(a), _params(b))


# --- diverged results (item 2) ----------------------------------------------------------------------------

def test_diverged_neggrad_raises_naming_the_method_and_the_learning_rate(digits_models):
    split, original, _ = digits_models
    with pytest.raises(DivergedError, match=r"after neggrad unlearned it, got NaN or Inf weights .*lr=10\.0.*"
                                            r"input scale \(inputs seen from 0 to 1"):
        get_method("neggrad")(lr=10.0, epochs=3).unlearn(original, split.forget, split.retain)
    assert issubclass(DivergedError, ValueError) and issubclass(DivergedError, FloatingPointError)
    clone = copy.deepcopy(original)
    with pytest.raises(DivergedError, match=r"\(inplace=True: the model passed holds these weights now\)"):
        get_method("neggrad")(lr=10.0, epochs=3).unlearn(clone, split.forget, split.retain, inplace=True)
    # the same method at its recipe's rate returns finite weights, as before
    out = get_method("neggrad")(lr=1e-3, epochs=3).unlearn(original, split.forget, split.retain)
    assert torch.isfinite(_params(out)).all()


@dataclass(frozen=True)
class _FillParams:
    value: float = 3e38


class _Fill(Method):
    """Not registered: sets every head weight to ``value`` (3e38: finite weights; with the non-negative
    ReLU features the outputs overflow to +Inf)."""

    name = "fill"
    paper = "a test double"
    Params = _FillParams

    def _unlearn(self, model, data, ctx):
        with torch.no_grad():
            model.classifier.weight.fill_(self.params.value)
        return model


def test_finite_weights_with_overflowing_outputs_are_refused(small):
    model, data = small
    forget, retain = _parts(data)
    with pytest.raises(DivergedError, match="after fill unlearned it, got NaN or Inf outputs .*lower the step sizes"):
        _Fill().unlearn(model, forget, retain)
    out = _Fill(value=0.5).unlearn(model, forget, retain)  # a finite change passes
    assert torch.all(out.classifier.weight == 0.5)


def test_a_model_with_nan_weights_is_refused_before_any_work(small):
    model, data = small
    bad = copy.deepcopy(model)
    with torch.no_grad():
        bad.classifier.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"model: expected finite weights, got NaN or Inf in 1 tensor\(s\) "
                                         r"\(first: classifier.weight\) before any unlearning"):
        _quick().unlearn(bad, *_parts(data))


# --- input range (item 2) -------------------------------------------------------------------------------

def test_0_255_images_are_named_before_any_work(digits_models):
    split, original, _ = digits_models
    (xf, yf), (xr, yr) = split.forget.tensors, split.retain.tensors
    # the case: 0-255 images to a built-in model (which takes [0, 1] and normalises itself)
    with pytest.raises(ValueError, match=r"forget: expected inputs in \[0, 1\] \(the range SmallCNN takes: it "
                                         r"normalises them itself\), got values from 0 to 255; 0-255 images: divide "
                                         r"them by 255"):
        get_method("neggrad")(epochs=3).unlearn(original, (xf * 255, yf), (xr * 255, yr))
    with pytest.raises(ValueError, match=r"retain: expected inputs in \[0, 1\]"):
        _quick().unlearn(original, (xf, yf), (xr * 255, yr))
    with pytest.raises(ValueError, match=r"test: expected inputs in \[0, 1\]"):
        _quick().unlearn(original, (xf, yf), (xr, yr), test=(xr[:30] * 255, yr[:30]))
    # normalised images (negative values): the other hint
    with pytest.raises(ValueError, match="got values from -.*normalised images: pass the \\[0, 1\\] images"):
        _quick().unlearn(original, ((xf - 0.5) / 0.25, yf), (xr, yr))


class _Items(Dataset):
    """A streamed dataset over tensors, counting the items it is asked for."""

    def __init__(self, x, y):
        self.x, self.y, self.reads = x, y, 0

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        self.reads += 1
        return self.x[i], int(self.y[i])


def test_streamed_0_255_images_are_found_in_a_sample_without_reading_the_set(small, monkeypatch):
    model, data = small
    (xf, yf), (xr, yr) = _parts(data, n_forget=100, n_retain=600)
    forget, retain = _Items(xf * 255, yf), _Items(xr, yr)
    with pytest.raises(ValueError, match=rf"forget: expected inputs in \[0, 1\].*0 to 255 \(in a sample of {SAMPLE_SIZE}\)"):
        _quick().unlearn(model, forget, retain)
    # cost: the item each source reads when built, and one sample of the forget set (which failed)
    assert forget.reads == 1 + SAMPLE_SIZE and retain.reads == 1
    # good streamed data with a zero-epoch method: only those reads (nothing materialised)
    from unlearnkit.data import LoaderSource

    monkeypatch.setattr(LoaderSource, "tensors", lambda self: pytest.fail("a streamed set was read whole"))
    forget, retain = _Items(xf, yf), _Items(xr, yr)
    get_method("finetune")(epochs=0).unlearn(model, forget, retain)
    assert forget.reads == 1 + SAMPLE_SIZE and retain.reads == 1 + SAMPLE_SIZE


def test_range_is_known_only_where_the_model_says_it(small):
    """A wrap view without mean/std takes the model's own units: no range check (0-255 passes); with
    mean/std it normalises [0, 1] images itself, so 0-255 is refused."""
    model, data = small
    (xf, yf), (xr, yr) = _parts(data)
    plain = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    out = _quick().unlearn(plain, (xf * 255, yf), (xr * 255, yr))
    assert isinstance(out, nn.Sequential)
    with pytest.raises(ValueError, match=r"forget: expected inputs in \[0, 1\] \(the range WrappedClassifier takes"):
        _quick().unlearn(wrap(plain, mean=(0.3,), std=(0.3,)), (xf * 255, yf), (xr * 255, yr))


def test_integer_and_float64_inputs_are_named(small):
    model, data = small
    (xf, yf), (xr, yr) = _parts(data)
    with pytest.raises(TypeError, match=r"forget: expected floating-point inputs \(images in \[0, 1\]\), got "
                                        r"torch.uint8; pass x.float\(\) / 255"):
        _quick().unlearn(model, ((xf * 255).to(torch.uint8), yf), (xr, yr))
    with pytest.raises(TypeError, match="retain: expected float32 inputs like the model's parameters, got torch.float64"):
        _quick().unlearn(model, (xf, yf), (xr.double(), yr))


# --- dtype and device -------------------------------------------------------------------------------------

def test_half_and_double_models_are_named(small):
    model, data = small
    forget, retain = _parts(data)
    with pytest.raises(TypeError, match=r"model: expected float32 parameters \(the data are read as float32\), got "
                                        r"torch.float16; for mixed precision keep the model in float32 and pass "
                                        r"precision='fp16' or 'bf16'"):
        _quick().unlearn(copy.deepcopy(model).half(), forget, retain)
    with pytest.raises(TypeError, match="got torch.float64; call model.float"):
        _quick().unlearn(copy.deepcopy(model).double(), forget, retain)
    mixed = copy.deepcopy(model)
    mixed.classifier.half()
    with pytest.raises(TypeError, match=r"model: expected parameters of one floating dtype, got torch.float32 .*"
                                        r"torch.float16 \(classifier.weight"):
        _quick().unlearn(mixed, forget, retain)
    # the supported way: a float32 model under autocast
    out = _quick().unlearn(model, forget, retain, precision="bf16")
    assert next(out.parameters()).dtype == torch.float32


def test_a_model_split_over_devices_is_named(small):
    # "meta" stands in for a second device on a machine without a GPU: the check compares devices
    model, data = small
    split_model = copy.deepcopy(model)
    split_model.classifier.to("meta")
    with pytest.raises(ValueError, match=r"model: expected every parameter and buffer on one device, got cpu "
                                         r"\(.*\), meta \(classifier.weight, ...\); move the whole model"):
        _quick().unlearn(split_model, *_parts(data))


# --- the head/feature split and the outputs -----------------------------------------------------------

class _SoftmaxHead(FeatureClassifier):
    """A FeatureClassifier whose head ends in a softmax (probabilities out)."""

    def __init__(self):
        super().__init__(1, 10, (0.0,), (1.0,))
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU())
        self.classifier = nn.Sequential(nn.Linear(32, 10), nn.Softmax(dim=1))

    def body(self, x):
        return self.net(x)


def _softmax_sequential():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10), nn.Softmax(dim=1))


def _every_method_call(name, model, data):
    forget, retain = _parts(data)
    x, y = data.x_test, data.y_test
    method = get_method(name)()
    return lambda: method.unlearn(model, forget, retain, test=(x[:60], y[:60]), heldout=(x[60:120], y[60:120]))


@pytest.mark.parametrize("name", sorted(METHODS))
@pytest.mark.parametrize("make", [_softmax_sequential, _SoftmaxHead], ids=["sequential", "feature-classifier"])
def test_every_method_refuses_a_softmax_after_the_head(small, name, make):
    _, data = small
    torch.manual_seed(0)
    with pytest.raises(ValueError, match=r"model: expected logits \(the head's raw output\), got probabilities "
                                         r"\(every row in \[0, 1\] summing to 1: a softmax after the head\)"):
        _every_method_call(name, make(), data)()


class _Doubled(nn.Module):
    """A layer after the head that is not a softmax: the wrap view's feature split fails (MUDA's old check)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU())
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc(self.body(x)) * 2


@pytest.mark.parametrize("name", ["finetune", "neggrad", "random_labels", "scrub", "eu_k"])
def test_a_layer_after_the_head_is_refused_by_every_method(small, name):
    _, data = small
    with pytest.raises(ValueError, match="head: expected 'fc' to be the model's last layer"):
        _every_method_call(name, _Doubled(), data)()


class _Pair(nn.Module):
    """Returns (logits, features), or a dict of them."""

    def __init__(self, as_dict=False):
        super().__init__()
        self.as_dict = as_dict
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU())
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        z = self.body(x)
        out = self.fc(z)
        return {"logits": out, "features": z} if self.as_dict else (out, z)


@pytest.mark.parametrize("as_dict, shown", [(False, "a tuple of 2"), (True, r"a dict with keys \['logits', 'features'\]")])
def test_tuple_or_dict_outputs_get_the_wrap_hint_and_wrap_works(small, as_dict, shown):
    _, data = small
    forget, retain = _parts(data)
    torch.manual_seed(0)
    model = _Pair(as_dict)
    with pytest.raises(TypeError, match=rf"model: expected model\(x\) to return one \(N, classes\) tensor of logits, "
                                        rf"got {shown}; pass unlearnkit.models.wrap\(model, head='fc'\)"):
        _quick().unlearn(model, forget, retain)
    # the hint, followed: the view's output is fc's, and the model comes back unlearned, as passed
    view = wrap(model, head="fc")
    x = forget[0][:5]
    assert torch.equal(view(x), model.fc(model.body(x)))
    out = _quick().unlearn(view, forget, retain)
    assert isinstance(out, WrappedClassifier) and isinstance(out.model, _Pair)
    assert not torch.equal(_params(out), _params(model))


def test_a_feature_classifier_returning_a_tuple_is_told_to_return_the_logits(small):
    _, data = small

    class Tupled(_SoftmaxHead):
        def __init__(self):
            super().__init__()
            self.classifier = nn.Linear(32, 10)

        def forward(self, x):
            return super().forward(x), None

    with pytest.raises(TypeError, match="got a tuple of 2; return the logits alone, or pass unlearnkit.models.wrap"):
        _quick().unlearn(Tupled(), *_parts(data))


def test_a_head_that_does_not_reproduce_the_output_is_named(small):
    _, data = small

    class Inconsistent(_SoftmaxHead):
        def __init__(self):
            super().__init__()
            self.classifier = nn.Linear(32, 10)

        def forward(self, x):
            return super().forward(x) + 1.0  # the output is not head(features(x))

    with pytest.raises(ValueError, match=r"model: expected head\(features\(x\)\) to equal model\(x\) .*got a max "
                                         r"difference of 1"):
        _quick().unlearn(Inconsistent(), *_parts(data))


def test_the_check_leaves_modes_and_the_rng_as_they_were(small):
    model, data = small
    m = copy.deepcopy(model).train()
    m.conv.eval()  # a mixed state, as a user freezing a block leaves it
    modes = [mod.training for mod in m.modules()]
    forget, retain = _parts(data)
    state = torch.get_rng_state()
    probe = check_call(m, {"forget": as_source(forget), "retain": as_source(retain), "test": None, "heldout": None},
                       {"forget": forget, "retain": retain}, num_classes=10, auto_wrapped=False)
    assert torch.equal(torch.get_rng_state(), state)
    assert [mod.training for mod in m.modules()] == modes
    assert probe.classes == 10 and probe.x.shape[0] == SAMPLE_SIZE and probe.unit_range


# --- overlaps, duplicates, index ranges ---------------------------------------------------------------

@pytest.fixture(scope="module")
def ds(small):
    _, data = small
    return TensorDataset(data.x_train, data.y_train)  # 1437 samples


def test_forget_equal_to_retain_is_refused(small, ds):
    model, _ = small
    n = len(ds)
    with pytest.raises(ValueError, match=rf"retain: expected no sample of forget, got {n} of its {n} samples also in "
                                         rf"forget \(forget has {n}\); forget and retain must be disjoint"):
        _quick().unlearn(model, ds, ds)
    x, y = ds.tensors
    with pytest.raises(ValueError, match=rf"got {n} of its {n} samples also in forget"):
        _quick().unlearn(model, (x, y), (x, y))  # the same tensors


@pytest.mark.parametrize("how", ["subsets", "nested", "loader", "streamed", "views"])
def test_overlapping_sets_from_one_dataset_are_counted(small, ds, how):
    model, data = small
    x, y = ds.tensors
    if how == "subsets":  # forget 0..99, retain 50..999: 50 shared
        forget, retain, shared = Subset(ds, list(range(100))), Subset(ds, list(range(50, 1000))), 50
    elif how == "nested":  # positions 100..109 of ds, and 105 of ds
        forget, retain, shared = Subset(Subset(ds, list(range(100, 200))), list(range(10))), Subset(ds, [105, 300]), 1
    elif how == "loader":
        forget, retain, shared = DataLoader(Subset(ds, [3, 4, 5])), Subset(ds, list(range(5, 600))), 1
    elif how == "streamed":  # a map-style dataset (not tensors): the same object behind both Subsets
        items = _Items(x, y)
        forget, retain, shared = Subset(items, list(range(20))), Subset(items, list(range(10, 400))), 10
    else:  # views of one tensor: rows 0..99 and 80..499
        forget, retain, shared = (x[:100], y[:100]), (x[80:500], y[80:500]), 20
    with pytest.raises(ValueError, match=rf"retain: expected no sample of forget, got {shared} of its"):
        _quick().unlearn(model, forget, retain)


def test_test_and_heldout_must_not_overlap_the_training_sets(small, ds):
    model, _ = small
    forget, retain = Subset(ds, list(range(50))), Subset(ds, list(range(50, 500)))
    with pytest.raises(ValueError, match="test: expected no sample of retain, got 5 of its 10 samples also in retain"):
        _quick().unlearn(model, forget, retain, test=Subset(ds, list(range(495, 505))))
    with pytest.raises(ValueError, match="heldout: expected no sample of forget, got 2 of its"):
        get_method("tmu")().unlearn(model, forget, retain, heldout=Subset(ds, [0, 1] + list(range(600, 650))))


@pytest.mark.parametrize("which", ["forget", "retain"])
def test_duplicated_subset_indices_are_refused(small, ds, which):
    model, _ = small
    sets = {"forget": Subset(ds, list(range(50))), "retain": Subset(ds, list(range(50, 500)))}
    sets[which] = Subset(ds, sets[which].indices + sets[which].indices[:3])  # three indices twice
    with pytest.raises(ValueError, match=rf"{which}: expected each sample once, got 3 repeated"):
        _quick().unlearn(model, sets["forget"], sets["retain"])


def test_disjoint_subsets_pass_and_equal_the_tensor_path(small, ds):
    model, _ = small
    x, y = ds.tensors
    a = _quick().unlearn(model, Subset(ds, list(range(50))), Subset(ds, list(range(50, 500))), seed=1)
    b = _quick().unlearn(model, (x[:50].clone(), y[:50].clone()), (x[50:500].clone(), y[50:500].clone()), seed=1)
    assert torch.equal(_params(a), _params(b))


def test_unrelated_copies_cannot_be_compared_and_pass(small, ds):
    """The documented limit: two separate tensors holding the same images are not compared (that
    would mean hashing every sample, and equal images may occur twice in a real dataset)."""
    model, _ = small
    x, y = ds.tensors
    out = _quick().unlearn(model, (x[:50].clone(), y[:50].clone()), (x[:500].clone(), y[:500].clone()))
    assert isinstance(out, type(model))


@pytest.mark.parametrize("how", ["tensor-subset", "streamed-subset", "loader", "negative"])
def test_subset_indices_out_of_range_are_named(small, ds, how):
    model, _ = small
    x, y = ds.tensors
    n = len(ds)
    forget = {"tensor-subset": Subset(ds, [0, 1, n + 563]), "streamed-subset": Subset(_Items(x, y), [0, n + 563]),
              "loader": DataLoader(Subset(_Items(x, y), [0, n + 563]), batch_size=4),
              "negative": Subset(ds, [-1, 0])}[how]
    bad = -1 if how == "negative" else n + 563
    with pytest.raises(ValueError, match=rf"forget: expected Subset indices in \[0, {n}\) \(the length of the dataset "
                                         rf"it draws from\), got 1 out of range, e.g. {bad}"):
        _quick().unlearn(model, forget, Subset(ds, list(range(100, 300))))


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
