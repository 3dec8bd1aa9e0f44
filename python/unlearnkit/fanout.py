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
started it (``ray_session`` on exit, ``stop_ray(owned)``), never one it only reused. With no address
a Ray instance of its own is started, even when another Ray cluster runs on the machine (``ray
start``): joining that one is asked for by name (``"auto"``, ``HOST:PORT`` or ``RAY_ADDRESS``), and a
joined cluster's CPUs are its own (no ``num_cpus``). A cluster with token authentication (Ray 2.5x+)
is joined with the token found here, or refused with an error naming authentication and the fix.

Invariant: ``ray_map(fn, tasks)`` returns ``[fn(*t) for t in tasks]`` (input order, whatever order
the tasks finish in); a task's ValueError / TypeError / FileNotFoundError is raised again in the
caller with its type and message (other exceptions as Ray's ``RayTaskError``, an instance of the
task's exception class where Ray can make one), after the tasks still pending are cancelled.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator, Sequence

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


def _token_source() -> str | None:
    """Where Ray would read an authentication token from here, if anywhere: the ``RAY_AUTH_TOKEN``
    variable, the file ``RAY_AUTH_TOKEN_PATH`` names, or ``~/.ray/auth_token``."""
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return "the RAY_AUTH_TOKEN variable"
    named = os.environ.get("RAY_AUTH_TOKEN_PATH", "").strip()
    if named:
        return f"RAY_AUTH_TOKEN_PATH={named}" if os.path.isfile(os.path.expanduser(named)) else None
    default = os.path.join(os.path.expanduser("~"), ".ray", "auth_token")
    return default if os.path.isfile(default) else None


def _auth_refused(address: str) -> str | None:
    """Ray's message when the cluster at ``address`` (HOST:PORT of its GCS) refuses this process for
    want of a valid authentication token; None when it lets us in, cannot be reached quickly, or
    this Ray has no token authentication (then ``ray.init`` reports whatever is wrong)."""
    try:
        from ray._raylet import GcsClient  # type: ignore[attr-defined]  # in _raylet.so, missing from ray's _raylet.pyi
        from ray.exceptions import AuthenticationError
    except ImportError:  # a Ray without token authentication (before 2.5x)
        return None
    if not _reachable(address):  # a dead address would hang the probe for 40 s
        return None
    try:
        GcsClient(address=address)  # connects and asks for the cluster id: refused at once without a valid token
    except AuthenticationError as exc:
        return str(exc)
    except Exception:  # noqa: BLE001 - anything else is ray.init's to report
        return None
    return None


def _enable_token_auth() -> None:
    """Token authentication for this process (and the processes it starts), as Ray itself does for
    a cluster it finds on its own: ``RAY_AUTH_MODE=token`` and Ray's configuration reloaded."""
    os.environ["RAY_AUTH_MODE"] = "token"
    from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]  # in _raylet.so, not its .pyi

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


AUTH_HELP = ("make the cluster's token available here: copy the head node's ~/.ray/auth_token (`ray get-auth-token` "
             "prints it there) to ~/.ray/auth_token on this machine, or set RAY_AUTH_TOKEN=<token> or "
             "RAY_AUTH_TOKEN_PATH=<file>; see 'On a Ray cluster' in docs/audit.md")


def _check_auth(address: str, argname: str) -> None:
    """Before joining the cluster at ``address``: when it uses token authentication (Ray 2.5x+ turns
    it on for ``ray start --head`` once ``~/.ray/auth_token`` exists) and this process has no token
    mode on, turn it on with the token found here; raises ``ValueError`` naming authentication and
    the fix when there is none, or when the cluster refuses it."""
    refused = _auth_refused(address)
    if refused is None:
        return
    mode = os.environ.get("RAY_AUTH_MODE")
    source = _token_source()
    if source is not None and (mode is None or mode.lower() == "token"):
        _enable_token_auth()  # also reloads a token cached by an earlier session of this process
        refused = _auth_refused(address)
        if refused is None:
            return
        raise ValueError(f"{argname}: could not join the Ray cluster at {address!r}: it uses token authentication and "
                         f"refused the token from {source} (not the cluster's token?); {AUTH_HELP}")
    if mode is not None and mode.lower() != "token":
        raise ValueError(f"{argname}: could not join the Ray cluster at {address!r}: it uses token authentication, and "
                         f"RAY_AUTH_MODE is {mode!r} here; unset it or set RAY_AUTH_MODE=token, and {AUTH_HELP}")
    if source is None:
        raise ValueError(f"{argname}: could not join the Ray cluster at {address!r}: it uses token authentication and "
                         f"no token was found here; {AUTH_HELP}")
    raise ValueError(f"{argname}: could not join the Ray cluster at {address!r}: it uses token authentication and "
                     f"refused the token from {source} (not the cluster's token?); {AUTH_HELP}")


def _reachable(address: str, timeout: float = 3.0) -> bool:
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
        return True
    except (OSError, ValueError):
        return False


def _running_cluster(legacy_auto: bool) -> str | None:
    """HOST:PORT of the Ray cluster this machine knows of, or None: ``RAY_ADDRESS``, else the last one
    started with ``ray start`` (Ray's ``ray_current_cluster`` file, when something still listens
    there); with ``legacy_auto`` (an explicit ``address="auto"``), else any running one, as Ray's
    own ``"auto"`` does."""
    try:
        from ray._private.services import canonicalize_bootstrap_address
    except ImportError:  # pragma: no cover - a Ray that resolves addresses otherwise: let ray.init find it
        return "auto" if legacy_auto else None
    try:
        # ray annotates addr as str, but reads None as "the cluster this machine knows of" (its docstring)
        found = canonicalize_bootstrap_address("auto" if legacy_auto else None)  # type: ignore[arg-type]
    except ConnectionError:  # none found
        return None
    except Exception:  # noqa: BLE001 - an unreadable address file: as if none
        return None
    if found is None or (not legacy_auto and not _reachable(found)):
        return None  # a stale ray_current_cluster of a cluster that is gone: start one instead
    return found


def start_ray(address: str | None = None, *, num_cpus: int | None = None, argname: str = "ray_address",
              local: Sequence[str | None] = (None,), ray=None) -> bool:
    """Makes sure this process has a Ray session; returns True if it started one (the caller then
    owns it and stops it with ``stop_ray(True)``), False if one was already initialised (reused).

    Args:
        address: where to run.

            - A value in ``local`` other than ``"auto"`` (default: None) starts a Ray instance of
              its own on this machine with ``num_cpus`` CPUs (None: every core), even when another
              Ray cluster runs here; when ``RAY_ADDRESS`` is set, the cluster it names is joined
              instead.
            - ``"auto"`` in ``local`` joins the cluster this machine knows of (``RAY_ADDRESS``, or
              the last one started with ``ray start`` while it runs) when there is one, else starts
              one of its own.
            - Anything else joins that running cluster: ``"auto"`` not in ``local`` (Ray's meaning:
              ``RAY_ADDRESS``, the last ``ray start``, else any Ray running on the machine),
              ``"HOST:PORT"``, ``"ray://..."``.

            Joining never passes ``num_cpus`` (the cluster has its own). A cluster with token
            authentication is joined with the token found here (``RAY_AUTH_TOKEN``,
            ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``, as Ray reads it), and refused with an
            error that names authentication and how to make the token available.
        num_cpus: CPUs of an instance started here (ignored when joining).
        argname: the caller's name of ``address`` in the errors: ``"{argname}: could not connect to
            or start Ray at {address!r} ({reason})"``, or ``"{argname}: could not join the Ray
            cluster at ...: it uses token authentication ..."``.
        local: the address values that mean "run on this machine" for this caller.
        ray: the module (default: ``require_ray()``).
    """
    ray = ray or require_ray()
    if ray.is_initialized():
        return False
    kwargs = dict(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    join = address
    if address in local:
        join = os.environ.get("RAY_ADDRESS", "").strip() or None  # named: joined whatever the caller's default
        if join is None and address == "auto":
            join = _running_cluster(legacy_auto=False)
    try:
        if join is None:
            ray.init(address="local", num_cpus=num_cpus, **kwargs)  # an instance of its own
        else:
            target = _running_cluster(legacy_auto=True) if join == "auto" else join
            if target is None:
                raise ConnectionError("no running Ray cluster was found on this machine (start one with `ray start "
                                      "--head`, or set RAY_ADDRESS)")
            if "://" not in target and target != "auto":
                _check_auth(target, argname)
            ray.init(address=target, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        if str(exc).startswith(f"{argname}: "):
            raise
        hint = ""
        if join is not None and "auth" not in str(exc).lower():
            hint = ("; if the cluster uses token authentication, " + AUTH_HELP) if _token_source() is None else ""
        raise ValueError(f"{argname}: could not connect to or start Ray at {address!r} ({exc}){hint}") from None
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
