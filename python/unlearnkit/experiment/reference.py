"""Layer: experiment. The chain every front-end (bench, audit, tune) starts from: a scenario name
parsed once, the reference models (original on the whole training set, gold on the retain set only)
trained or loaded under one cache key, and the environment a report carries. Moved here from
``bench/runner.py`` so that audit and tune share it without importing bench."""

from __future__ import annotations

import pathlib
import platform

import numpy as np
import torch

from .. import __version__
from .._validation import check_scenario
from ..checkpoints import cache_key, cached_train
from ..data.forget import UnlearningSplit
from ..models import build_model
from ..training import TrainConfig, fit


def parse_scenario(scenario: str) -> dict:
    """``"random-10"`` -> {"forget": "random", "fraction": 0.1}; ``"class-3"`` -> {"forget": "class",
    "forget_class": 3}; ``"class-3-10"`` -> {"forget": "class_partial", "forget_class": 3, "fraction":
    0.1} (10% of class 3); ``"subclass-5"`` (grouped dataset); ``"backdoor-10"`` (10% poisoned).
    The syntax and its checks are ``_validation.check_scenario``'s (one parser)."""
    return check_scenario(scenario, "scenario", parsed=True)



def environment(device: str) -> dict:
    """What every report carries: versions and the device."""
    dev = device
    if device.startswith("cuda") and torch.cuda.is_available():
        dev = f"{device} ({torch.cuda.get_device_name()})"
    return {"unlearnkit": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "device": dev, "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}


def _train_reference(kind: str, split: UnlearningSplit, model_name: str, model_kwargs: dict, train_cfg: TrainConfig,
                     seed: int, cache_dir: pathlib.Path, device: str, bars, precision: str = "fp32"
                     ) -> tuple[torch.nn.Module, dict]:
    """Trains (or loads) the original model (``kind="original"``, whole training set) or the gold
    model (``kind="gold"``, retain set only: it never sees a forget sample)."""
    data = split.data
    idx = np.arange(len(data.y_train)) if kind == "original" else split.retain_idx
    if kind == "gold":
        assert np.intersect1d(idx, split.forget_idx).size == 0, "the gold model must never see a forget sample"
    forget = cache_key(forget_idx=split.forget_idx.tolist()) if kind == "gold" else None
    # fp32 keys stay as they were (existing caches and the audit's pools share them)
    extra = {} if precision == "fp32" else {"precision": precision}
    key = cache_key(kind=kind, data=data.fingerprint(), forget=forget,
                    model=model_name, model_kwargs=model_kwargs, train=train_cfg.to_dict(), seed=seed, **extra)
    torch.manual_seed(seed)
    model = build_model(model_name, data, **model_kwargs).to(device)
    x, y = data.x_train[torch.from_numpy(idx)], data.y_train[torch.from_numpy(idx)]
    return cached_train(model, lambda m: fit(m, x, y, train_cfg, seed=seed, callbacks=[bars], source=kind,
                                             precision=precision),
                        cache_dir=cache_dir, key=key, name=f"{data.name}-{kind}")


train_reference = _train_reference
