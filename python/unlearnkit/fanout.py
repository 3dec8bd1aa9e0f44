"""Layer: fanout. The one module that knows Ray: importing it, starting or joining a session, and
running a function over many inputs as Ray tasks.

    with ray_session(address=None, num_cpus=4) as ray:     # local, or joins / reuses a session
        ...
    results = ray_map(train_shard, [(a1, b1), (a2, b2)], num_cpus=1)   # input order

Everything above (``methods`` for SISA's shards, ``eval``'s shard scans, ``audit``'s pools) goes
through here; nothing else imports Ray. Ray is an optional dependency (the ``[cluster]`` extra) and
is imported only when a function here is called.

Session rule: a session already initialised in this process (e.g. ``ray.init(num_cpus=2)`` in a
test or a notebook) is reused and left running; a session started here is shut down by whoever
started it (``ray_session`` on exit, ``stop_ray(owned)``), never one it only joined or reused.

Invariant: ``ray_map(fn, tasks)`` returns ``[fn(*t) for t in tasks]`` (input order, whatever order
the tasks finish in); a task's ValueError / TypeError / FileNotFoundError is raised again in the
caller with its type and message (other exceptions as Ray's ``RayTaskError``, an instance of the
task's exception class where Ray can make one), after the tasks still pending are cancelled.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

__all__ = ["RayMissing", "gather", "ray_map", "ray_session", "require_ray", "start_ray", "stop_ray"]

#: exceptions of a task raised again in the caller as themselves (type and message)
RERAISED = (ValueError, TypeError, FileNotFoundError)


class RayMissing(ValueError, ImportError):
    """Ray is not installed (a ValueError like every argument error, and an ImportError)."""


def require_ray(argname: str = "executor", option: str = "executor='ray'", alternative: str | None = None):
    """The ``ray`` module, imported now; raises :class:`RayMissing` naming the option that needs it:
    ``"{argname}: expected Ray to be installed for {option} (pip install 'unlearnkit[cluster]'),
    got no module 'ray'"`` (then ``"; {alternative}"`` when given)."""
    try:
        import ray
    except ImportError:  # pragma: no cover - ray is in the [cluster] extra
        tail = f"; {alternative}" if alternative else ""
        raise RayMissing(f"{argname}: expected Ray to be installed for {option} (pip install "
                         f"'unlearnkit[cluster]'), got no module 'ray'{tail}") from None
    return ray


def start_ray(address: str | None = None, *, num_cpus: int | None = None, argname: str = "ray_address",
              local: Sequence[str | None] = (None,), ray=None) -> bool:
    """Makes sure this process has a Ray session; returns True if it started one (the caller then
    owns it and stops it with ``stop_ray(True)``), False if one was already initialised (reused).

    Args:
        address: a value in ``local`` (default: None) starts a local instance with ``ray.init(num_cpus=
            num_cpus)`` (``num_cpus`` None: Ray's default, every core; Ray joins the cluster named by
            ``RAY_ADDRESS`` instead when that is set); anything else (``"auto"``, ``"HOST:PORT"``,
            ``"ray://..."``) is passed to ``ray.init(address=...)`` to join a running cluster.
        num_cpus: CPUs of a local instance (ignored when joining).
        argname: the caller's name of ``address`` in the error raised when Ray cannot be started or
            joined: ``"{argname}: could not connect to or start Ray at {address!r} ({reason})"``.
        local: the address values that mean "start a local instance" for this caller.
        ray: the module (default: ``require_ray()``).
    """
    ray = ray or require_ray()
    if ray.is_initialized():
        return False
    kwargs = dict(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        if address in local:
            ray.init(num_cpus=num_cpus, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ValueError(f"{argname}: could not connect to or start Ray at {address!r} ({exc})") from None
    return True


def stop_ray(owned: bool) -> None:
    """Shuts Ray down if ``owned`` (``start_ray`` returned True); a reused session is left running."""
    if owned:
        require_ray().shutdown()


@contextlib.contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None, argname: str = "ray_address",
                local: Sequence[str | None] = (None,), ray=None) -> Iterator:
    """``start_ray`` on entry (yields the ``ray`` module), ``stop_ray`` of what it started on exit."""
    ray = ray or require_ray()
    owned = start_ray(address, num_cpus=num_cpus, argname=argname, local=local, ray=ray)
    try:
        yield ray
    finally:
        stop_ray(owned)


def gather(refs: list, *, on_done: Callable[[int, object], None] | None = None, ray=None) -> list:
    """The results of Ray object references ``refs``, in their order.

    ``on_done(i, result)`` is called as each task finishes (in finishing order; progress bars).
    If a task fails, the pending ones are cancelled and its exception raised here (see the
    module's invariant).
    """
    ray = ray or require_ray()
    position = {r: i for i, r in enumerate(refs)}
    results: dict[int, object] = {}
    pending = list(refs)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                i = position[ref]
                results[i] = ray.get(ref)
                if on_done is not None:
                    on_done(i, results[i])
    except ray.exceptions.RayTaskError as exc:
        for ref in pending:
            ray.cancel(ref, force=True)
        cause = exc.cause if getattr(exc, "cause", None) is not None else exc
        if isinstance(cause, RERAISED):
            raise type(cause)(str(cause)) from None
        raise
    return [results[i] for i in range(len(refs))]


def ray_map(fn: Callable, tasks: Sequence[tuple], *, num_cpus: float = 1, address: str | None = None,
            cluster_cpus: int | None = None, on_done: Callable[[int, object], None] | None = None,
            argname: str = "ray_address") -> list:
    """``[fn(*t) for t in tasks]``, each call a Ray task reserving ``num_cpus`` CPUs (no retries).

    Args:
        fn: a picklable function (module level); tasks: its argument tuples.
        num_cpus: CPUs reserved per task (Ray runs at most cluster CPUs / num_cpus at once).
        address, cluster_cpus, argname: the session (``start_ray``'s ``address``, ``num_cpus``,
            ``argname``) used when none is initialised yet; one started here is shut down before
            returning.
        on_done: see :func:`gather`.

    Returns:
        the results in the order of ``tasks``; a task's exception is raised as :func:`gather` says.
    """
    tasks = [tuple(t) for t in tasks]
    if isinstance(num_cpus, bool) or not isinstance(num_cpus, (int, float)) or num_cpus <= 0:
        raise ValueError(f"num_cpus: expected a positive number of CPUs per task, got {num_cpus!r}")
    if not tasks:
        return []
    with ray_session(address, num_cpus=cluster_cpus, argname=argname) as ray:
        remote = ray.remote(num_cpus=num_cpus, max_retries=0)(fn)
        return gather([remote.remote(*t) for t in tasks], on_done=on_done, ray=ray)
