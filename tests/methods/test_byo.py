"""Bring your own model and data: ``models.wrap``, the batch sources (tensor and loader paths),
mixed precision. Oracles: the wrapped model's own forward, a hand-written SGD loop, the tensor
path (for the loader path), fp32 (for bf16)."""

import copy

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from unlearnkit.data import LoaderSource, TensorSource, as_source, as_tensors
from unlearnkit.methods import get_method
from unlearnkit.models import FeatureClassifier, wrap
from unlearnkit.training import TrainConfig, extract_features, fit, predict, predict_with_features

torchvision = pytest.importorskip("torchvision", reason="torchvision is in the dev extra")


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    x = torch.tensor(d.images[:240], dtype=torch.float32).div_(16.0).unsqueeze(1)
    y = torch.tensor(d.target[:240], dtype=torch.int64)
    return x, y


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


class Items(Dataset):
    """A user's dataset: tuple or dict items, read one by one."""

    def __init__(self, x, y, as_dict=False):
        self.x, self.y, self.as_dict = x, y, as_dict

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        if self.as_dict:
            return {"image": self.x[i], "label": int(self.y[i]), "id": i}
        return self.x[i], int(self.y[i])


def params_of(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


# ---------------------------------------------------------------- wrap


def test_wrap_torchvision_resnet18_head_found_and_exact():
    m = torchvision.models.resnet18(num_classes=10).eval()
    w = wrap(m)
    assert isinstance(w, FeatureClassifier) and w.head_name == "fc" and w.num_classes == 10 and w.feature_dim == 512
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        z = w.features(x)
        # oracle: torchvision's own forward up to the pooled features
        t = m.avgpool(m.layer4(m.layer3(m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(x)))))))))
        assert torch.equal(w(x), m(x))
        torch.testing.assert_close(z, torch.flatten(t, 1))
        torch.testing.assert_close(w.head(z), m(x))
    assert {id(p) for p in w.parameters()} == {id(p) for p in m.parameters()}  # a view, not a copy
    assert wrap(m, head="fc").head_name == "fc"


def test_wrap_sequential_and_named_heads():
    s = mlp()
    w = wrap(s)
    assert w.head_name == "3" and w.feature_dim == 32
    x = torch.rand(5, 1, 8, 8)
    torch.testing.assert_close(w.features(x), s[:3](x))
    vgg = torchvision.models.vgg11(num_classes=7)
    assert wrap(vgg).head_name == "classifier.6"  # the last linear, not VGG's conv `features` module
    block = wrap(vgg, head="classifier")  # a block as head: its input is the feature vector
    assert block.feature_dim == 25088 and block.num_classes == 7
    with pytest.raises(ValueError, match="head: expected the name of a submodule"):
        wrap(s, head="fc")
    with pytest.raises(ValueError, match="out_features == 3"):
        wrap(s, num_classes=3)


def test_wrap_mean_std_normalises_pixels():
    s = mlp()
    w = wrap(s, mean=(0.5,), std=(0.25,))
    x = torch.rand(4, 1, 8, 8)
    torch.testing.assert_close(w(x), s((x - 0.5) / 0.25))
    torch.testing.assert_close(w.head(w.features(x)), s((x - 0.5) / 0.25))


def test_wrap_rejects_a_layer_after_the_head():
    s = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.Softmax(dim=1))
    with pytest.raises(ValueError, match="last layer"):
        wrap(s).features(torch.rand(2, 1, 8, 8))


def test_unlearn_unwrappable_model_says_what_to_pass(digits):
    x, y = digits
    conv_only = nn.Sequential(nn.Conv2d(1, 10, 8), nn.Flatten())
    with pytest.raises(TypeError, match=r"wrap\(model, head="):
        get_method("finetune")(epochs=1).unlearn(conv_only, (x[:20], y[:20]), (x[20:60], y[20:60]))


def test_unlearn_plain_sequential_matches_a_hand_written_sgd_loop(digits):
    x, y = digits
    forget, retain = (x[:30], y[:30]), (x[30:130], y[30:130])
    model = mlp()
    out = get_method("finetune")(epochs=2, batch_size=16, lr=0.05).unlearn(model, forget, retain, seed=3)
    assert type(out) is nn.Sequential  # handed back as passed
    assert not torch.equal(params_of(out), params_of(model))  # a copy was unlearned
    ref = copy.deepcopy(model).train()
    opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(3)
    xr, yr = retain
    for _ in range(2):
        order = torch.randperm(len(yr), generator=gen)
        for s in range(0, len(yr), 16):
            idx = order[s:s + 16]
            loss = F.cross_entropy(ref(xr[idx]), yr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert torch.equal(params_of(out), params_of(ref))
    # an explicit view gives the same model
    out2 = get_method("finetune")(epochs=2, batch_size=16, lr=0.05).unlearn(wrap(model), forget, retain, seed=3)
    assert torch.equal(params_of(out2), params_of(out))


def test_resnet18_torchvision_through_methods_needing_features(digits):
    x, y = digits
    x3 = x.repeat(1, 3, 2, 2)[:48]  # (48, 3, 16, 16)
    model = torchvision.models.resnet18(num_classes=10)
    forget, retain = TensorDataset(x3[:16], y[:16]), TensorDataset(x3[16:48], y[16:48])
    for name, hp in (("muda", dict(epochs=1, batch_size=16, bank_size=32, refresh=1)),
                     ("boundary_shrink", dict(epochs=1, batch_size=16, lr=1e-3))):
        out = get_method(name)(**hp).unlearn(model, forget, retain, seed=0)
        assert isinstance(out, type(model)) and not torch.equal(params_of(out), params_of(model))
        assert torch.isfinite(params_of(out)).all()
    w = wrap(out)
    logits, z = predict_with_features(w, x3[:8])
    torch.testing.assert_close(logits, predict(out, x3[:8]))
    assert z.shape == (8, 512)


# ---------------------------------------------------------------- streaming data


METHOD_CASES = [
    ("finetune", dict(epochs=2, batch_size=16)),
    ("neggrad", dict(epochs=2, batch_size=8)),
    ("neggrad_plus", dict(epochs=1, batch_size=16)),
    ("random_labels", dict(epochs=1, batch_size=16)),
    ("boundary_shrink", dict(epochs=1, batch_size=8, lr=1e-3)),
    ("l1_sparse", dict(epochs=2, batch_size=32)),
    ("salun", dict(epochs=1, batch_size=16)),
    ("scrub", dict(epochs=2, msteps=1, forget_batch_size=8, retain_batch_size=32)),
    ("bad_teacher", dict(epochs=1, batch_size=16)),
    ("ssd", dict(batch_size=16)),
]


@pytest.mark.parametrize("name, hp", METHOD_CASES, ids=[c[0] for c in METHOD_CASES])
def test_loader_path_is_bit_identical_to_the_tensor_path(digits, name, hp):
    x, y = digits
    xf, yf, xr, yr = x[:30], y[:30], x[30:150], y[30:150]
    model = mlp()
    method = get_method(name)(**hp)
    fast = method.unlearn(model, (xf, yf), (xr, yr), seed=1)
    streamed = method.unlearn(model, Items(xf, yf), Items(xr, yr, as_dict=True), seed=1)
    assert torch.equal(params_of(fast), params_of(streamed))
    if name != "ssd":
        assert not torch.equal(params_of(fast), params_of(model))


def test_dataloader_with_workers_and_dict_items(digits):
    x, y = digits
    xf, yf, xr, yr = x[:30], y[:30], x[30:150], y[30:150]
    model = mlp()
    method = get_method("random_labels")(epochs=2, batch_size=16)
    fast = method.unlearn(model, (xf, yf), (xr, yr), seed=2)
    loader = DataLoader(Items(xr, yr, as_dict=True), batch_size=5, shuffle=True, num_workers=2)
    streamed = method.unlearn(model, DataLoader(Items(xf, yf, as_dict=True), num_workers=2), loader, seed=2)
    assert torch.equal(params_of(fast), params_of(streamed))


def test_sources_order_is_a_function_of_the_seed(digits):
    x, y = digits
    t, s = TensorSource(x[:50], y[:50]), LoaderSource(Items(x[:50], y[:50], as_dict=True))
    a = [b.idx for b in t.batches(8, shuffle=True, generator=torch.Generator().manual_seed(5))]
    b = [b.idx for b in s.batches(8, shuffle=True, generator=torch.Generator().manual_seed(5))]
    c = [b.idx for b in s.batches(8, shuffle=True, generator=torch.Generator().manual_seed(6))]
    assert all(torch.equal(i, j) for i, j in zip(a, b)) and len(a) == len(b) == 7
    assert not all(torch.equal(i, j) for i, j in zip(a, c))
    for batch in s.batches(8, shuffle=True, generator=torch.Generator().manual_seed(5)):
        assert torch.equal(batch.x, x[batch.idx]) and torch.equal(batch.y, y[batch.idx])


def test_dict_dataset_as_tensors_and_errors(digits):
    x, y = digits
    xt, yt = as_tensors(Items(x[:20], y[:20], as_dict=True))
    assert torch.equal(xt, x[:20]) and torch.equal(yt, y[:20])

    class Odd(Items):
        def __getitem__(self, i):
            return {"pixels": self.x[i], "label": 1}

    with pytest.raises(ValueError, match="keys=") as e:
        as_source(Odd(x[:4], y[:4]))
    assert "pixels" in str(e.value)
    assert torch.equal(as_source(Odd(x[:4], y[:4]), keys=("pixels", "label")).tensors()[0], x[:4])
    assert isinstance(as_source(DataLoader(TensorDataset(x, y), batch_size=4)), TensorSource)  # fast path
    assert isinstance(as_source(Subset(Items(x, y), [1, 2])), LoaderSource)


def test_inference_and_fit_take_datasets(digits):
    x, y = digits
    model = mlp()
    ds = Items(x[:100], y[:100], as_dict=True)
    torch.testing.assert_close(predict(model, ds, batch_size=32), predict(model, x[:100]), rtol=0, atol=0)
    w = wrap(model)
    torch.testing.assert_close(extract_features(w, DataLoader(ds, num_workers=0)), extract_features(w, x[:100]))
    cfg = TrainConfig(epochs=1, batch_size=16, lr=0.05)
    a = fit(mlp(), x[:100], y[:100], cfg, seed=0)
    b = fit(mlp(), ds, None, cfg, seed=0)
    assert torch.equal(params_of(a), params_of(b))


# ---------------------------------------------------------------- precision


def test_bf16_on_cpu_close_to_fp32(digits):
    x, y = digits
    cfg = TrainConfig(epochs=2, batch_size=32, lr=0.05)
    a = fit(mlp(), x, y, cfg, seed=0)
    b = fit(mlp(), x, y, cfg, seed=0, precision="bf16")
    assert not torch.equal(params_of(a), params_of(b))  # autocast really ran in bf16
    torch.testing.assert_close(params_of(b), params_of(a), atol=2e-2, rtol=0)
    pa, pb = predict(a, x), predict(a, x, precision="bf16")
    assert pb.dtype == torch.float32
    torch.testing.assert_close(pb, pa, atol=5e-2, rtol=2e-2)
    assert (pa.argmax(1) == pb.argmax(1)).float().mean() > 0.98
    m = get_method("finetune")(epochs=1, batch_size=32)
    ua = m.unlearn(a, (x[:30], y[:30]), (x[30:], y[30:]), seed=0)
    ub = m.unlearn(a, (x[:30], y[:30]), (x[30:], y[30:]), seed=0, precision="bf16")
    torch.testing.assert_close(params_of(ub), params_of(ua), atol=2e-2, rtol=0)
    with pytest.raises(ValueError, match="precision"):
        m.unlearn(a, (x[:30], y[:30]), (x[30:], y[30:]), precision="fp8")


def test_fp16_scaler_and_compile_run(digits):
    x, y = digits
    m = get_method("neggrad_plus")(epochs=1, batch_size=32)
    ref = m.unlearn(mlp(), (x[:30], y[:30]), (x[30:], y[30:]), seed=0)
    half = m.unlearn(mlp(), (x[:30], y[:30]), (x[30:], y[30:]), seed=0, precision="fp16")
    torch.testing.assert_close(params_of(half), params_of(ref), atol=2e-2, rtol=0)
    comp = m.unlearn(mlp(), (x[:30], y[:30]), (x[30:], y[30:]), seed=0, compile="eager")
    torch.testing.assert_close(params_of(comp), params_of(ref))
