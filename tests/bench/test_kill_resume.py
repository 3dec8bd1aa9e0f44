"""A bench run killed with SIGKILL mid-way resumes from its last finished unit and ends with the
same results as an uninterrupted run; no half-written file is left under a final name."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

ARGS = ["bench", "--dataset", "digits", "--scenario", "random-10", "--methods", "finetune,neggrad,random_labels",
        "--no-features", "--no-plots", "--quiet"]


def _cmd(out):
    return [sys.executable, "-m", "unlearnkit.cli", *ARGS, "--out", str(out)]


def _rows(out):
    rows = json.loads((out / "results.json").read_text())["rows"]
    return {r["model"]: r for r in rows}


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    env = {**os.environ, "UNLEARNKIT_CACHE": str(tmp_path / "cache")}
    reference = tmp_path / "reference"
    subprocess.run(_cmd(reference), env=env, check=True, capture_output=True, timeout=600)

    out = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    # wait until some but not all units are finished, then kill without warning
    while time.time() < deadline:
        done = list((out / "units").glob("*.json")) if (out / "units").exists() else []
        if len(done) >= 3:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished_before = {p.name for p in (out / "units").glob("*.json")}
    assert 3 <= len(finished_before) < 5, finished_before
    assert not (out / "results.json").exists()
    for p in (out / "units").glob("*.json"):  # every unit on disk is complete JSON
        json.loads(p.read_text())

    resumed = subprocess.run(_cmd(out), env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert finished_before <= {p.name for p in (out / "units").glob("*.json")}
    a, b = _rows(reference), _rows(out)
    assert set(a) == set(b) == {"original", "gold", "finetune", "neggrad", "random_labels"}
    for model in a:
        for key in ("acc_forget", "acc_retain", "acc_test", "mia", "avg_gap"):
            assert a[model][key] == pytest.approx(b[model][key], abs=1e-12), (model, key)
    assert not list(out.rglob(".*.tmp"))
