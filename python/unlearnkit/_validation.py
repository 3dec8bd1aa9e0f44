"""Input validation shared by every public function.

Each check raises ``ValueError`` or ``TypeError`` whose message names the argument, says what
was expected and what arrived, as DESIGN.md asks.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _describe(x: Any) -> str:
    if isinstance(x, np.ndarray):
        return f"an array of shape {x.shape} and dtype {x.dtype}"
    try:
        import torch

        if isinstance(x, torch.Tensor):
            return f"a tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    except ImportError:  # pragma: no cover
        pass
    return f"{type(x).__name__} {x!r}"[:200]


def to_numpy(x: Any, name: str) -> np.ndarray:
    """Converts a numpy array, torch tensor or sequence to a numpy array (no copy when possible)."""
    try:
        import torch

        if isinstance(x, torch.Tensor):
            x = x.detach()
            if x.dtype in (torch.bfloat16, torch.float16):
                x = x.float()
            return x.cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{name}: expected an array, got {_describe(x)}")
    try:
        return np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name}: expected an array, got {_describe(x)} ({exc})") from None


def check_labels(x: Any, name: str, *, allow_empty: bool = True) -> np.ndarray:
    """Returns a C-contiguous 1-D int64 (or int32) label array.

    Floats are accepted only when every value is a finite integer (as scikit-learn does);
    NaN/Inf, fractional values, 2-D input and non-numeric dtypes raise ``ValueError``.
    """
    a = to_numpy(x, name)
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of labels, got {_describe(a)}")
    if not allow_empty and a.size == 0:
        raise ValueError(f"{name}: expected at least one label, got an empty array")
    if a.dtype == np.int32 or a.dtype == np.int64:
        return np.ascontiguousarray(a)
    if a.dtype.kind in "iub":
        return np.ascontiguousarray(a, dtype=np.int64)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name}: expected finite labels, got NaN or Inf in {_describe(a)}")
        if not np.all(a == np.round(a)):
            raise ValueError(f"{name}: expected integer-valued labels, got fractional values")
        return np.ascontiguousarray(a, dtype=np.int64)
    raise TypeError(f"{name}: expected integer labels, got {_describe(a)}")


def check_same_length(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{name_b}: expected the same length as {name_a} ({len(a)}), got length {len(b)}")


def check_features(x: Any, name: str, *, dtype=np.float32, min_rows: int = 1) -> np.ndarray:
    """Returns a C-contiguous 2-D float array (float32 by default; float64 kept if asked).

    Raises ``ValueError`` for wrong rank, too few rows, zero columns or NaN/Inf values.
    """
    a = to_numpy(x, name)
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (n_samples, n_features), got {_describe(a)}")
    if a.dtype.kind not in "fiu":
        raise TypeError(f"{name}: expected a numeric array, got {_describe(a)}")
    if a.shape[0] < min_rows:
        raise ValueError(f"{name}: expected at least {min_rows} row(s), got {a.shape[0]}")
    if a.shape[1] == 0:
        raise ValueError(f"{name}: expected at least one feature column, got shape {a.shape}")
    if a.dtype != dtype:
        a = a.astype(dtype)
    a = np.ascontiguousarray(a)
    if not np.isfinite(a).all():
        bad = int((~np.isfinite(a)).any(axis=1).sum())
        raise ValueError(f"{name}: expected finite values, got NaN or Inf in {bad} row(s)")
    return a


def check_positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an int >= {minimum}, got {_describe(value)}")
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return int(value)


def check_choice(value: Any, name: str, choices) -> Any:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {sorted(choices)!r}, got {value!r}")
    return value


def check_fraction(value: Any, name: str, *, open_low: bool = True, closed_high: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a number in (0, 1), got {_describe(value)}") from None
    lo_ok = v > 0 if open_low else v >= 0
    hi_ok = v <= 1 if closed_high else v < 1
    if not (lo_ok and hi_ok and np.isfinite(v)):
        hi = "1]" if closed_high else "1)"
        lo = "(0" if open_low else "[0"
        raise ValueError(f"{name}: expected a number in {lo}, {hi}, got {value!r}")
    return v
