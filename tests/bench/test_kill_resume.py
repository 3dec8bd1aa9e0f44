"""A bench run killed with SIGKILL mid-way resumes from its last finished unit and ends with the
same results as an uninterrupted run; no half-written file is left under a final name. A unit
file damaged on disk is reported by path and computed again; the --out folder is locked against a
second run and refuses a run with other settings."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
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
    subprocess.run(_cmd(reference), env=env, check=True, capture_output=True, timeout=1200)

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

    resumed = subprocess.run(_cmd(out), env=env, capture_output=True, text=True, timeout=1200)
    assert resumed.returncode == 0, resumed.stderr
    assert finished_before <= {p.name for p in (out / "units").glob("*.json")}
    a, b = _rows(reference), _rows(out)
    assert set(a) == set(b) == {"original", "gold", "finetune", "neggrad", "random_labels"}
    for model in a:
        for key in ("acc_forget", "acc_retain", "acc_test", "mia", "avg_gap"):
            assert a[model][key] == pytest.approx(b[model][key], abs=1e-12), (model, key)
    assert not list(out.rglob(".*.tmp"))

    # Issue 16: a truncated unit JSON, a truncated .npz and a missing .npz (a SIGKILL between the
    # two files, before they were written atomically) are each reported with their path and
    # computed again (the original model's units: evaluation only, no training), not a crash.
    units = out / "units"
    (json_unit,) = units.glob("*-original-*.json")
    (npz_unit,) = units.glob("*-gold-*.npz")
    (lost_npz,) = units.glob("*-neggrad-*.npz")
    json_unit.write_text(json_unit.read_text()[:25])
    npz_unit.write_bytes(npz_unit.read_bytes()[:100])
    lost_npz.unlink()
    again = subprocess.run(_cmd(out), env=env, capture_output=True, text=True, timeout=1200)
    assert again.returncode == 0, again.stderr
    for damaged in (json_unit, npz_unit, lost_npz.with_suffix(".json")):
        assert f"unit {damaged}" in again.stderr and "computing it again" in again.stderr, again.stderr
    assert "Traceback" not in again.stderr
    c = _rows(out)
    for model in a:
        for key in ("acc_forget", "acc_retain", "acc_test", "mia", "avg_gap"):
            assert a[model][key] == pytest.approx(c[model][key], abs=1e-12), (model, key)
    np.load(npz_unit).close()  # rewritten whole
    assert lost_npz.exists()


# ---------------------------------------------------------------------------------------------
# Unit files and the --out folder (issue 16), without training


def test_units_round_trip_and_damaged_units_are_recomputed(tmp_path):
    from unlearnkit.bench.units import read_unit, write_unit

    path = tmp_path / "seed0-finetune-abc.json"
    arrays = {"loss_forget": np.arange(1000, dtype=np.float64), "labels": np.arange(10)}
    assert read_unit(path) is None  # never written: no warning
    write_unit(path, {"model": "finetune", "acc_test": 0.5}, arrays)
    assert read_unit(path) == {"model": "finetune", "acc_test": 0.5}
    with np.load(path.with_suffix(".npz")) as z:
        np.testing.assert_array_equal(z["loss_forget"], arrays["loss_forget"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.with_suffix(".json").name, path.with_suffix(".npz").name]

    good = path.with_suffix(".npz").read_bytes()
    path.with_suffix(".npz").write_bytes(good[: len(good) // 2])
    with pytest.warns(UserWarning, match=f"unit {path.with_suffix('.npz')}: unreadable"):
        assert read_unit(path) is None
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF  # same length, one corrupt byte inside the compressed data
    path.with_suffix(".npz").write_bytes(bytes(flipped))
    with pytest.warns(UserWarning, match="unreadable"):
        assert read_unit(path) is None
    path.with_suffix(".npz").write_bytes(good)
    path.write_text('{"model": "finetune", "acc')
    with pytest.warns(UserWarning, match=f"unit {path}: unreadable \\(JSONDecodeError"):
        assert read_unit(path) is None


def test_a_unit_that_fails_to_write_leaves_no_file(tmp_path):
    from unlearnkit.bench.units import write_unit

    path = tmp_path / "u.json"
    with pytest.raises(TypeError):
        write_unit(path, {"model": "m", "bad": object()}, {"x": np.zeros(3)})  # the row is not JSON
    assert not path.exists() and not list(tmp_path.glob(".*.tmp"))  # an .npz without its JSON is no unit


def _main(argv, capsys):
    from unlearnkit.cli import main

    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    return rc, capsys.readouterr().err


def test_a_second_run_into_a_locked_out_folder_is_refused(tmp_path, capsys, monkeypatch):
    import re

    from unlearnkit.bench.units import LOCK_NAME, claim_out

    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    with claim_out(out, {"config": "whatever"}):
        rc, err = _main([*ARGS, "--methods", "finetune", "--out", str(out)], capsys)
        assert rc == 2
        assert re.search(rf"^unlearnkit: error: --out: expected a folder no other run is using, "
                         rf"got {re.escape(str(out))} "
                         rf"\(in use by pid {os.getpid()} on .*, started .*\)", err, flags=re.M), err
        with pytest.raises(ValueError, match="in use by pid"), claim_out(out, {"config": "whatever"}):
            pass
    assert not (out / LOCK_NAME).exists() and not (tmp_path / "cache").exists()
    with claim_out(out, {"config": "whatever"}):  # released: free again
        pass


def test_the_lock_of_a_killed_run_is_released(tmp_path):
    from unlearnkit.bench.units import claim_out

    out = tmp_path / "out"
    code = ("import sys, time; from unlearnkit.bench.units import claim_out\n"
            "with claim_out(sys.argv[1], {'config': 1}):\n    print('locked', flush=True); time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ValueError, match=f"in use by pid {holder.pid}"), claim_out(out, {"config": 1}):
            pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    with claim_out(out, {"config": 1}):  # the kernel dropped the dead run's lock
        pass


def test_an_out_folder_of_other_settings_is_refused_unless_forced(tmp_path, capsys, monkeypatch):
    import json

    from unlearnkit.bench.units import CONFIG_NAME, claim_out

    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    from dataclasses import asdict

    from unlearnkit.bench import RunConfig

    first = RunConfig(methods=("finetune",), seeds=(0,), features=False)  # what `--seeds 1` would have stored
    with claim_out(out, {"config": asdict(first), "recipes": None}):
        (out / "results.json").write_text("{}")
    rc, err = _main([*ARGS, "--methods", "finetune", "--seeds", "2", "--out", str(out)], capsys)
    assert rc == 2 and "--out: expected a new folder or one holding a run with the same settings" in err, err
    assert "pass --force to replace them" in err and "(config.seeds: [0] there, [0, 1] now)" in err, err
    assert (out / "results.json").read_text() == "{}" and not (tmp_path / "cache").exists()
    with pytest.raises(ValueError, match="other settings"), claim_out(out, {"config": {"seeds": [0, 1]}}):
        pass
    with claim_out(out, {"config": {"seeds": [0, 1]}}, force=True):
        pass
    assert json.loads((out / CONFIG_NAME).read_text()) == {"config": {"seeds": [0, 1]}}
    with claim_out(out, {"config": {"seeds": [0, 1]}}):  # the same settings again: a resume
        pass
    # a folder of something else altogether, and an old results folder without run-config.json
    other = tmp_path / "home"
    other.mkdir()
    (other / "thesis.tex").write_text("...")
    with pytest.raises(ValueError, match=r"holds other files \(thesis\.tex\); pass --force"), claim_out(other, {"config": 1}):
        pass
    old = tmp_path / "old"
    old.mkdir()
    (old / "results.json").write_text(json.dumps({"meta": {"config": {"seeds": [0]}}}))
    with claim_out(old, {"config": {"seeds": [0]}, "recipes": None}):
        pass
