"""The one interface of every unlearning method, and the one registry.

    method = get_method("finetune")(epochs=5)          # hyper-parameters: a frozen dataclass
    unlearned = method.unlearn(model, forget, retain, test=test, callbacks=[bars], seed=0)

A method only changes the model; it never evaluates (the runner does). Adding a method is one
file with a ``@register``-ed subclass and one import line in ``methods/__init__.py``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import pathlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

import torch
from torch import nn

from .._validation import check_params, params_dict
from ..checkpoints import default_cache_dir
from ..data.batches import BatchSource, TensorSource, as_source
from ..models.wrap import ensure_feature_classifier
from ..progress import Callback, StepEvent, emit
from ..training import Precision, as_precision, model_device
from ._contract import check_call, check_result, check_seed
from ._stop import ValMatch, stop_enabled

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

METHODS: dict[str, type[Method]] = {}

#: A method's hyper-parameter dataclass (``Method.Params``); ``self.params`` is an instance of it.
P = TypeVar("P", bound="DataclassInstance")
M = TypeVar("M", bound="Method")


def register(cls: type[M]) -> type[M]:
    """Class decorator adding a method to the registry under ``cls.name``."""
    if cls.name in METHODS:
        raise ValueError(f"name: a method named {cls.name!r} is already registered")
    METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> type[Method]:
    if name not in METHODS:
        raise ValueError(f"method: expected one of {sorted(METHODS)}, got {name!r}")
    return METHODS[name]


class UnlearnData:
    """What a method works on: four batch sources (``unlearnkit.data.batches``) and the class count.

    ``forget``, ``retain`` (and ``test``, ``heldout``, which may be None) are ``BatchSource`` s: loops
    read them in seeded minibatches (``source.batches(...)``, ``source.cycle(...)``), streamed when the
    user passed a Dataset or DataLoader. ``x_*`` / ``y_*`` are the same data as CPU tensors
    ((n, C, H, W) images in [0, 1], (n,) int64 labels), materialised on first access for a streaming
    source: loops that index tensors directly still work, at the cost of reading the data into memory.

    Constructed either from tensors, ``UnlearnData(x_forget, y_forget, x_retain, y_retain, x_test,
    y_test, num_classes[, x_heldout, y_heldout])``, or from sources (``forget=``, ``retain=``, ...).
    """

    def __init__(self, x_forget=None, y_forget=None, x_retain=None, y_retain=None, x_test=None, y_test=None,
                 num_classes: int | None = None, x_heldout=None, y_heldout=None, *, forget: BatchSource | None = None,
                 retain: BatchSource | None = None, test: BatchSource | None = None,
                 heldout: BatchSource | None = None):
        def pick(src, x, y, name):
            if src is not None:
                return src
            return TensorSource(x, y, name=name) if x is not None else None

        self.forget = pick(forget, x_forget, y_forget, "forget")
        self.retain = pick(retain, x_retain, y_retain, "retain")
        self.test = pick(test, x_test, y_test, "test")
        self.heldout = pick(heldout, x_heldout, y_heldout, "heldout")
        if self.forget is None or self.retain is None:
            raise TypeError("UnlearnData: expected forget and retain data (tensors or sources)")
        if num_classes is None:
            raise TypeError("num_classes: expected the number of classes, got None")
        self.num_classes = int(num_classes)

    @staticmethod
    def _x(src):
        return None if src is None else src.tensors()[0]

    @staticmethod
    def _y(src):
        if src is None:
            return None
        lab = src.labels()
        return lab if lab is not None else src.tensors()[1]

    x_forget = property(lambda self: self._x(self.forget))
    y_forget = property(lambda self: self._y(self.forget))
    x_retain = property(lambda self: self._x(self.retain))
    y_retain = property(lambda self: self._y(self.retain))
    x_test = property(lambda self: self._x(self.test))
    y_test = property(lambda self: self._y(self.test))
    x_heldout = property(lambda self: self._x(self.heldout))
    y_heldout = property(lambda self: self._y(self.heldout))


class Context:
    """Per-call state handed to ``_unlearn``: device, seeded generator, precision, progress reporting.

    ``ctx.amp`` is the :class:`unlearnkit.training.Precision` of the call: forward passes run under
    ``with ctx.amp.autocast():`` and optimiser steps through ``ctx.amp.step(opt, loss)`` (a GradScaler
    for fp16); ``ctx.batches(source, batch_size, shuffle=...)`` and ``ctx.cycle(...)`` read a source
    in the seeded order onto the device.
    """

    def __init__(self, source: str, device: torch.device, seed: int, callbacks: Iterable[Callback],
                 precision: str | Precision = "fp32", cache_dir: str | os.PathLike | None = None):
        self.source, self.device, self.seed = source, device, seed
        self.generator = torch.Generator().manual_seed(seed)
        self.callbacks = list(callbacks)
        self.history: list[StepEvent] = []
        self.amp = as_precision(precision, device)
        #: where work reusable across calls is kept (``Method.unlearn``'s ``cache_dir``)
        self.cache_dir = pathlib.Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.stopper: ValMatch | None = None  # the held-out stopping rule (methods._stop.ValMatch) when params.stop asks for it

    def stop_check(self, model: nn.Module) -> bool:
        """Called by an iterative method after each step of its unlearning loop: True when the
        call's stopping rule (``stop="val-match"``) says stop. Always False without a rule."""
        return self.stopper is not None and self.stopper.check(model)

    def batches(self, source: BatchSource, batch_size: int, *, shuffle: bool = True, drop_last: bool = False):
        """One pass over ``source`` (shuffled with the call's generator unless ``shuffle=False``)."""
        return source.batches(batch_size, shuffle=shuffle, generator=self.generator if shuffle else None,
                              device=self.device, drop_last=drop_last)

    @contextlib.contextmanager
    def own_generator(self, seed: int) -> Iterator[None]:
        """Within the block, ``batches`` and ``cycle`` shuffle with a generator of its own seeded with
        ``seed``, and the call's generator is left as it was: for a phase whose sample order must not
        depend on the phases before it (a model that a cache may hand to a later call)."""
        saved, self.generator = self.generator, torch.Generator().manual_seed(seed)
        try:
            yield
        finally:
            self.generator = saved

    def cycle(self, source: BatchSource, batch_size: int):
        """Endless shuffled batches of ``source`` (a new permutation every pass)."""
        return source.cycle(batch_size, generator=self.generator, device=self.device)

    def log(self, phase: str, step: int, total: int | None, **logs) -> None:
        event = StepEvent(self.source, phase, step, total, {k: _scalar(v) for k, v in logs.items()})
        self.history.append(event)
        emit(self.callbacks, event)


def _scalar(v):
    return v.item() if isinstance(v, torch.Tensor) else v


def _item_shape(source: BatchSource) -> tuple:
    if isinstance(source, TensorSource):
        return tuple(source.x.shape[1:])
    return tuple(getattr(source, "item_shape", ()) or source.take([0]).x.shape[1:])


class Method(ABC, Generic[P]):
    """Base class of unlearning methods.

    Subclasses set ``name`` (registry key), ``paper`` (citation) and ``Params`` (a frozen
    dataclass whose defaults are the paper's), and implement ``_unlearn``; they subclass
    ``Method[TheirParams]`` so that ``self.params`` is typed as their ``Params``.
    """

    name: ClassVar[str]
    paper: ClassVar[str]
    Params: type[P]  # set on the class (a ClassVar cannot hold the type variable)
    params: P
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
        #: wall seconds a cold call would have spent on work this call loaded from a cache instead
        #: (TMU's curriculum model, ``cache_curriculum``), as recorded when that work ran: 0.0 when
        #: nothing was cached. Set as soon as the cached work is loaded, so a time budget watching the
        #: call sees it; the bench and the tuner add it to the wall time they measure, so a row's cost
        #: does not depend on what the cache held.
        self.last_cached_seconds: float = 0.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params})"

    def unlearn(self, model: nn.Module, forget, retain, *, test=None, heldout=None,
                callbacks: Iterable[Callback] = (), seed: int = 0, inplace: bool = False,
                precision: str = "fp32", compile: bool | str = False,
                channels_last: bool | None = None, cache_dir: str | os.PathLike | None = None) -> nn.Module:
        """Returns ``model`` with what it learned from ``forget`` removed.

        Args:
            model: a trained classifier. The contract (checked here): ``model(x)`` returns (N, classes)
                logits and ``model.head(model.features(x))`` equals it, as every
                ``unlearnkit.models.FeatureClassifier`` does. Any other classifier is wrapped with
                ``unlearnkit.models.wrap`` (head found automatically; pass ``wrap(model, head="fc")``
                yourself to name it, or to give ``mean``/``std``) and returned unwrapped, as you passed it.
            forget: the samples to forget: (x, y) tensors (x (n_f, C, H, W) in [0, 1], y (n_f,)), a
                TensorDataset or a Subset of one (in memory: the fast path); any map-style Dataset
                (items (x, y) or dicts with an image and a label key; its transforms run per item) or
                a DataLoader (its workers and pinning are used; its batch size and sampler are
                replaced by the method's seeded order): streamed, never read whole into memory by the
                converted methods; or an ``unlearnkit.data.BatchSource``.
            retain: the remaining training samples, in any of the same forms.
            test: optional unseen samples a method may monitor/select on (e.g. validation accuracy,
                early stopping, a checkpoint choice); never trained on. It must be validation data
                (``UnlearningSplit.val``), never the evaluation test split: the bench runner passes val.
            heldout: unseen samples a method may *train* on (TMU's D_twin); required when
                ``needs_heldout``. Keep them out of any later evaluation.
            callbacks: called with a ``StepEvent`` after each step (progress bars, logging).
            seed: fixes data order and any randomness of the method.
            inplace: modify ``model`` itself; by default a deep copy is unlearned and returned.
            precision: ``"fp32"`` (default), ``"bf16"`` or ``"fp16"`` (autocast; fp16 with a GradScaler).
            compile: ``torch.compile`` the model's forward for this call (True, or a backend name).
            cache_dir: where a method may keep work that a later call on the same data reuses, when
                its parameters ask for it (TMU's ``cache_curriculum``); None: the checkpoint cache,
                ``unlearnkit.checkpoints.default_cache_dir()``. Nothing is written otherwise.
            channels_last: hand conv nets channels-last weights and batches; default: on CUDA only.

        Raises (before any work; ``unlearnkit.methods._contract`` lists every check and its cost):
            TypeError / ValueError: naming the argument: a seed that is not a non-negative integer;
                a model that is not float32, spans devices, holds NaN weights, returns a tuple/dict
                (use ``unlearnkit.models.wrap(model, head=...)``), probabilities (a softmax after the
                head) or an output its ``head(features(x))`` does not reproduce; inputs outside [0, 1]
                for a model that takes [0, 1] images (0-255 or normalised images), or not float32;
                forget / retain / test / heldout sharing samples, or forget / retain holding one
                twice, where positions are known (Subsets of one dataset, views of one tensor);
                Subset indices out of range.
            unlearnkit.methods._contract.DivergedError (a ValueError and a FloatingPointError),
                after the work: the result holds NaN/Inf weights or gives NaN/+Inf outputs; the
                message names the method, its learning rate and the input range seen.
        """
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        seed = check_seed(seed)
        if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
            raise TypeError(f"cache_dir: expected a folder path (str or os.PathLike) or None, got {type(cache_dir).__name__}")
        src = {"forget": as_source(forget, "forget"), "retain": as_source(retain, "retain"),
               "test": as_source(test, "test") if test is not None else None,
               "heldout": as_source(heldout, "heldout") if heldout is not None else None}
        if self.needs_heldout and heldout is None:
            raise ValueError(f"heldout: {self.name} needs unseen samples to train on (e.g. part of the test split, "
                             "then excluded from evaluation), got None")
        labels = {k: s.labels() for k, s in src.items() if s is not None}
        device = model_device(model)
        model, wrapped = ensure_feature_classifier(model)  # before the copy: a bad model fails fast
        shapes = {k: _item_shape(src[k]) for k in ("forget", "retain")}  # type: ignore[arg-type]
        if shapes["forget"] != shapes["retain"]:
            raise ValueError(f"retain: expected images of the forget set's shape {shapes['forget']}, "
                             f"got {shapes['retain']}")
        # the contract (methods/_contract.py): model, dtypes, devices, input range, overlaps, on samples
        probe = check_call(model, src, {"forget": forget, "retain": retain, "test": test, "heldout": heldout},
                           num_classes=getattr(model, "num_classes", None), auto_wrapped=wrapped)
        # a duck-typed model that does not say its class count: its output width does
        num_classes = getattr(model, "num_classes", None) or probe.classes
        for name, y in labels.items():
            if y is not None and (y.min() < 0 or y.max() >= num_classes):
                raise ValueError(f"{name}: expected labels in [0, {num_classes}) (the model's classes), "
                                 f"got labels from {int(y.min())} to {int(y.max())}")
        if not inplace:
            model = copy.deepcopy(model)
        if channels_last is None:
            channels_last = device.type == "cuda"
        if channels_last and any(isinstance(m, nn.Conv2d) for m in model.modules()):
            model.to(memory_format=torch.channels_last)
            for s in src.values():
                if s is not None:
                    s.memory_format = torch.channels_last
        if compile:
            model.compile(**({"backend": compile} if isinstance(compile, str) else {}))
        ctx = Context(self.name, device, seed, callbacks, precision, cache_dir)
        self.last_cached_seconds = 0.0
        data = UnlearnData(forget=src["forget"], retain=src["retain"], test=src["test"], heldout=src["heldout"],
                           num_classes=num_classes)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                if stop_enabled(self.params):  # the rule's subsamples and noise, before any step
                    ctx.stopper = ValMatch(model, data, ctx, self.params, self.name)
                model = self._unlearn(model, data, ctx)
                if ctx.stopper is not None:
                    ctx.stopper.finish(model)
        finally:
            for s in src.values():
                if s is not None and channels_last:
                    s.memory_format = None
        self.last_history = ctx.history
        if compile:  # hand back a plain module (the compiled call wrapper is this call's)
            model._compiled_call_impl = None
        check_result(self.name, model, probe, getattr(self.params, "lr", None), inplace=inplace)  # NaN/Inf: DivergedError
        model.eval()
        return model.model if wrapped else model  # type: ignore[return-value]

    @abstractmethod
    def _unlearn(self, model: nn.Module, data: UnlearnData, ctx: Context) -> nn.Module:
        """Changes ``model`` (already a copy unless inplace) and returns it."""
