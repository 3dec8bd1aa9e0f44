"""Layer: methods. The contract every ``Method.unlearn`` call is checked against before any work,
and the check of what it hands back.

Before any work (:func:`check_call`, after the sources are built):

* ``seed``: a non-negative integer (:func:`check_seed`);
* the model: finite float parameters of one dtype on one device; ``model(x)`` on a small sample of
  the forget set is one (N, classes) tensor (a tuple or dict -> the hint to name the logits' layer
  with ``unlearnkit.models.wrap``), finite, logits rather than probabilities (every row in [0, 1]
  summing to 1 means a softmax after the head), and ``head(features(x))`` reproduces it (the split
  every feature-space method relies on);
* the data: floating-point inputs of the model's dtype; inputs in [0, 1] where the model says that
  is its range (every ``unlearnkit.models`` model, and a ``wrap`` view given ``mean``/``std``,
  which normalises [0, 1] images itself); a model with its own units (``wrap`` without
  ``mean``/``std``, a duck-typed classifier) has no known range and is not range-checked;
* the sets: no sample twice within forget or within retain, and none shared between any two of
  forget, retain, test and heldout, *where the positions are known*: sets drawn from one dataset
  (``Subset`` s of the same dataset, nested or not, directly or through a ``DataLoader``; the same
  Dataset passed twice), and tensors that are views of one storage (``x[:100]`` and ``x[50:]``,
  or the same tensor twice). Two unrelated tensors or datasets cannot be compared without reading
  and hashing every sample (and equal images may legitimately occur twice in a dataset), so they
  are not; ``Subset`` index ranges are checked when the sources are made
  (``unlearnkit.data.batches.check_subset_indices``).

Cost: a streamed (``LoaderSource``) set is never read whole: at most ``SAMPLE_SIZE`` items of each,
evenly spaced, are read for the range check (the forget sample doubles as the model's probe
batch). An in-memory set's range is its tensor's min and max. Positions come from ``Subset``
indices and tensor strides, without reading any item. The probe runs in eval mode under
``no_grad`` with the global RNG forked, and each module's train/eval mode is restored: the call's
result is bit for bit what it was without the check.

After the work (:func:`check_result`): every floating parameter and buffer of the result is
finite, and so are its outputs on the probe batch (NaN or +Inf; -Inf is allowed, a log-probability
of 0 as SISA's vote returns), else a ``DivergedError`` naming the method and the likely causes
(the learning rate, the input scale).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset

from ..data.batches import BatchSource, LoaderSource, TensorSource
from ..models.base import FeatureClassifier
from ..models.wrap import WrappedClassifier

__all__ = ["DivergedError", "Probe", "SAMPLE_SIZE", "check_call", "check_result", "check_seed"]

#: items read from each streamed set for the range check (the forget sample is also the model's probe)
SAMPLE_SIZE = 32
#: slack on the [0, 1] range (float rounding of images scaled by 1/255 or resized)
RANGE_SLACK = 1e-3


class DivergedError(FloatingPointError, ValueError):
    """A method handed back a model with NaN/Inf weights or outputs (a ``FloatingPointError``, and a
    ``ValueError`` since a hyper-parameter or the input scale is the usual cause)."""


@dataclass
class Probe:
    """What :func:`check_call` saw, reused by :func:`check_result`.

    x: (k, ...) forget inputs on the model's device (k <= SAMPLE_SIZE); input_range: (min, max)
    over the inputs checked (every set's sample); unit_range: whether the model takes [0, 1] inputs;
    classes: the width of the model's output (its class count).
    """

    x: torch.Tensor
    input_range: tuple[float, float]
    unit_range: bool
    classes: int


def check_seed(seed) -> int:
    """``seed`` as an int: a non-negative integer below 2**63 (Python or numpy integer, not a bool)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected a non-negative integer, got {type(seed).__name__} {seed!r}")
    if not 0 <= int(seed) < 2 ** 63:
        raise ValueError(f"seed: expected a non-negative integer below 2**63, got {seed!r}")
    return int(seed)


# --- the model's parameters -----------------------------------------------------------------------

def _tensors(model: nn.Module):
    yield from model.named_parameters()
    yield from ((n, b) for n, b in model.named_buffers() if b.is_floating_point())


def _check_model_tensors(model: nn.Module) -> torch.dtype | None:
    """One floating dtype among the parameters, one device among parameters and floating buffers,
    finite values. Returns the dtype (None for a model without floating parameters)."""
    dtypes: dict = {}
    devices: dict = {}
    for name, t in _tensors(model):
        devices.setdefault(t.device, name)
        if isinstance(t, nn.Parameter) and t.is_floating_point():
            dtypes.setdefault(t.dtype, name)
    if len(devices) > 1:
        seen = ", ".join(f"{d} ({n}, ...)" for d, n in devices.items())
        raise ValueError(f"model: expected every parameter and buffer on one device, got {seen}; move the whole model "
                         "with model.to(device)")
    if len(dtypes) > 1:
        seen = ", ".join(f"{d} ({n}, ...)" for d, n in dtypes.items())
        raise TypeError(f"model: expected parameters of one floating dtype, got {seen}; call model.float()")
    dtype = next(iter(dtypes), None)
    if dtype is not None and dtype != torch.float32:
        hint = ("for mixed precision keep the model in float32 and pass precision='fp16' or 'bf16' (autocast)"
                if dtype in (torch.float16, torch.bfloat16) else "call model.float()")
        raise TypeError(f"model: expected float32 parameters (the data are read as float32), got {dtype}; {hint}")
    if next(iter(devices), torch.device("cpu")).type != "meta":
        bad = [n for n, t in _tensors(model) if not torch.isfinite(t).all()]
        if bad:
            raise ValueError(f"model: expected finite weights, got NaN or Inf in {len(bad)} tensor(s) (first: {bad[0]}) "
                             "before any unlearning")
    return dtype


# --- the data ---------------------------------------------------------------------------------------

def _sample(source: BatchSource, device) -> torch.Tensor:
    """At most SAMPLE_SIZE inputs of ``source``, evenly spaced (read item by item when streamed)."""
    n = len(source)
    idx = torch.linspace(0, n - 1, min(n, SAMPLE_SIZE)).round().long().unique()
    return source.take(idx, device=device).x


def _range(source: BatchSource, sample: torch.Tensor | None) -> tuple[float, float]:
    """(min, max) of the inputs: a tensor source's whole tensor, else the sample."""
    if isinstance(source, TensorSource):
        x = source.x
    else:
        assert sample is not None, "a streamed source is always sampled (_check_inputs)"
        x = sample
    if not x.is_floating_point() or x.numel() == 0:
        return 0.0, 0.0
    lo, hi = torch.aminmax(x.detach())
    return float(lo), float(hi)


def _unit_range(model: nn.Module) -> bool:
    """Whether ``model`` says its inputs are [0, 1] images: the package's models, and wrap views given mean/std."""
    if isinstance(model, WrappedClassifier):
        return bool(model.normalise)
    return isinstance(model, FeatureClassifier)


def _check_inputs(model, sources: dict, device) -> tuple[torch.Tensor, tuple[float, float], bool]:
    unit = _unit_range(model)
    lo_all, hi_all = float("inf"), float("-inf")
    probe = None
    for name, src in sources.items():
        if src is None:
            continue
        if isinstance(src, TensorSource) and not src.x.is_floating_point():
            raise TypeError(f"{name}: expected floating-point inputs (images in [0, 1]), got {src.x.dtype}; pass "
                            f"x.float() / 255 for 0-255 images")
        sample: torch.Tensor | None
        if isinstance(src, TensorSource):
            sample = _sample(src, device) if name == "forget" else None
            dtype = src.x.dtype
        else:
            sample = _sample(src, device)
            dtype = sample.dtype
        if name == "forget":
            probe = sample
        if dtype != torch.float32:
            raise TypeError(f"{name}: expected float32 inputs like the model's parameters, got {dtype}; pass x.float()")
        lo, hi = _range(src, sample)
        if unit and (lo < -RANGE_SLACK or hi > 1 + RANGE_SLACK):
            where = "" if isinstance(src, TensorSource) else f" (in a sample of {SAMPLE_SIZE})"
            hint = ("normalised images: pass the [0, 1] images; the model normalises them itself with its mean and std"
                    if lo < -RANGE_SLACK else "0-255 images: divide them by 255 (uint8 images are scaled automatically)")
            raise ValueError(f"{name}: expected inputs in [0, 1] (the range {type(model).__name__} takes: it normalises "
                             f"them itself), got values from {lo:.4g} to {hi:.4g}{where}; {hint}. A model that takes "
                             "other units: unlearnkit.models.wrap(model) without mean/std")
        lo_all, hi_all = min(lo_all, lo), max(hi_all, hi)
    assert probe is not None
    return probe, (lo_all, hi_all), unit


# --- positions: overlap and duplicates -----------------------------------------------------------------

def _positions(data) -> tuple[tuple, np.ndarray] | None:
    """(key, positions) locating the samples of ``data`` in what it was drawn from, or None when
    unknown. Equal keys: comparable positions (the same dataset object, or the same tensor storage
    with the same row layout; positions are then element offsets of the rows)."""
    if isinstance(data, DataLoader):
        data = data.dataset
    if isinstance(data, LoaderSource):
        data = data.dataset
    if isinstance(data, TensorSource):
        return _storage_positions(data.x, None)
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        return _storage_positions(data[0], None)
    idx: np.ndarray | None = None
    while isinstance(data, Subset):
        raw_ind = data.indices
        ind = np.asarray(raw_ind.cpu() if isinstance(raw_ind, torch.Tensor) else raw_ind, dtype=np.int64)
        idx = ind if idx is None else ind[idx]
        data = data.dataset
    if isinstance(data, TensorDataset) and data.tensors:
        return _storage_positions(data.tensors[0], idx)
    if data is None or not hasattr(data, "__len__"):
        return None
    return ("dataset", id(data)), (np.arange(len(data)) if idx is None else idx)


def _storage_positions(x: torch.Tensor, idx: np.ndarray | None) -> tuple[tuple, np.ndarray] | None:
    if x.dim() == 0 or x.device.type == "meta" or x.stride(0) == 0:
        return None
    rows = np.arange(x.shape[0]) if idx is None else idx
    key = ("storage", x.untyped_storage().data_ptr(), x.device, tuple(x.shape[1:]), tuple(x.stride()[1:]), x.dtype)
    return key, int(x.storage_offset()) + rows.astype(np.int64) * x.stride(0)


def _check_positions(raw: dict) -> None:
    where: dict[str, tuple[tuple, np.ndarray]] = {}  # the inputs whose positions are known
    for k, v in raw.items():
        located = _positions(v) if v is not None else None
        if located is not None:
            where[k] = located
    for name in ("forget", "retain"):
        if name in where:
            pos = where[name][1]
            n_unique = np.unique(pos).size
            if n_unique != pos.size:
                raise ValueError(f"{name}: expected each sample once, got {pos.size - n_unique} repeated (duplicated "
                                 "Subset indices, or one sample twice in the set)")
    names = [k for k in ("forget", "retain", "test", "heldout") if k in where]
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            (ka, pa), (kb, pb) = where[a], where[b]
            if ka != kb:
                continue
            shared = np.intersect1d(pa, pb).size
            if shared:
                raise ValueError(f"{b}: expected no sample of {a}, got {shared} of its {pb.size} samples also in {a} "
                                 f"({a} has {pa.size}); {a} and {b} must be disjoint parts of the data")


# --- the model's outputs ------------------------------------------------------------------------------

def _describe_output(out) -> str:
    if isinstance(out, dict):
        return f"a {type(out).__name__} with keys {list(out)[:6]}"
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of {len(out)}"
    return type(out).__name__


def _check_outputs(model: FeatureClassifier, x: torch.Tensor, num_classes: int | None, auto_wrapped: bool) -> int:
    """model(x) on the probe: one finite (N, classes) tensor of logits, equal to head(features(x)).
    Returns the number of classes (the output's width)."""
    out = model(x)
    if not isinstance(out, torch.Tensor):
        if auto_wrapped:
            how = (f"pass unlearnkit.models.wrap(model, head={model.head_name!r}) (the layer found as the head; name "
                   "another if the logits come from elsewhere)")
        else:
            how = "return the logits alone, or pass unlearnkit.models.wrap(model, head='<dotted name of the final layer>')"
        raise TypeError(f"model: expected model(x) to return one (N, classes) tensor of logits, got "
                        f"{_describe_output(out)}; {how}: the view returns that layer's output")
    if out.dim() != 2 or out.shape[0] != x.shape[0]:
        raise ValueError(f"model: expected (N, classes) logits from model(x), got shape {tuple(out.shape)} for "
                         f"{x.shape[0]} inputs")
    if num_classes and out.shape[1] != num_classes:
        raise ValueError(f"model: expected {num_classes} logits per sample (its num_classes), got {out.shape[1]}")
    if not torch.isfinite(out).all():
        raise ValueError("model: expected finite outputs, got NaN or Inf on forget samples before any unlearning "
                         "(check the model's weights and the input scale)")
    o = out.float()
    if o.shape[1] > 1 and bool(((o >= 0) & (o <= 1)).all()) and bool(((o.sum(1) - 1).abs() < 1e-4).all()):
        raise ValueError("model: expected logits (the head's raw output), got probabilities (every row in [0, 1] "
                         "summing to 1: a softmax after the head); remove it, or wrap the part before it with "
                         "unlearnkit.models.wrap(model, head='<dotted name of the last linear layer>')")
    z = model.features(x)  # a wrap view raises here when a layer changes the output after the head
    if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[0] != x.shape[0]:
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValueError(f"model: expected features(x) to be (N, d), got {shape}")
    h = model.head(z)
    if not isinstance(h, torch.Tensor) or h.shape != out.shape or not torch.allclose(
            h.float(), o, rtol=1e-4, atol=1e-4 * (1 + float(o.abs().max()))):
        diff = float((h.float() - o).abs().max()) if isinstance(h, torch.Tensor) and h.shape == out.shape else None
        got = f"a max difference of {diff:.3g}" if diff is not None else f"head output {_describe_output(h)}"
        raise ValueError(f"model: expected head(features(x)) to equal model(x) (the feature/head split every method "
                         f"relies on), got {got}; the head must be the model's last layer")
    return int(out.shape[1])


def _in_eval(model: nn.Module):
    modes = [(m, m.training) for m in model.modules()]

    class _Ctx:
        def __enter__(self):
            model.eval()

        def __exit__(self, *exc):
            for m, mode in modes:
                m.training = mode

    return _Ctx()


def check_call(model: FeatureClassifier, sources: dict, raw: dict, *, num_classes: int | None,
               auto_wrapped: bool) -> Probe:
    """The pre-flight check of one ``unlearn`` call (see the module docstring).

    Args:
        model: the model in its contract form (a FeatureClassifier, or the ``wrap`` view made for it).
        sources: name -> BatchSource (forget, retain, test, heldout; None where not given).
        raw: name -> what the user passed (for positions: Subsets, DataLoaders, tensors).
        num_classes: the model's class count when it says it, else None.
        auto_wrapped: True when ``model`` is a view ``unlearn`` made itself (changes the hint).
    """
    _check_model_tensors(model)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x, input_range, unit = _check_inputs(model, sources, device)
    _check_positions(raw)
    with torch.no_grad(), torch.random.fork_rng(devices=[]), _in_eval(model):
        classes = _check_outputs(model, x, num_classes, auto_wrapped)
    return Probe(x, input_range, unit, classes)


def check_result(method: str, model: nn.Module, probe: Probe, lr=None, *, inplace: bool = False) -> None:
    """Raises ``DivergedError`` when ``model`` (what ``method`` returned) holds NaN/Inf weights or
    gives NaN/+Inf outputs on the probe batch (``inplace``: the message says the model passed was changed)."""
    bad = [n for n, t in _tensors(model) if t.device.type != "meta" and not torch.isfinite(t).all()]
    what = None
    if bad:
        n_all = sum(1 for _ in _tensors(model))
        what = f"NaN or Inf weights in {len(bad)} of {n_all} tensors (first: {bad[0]})"
    else:
        with torch.no_grad(), torch.random.fork_rng(devices=[]), _in_eval(model):
            out = model(probe.x)
        if isinstance(out, torch.Tensor) and (torch.isnan(out).any() or torch.isposinf(out).any()):
            what = "NaN or Inf outputs on forget samples (finite weights of overflowing size)"
    if what is None:
        return
    lo, hi = probe.input_range
    rate = f"lower the learning rate (lr={lr})" if lr is not None else "lower the step sizes"
    scale = (f"inputs seen from {lo:.4g} to {hi:.4g}" + (", within the model's [0, 1]" if probe.unit_range else
                                                          "; a model trained on [0, 1] images diverges on 0-255 ones"))
    changed = " (inplace=True: the model passed holds these weights now)" if inplace else ""
    raise DivergedError(f"model: expected finite weights and outputs after {method} unlearned it, got {what}{changed}: "
                        f"the training diverged; {rate} or fewer epochs, or check the input scale ({scale})")
