"""Running the eval job's shard functions as Ray tasks.

Ray does the distribution (started, joined and waited on through :mod:`unlearnkit.fanout`); this
module only submits one task per shard (the same functions
the single-process path calls, :func:`unlearnkit.eval.shards.scan_shard` and
:func:`~unlearnkit.eval.shards.score_shard`), puts the fitted models in the object store once,
and returns the partials in submission order so the driver merges them exactly as the
single-process path does.

Workers open the banks by path, so every node must see the same files at the same paths
(one machine, or a shared filesystem). In-memory banks travel inside the task arguments.
"""

from __future__ import annotations

import os

from ..fanout import gather, require_ray, start_ray, stop_ray

__all__ = ["RayExecutor"]


def _ray():
    return require_ray("ray", "--ray")


def _run_task(fn, *args):
    from threadpoolctl import threadpool_limits

    from .memory import peak_rss

    with threadpool_limits(limits=1, user_api="blas"):  # one CPU per task, as Ray schedules it
        out = fn(*args)
    out["worker_pid"] = os.getpid()
    out["worker_peak_rss"] = peak_rss()
    return out


class RayExecutor:
    """Submits shard tasks to Ray.

    address: ``"auto"`` -> ``ray.init()`` (joins the cluster this machine knows of through
    ``RAY_ADDRESS`` or the latest local cluster, else starts a local one); anything else is
    passed to ``ray.init(address=...)``. If Ray is already initialised in this process (e.g.
    ``ray.init(num_cpus=2)`` in a test), that session is used and left running.
    """

    name = "ray"

    def __init__(self, address: str, *, num_cpus: int | None = None):
        ray = _ray()
        if not isinstance(address, str) or not address:
            raise ValueError(f"ray: expected 'auto' or a Ray address such as 'host:6379', got {address!r}")
        self._owned = start_ray(address, num_cpus=num_cpus, argname="ray", local=("auto",), ray=ray)
        self.address = address
        self._remote = ray.remote(num_cpus=1, max_retries=0)(_run_task)

    def put(self, obj):
        return _ray().put(obj)

    def map(self, fn, tasks: list[tuple], bar) -> list[dict]:
        ray = _ray()
        refs = [self._remote.remote(fn, *args) for args in tasks]
        self.worker_peaks = getattr(self, "worker_peaks", {})

        def done(_i, r):
            bar.update(r["rows"])
            self.worker_peaks[r["worker_pid"]] = max(self.worker_peaks.get(r["worker_pid"], 0), r["worker_peak_rss"])

        return gather(refs, on_done=done, ray=ray)  # a task's ValueError/TypeError/FileNotFoundError as itself

    def describe(self) -> dict:
        ray = _ray()
        res = ray.cluster_resources()
        return {"address": self.address, "nodes": len([n for n in ray.nodes() if n.get("Alive")]),
                "cpus": res.get("CPU"), "workers": len(getattr(self, "worker_peaks", {})),
                "worker_peak_rss_bytes": max(getattr(self, "worker_peaks", {0: 0}).values(), default=0)}

    def close(self) -> None:
        stop_ray(self._owned)
