"""Layer: audit. The audit of an existing split: pools, then scores.

This module imports nothing from ``unlearnkit.bench``, so the bench's runner may import it
(``unlearnkit bench --audit K``) without an import cycle.
"""

from __future__ import annotations

import time

from .pools import PoolSetup, run_pools
from .scores import score_pools

__all__ = ["audit_split"]


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
