"""Layer: models. A ``FeatureClassifier`` view of any classifier: ``wrap(model, head="fc")``.

Every method and feature-space metric needs the split ``model(x) == model.head(model.features(x))``
(``models/base.py``). ``wrap`` gives that split to a model that does not define it, without
changing the model: the view shares its parameters (unlearning the view unlearns the model) and
``view(x)`` is exactly ``model(x)`` (same call, same tensor).

How the split is found:

1. ``head="fc"`` / ``"heads.head"`` / ``"classifier"`` / ``"classifier.6"``: a dotted submodule
   path; the features are that module's *input* during the model's own forward (captured by a
   forward hook), the head is the module itself.
2. ``head=None`` and the model has timm's ``forward_features`` / ``forward_head`` /
   ``get_classifier``: features = ``forward_head(forward_features(x), pre_logits=True)``, head =
   ``get_classifier()``.
3. ``head=None`` otherwise: the last ``nn.Linear`` (in module order) whose ``out_features`` is the
   number of classes (``num_classes`` if given, else ``model.num_classes``, else the last
   ``nn.Linear`` whatever its width).

Invariants checked at run time: the head module must produce the model's output (the hook
sees the very tensor the model returns; a layer after the head, e.g. a softmax, is an error), and
its input must be (N, d) features. A model that returns a tuple or dict (``(logits, aux)``, a
Hugging Face ``ModelOutput``) holding the head's output: the view ``wrap`` returns gives that
output alone (``view(x)`` is the head's output); the view ``Method.unlearn`` makes by itself does
not guess, and the call's contract check asks for ``wrap(model, head=...)``. Inputs stay in the model's own units: pass ``mean`` / ``std``
when the model expects normalised input, and the view normalises [0, 1] images itself, so that
pixel-unit step sizes (DLFD, TMU, Boundary Shrink) keep their meaning.
"""

from __future__ import annotations

from typing import Protocol, TypeGuard, cast

import torch
from torch import nn

from .base import FeatureClassifier

__all__ = ["WrappedClassifier", "wrap", "ensure_feature_classifier", "is_feature_classifier"]


class _TimmModel(Protocol):
    """The timm-style interface ``wrap`` checks for (callable ``forward_features``, ``forward_head``,
    ``get_classifier``) before using it."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor: ...

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor: ...

    def get_classifier(self) -> nn.Module: ...


def is_feature_classifier(model) -> TypeGuard[FeatureClassifier]:
    """True when ``model`` already honours the contract: a ``FeatureClassifier``, or a module whose
    ``features`` and ``head`` are methods (not submodules: torchvision's VGG and Swin have a
    ``features`` *module* that returns feature maps, which is not the contract)."""
    if isinstance(model, FeatureClassifier):
        return True
    if not isinstance(model, nn.Module):
        return False
    f, h = getattr(model, "features", None), getattr(model, "head", None)
    return callable(f) and callable(h) and not isinstance(f, nn.Module) and not isinstance(h, nn.Module)


def _first_conv_channels(model: nn.Module) -> int | None:
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            return int(m.in_channels)
    return None


def _linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]


def _describe_linears(model: nn.Module) -> str:
    found = [f"{n} ({m.in_features}->{m.out_features})" for n, m in _linears(model)]
    return ", ".join(found[-4:]) if found else "no nn.Linear at all"


class WrappedClassifier(FeatureClassifier):
    """The view ``wrap`` returns; ``.model`` is the wrapped classifier (shared, not copied).

    Attributes:
        model: the classifier.
        head_name: dotted path of the head module, or ``"<timm>"`` for timm-style models.
        num_classes, feature_dim, in_channels (None when the model has no conv layer).
    """

    _head_module: nn.Module  # a plain attribute, not a submodule (see __init__)

    def __init__(self, model: nn.Module, head_name: str, head_module: nn.Module, *, timm: bool,
                 num_classes: int, feature_dim: int | None, mean=None, std=None):
        in_channels = _first_conv_channels(model)
        norm_c = len(mean) if mean is not None else 1
        super().__init__(in_channels or norm_c, num_classes, mean if mean is not None else (0.0,) * norm_c,
                         std if std is not None else (1.0,) * norm_c)
        self.in_channels = in_channels
        self.normalise = mean is not None
        self.model = model
        self.head_name, self._timm = head_name, timm
        # a plain attribute (not a submodule): the head's parameters are registered once, under model.
        object.__setattr__(self, "_head_module", head_module)
        self.feature_dim = feature_dim
        #: when the model returns a tuple / dict holding the head's output, ``view(x)`` is that output
        #: (set by ``wrap``; False for the view ``ensure_feature_classifier`` makes on its own)
        self.unpack = True

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_channels is not None and (x.dim() != 4 or x.shape[1] != self.in_channels):
            raise ValueError(f"x: expected images of shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if self.normalise:
            mean = self.input_mean.to(x.dtype)
            std = self.input_std.to(x.dtype)
            if x.dim() == 4:
                return (x - mean) / std
            return (x - mean.view(1, -1)) / std.view(1, -1)
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs (in [0, 1] when ``mean``/``std`` were given, else the model's units) -> (N, d) features."""
        x = self._prepare(x)
        if self._timm:
            timm_model = cast(_TimmModel, self.model)  # checked by wrap: it has timm's three methods
            return timm_model.forward_head(timm_model.forward_features(x), pre_logits=True)
        seen: dict = {}

        def hook(_m, args, out):
            seen["z"], seen["out"] = args[0], out

        handle = self._head_module.register_forward_hook(hook)
        try:
            out = self.model(x)
        finally:
            handle.remove()
        if "z" not in seen:
            raise ValueError(f"head: expected module {self.head_name!r} to be called by the model's forward, "
                             "but it was not; name the final layer the forward uses")
        if out is not seen["out"] and not (self.unpack and _holds(out, seen["out"])):
            raise ValueError(f"head: expected {self.head_name!r} to be the model's last layer (model(x) is its output), "
                             "but the model changes its output afterwards; name the final layer, or wrap the part "
                             "before that change")
        z = seen["z"]
        if not isinstance(z, torch.Tensor) or z.dim() != 2:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"head: expected the input of {self.head_name!r} to be (N, d) features, got {shape}; "
                             "name a head whose input is a flat feature vector")
        return z

    def head(self, z: torch.Tensor) -> torch.Tensor:
        """(N, d) features -> (N, num_classes) logits."""
        return self._head_module(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._prepare(x)
        if self._timm or not self.unpack:
            return self.model(x)
        seen: dict = {}

        def hook(_m, _args, out):
            seen["out"] = out

        handle = self._head_module.register_forward_hook(hook)
        try:
            out = self.model(x)
        finally:
            handle.remove()
        # a model returning (logits, ...) or {"logits": ...}: the head's output, which is among them
        if not isinstance(out, torch.Tensor) and "out" in seen and _holds(out, seen["out"]):
            return seen["out"]
        return out

    def extra_repr(self) -> str:
        return f"head={self.head_name!r}, num_classes={self.num_classes}, normalise={self.normalise}"


def _holds(out, t) -> bool:
    """Whether a tuple / list / dict output holds the tensor ``t`` itself (one level deep)."""
    if isinstance(out, dict):
        return any(v is t for v in out.values())
    return isinstance(out, (tuple, list)) and any(v is t for v in out)


def wrap(model: nn.Module, *, head: str | None = None, mean=None, std=None,
         num_classes: int | None = None) -> FeatureClassifier:
    """A ``FeatureClassifier`` view of ``model`` (see the module docstring for how the head is found).

    Args:
        model: any ``nn.Module`` classifier returning (N, num_classes) logits. A model that already
            honours the contract (``is_feature_classifier``) is returned unchanged.
        head: dotted path of the final layer (``"fc"``, ``"heads.head"``, ``"classifier"``); None: found.
        mean, std: per-channel input statistics when the model expects normalised input; the
            view then takes [0, 1] images and normalises them itself. None: inputs pass unchanged.
        num_classes: the number of classes (helps pick the head when the model has several linears).

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: the head cannot be found or named; the message says what to pass.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if (mean is None) != (std is None):
        raise ValueError(f"std: expected mean and std together (or neither), got mean={mean!r}, std={std!r}")
    if mean is not None:
        mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        if len(mean) != len(std) or not mean:
            raise ValueError(f"std: expected one value per channel like mean ({len(mean)}), got {len(std)}")
        if min(std) <= 0:
            raise ValueError(f"std: expected positive values, got {std}")
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                    or num_classes < 1):
        raise ValueError(f"num_classes: expected a positive integer or None, got {num_classes!r}")
    if head is None and mean is None and is_feature_classifier(model):
        return model
    if head is None and all(callable(getattr(model, a, None))
                            for a in ("forward_features", "forward_head", "get_classifier")):
        clf = cast(_TimmModel, model).get_classifier()  # checked just above: callable
        n_out = getattr(clf, "out_features", None) or getattr(model, "num_classes", None)
        if not isinstance(clf, nn.Module) or not n_out:
            raise ValueError("head: this timm-style model has no classifier (num_classes=0?); "
                             "pass head=<dotted name of the final layer>")
        return WrappedClassifier(model, "<timm>", clf, timm=True, num_classes=int(n_out),
                                 feature_dim=getattr(model, "num_features", getattr(clf, "in_features", None)),
                                 mean=mean, std=std)
    if head is not None:
        if not isinstance(head, str) or not head:
            raise TypeError(f"head: expected a dotted submodule name such as 'fc' or 'heads.head', got {head!r}")
        try:
            module = model.get_submodule(head)
        except AttributeError:
            raise ValueError(f"head: expected the name of a submodule of {type(model).__name__}, got {head!r} "
                             f"(its linear layers: {_describe_linears(model)})") from None
        name = head
    else:
        k = num_classes or getattr(model, "num_classes", None)
        candidates = [(n, m) for n, m in _linears(model) if k is None or m.out_features == k]
        if not candidates:
            want = f"an nn.Linear with out_features == {k}" if k else "an nn.Linear"
            raise ValueError(f"head: could not find the final layer of {type(model).__name__} ({want}; found "
                             f"{_describe_linears(model)}); pass unlearnkit.models.wrap(model, head='<dotted name of "
                             "the final layer>')")
        name, module = candidates[-1]
    inner = _linears(module)  # a head that is a block (e.g. VGG's classifier MLP): its first and last linears
    n_out = (getattr(module, "out_features", None) or (inner[-1][1].out_features if inner else None) or num_classes
             or getattr(model, "num_classes", None))
    if not n_out:
        raise ValueError(f"num_classes: the head {name!r} is not an nn.Linear; pass num_classes=")
    if num_classes is not None and n_out != num_classes:
        raise ValueError(f"head: expected {name!r} to output num_classes={num_classes} logits, got {n_out}")
    return WrappedClassifier(model, name, module, timm=False, num_classes=int(n_out),
                             feature_dim=getattr(module, "in_features", None) or (inner[0][1].in_features if inner else None),
                             mean=mean, std=std)


def ensure_feature_classifier(model, *, num_classes: int | None = None, name: str = "model"
                              ) -> tuple[FeatureClassifier, bool]:
    """(a model honouring the contract, whether it had to be wrapped). Raises a TypeError that says
    what to pass when ``model`` can neither be used as is nor wrapped automatically."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name}: expected a torch.nn.Module, got {type(model).__name__}")
    if is_feature_classifier(model):
        return model, False
    try:
        view = wrap(model, num_classes=num_classes)
        # found on its own: a tuple / dict output is not unpacked (the user names the logits' layer)
        if isinstance(view, WrappedClassifier):  # always: model is not a feature classifier
            view.unpack = False
        return view, True
    except ValueError as e:
        raise TypeError(f"{name}: expected a classifier exposing features(x) and head(z) (an "
                        f"unlearnkit.models.FeatureClassifier), or one whose final layer can be found; got "
                        f"{type(model).__name__}: {e}. Pass unlearnkit.models.wrap(model, head='<dotted name of the "
                        "final layer>') instead") from None
