"""unlearnkit.fanout, the module that owns Ray: ``ray_map`` equals a serial map (results in input
order, a task's exception raised as the serial call raises it), an initialised session is reused
and left running, a session it starts is shut down, and a missing Ray gets the one clear error.
One module-scoped local Ray (2 CPUs); one test starts and stops its own."""

from __future__ import annotations

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
