"""Feature-bank evaluation jobs: ``unlearnkit.eval.run`` and ``unlearnkit eval``.

Reads the forget/retain/test feature banks a team dumped to disk (``.npy``, ``.npz``,
safetensors, Parquet), streams them in chunks within a memory budget, and computes every
feature-space metric: dimensional alignment, linear-probe accuracy, k-means clustering F1 and
NMI, k-NN membership features and attack score, and the gaps to the gold model's banks. The
same job runs on a Ray cluster (``ray=``), with the same results. See ``docs/eval.md``.
"""

from .job import SETS, format_table, run
from .memory import parse_size
from .readers import BankSpec, open_bank, resolve_spec

__all__ = ["SETS", "BankSpec", "format_table", "open_bank", "parse_size", "resolve_spec", "run"]
