"""Validation and backend dispatch shared by the losses.

Errors name the argument, what was expected and what arrived (docs/design.md). The finiteness
check is one reduction over the input: cheap next to any of the losses it guards.
"""

from __future__ import annotations

import torch

BACKENDS = ("auto", "torch", "triton")


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a loss accumulates in: float64 for float64 input, float32 for anything narrower."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def full_precision(device: torch.device):
    """A context in which autocast is off on ``device`` (the losses choose their own dtypes)."""
    return torch.autocast(device_type=device.type, enabled=False)


def check_points(x, name: str, *, ndim: int = 2, min_rows: int = 1) -> torch.Tensor:
    """A floating-point tensor of rank ``ndim`` with at least ``min_rows`` rows and no NaN/Inf."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")
    if x.dim() != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D tensor, got shape {tuple(x.shape)}")
    if x.shape[0] < min_rows:
        raise ValueError(f"{name}: expected at least {min_rows} row(s), got shape {tuple(x.shape)}")
    if x.dim() == 2 and x.shape[1] == 0:
        raise ValueError(f"{name}: expected at least one feature column, got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: expected finite values, got NaN or Inf")
    return x


def check_same_device(**tensors: torch.Tensor) -> torch.device:
    devices = {k: t.device for k, t in tensors.items() if t is not None}
    first = next(iter(devices.values()))
    for k, dev in devices.items():
        if dev != first:
            names = ", ".join(f"{n} on {d}" for n, d in devices.items())
            raise ValueError(f"{k}: expected all inputs on one device, got {names}")
    return first


def check_same_width(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"{name_b}: expected {a.shape[-1]} feature columns like {name_a}, got {b.shape[-1]}")


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    return backend


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:  # pragma: no cover - platform without triton wheels
        return False
    return True


def resolve_backend(backend: str, device: torch.device) -> str:
    """``auto`` is Triton on CUDA (when Triton imports), the torch path elsewhere.

    ``triton`` on a CPU tensor is allowed only under ``TRITON_INTERPRET=1`` (how the tests run the
    kernels without a GPU); otherwise it is an error rather than a silent fallback.
    """
    import os

    check_backend(backend)
    if backend == "torch":
        return "torch"
    if backend == "auto":
        return "triton" if device.type == "cuda" and triton_available() else "torch"
    if not triton_available():
        raise ValueError("backend: 'triton' requested but triton is not installed on this platform")
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError(f"backend: 'triton' needs CUDA tensors (or TRITON_INTERPRET=1), got device {device}")
    return "triton"
