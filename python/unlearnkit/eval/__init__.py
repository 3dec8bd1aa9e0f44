"""Feature-bank evaluation jobs: ``unlearnkit.eval.run`` and ``unlearnkit eval``.

Reads the forget/retain/test feature banks a team dumped to disk (``.npy``, ``.npz``,
safetensors, Parquet), streams them in chunks within a memory budget, and computes every
feature-space metric: dimensional alignment, linear-probe accuracy, k-means clustering F1 and
NMI, k-NN membership features and attack score, and the gaps to the gold model's banks. The
same job runs on a Ray cluster (``ray=``), with the same results. See ``docs/eval.md``.
"""

from .memory import parse_size
from .options import EvalConfig, option_fields

# The job and the readers import numpy (and the engine): loaded on first use, so that the command
# line can build its flags from EvalConfig without them.
_LAZY = {"SETS": "job", "format_table": "job", "run": "job", "BankSpec": "readers", "open_bank": "readers",
         "resolve_spec": "readers"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["SETS", "BankSpec", "EvalConfig", "format_table", "open_bank", "option_fields", "parse_size", "resolve_spec",
           "run"]
