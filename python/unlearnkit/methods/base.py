"""The one interface of every unlearning method, and the one registry.

    method = get_method("finetune")(epochs=5)          # hyper-parameters: a frozen dataclass
    unlearned = method.unlearn(model, forget, retain, test=test, callbacks=[bars], seed=0)

A method only changes the model; it never evaluates (the runner does). Adding a method is one
file with a ``@register``-ed subclass and one import line in ``methods/__init__.py``.
"""

from __future__ import annotations

import copy
import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Iterable

import torch
from torch import nn

from .._validation import check_params, params_dict
from ..data.tensors import as_tensors
from ..progress import Callback, StepEvent, emit
from ..training import model_device

METHODS: dict[str, type["Method"]] = {}


def register(cls: type["Method"]) -> type["Method"]:
    """Class decorator adding a method to the registry under ``cls.name``."""
    if cls.name in METHODS:
        raise ValueError(f"name: a method named {cls.name!r} is already registered")
    METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> type["Method"]:
    if name not in METHODS:
        raise ValueError(f"method: expected one of {sorted(METHODS)}, got {name!r}")
    return METHODS[name]


@dataclass(frozen=True)
class UnlearnData:
    """The tensors a method works on (CPU tensors; the method moves batches to the model's device).

    x_*: (n, C, H, W) images in [0, 1]; y_*: (n,) int64 labels. ``x_test`` and ``x_heldout`` may be None.
    """

    x_forget: torch.Tensor
    y_forget: torch.Tensor
    x_retain: torch.Tensor
    y_retain: torch.Tensor
    x_test: torch.Tensor | None
    y_test: torch.Tensor | None
    num_classes: int
    x_heldout: torch.Tensor | None = None
    y_heldout: torch.Tensor | None = None


class Context:
    """Per-call state handed to ``_unlearn``: device, seeded generator, progress reporting."""

    def __init__(self, source: str, device: torch.device, seed: int, callbacks: Iterable[Callback]):
        self.source, self.device, self.seed = source, device, seed
        self.generator = torch.Generator().manual_seed(seed)
        self.callbacks = list(callbacks)
        self.history: list[StepEvent] = []

    def log(self, phase: str, step: int, total: int | None, **logs) -> None:
        event = StepEvent(self.source, phase, step, total, {k: _scalar(v) for k, v in logs.items()})
        self.history.append(event)
        emit(self.callbacks, event)


def _scalar(v):
    return v.item() if isinstance(v, torch.Tensor) else v


class Method(ABC):
    """Base class of unlearning methods.

    Subclasses set ``name`` (registry key), ``paper`` (citation) and ``Params`` (a frozen
    dataclass whose defaults are the paper's), and implement ``_unlearn``.
    """

    name: ClassVar[str]
    paper: ClassVar[str]
    Params: ClassVar[type]
    #: True for methods that must be given ``heldout`` data (unseen samples they may train on,
    #: e.g. TMU's twin set); the runner then keeps that part of the test split out of evaluation.
    needs_heldout: ClassVar[bool] = False

    def __init__(self, params=None, **hparams):
        # The one place hyper-parameters are validated: the constraints live in each Params
        # field's metadata (``_validation.param``); Params.__post_init__ keeps only cross-field checks.
        prefix = f"{self.name}."
        if params is not None:
            if hparams:
                raise TypeError("hparams: pass either a Params instance or keyword hyper-parameters, not both")
            if not isinstance(params, self.Params):
                raise TypeError(f"params: expected {self.Params.__name__}, got {type(params).__name__}")
            check_params(self.Params, params_dict(params), prefix=prefix)
            self.params = params
        else:
            fields = {f.name for f in dataclasses.fields(self.Params)}
            unknown = sorted(set(hparams) - fields)
            if unknown:
                raise TypeError(f"hparams: {self.name} has no hyper-parameter(s) {unknown}; "
                                f"expected some of {sorted(fields)}")
            self.params = self.Params(**check_params(self.Params, hparams, prefix=prefix))
        self.last_history: list[StepEvent] = []

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params})"

    def unlearn(self, model: nn.Module, forget, retain, *, test=None, heldout=None,
                callbacks: Iterable[Callback] = (), seed: int = 0, inplace: bool = False) -> nn.Module:
        """Returns ``model`` with what it learned from ``forget`` removed.

        Args:
            model: a trained classifier exposing ``features``/``head`` (``unlearnkit.models``).
            forget: the samples to forget: a TensorDataset (x (n_f, C, H, W) in [0, 1], y (n_f,)),
                a Subset of one, or an (x, y) tuple.
            retain: the remaining training samples, in the same form.
            test: optional unseen samples some methods monitor (e.g. validation accuracy); never trained on.
            heldout: unseen samples a method may *train* on (TMU's D_twin); required when
                ``needs_heldout``. Keep them out of any later evaluation.
            callbacks: called with a ``StepEvent`` after each step (progress bars, logging).
            seed: fixes data order and any randomness of the method.
            inplace: modify ``model`` itself; by default a deep copy is unlearned and returned.
        """
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        xf, yf = as_tensors(forget, "forget")
        xr, yr = as_tensors(retain, "retain")
        xt, yt = as_tensors(test, "test") if test is not None else (None, None)
        xh, yh = as_tensors(heldout, "heldout") if heldout is not None else (None, None)
        if self.needs_heldout and heldout is None:
            raise ValueError(f"heldout: {self.name} needs unseen samples to train on (e.g. part of the test split, "
                             "then excluded from evaluation), got None")
        num_classes = getattr(model, "num_classes", None) or int(max(yf.max(), yr.max())) + 1
        for name, y in (("forget", yf), ("retain", yr), ("test", yt), ("heldout", yh)):
            if y is not None and (y.min() < 0 or y.max() >= num_classes):
                raise ValueError(f"{name}: expected labels in [0, {num_classes}) (the model's classes), "
                                 f"got labels from {int(y.min())} to {int(y.max())}")
        if xf.shape[1:] != xr.shape[1:]:
            raise ValueError(f"retain: expected images of the forget set's shape {tuple(xf.shape[1:])}, "
                             f"got {tuple(xr.shape[1:])}")
        if not inplace:
            model = copy.deepcopy(model)
        ctx = Context(self.name, model_device(model), seed, callbacks)
        data = UnlearnData(xf, yf, xr, yr, xt, yt, num_classes, xh, yh)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = self._unlearn(model, data, ctx)
        self.last_history = ctx.history
        model.eval()
        return model

    @abstractmethod
    def _unlearn(self, model: nn.Module, data: UnlearnData, ctx: Context) -> nn.Module:
        """Changes ``model`` (already a copy unless inplace) and returns it."""
