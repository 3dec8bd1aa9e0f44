"""Layer: audit. The audit of an existing split: pools, then scores.

This module imports nothing from ``unlearnkit.bench``, so the bench's runner may import it
(``unlearnkit bench --audit K``) without an import cycle.
"""

from __future__ import annotations

import time

from .pools import PoolSetup, run_pools
from .scores import score_pools

__all__ = ["audit_split", "bench_columns"]


def audit_split(split, setup: PoolSetup, methods: dict[str, dict], k: int, *, executor: str = "ray",
                ray_address: str | None = None, num_cpus: int | None = None, progress: bool = True,
                delta: float = 1e-5) -> dict:
    """Pools and scores for an existing split: ``{"pools": run_pools(...),
    "scores": score_pools(...)}`` (see :func:`~unlearnkit.audit.pools.run_pools` for the arguments).

    ``result["scores"]["rows"]`` holds one row per method, ``original`` and ``retrained floor``;
    :func:`~unlearnkit.audit.scores.audit_columns` turns it into bench columns.
    """
    pools = run_pools(split, setup, methods, k, executor=executor, ray_address=ray_address, num_cpus=num_cpus,
                      progress=progress)
    t0 = time.perf_counter()
    scores = score_pools(pools, delta=delta)
    scores["metric_seconds"] = time.perf_counter() - t0
    return {"pools": pools, "scores": scores}


def bench_columns(split, *, model: str, train, methods: dict[str, dict], k: int, cache_dir: str,
                  model_kwargs: dict | None = None, device: str = "cpu", threads: int = 1, executor: str = "ray",
                  ray_address: str | None = None, progress: bool = True) -> tuple[dict, dict]:
    """The audit's columns for the bench's table (``unlearnkit bench --audit K``), from the bench's
    own pieces: its split, model name and arguments, ``TrainConfig`` and per-method hyper-parameters.

    Returns:
        (``{row name: {"audit_<column>": value}}`` with rows named as the bench names them: each
        method, ``original`` and ``gold`` (the retrained floor), and the full :func:`audit_split`
        result for writing with :func:`~unlearnkit.audit.report.write_audit`).
    """
    from .scores import audit_columns

    setup = PoolSetup(model=model, model_kwargs=dict(model_kwargs or {}), train=train, cache_dir=str(cache_dir),
                      device=device, threads=threads)
    result = audit_split(split, setup, methods, k, executor=executor, ray_address=ray_address, progress=progress)
    return audit_columns(result["scores"]), result
