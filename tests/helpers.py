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
