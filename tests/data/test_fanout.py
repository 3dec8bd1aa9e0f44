"""unlearnkit.fanout, the module that owns Ray: ``ray_map`` equals a serial map (results in input
order, a task's exception raised as the serial call raises it), an initialised session is reused
and left running, a session it starts is shut down, and a missing Ray gets the one clear error.
One module-scoped local Ray (2 CPUs); one test starts and stops its own, and one runs beside a
real cluster started in another process (``ray start --head``), which fanout must not join by
accident (issue 24) but joins when asked by name."""

from __future__ import annotations

import os
import sys
import time

import pytest

from unlearnkit.fanout import RayMissing, ray_map, require_ray

ray = pytest.importorskip("ray")


def _make_task():
    # defined in a function so that Ray pickles it by value (a test module is not importable on the workers)
    def square_after(i: int, delay: float, fail_at: int | None = None, kind: str = "value"):
        """A picklable task: sleeps ``delay`` s (later tasks sleep less, so they finish first), then
        returns (i, i * i), or raises at ``fail_at``."""
        time.sleep(delay)
        if i == fail_at:
            if kind == "value":
                raise ValueError(f"i: expected anything but {fail_at}, got {i}")
            raise KeyError(f"key {i}")
        return i, i * i

    return square_after


square_after = _make_task()


def serial_map(fn, tasks):
    return [fn(*t) for t in tasks]


def test_a_session_it_starts_is_shut_down():  # first: before the module's session exists
    if ray.is_initialized():
        pytest.skip("a Ray session left by another test module is running")  # pragma: no cover
    out = ray_map(square_after, [(i, 0.0) for i in range(3)], cluster_cpus=1)
    assert out == [(0, 0), (1, 1), (2, 4)]
    assert not ray.is_initialized()


@pytest.mark.slow  # a real head node in another process (about 10 s) and a local instance beside it
def test_with_another_cluster_running_it_starts_its_own_and_joins_only_by_name(monkeypatch):
    # Before (issue 24): with a `ray start --head` cluster on the machine, ray.init(num_cpus=...) found it
    # and failed: "When connecting to an existing cluster, num_cpus and num_gpus must not be provided".
    from ray_head import auth_state_from_env, head_node, token_mode_off

    from unlearnkit.fanout import ray_session, start_ray, stop_ray

    assert not ray.is_initialized()
    with head_node(num_cpus=2) as head:
        # the head is this process's "current cluster", as Ray's discovery sees it (ray_current_cluster)
        monkeypatch.setenv("RAY_TMPDIR", head["tmpdir"])
        monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", head["token_file"])
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
        auth_mode = os.environ.pop("RAY_AUTH_MODE", None)  # put back by token_mode_off
        auth_state_from_env()
        try:
            # "auto" (eval's --ray auto) joins it, without num_cpus: the head's 2 CPUs
            owned = start_ray("auto", num_cpus=1, local=("auto",))
            assert owned and ray.get_runtime_context().gcs_address == head["address"]
            assert ray.cluster_resources()["CPU"] == 2
            stop_ray(owned)
            # no address: an instance of its own with the CPUs asked for, beside the running cluster
            tasks = [(i, 0.0) for i in range(4)]
            assert ray_map(square_after, tasks, cluster_cpus=1) == serial_map(square_after, tasks)
            assert not ray.is_initialized()
            with ray_session(None, num_cpus=1):
                assert ray.get_runtime_context().gcs_address != head["address"]
                assert ray.cluster_resources()["CPU"] == 1
        finally:
            if ray.is_initialized():  # pragma: no cover - only when an assertion failed inside
                ray.shutdown()
            token_mode_off(auth_mode)


def test_results_in_input_order_like_a_serial_map(local_ray):
    tasks = [(i, 0.05 * (5 - i)) for i in range(6)]
    seen = []
    out = ray_map(square_after, tasks, num_cpus=1, on_done=lambda i, r: seen.append((i, r)))
    assert out == serial_map(square_after, tasks) == [(i, i * i) for i in range(6)]
    assert sorted(seen) == list(enumerate(out))  # each task reported once, with its own result
    assert ray.is_initialized()  # the test's session is reused and left running


def test_a_task_exception_is_raised_as_the_serial_map_raises_it(local_ray):
    tasks = [(i, 0.0, 2) for i in range(4)]
    with pytest.raises(ValueError) as serial:
        serial_map(square_after, tasks)
    with pytest.raises(ValueError) as fanned:
        ray_map(square_after, tasks)
    assert type(fanned.value) is ValueError and str(fanned.value) == str(serial.value) == \
        "i: expected anything but 2, got 2"
    with pytest.raises(KeyError, match="key 1"):  # other types: Ray's error, an instance of the task's type
        ray_map(square_after, [(i, 0.0, 1, "key") for i in range(3)])
    assert ray.is_initialized()


def test_bad_arguments_and_no_tasks(local_ray):
    assert ray_map(square_after, []) == []
    with pytest.raises(ValueError, match=r"^num_cpus: expected a positive number of CPUs per task, got 0$"):
        ray_map(square_after, [(1, 0.0)], num_cpus=0)


def test_a_missing_ray_gets_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    msg = ("executor: expected Ray to be installed for executor='ray' (pip install 'unlearnkit[cluster]'), "
           "got no module 'ray'")
    with pytest.raises(RayMissing) as exc:
        require_ray()
    assert str(exc.value) == msg and isinstance(exc.value, ValueError) and isinstance(exc.value, ImportError)
    with pytest.raises(ValueError, match=r"^executor: expected Ray to be installed"):
        ray_map(square_after, [(1, 0.0)])
    with pytest.raises(ImportError, match=r"^ray: expected Ray to be installed for --ray .*; try this$"):
        require_ray("ray", "--ray", "try this")
