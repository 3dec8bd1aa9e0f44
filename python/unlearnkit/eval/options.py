"""Layer: eval. The options of ``unlearnkit.eval.run`` and ``unlearnkit eval``: one frozen
dataclass, :class:`EvalConfig`, whose fields carry their group, kind, bounds and help text in
their metadata. ``run``'s keywords, the validation and the command line's flags
(``unlearnkit.cli.eval``) are all derived from it, so the three cannot drift apart.

Standard library only (no numpy), so that building the command line stays fast.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from typing import Any

from .memory import parse_size

__all__ = ["EvalConfig", "option_fields"]




def _option(default, *, group: str, kind: str, help: str, ge=None, gt=None, le=None, expect: str | None = None,
            flag: str | None = None, metavar: str | None = None, cli: bool = True, compare: bool = True):
    """A field of :class:`EvalConfig`: ``kind`` is int, float, bool, str, path (a file path), bank
    (a path or an in-memory pair) or size (``parse_size``); ``ge``/``gt``/``le`` bound numbers
    (``None`` is always allowed when the default is ``None``); ``expect`` replaces the generated
    "expected ..." text; ``flag`` the generated ``--field-name``; ``cli=False`` keeps it off the
    command line."""
    meta = {"group": group, "kind": kind, "help": help, "ge": ge, "gt": gt, "le": le, "expect": expect,
            "flag": flag, "metavar": metavar, "cli": cli}
    return dataclasses.field(default=default, compare=compare, metadata={"unlearnkit.eval": meta})


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Every option of :func:`run` and of ``unlearnkit eval`` (the command line's flags are
    generated from these fields: ``da_k`` -> ``--da-k``; see ``option_fields``).

    Inputs (group "banks"): ``forget``/``retain``/``test`` (or ``bank``: one Parquet file with a
    ``split_key`` column), the gold model's ``gold_*`` banks, and the array / tensor / column names.
    Resources: ``memory_limit`` (e.g. "4GiB" or bytes), ``ray`` (None, "auto" or an address),
    ``ray_num_cpus``, ``chunk_rows``, ``blas_threads`` (BLAS threads while the job runs; None
    leaves the library's own setting). Metrics: ``seed`` fixes every sample and k-means;
    ``n_classes`` is k of k-means (default: distinct labels; at most the rows k-means is fit on);
    ``energy``/``da_k``/``center`` for dimensional alignment; ``knn_k``, ``knn_queries`` for the
    k-NN attack; ``kmeans_rows``, ``probe_rows``, ``kmeans_n_init``, ``kmeans_max_iter``,
    ``kmeans_tol``, ``probe_max_iter``. Output: ``out`` (JSON, written atomically) and
    ``progress`` (tqdm bars; the command line's ``--quiet`` turns them off).

    Every value is checked when the config is made: ``ValueError``/``TypeError`` naming the field.
    """

    forget: Any = _option(None, group="banks", kind="bank", help="forget-set features and labels", metavar="PATH",
                          compare=False)
    retain: Any = _option(None, group="banks", kind="bank", help="retain-set features and labels", metavar="PATH",
                          compare=False)
    test: Any = _option(None, group="banks", kind="bank", help="test-set features and labels", metavar="PATH",
                        compare=False)
    bank: Any = _option(None, group="banks", kind="bank", metavar="FILE", compare=False,
                        help="instead of the three: one Parquet file with a split column")
    gold_forget: Any = _option(None, group="banks", kind="bank", metavar="PATH", compare=False,
                               help="the retrained (gold) model's forget features")
    gold_retain: Any = _option(None, group="banks", kind="bank", metavar="PATH", compare=False,
                               help="the gold model's retain features")
    gold_test: Any = _option(None, group="banks", kind="bank", metavar="PATH", compare=False,
                             help="the gold model's test features")
    gold_bank: Any = _option(None, group="banks", kind="bank", metavar="FILE", compare=False,
                             help="gold banks in one Parquet file with a split column")
    features_key: str = _option("features", group="banks", kind="str",
                                help="array/tensor/column of the features (default: features)")
    labels_key: str = _option("labels", group="banks", kind="str",
                              help="array/tensor/column of the labels (default: labels)")
    split_key: str = _option("split", group="banks", kind="str",
                             help="Parquet column naming each row's set (default: split)")
    memory_limit: Any = _option(None, group="resources", kind="size", metavar="SIZE",
                                help="peak resident memory per process, e.g. 4GiB, 512MB")
    ray: str | None = _option(None, group="resources", kind="str", metavar="ADDRESS",
                              help="run shards on Ray: 'auto' (local, started if needed) or an address")
    ray_num_cpus: int | None = _option(None, group="resources", kind="int", ge=1, flag="--ray-cpus",
                                       help="CPUs of a Ray started locally by --ray auto (default: all)")
    chunk_rows: int | None = _option(None, group="resources", kind="int", ge=1,
                                     help="rows per streamed chunk (default: from --memory-limit)")
    blas_threads: int | None = _option(1, group="resources", kind="int", ge=1,
                                       help="BLAS threads while the job runs (default 1)")
    seed: int = _option(0, group="metrics", kind="int", ge=0, help="fixes every sample and k-means (default 0)")
    n_classes: int | None = _option(None, group="metrics", kind="int", ge=2, metavar="K",
                                    help="k of k-means (default: distinct labels; at most the rows of each set)")
    energy: float = _option(0.9, group="metrics", kind="float", gt=0.0, le=1.0, expect="a fraction in (0, 1]",
                            help="dimensional alignment: spectrum fraction kept (0.9)")
    da_k: int | None = _option(None, group="metrics", kind="int", ge=1, metavar="K",
                               help="dimensional alignment: eigen-directions kept (overrides --energy)")
    center: bool = _option(False, group="metrics", kind="bool",
                           help="dimensional alignment on the covariance, not the second moment")
    knn_k: int = _option(5, group="metrics", kind="int", ge=1, help="neighbours of the k-NN membership features (5)")
    knn_queries: int = _option(1000, group="metrics", kind="int", ge=2,
                               help="query rows per set for the k-NN attack (1000)")
    kmeans_rows: int = _option(100_000, group="metrics", kind="int", ge=2,
                               help="rows per set k-means is fit on (100000)")
    probe_rows: int = _option(50_000, group="metrics", kind="int", ge=2,
                              help="retain rows the linear probe trains on (50000)")
    kmeans_n_init: int = _option(1, group="metrics", kind="int", ge=1, help="k-means restarts (1)")
    kmeans_max_iter: int = _option(100, group="metrics", kind="int", ge=1, help="k-means iterations (100)")
    kmeans_tol: float = _option(1e-4, group="metrics", kind="float", ge=0.0,
                                help="k-means stopping tolerance on the centroid shift (1e-4)")
    probe_max_iter: int = _option(300, group="metrics", kind="int", ge=1,
                                  help="iterations of the probe's logistic regression (300)")
    out: Any = _option(None, group="output", kind="path", metavar="FILE",
                       help="write the result JSON here (atomically)")
    progress: bool = _option(False, group="output", kind="bool", flag="--quiet",
                             help="no progress bars (the command line shows them unless --quiet)")

    def __post_init__(self):
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _check_option(f, getattr(self, f.name)))

    def metric_options(self) -> dict:
        """The options that decide the numbers (group "metrics"), for the result's ``config``."""
        return {f.name: getattr(self, f.name) for f in option_fields() if _meta(f)["group"] == "metrics"}


def _meta(f: dataclasses.Field) -> dict:
    return f.metadata["unlearnkit.eval"]


def option_fields() -> tuple[dataclasses.Field, ...]:
    """The fields of :class:`EvalConfig` with their metadata (``field.metadata["unlearnkit.eval"]``)."""
    return dataclasses.fields(EvalConfig)


def _check_option(f: dataclasses.Field, value):
    m, name = _meta(f), f.name
    kind = m["kind"]
    if value is None and (f.default is None or kind == "bank"):
        return None
    if kind == "bool":
        if not isinstance(value, bool) and type(value).__name__ != "bool_":  # numpy's bool too
            raise TypeError(f"{name}: expected True or False, got {type(value).__name__} {value!r}")
        return bool(value)
    if kind == "str":
        if not isinstance(value, str) or not value:
            raise TypeError(f"{name}: expected a non-empty string, got {type(value).__name__} {value!r}")
        return value
    if kind == "path":
        if not isinstance(value, (str, os.PathLike)) or not str(value):
            raise TypeError(f"{name}: expected a file path, got {type(value).__name__} {value!r}")
        return value
    if kind in ("int", "float"):
        lo = f">= {m['ge']:g}" if m["ge"] is not None else (f"> {m['gt']:g}" if m["gt"] is not None else "")
        expect = m["expect"] or ("an int" if kind == "int" else "a number") + (f" {lo}" if lo else "")
        # numbers.Integral / numbers.Real include numpy's integer and float scalars, not bools of numpy
        ok_type = isinstance(value, numbers.Integral if kind == "int" else numbers.Real) and not isinstance(value, bool)
        if not ok_type:
            raise TypeError(f"{name}: expected {expect}, got {type(value).__name__} {value!r}")
        v = int(value) if kind == "int" else float(value)
        ok = (m["ge"] is None or v >= m["ge"]) and (m["gt"] is None or v > m["gt"]) \
            and (m["le"] is None or v <= m["le"]) and (kind == "int" or math.isfinite(v))
        if not ok:
            raise ValueError(f"{name}: expected {expect}, got {value!r}")
        return v
    if kind == "size":
        parse_size(value, name)  # raises naming the option
        return value
    return value  # bank: resolved (and checked) by resolve_spec


# Earlier names of options, still accepted by ``run``.
_ALIASES = {"k": "da_k"}

#: kept for code written against the first version (the metric options were a separate dataclass)
Config = EvalConfig
