"""Shared test helpers: trained digits models, made once per test process."""

from __future__ import annotations

import functools

import torch

from unlearnkit.bench.recipes import dataset_recipe
from unlearnkit.data import load_digits, make_split
from unlearnkit.models import build_model
from unlearnkit.training import TrainConfig, fit


@functools.lru_cache(maxsize=None)
def digits_models(seed: int = 0, fraction: float = 0.1):
    """(split, original, gold) on digits with random forgetting, trained with the digits recipe."""
    data = load_digits()
    split = make_split(data, forget="random", fraction=fraction, seed=seed)
    recipe = dataset_recipe("digits")
    cfg = TrainConfig(**recipe["train"])
    models = []
    for idx in (torch.arange(len(data.y_train)), torch.from_numpy(split.retain_idx)):
        torch.manual_seed(seed)
        m = build_model(recipe["model"], data, **recipe.get("model_kwargs", {}))
        models.append(fit(m, data.x_train[idx], data.y_train[idx], cfg, seed=seed))
    return split, models[0], models[1]


# The Fashion-MNIST subset the method-behaviour tests share, and how its reference models are
# trained (the fashion-mnist recipe's model on a tenth of the images, more epochs): real data,
# about a minute of training on 2 cores, cached on disk when UNLEARNKIT_CACHE is set.
FASHION_N_TRAIN = 6000
FASHION_TRAIN = TrainConfig(epochs=8, batch_size=128, lr=0.05)


@functools.lru_cache(maxsize=None)
def fashion_models(seed: int = 0, fraction: float = 0.1, heldout_fraction: float = 0.2, n_train: int = FASHION_N_TRAIN,
                   epochs: int = FASHION_TRAIN.epochs):
    """(split, original, gold) on a 6000-image Fashion-MNIST subset with random forgetting and
    ``heldout_fraction`` of the test split held out (D_twin for TMU, unseen data for DLFD).
    Fewer images and more epochs give an original model that memorises its forget set (what
    membership-inference-driven methods such as DLFD need to see)."""
    import dataclasses
    import os
    import tempfile

    import numpy as np

    from unlearnkit.checkpoints import cache_key, cached_train
    from unlearnkit.data import load_fashion_mnist
    from unlearnkit.data.types import _make

    full = load_fashion_mnist()
    cfg = dataclasses.replace(FASHION_TRAIN, epochs=epochs)
    keep = torch.from_numpy(np.sort(np.random.default_rng(0).permutation(len(full.y_train))[:n_train]))
    data = _make(f"fashion-mnist-{n_train}", full.x_train[keep], full.y_train[keep], full.x_test, full.y_test, full.classes)
    split = make_split(data, forget="random", fraction=fraction, seed=seed, heldout_fraction=heldout_fraction)
    cache_dir = os.environ.get("UNLEARNKIT_CACHE") or tempfile.mkdtemp(prefix="unlearnkit-test-")
    models = []
    for kind, idx in (("original", np.arange(n_train)), ("gold", split.retain_idx)):
        torch.manual_seed(seed)
        model = build_model("small-cnn", data, channels=(16, 32))
        x, y = data.x_train[torch.from_numpy(idx)], data.y_train[torch.from_numpy(idx)]
        key = cache_key(kind=kind, data=data.fingerprint(), idx=cache_key(idx=idx.tolist()),
                        train=cfg.to_dict(), model="small-cnn-16-32", seed=seed)
        model, _ = cached_train(model, lambda m: fit(m, x, y, cfg, seed=seed), cache_dir=cache_dir,
                                key=key, name=f"test-{kind}")
        models.append(model)
    return (split, *models)


def accuracy_on(model, ds) -> float:
    """Top-1 accuracy of ``model`` on a TensorDataset (x, y)."""
    from unlearnkit.training import predict

    x, y = ds.tensors
    return float((predict(model, x).argmax(1) == y).float().mean())


def loss_on(model, ds) -> float:
    """Mean cross-entropy of ``model`` on a TensorDataset (x, y)."""
    from torch.nn import functional as F

    from unlearnkit.training import predict

    x, y = ds.tensors
    return float(F.cross_entropy(predict(model, x), y))
