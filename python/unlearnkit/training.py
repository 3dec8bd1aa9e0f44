"""Layer: training. Supervised training and batched inference, shared by the runner (original and
gold models) and by the methods that fine-tune; and :class:`Precision`, the one mixed-precision
policy (autocast + GradScaler) that training, unlearning and evaluation use.

Invariants: ``precision="fp32"`` is the plain float32 path (no autocast, no scaler), bit for bit
what the loops did before; ``"bf16"`` / ``"fp16"`` run the forward passes under autocast (fp16
with a dynamic loss scale); inference always returns float32 on the CPU. Data are read through
``unlearnkit.data.batches`` (tensors, or any Dataset / DataLoader, streamed), in an order fixed
by the seed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ._validation import param
from .data.batches import as_source
from .progress import Callback, StepEvent, emit

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """Mixed precision on one device: ``with amp.autocast(): loss = ...`` then ``amp.step(opt, loss)``.

    Args:
        precision: ``"fp32"`` (default: no autocast), ``"bf16"`` (autocast to bfloat16; CPU and
            CUDA) or ``"fp16"`` (autocast to float16 with a ``GradScaler``: the loss is scaled before
            backward and the step skipped on overflow).
        device: the model's device.
    """

    def __init__(self, precision: str = "fp32", device: torch.device | str = "cpu"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
        self.precision, self.device = precision, torch.device(device)
        self.dtype = _DTYPES[precision]
        self.enabled = precision != "fp32"
        self.scaler = torch.amp.GradScaler(self.device.type) if precision == "fp16" else None

    def __repr__(self) -> str:
        return f"Precision({self.precision!r}, {str(self.device)!r})"

    def autocast(self):
        """The autocast context of this precision (a no-op context for fp32)."""
        return torch.autocast(device_type=self.device.type, dtype=self.dtype, enabled=self.enabled)

    def step(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor, *, before_step=None) -> None:
        """zero_grad, backward, (``before_step()``: e.g. gradient masking, on unscaled gradients), step."""
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            if before_step is not None:
                before_step()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer)
        if before_step is not None:
            before_step()
        self.scaler.step(optimizer)
        self.scaler.update()


def as_precision(precision: str | Precision | None, device) -> Precision:
    if isinstance(precision, Precision):
        return precision
    return Precision("fp32" if precision is None else precision, device)


@dataclass(frozen=True)
class TrainConfig:
    """How the original and gold models are trained (SGD with momentum, cosine schedule).

    Attributes:
        epochs: passes over the training set.
        batch_size: samples per step.
        lr: initial learning rate; decays to 0 along a cosine.
        momentum, weight_decay: SGD settings (the papers' 0.9 and 5e-4).
    """

    epochs: int = param(30, ge=0)
    batch_size: int = param(64, ge=1)
    lr: float = param(0.05, gt=0)
    momentum: float = param(0.9, ge=0, lt=1)
    weight_decay: float = param(5e-4, ge=0)

    def to_dict(self) -> dict:
        return asdict(self)


def model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def sgd(model: nn.Module, lr: float, momentum: float = 0.9, weight_decay: float = 5e-4,
        params: Iterable[torch.nn.Parameter] | None = None) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters() if params is None else params, lr=lr, momentum=momentum,
                           weight_decay=weight_decay)


def fit(model: nn.Module, x, y: torch.Tensor | None, config: TrainConfig, *, seed: int,
        callbacks: Iterable[Callback] = (), source: str = "train", precision: str | Precision = "fp32") -> nn.Module:
    """Trains ``model`` in place with cross-entropy on (x, y) and returns it.

    Args:
        x: (n, C, H, W) images in [0, 1] with y: (n,) int64 labels; or, with ``y=None``, any
            Dataset / DataLoader / ``BatchSource`` of (image, label) items (streamed).
        seed: fixes the data order (initialisation is the caller's).
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (see :class:`Precision`).
    """
    device = model_device(model)
    data = as_source((x, y) if y is not None else x, "x")
    amp = as_precision(precision, device)
    gen = torch.Generator().manual_seed(seed)
    opt = sgd(model, config.lr, config.momentum, config.weight_decay)
    steps_per_epoch = math.ceil(len(data) / config.batch_size)
    total = config.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    model.train()
    step = 0
    for epoch in range(config.epochs):
        for b in data.batches(config.batch_size, shuffle=True, generator=gen, device=device):
            with amp.autocast():
                loss = F.cross_entropy(model(b.x), b.y)
            amp.step(opt, loss)
            sched.step()
            step += 1
            emit(callbacks, StepEvent(source, "train", step, total, {"epoch": epoch + 1, "loss": loss.item()}))
    model.eval()
    return model


# Inference batch: 512 keeps a small CNN's activations in cache on a CPU (measured on 20k
# Fashion-MNIST images, plain layout: 1.58 s at 512 against 1.68 s at 2048). On CUDA a larger
# batch keeps the device busy: 2048 is a choice (not measured here), small enough for a ResNet-18
# at 224 px in a few GB.
INFERENCE_BATCH = 512
CUDA_INFERENCE_BATCH = 2048


def inference_batch(device: torch.device | str) -> int:
    """The default evaluation batch for ``device``."""
    return CUDA_INFERENCE_BATCH if torch.device(device).type == "cuda" else INFERENCE_BATCH


@torch.no_grad()
def predict(model: nn.Module, x, *, batch_size: int | None = None, precision: str | Precision = "fp32") -> torch.Tensor:
    """(n, C, H, W) -> (n, num_classes) float32 logits on the CPU, model in eval mode.

    ``x``: a tensor, or any Dataset / DataLoader / ``BatchSource`` of (image, label) items (streamed,
    in order). ``batch_size``: default ``inference_batch(device)``.
    """
    return _batched(model, x, batch_size, lambda m, b: (m(b),), precision)[0]


@torch.no_grad()
def extract_features(model: nn.Module, x, *, batch_size: int | None = None,
                     precision: str | Precision = "fp32") -> torch.Tensor:
    """(n, C, H, W) -> (n, feature_dim) float32 penultimate features on the CPU (``x`` as in ``predict``)."""
    return _batched(model, x, batch_size, lambda m, b: (m.features(b),), precision)[0]


@torch.no_grad()
def predict_with_features(model: nn.Module, x, *, batch_size: int | None = None,
                          precision: str | Precision = "fp32") -> tuple[torch.Tensor, torch.Tensor]:
    """(n, C, H, W) -> ((n, num_classes) logits, (n, feature_dim) features), float32 on the CPU,
    from one forward pass (``logits = model.head(features)``, the models' contract)."""
    def both(m, b):
        z = m.features(b)
        return m.head(z), z
    logits, feats = _batched(model, x, batch_size, both, precision)
    return logits, feats


def _batched(model, x, batch_size, fn, precision="fp32") -> tuple[torch.Tensor, ...]:
    was_training = model.training
    model.eval()
    device = model_device(model)
    amp = as_precision(precision, device)
    batch_size = batch_size or inference_batch(device)
    if isinstance(x, torch.Tensor):  # the plain path: slices, no gather
        chunks = (x[i:i + batch_size].to(device, non_blocking=True) for i in range(0, len(x), batch_size))
    else:
        chunks = (b.x for b in as_source(x, "x").batches(batch_size, device=device))
    with amp.autocast():
        parts = [tuple(t.float().cpu() for t in fn(model, xb)) for xb in chunks]
    model.train(was_training)
    if not parts:
        return (torch.empty(0),) * 2
    return tuple(torch.cat(col) for col in zip(*parts))
