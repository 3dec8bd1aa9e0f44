"""Shared test helpers: plain functions on trained models (the models themselves are session fixtures
in ``shared_fixtures.py``)."""

from __future__ import annotations


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


def state_copy(model) -> dict:
    """A detached copy of ``model``'s state dict (to compare parameters before and after a run)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
