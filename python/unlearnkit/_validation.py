"""Input validation shared by every public function.

Each check raises ``ValueError`` or ``TypeError`` whose message names the argument, says what
was expected and what arrived, as docs/design.md asks.
"""

from __future__ import annotations

import dataclasses as _dc
import math as _math
import typing as _typing
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


#: the scenario syntax, written once (every --scenario help string and error message uses it)
SCENARIO_HELP = ("random-<percent> | class-<label> | class-<label>-<percent> (that share of one class) | "
                 "subclass-<fine label> | backdoor-<percent>")


def _percent(arg: str, scenario: str, name: str, form: str, what: str) -> float:
    try:
        pct = float(arg)
    except ValueError:
        raise ValueError(f"{name}: expected {form} with a number in (0, 100) ({what}), got {scenario!r}") from None
    if not 0 < pct < 100:
        raise ValueError(f"{name}: expected {form} with a percent in (0, 100) ({what}), got {scenario!r}")
    return pct / 100


def check_scenario(scenario, name: str = "scenario", *, parsed: bool = False):
    """The scenario syntax's one parser. ``random-<p>`` / ``backdoor-<p>`` need a percent strictly
    between 0 and 100; ``class-<label>`` and ``subclass-<label>`` an integer label (its range depends
    on the dataset and is checked when the split is made, before training); ``class-<label>-<p>`` a
    label and a percent of that class. Returns ``scenario``, or with ``parsed=True`` the keyword
    arguments of ``data.make_split`` it stands for."""
    if not isinstance(scenario, str):
        raise TypeError(f"{name}: expected a string such as 'random-10' ({SCENARIO_HELP}), got {type(scenario).__name__}")
    kind, _, arg = scenario.partition("-")
    if kind in ("random", "backdoor"):
        what = "the share of the training set to forget" if kind == "random" else "the share of images poisoned"
        out: dict = {"forget": kind, "fraction": _percent(arg, scenario, name, f"{kind}-<percent>", what)}
    elif kind in ("class", "subclass"):
        label, _, pct = arg.partition("-")
        try:
            c = int(label)
        except ValueError:
            raise ValueError(f"{name}: expected {kind}-<label> with an integer label ({SCENARIO_HELP}), "
                             f"got {scenario!r}") from None
        if pct and kind == "class":
            out = {"forget": "class_partial", "forget_class": c,
                   "fraction": _percent(pct, scenario, name, "class-<label>-<percent>",
                                        "the share of the class to forget")}
        elif pct:
            raise ValueError(f"{name}: expected subclass-<label> (no percent), got {scenario!r}")
        else:
            out = {"forget": kind, "forget_class": c}
    else:
        raise ValueError(f"{name}: expected {SCENARIO_HELP}, got {scenario!r}")
    return out if parsed else scenario


# --------------------------------------------------------------------------------------------
# Parameter schemas: the constraints (and tuning ranges) of a hyper-parameter dataclass, declared
# once in each field's metadata and checked in one place (sklearn's ``_parameter_constraints``
# idea, attached to the dataclass field instead of a side table).
#
#     @dataclass(frozen=True)
#     class FineTuneParams:
#         epochs: int = param(10, ge=0, space=integers(1, 10), doc="passes over the retain set")
#         lr: float = param(0.01, gt=0, space=log_uniform(1e-5, 1e-1), doc="SGD step")
#
#     check_params(FineTuneParams, {"epochs": 2.5}, prefix="finetune.")
#     -> ValueError: finetune.epochs: expected an int >= 0, got float 2.5
# --------------------------------------------------------------------------------------------

_META = "unlearnkit"


@_dc.dataclass(frozen=True)
class Space:
    """A tuning range: ``kind`` is "log" (log-uniform float), "float" (uniform), "int" (integers,
    ``log`` for a log scale) or "choice" (one of ``choices``)."""

    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple = ()
    log: bool = False

    def __post_init__(self):
        check_choice(self.kind, "kind", ("log", "float", "int", "choice"))
        if self.kind == "choice":
            if not self.choices:
                raise ValueError("choices: expected at least one choice, got none")
        elif not (self.low is not None and self.high is not None and self.low < self.high):
            raise ValueError(f"low, high: expected low < high, got {self.low!r}, {self.high!r}")
        if self.kind == "log" and not (self.low is not None and self.low > 0):  # low is set: checked above
            raise ValueError(f"low: expected a positive lower bound of a log-uniform range, got {self.low!r}")

    def contains(self, value) -> bool:
        if self.kind == "choice":
            return value in self.choices
        return self.low <= value <= self.high


def log_uniform(low: float, high: float) -> Space:
    return Space("log", float(low), float(high))


def uniform(low: float, high: float) -> Space:
    return Space("float", float(low), float(high))


def integers(low: int, high: int, *, log: bool = False) -> Space:
    return Space("int", int(low), int(high), log=log)


def categorical(*choices) -> Space:
    return Space("choice", choices=tuple(choices))


@_dc.dataclass(frozen=True)
class Constraint:
    """What one field accepts: bounds (``ge``/``gt``/``le``/``lt``), ``choices``, and for tuple
    fields their ``length`` and per-item ``choices``; ``space`` is its tuning range (or None: not tuned)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple | None = None
    length: int | None = None
    space: Space | None = None
    doc: str = ""

    def describe(self, kind: str) -> str:
        parts = [f"{'an' if kind == 'int' else 'a'} {kind}"]
        parts += [f"{op} {v:g}" for op, v in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
                  if v is not None]
        text = " ".join(parts[:2]) + "".join(f" and {p}" for p in parts[2:])
        return text + (f" among {list(self.choices)}" if self.choices else "")


def param(default, *, ge=None, gt=None, le=None, lt=None, choices=None, length=None, space: Space | None = None,
          doc: str = ""):
    """A dataclass field carrying its constraints and tuning range (see ``check_params``)."""
    c = Constraint(ge, gt, le, lt, tuple(choices) if choices is not None else None, length, space, doc)
    if isinstance(default, (list, dict, set)):
        raise TypeError(f"default: expected an immutable default (use a tuple), got {type(default).__name__}")
    return _dc.field(default=default, metadata={_META: c})


def constraints(params_cls) -> dict[str, Constraint]:
    """``{field: Constraint}`` for each field of a parameter dataclass (plain fields get an empty one)."""
    return {f.name: f.metadata.get(_META, Constraint()) for f in _dc.fields(params_cls)}


def search_space(params_cls) -> dict[str, Space]:
    """``{field: Space}`` of the fields that declare a tuning range."""
    return {name: c.space for name, c in constraints(params_cls).items() if c.space is not None}


def _base_kind(hint) -> tuple[str, bool, object]:
    """(kind, optional, item hint) of a field annotation: int, float, bool, str, tuple."""
    optional = False
    origin = _typing.get_origin(hint)
    args = _typing.get_args(hint)
    if origin in (_typing.Union, getattr(__import__("types"), "UnionType", None)) and type(None) in args:
        optional = True
        rest = [a for a in args if a is not type(None)]
        hint = rest[0] if len(rest) == 1 else hint
        origin, args = _typing.get_origin(hint), _typing.get_args(hint)
    if hint is tuple or origin is tuple:
        return "tuple", optional, (args[0] if args else None)
    for kind in (bool, int, float, str):
        if hint is kind:
            return kind.__name__, optional, None
    return "any", optional, None


def _coerce(value, kind: str, item, c: Constraint, name: str):
    if kind == "bool":
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name}: expected a bool, got {_describe(value)}")
        return bool(value)
    if kind == "str":
        if not isinstance(value, str):
            raise TypeError(f"{name}: expected a string{' among ' + str(list(c.choices)) if c.choices else ''}, "
                            f"got {_describe(value)}")
        return value
    if kind == "int":
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name}: expected {c.describe('int')}, got {_describe(value)}")
        return int(value)
    if kind == "float":
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name}: expected {c.describe('number')}, got {_describe(value)}")
        value = float(value)
        if not _math.isfinite(value):
            raise ValueError(f"{name}: expected a finite number, got {value!r}")
        return value
    if kind == "tuple":
        if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
            raise TypeError(f"{name}: expected a sequence, got {_describe(value)}")
        if c.length is not None and len(value) != c.length:
            raise ValueError(f"{name}: expected {c.length} values, got {len(value)}: {value!r}")
        item_kind = _base_kind(item)[0] if item is not None and item is not Ellipsis else "any"
        inner = Constraint(c.ge, c.gt, c.le, c.lt, c.choices)
        out = tuple(_coerce(v, item_kind, None, inner, f"{name}[{i}]") for i, v in enumerate(value))
        for i, v in enumerate(out):
            _check_bounds(v, inner, f"{name}[{i}]", item_kind)
        return out
    return value


def _check_bounds(value, c: Constraint, name: str, kind: str) -> None:
    if c.choices is not None and kind != "tuple" and value not in c.choices:
        raise ValueError(f"{name}: expected one of {list(c.choices)}, got {value!r}")
    if kind not in ("int", "float"):
        return
    ok = ((c.ge is None or value >= c.ge) and (c.gt is None or value > c.gt)
          and (c.le is None or value <= c.le) and (c.lt is None or value < c.lt))
    if not ok:
        raise ValueError(f"{name}: expected {c.describe('int' if kind == 'int' else 'number')}, got {value!r}")


def check_params(params_cls, values: dict, *, prefix: str = "") -> dict:
    """Checks ``values`` against the field types and constraints of ``params_cls`` and returns
    them coerced (ints for float fields become floats, lists become tuples).

    Raises ``TypeError`` for an unknown field or a value of the wrong type and ``ValueError`` for
    a value out of range; every message starts with ``<prefix><field>:``.
    """
    fields = {f.name: f for f in _dc.fields(params_cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise TypeError(f"{prefix}{unknown[0]}: not a hyper-parameter; expected one of {sorted(fields)}")
    hints = _typing.get_type_hints(params_cls)
    cons = constraints(params_cls)
    out: dict = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        kind, optional, item = _base_kind(hints.get(key))
        if value is None:
            if not optional:
                raise TypeError(f"{name}: expected a value, got None")
            out[key] = None
            continue
        v = _coerce(value, kind, item, cons[key], name)
        _check_bounds(v, cons[key], name, kind)
        out[key] = v
    return out


def params_dict(params) -> dict:
    """The field values of a parameter dataclass instance, as a plain dict."""
    return {f.name: getattr(params, f.name) for f in _dc.fields(params)}
