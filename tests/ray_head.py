"""A real Ray head node in another process, with token authentication, for the tests that join a
cluster (``tests/package/test_ray_cluster.py``, ``tests/data/test_fanout.py``).

``head_node()`` runs ``ray start --head --block`` on free ports with its own Ray temp folder
(``RAY_TMPDIR``: it does not become the machine's "current cluster", so nothing else running on
the machine finds or joins it) and its own token file, and stops it on exit by the pid of the
``ray start`` process and of every process whose command line names that temp folder (never
``ray stop``, which stops every Ray on the machine). It checks that none is left.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pids_naming(text: str) -> list[int]:
    out = []
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmd and int(entry.name) != os.getpid():
                out.append(int(entry.name))
    return out


@contextlib.contextmanager
def head_node(num_cpus: int = 2, timeout: float = 90.0):
    """Yields ``{"address": "HOST:PORT", "token_file": path, "tmpdir": RAY_TMPDIR of the node}``;
    token authentication is on (``RAY_AUTH_MODE=token``) with a fresh token in ``token_file``."""
    base = tempfile.mkdtemp(prefix="ukray-", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    token_file = pathlib.Path(base) / "token"
    token_file.write_text(secrets.token_hex(32))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_TMPDIR=base, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_file))
    ray_bin = str(pathlib.Path(sys.executable).with_name("ray"))
    log = open(pathlib.Path(base) / "head.log", "wb")  # noqa: SIM115 - the head's stdout while it runs; closed at stop
    cmd = [ray_bin, "start", "--head", "--block", f"--port={_free_port()}", f"--num-cpus={num_cpus}", "--num-gpus=0",
           "--include-dashboard=false", f"--dashboard-port={_free_port()}",
           f"--dashboard-agent-listen-port={_free_port()}", "--disable-usage-stats"]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    current = pathlib.Path(base) / "ray" / "ray_current_cluster"
    try:
        deadline = time.monotonic() + timeout
        address = None
        while time.monotonic() < deadline and proc.poll() is None:
            if current.exists() and current.read_text().strip():
                address = current.read_text().strip()
                host, _, port = address.rpartition(":")
                try:
                    socket.create_connection((host, int(port)), timeout=2).close()
                    time.sleep(1.0)  # the raylet registers just after the GCS listens
                    break
                except OSError:
                    pass
            time.sleep(0.5)
        else:
            raise RuntimeError(f"the Ray head node did not start: {(pathlib.Path(base) / 'head.log').read_text()[-2000:]}")
        yield {"address": address, "token_file": str(token_file), "tmpdir": base}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)  # `ray start --block` stops the node's processes on SIGTERM
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        deadline = time.monotonic() + 20
        while _pids_naming(base) and time.monotonic() < deadline:
            time.sleep(0.5)
        for pid in _pids_naming(base):  # what did not stop on its own: by pid, only this node's processes
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        time.sleep(0.5)
        left = _pids_naming(base)
        shutil.rmtree(base, ignore_errors=True)
        assert not left, f"Ray processes of the test's head node are still running: {left}"


def stray_ray_processes(tmpdir: str) -> list[int]:
    """Pids of processes whose command line names ``tmpdir`` (the head node's)."""
    return _pids_naming(tmpdir)


def token_mode_off(auth_mode: str | None) -> None:
    """Undoes what joining the head node did to this test process: ``unlearnkit.fanout`` turned Ray's
    token authentication on (``RAY_AUTH_MODE`` and Ray's in-process config) and Ray's token loader
    holds the head node's token. Puts ``RAY_AUTH_MODE`` back to ``auth_mode`` (what the test found,
    popped directly: Ray's own local ``ray.init`` also sets it, behind monkeypatch's back), removes
    the other ``RAY_*`` variables a test may have set, and reloads Ray's config and token to match,
    so that a later local ``ray.init`` does not present the head node's token to its own cluster.
    Call it inside the test, after the last use of the head node."""
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_TOKEN", "RAY_TMPDIR", "RAY_ADDRESS"):
        os.environ.pop(name, None)
    if auth_mode is not None:
        os.environ["RAY_AUTH_MODE"] = auth_mode
    auth_state_from_env()


def auth_state_from_env() -> None:
    """Reloads Ray's in-process authentication state (its config and cached token) from the
    environment as it is now. Call it after changing ``RAY_AUTH_MODE`` by hand: a Ray config left in
    token mode while the variable is unset makes ``unlearnkit.fanout`` see the cluster accept its
    probe, join, and then Ray's own Python-side gRPC clients send no token (the raylet "dies")."""
    try:
        from ray._raylet import AuthenticationTokenLoader, Config
    except ImportError:  # pragma: no cover - a Ray without token authentication
        return
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
