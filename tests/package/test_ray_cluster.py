"""A real Ray cluster in another process (``ray start --head`` on free ports, 3 CPUs, token
authentication on, as Ray 2.5x+ does once a token exists): ``unlearnkit eval --ray HOST:PORT`` and a
small ``unlearnkit audit --ray-address HOST:PORT`` join it with the token found in this process's
environment and give exactly the serial results; without the token, or with another one, the
error names authentication and the fix at once (before: "could not connect" after 20 s).

The head node is stopped by pid in ``tests/ray_head.py`` (never ``ray stop``, which would stop
every Ray on the machine), which also checks that none of its processes is left.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from ray_head import auth_state_from_env, head_node, token_mode_off

from unlearnkit.cli import main

ray = pytest.importorskip("ray")

HEAD_CPUS = 3  # not this machine's core count: a run that reports 3 CPUs ran on the head node

RECIPES = """
[datasets.digits]
model = "small-cnn"
train = { epochs = 1, batch_size = 64, lr = 0.05, momentum = 0.9, weight_decay = 5e-4 }
[datasets.digits.methods]
finetune = { epochs = 1, lr = 0.02, batch_size = 64 }
"""


@pytest.fixture(scope="module")
def head():
    assert not ray.is_initialized(), "a Ray session of another test module is still running"
    with head_node(num_cpus=HEAD_CPUS) as h:
        yield h


@pytest.fixture
def auth_env(monkeypatch):
    """RAY_* as a user's shell would have them (no RAY_AUTH_MODE, no RAY_ADDRESS); afterwards the
    process's own Ray authentication state again (see ``ray_head.token_mode_off``)."""
    saved = os.environ.pop("RAY_AUTH_MODE", None)  # an earlier module's local ray.init sets it
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    auth_state_from_env()  # and Ray's in-process config must agree with the variable's absence
    yield monkeypatch
    if ray.is_initialized():  # pragma: no cover - only when an assertion failed while joined
        ray.shutdown()
    token_mode_off(saved)


def _bank(folder):
    rng = np.random.default_rng(0)
    paths = {}
    folder.mkdir()
    for name, n in (("forget", 60), ("retain", 300), ("test", 120)):
        y = rng.integers(0, 3, n)
        np.save(folder / f"{name}.npy", (rng.normal(size=(n, 8)) + y[:, None]).astype(np.float32))
        np.save(folder / f"{name}.labels.npy", y)
        paths[name] = str(folder / f"{name}.npy")
    return paths


def _eval_args(bank):
    return ["eval", "--forget", bank["forget"], "--retain", bank["retain"], "--test", bank["test"], "--quiet"]


def test_without_the_clusters_token_the_error_names_authentication(head, auth_env, tmp_path, capsys):
    bank = _bank(tmp_path / "bank")
    auth_env.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "no-such-token"))
    rc = main([*_eval_args(bank), "--ray", head["address"]])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert f"ray: could not join the Ray cluster at '{head['address']}': it uses token authentication and no " \
           f"token was found here" in err
    assert "RAY_AUTH_TOKEN_PATH=<file>" in err and "~/.ray/auth_token" in err and "docs/audit.md" in err
    (tmp_path / "wrong-token").write_text("0" * 64)
    auth_env.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "wrong-token"))
    rc = main([*_eval_args(bank), "--ray", head["address"]])
    err = capsys.readouterr().err
    assert rc == 2 and f"refused the token from RAY_AUTH_TOKEN_PATH={tmp_path / 'wrong-token'}" in err, err
    auth_env.setenv("RAY_AUTH_TOKEN_PATH", head["token_file"])
    auth_env.setenv("RAY_AUTH_MODE", "disabled")  # a token, but authentication switched off here
    rc = main([*_eval_args(bank), "--ray", head["address"]])
    err = capsys.readouterr().err
    assert rc == 2 and "RAY_AUTH_MODE is 'disabled' here; unset it or set RAY_AUTH_MODE=token" in err, err
    assert not ray.is_initialized()


@pytest.mark.slow  # a head node (about 10 s), one eval and two audits of 18 tiny digits models
def test_eval_and_audit_on_the_cluster_equal_the_serial_runs(head, auth_env, tmp_path, capsys, recipes_file):
    from unlearnkit.eval import run

    auth_env.setenv("RAY_AUTH_TOKEN_PATH", head["token_file"])  # the token is here; RAY_AUTH_MODE is not set
    bank = _bank(tmp_path / "bank")
    serial = run(bank["forget"], bank["retain"], bank["test"], progress=False)
    joined = run(bank["forget"], bank["retain"], bank["test"], ray=head["address"], progress=False)
    assert joined["meta"]["executor"] == "ray" and joined["meta"]["ray"]["cpus"] == HEAD_CPUS
    assert joined["metrics"] == serial["metrics"]  # the same functions on the same chunks: bit for bit
    assert not ray.is_initialized()  # the driver left the cluster ...

    recipes = recipes_file(RECIPES)
    common = ["audit", "--dataset", "digits", "--scenario", "random-10", "--methods", "finetune", "--pool", "6",
              "--seed", "0", "--recipes", recipes, "--quiet", "--no-plots"]
    rc = main([*common, "--serial", "--out", str(tmp_path / "serial"), "--cache-dir", str(tmp_path / "c1")])
    assert rc == 0, capsys.readouterr().err
    rc = main([*common, "--ray-address", head["address"], "--out", str(tmp_path / "ray"),
               "--cache-dir", str(tmp_path / "c2")])
    assert rc == 0, capsys.readouterr().err
    a = json.loads((tmp_path / "serial" / "audit.json").read_text())
    b = json.loads((tmp_path / "ray" / "audit.json").read_text())
    assert a["executor"]["name"] == "serial" and b["executor"]["name"] == "ray"
    assert b["executor"]["cpus"] == HEAD_CPUS and b["executor"]["address"] == head["address"]
    # every model trained on the cluster but O_1, which the cost estimate trains (and times) in this process first
    assert b["cached_models"] == {"original": 1, "retrained": 0, "finetune": 0}
    timing = ("metric_seconds", "pool_seconds_mean", "pool_seconds_total")
    assert a["order"] == b["order"] == ["finetune", "original", "retrained floor"]
    for name in a["order"]:
        assert {k: v for k, v in a["rows"][name].items() if k not in timing} == \
               {k: v for k, v in b["rows"][name].items() if k not in timing}, name
    with np.load(tmp_path / "serial" / "per_example.npz") as x, np.load(tmp_path / "ray" / "per_example.npz") as y:
        assert x.files == y.files
        for key in x.files:
            assert x[key].tobytes() == y[key].tobytes(), key
    # ... and the cluster is still there for whoever else uses it
    import socket

    host, _, port = head["address"].rpartition(":")
    socket.create_connection((host, int(port)), timeout=5).close()
