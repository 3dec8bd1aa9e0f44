"""`unlearnkit eval` and the atomic writer under bad or unusual input (issue 16), and the one
option list (issue 14 item 3): EvalConfig's fields are run()'s keywords and the CLI's flags.

CLI cases run in-process through `unlearnkit.cli.main` (exit status and stderr are the command's)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import stat

import numpy as np
import pytest
import sklearn.metrics

from unlearnkit import io
from unlearnkit.cli import build_parser, main
from unlearnkit.eval import EvalConfig, option_fields, run


def _bank(folder, name, x, y):
    np.save(folder / f"{name}.npy", x)
    np.save(folder / f"{name}.labels.npy", y)
    return str(folder / f"{name}.npy")


@pytest.fixture
def banks(tmp_path):
    """100-row forget/retain/test banks of three Gaussian classes in 8 dimensions."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 8)) * 3
    out = {}
    for s in ("forget", "retain", "test"):
        y = rng.integers(0, 3, 100)
        out[s] = _bank(tmp_path, s, (centers[y] + rng.normal(size=(100, 8))).astype(np.float32), y)
    return out


def _cli(argv, capsys):
    try:
        rc = main(["eval", "--quiet", *argv])
    except SystemExit as exc:
        rc = exc.code
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _sets(banks):
    return ["--forget", banks["forget"], "--retain", banks["retain"], "--test", banks["test"]]


# ---------------------------------------------------------------------------------------------
# The atomic writer and --out


def test_a_fifo_target_is_refused_and_left_alone(tmp_path, banks, capsys):
    fifo = tmp_path / "result.json"
    os.mkfifo(fifo)  # stands for /dev/full and other special files, which a test must not touch
    with pytest.raises(ValueError, match=r"^path: expected a regular file or a new file name, got .*result\.json, "
                                         r"which is a FIFO"):
        io.write_json(fifo, {"a": 1})
    rc, _, err = _cli([*_sets(banks), "--out", str(fifo)], capsys)
    assert rc == 2 and re.search(r"^unlearnkit: error: out: expected a regular file .* which is a FIFO", err, re.M)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_character_device_is_refused_before_anything_is_written():
    # /dev/null is a character device on every POSIX system; the check must refuse it before the
    # temporary file is even created (it would be created in /dev otherwise)
    with pytest.raises(ValueError, match=r"which is a character device"), io.atomic_path("/dev/null"):
        pytest.fail("yielded a temporary path for a device")


def test_a_symlink_is_written_through(tmp_path, banks, capsys):
    target_dir = tmp_path / "store"
    target_dir.mkdir()
    target = target_dir / "r.json"
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "latest.json"
    link.symlink_to(target)
    rc, out, err = _cli([*_sets(banks), "--out", str(link)], capsys)
    assert rc == 0, err
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert "metrics" in json.loads(target.read_text())
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640  # a replaced file keeps its permissions
    dangling = tmp_path / "next.json"
    dangling.symlink_to(target_dir / "new.json")
    io.write_json(dangling, {"x": 1})
    assert dangling.is_symlink() and json.loads((target_dir / "new.json").read_text()) == {"x": 1}


# ---------------------------------------------------------------------------------------------
# Options that used to be clamped, or errors that did not name their option


@pytest.mark.parametrize("args, match", [
    (["--n-classes", "1000"], r"n_classes: expected at most 100 \(the rows k-means is fit on in the forget bank\), "
                              r"got 1000"),
    (["--n-classes", "50", "--kmeans-rows", "20"], r"n_classes: expected at most 20 .*, got 50"),
    (["--seed", "-1"], r"seed: expected an int >= 0, got -1"),
    (["--knn-k", "0"], r"knn_k: expected an int >= 1, got 0"),
    (["--energy", "0"], r"energy: expected a fraction in \(0, 1\], got 0\.0"),
    (["--kmeans-tol", "nan"], r"kmeans_tol: expected a number >= 0, got nan"),
    (["--da-k", "9"], r"da_k: expected an int in \[1, 8\] \(the feature dimension\), got 9"),
    (["--memory-limit", "lots"], r"memory_limit: expected a size such as '4GiB'"),
])
def test_bad_options_name_themselves(banks, capsys, args, match):
    rc, out, err = _cli([*_sets(banks), *args], capsys)
    assert rc == 2 and re.search("^unlearnkit: error: " + match, err, re.M), err
    assert out == ""


def test_tiny_banks_get_caveats_not_silent_numbers(tmp_path, banks, capsys):
    rng = np.random.default_rng(1)
    one = _bank(tmp_path, "one", rng.normal(size=(1, 8)).astype(np.float32), np.array([2]))
    rc, out, err = _cli(["--forget", one, "--retain", banks["retain"], "--test", banks["test"]], capsys)
    assert rc == 0, err
    caveats = [line for line in out.splitlines() if line.startswith("caveat: ")]
    assert any(re.match(r"caveat: nmi_forget, pair_f1_forget, matched_f1_forget: the forget bank has 1 row\(s\), "
                        r"fewer than the 3 classes, so k-means made 1 cluster\(s\)", c) for c in caveats), out
    assert any(c.startswith("caveat: knn_mia: a fraction of only 1 forget row(s)") for c in caveats), out
    # a one-class forget set (class forgetting) with plenty of rows: NMI is constant by construction
    y = np.zeros(60, dtype=np.int64)
    cls = _bank(tmp_path, "cls", rng.normal(size=(60, 8)).astype(np.float32), y)
    result = run(cls, banks["retain"], banks["test"], n_classes=3)
    assert result["caveats"] == ["nmi_forget: the forget bank holds a single class, so its NMI is constant by "
                                 "construction (it says nothing about the features)"]
    table = np.array(result["details"]["model"]["contingency"]["forget"])  # (1 class, 3 clusters)
    pred = np.repeat(np.arange(table.shape[1]), table[0])
    assert result["metrics"]["nmi_forget"] == pytest.approx(sklearn.metrics.normalized_mutual_info_score(y, pred))
    # and 100-row banks with 3 classes have none
    assert run(banks["forget"], banks["retain"], banks["test"])["caveats"] == []


def test_fortran_order_npy_gives_the_c_order_numbers(tmp_path, banks):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    y = rng.integers(0, 3, 300)
    c_path = _bank(tmp_path, "c", x, y)
    f_path = _bank(tmp_path, "f", np.asfortranarray(x), y)
    assert np.load(f_path).flags.f_contiguous
    a = run(c_path, banks["retain"], banks["test"], chunk_rows=64)
    b = run(f_path, banks["retain"], banks["test"], chunk_rows=64)
    assert a["metrics"] == b["metrics"]
    npz = tmp_path / "f.npz"
    np.savez(npz, features=np.asfortranarray(x), labels=y)  # stored members are read in place too
    assert run(str(npz), banks["retain"], banks["test"], chunk_rows=64)["metrics"] == a["metrics"]


# ---------------------------------------------------------------------------------------------
# One list of options (issue 14 item 3)


def _eval_parser():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices["eval"]


def test_every_option_is_a_flag_and_every_flag_an_option():
    actions = {a.dest: a for a in _eval_parser()._actions if a.dest != "help"}
    fields = {f.name: f for f in option_fields()}
    assert set(actions) == set(fields)
    for name, f in fields.items():
        flag = f.metadata["unlearnkit.eval"]["flag"] or "--" + name.replace("_", "-")
        assert actions[name].option_strings == [flag]
    assert actions["ray_num_cpus"].option_strings == ["--ray-cpus"]
    assert actions["progress"].option_strings == ["--quiet"]


def test_the_flags_build_the_config_run_gets(banks, monkeypatch, capsys):
    seen = {}

    def fake_run(*, config):
        seen["config"] = config
        return {"metrics": {}, "plan": {"notes": []}, "caveats": []}

    monkeypatch.setattr("unlearnkit.eval.job.run", fake_run)
    rc, _, err = _cli([*_sets(banks), "--da-k", "3", "--ray-cpus", "2", "--center", "--kmeans-tol", "0.01",
                       "--probe-max-iter", "50"], capsys)
    assert rc == 0, err
    want = EvalConfig(forget=banks["forget"], retain=banks["retain"], test=banks["test"], da_k=3, ray_num_cpus=2,
                      center=True, kmeans_tol=0.01, probe_max_iter=50, progress=False)
    assert seen["config"] == want
    assert {f.name: getattr(seen["config"], f.name) for f in option_fields()} == \
        {f.name: getattr(want, f.name) for f in option_fields()}


def test_run_takes_the_config_its_fields_as_keywords_and_the_old_k():
    with pytest.raises(TypeError, match=r"^knn: not an option of unlearnkit\.eval\.run; expected one of"):
        run(knn=3)
    with pytest.raises(ValueError, match=r"^seed: expected an int >= 0, got -2"):
        EvalConfig(seed=-2)
    with pytest.raises(TypeError, match=r"^knn_k: expected an int >= 1, got float 2\.5"):
        run(knn_k=2.5)
    assert dataclasses.replace(EvalConfig(), da_k=4).da_k == 4
    rng = np.random.default_rng(3)
    sets = [(rng.normal(size=(40, 6)).astype(np.float32), rng.integers(0, 2, 40)) for _ in range(3)]
    a = run(*sets, k=2, knn_queries=10)
    b = run(*sets, config=EvalConfig(da_k=2, knn_queries=10))
    assert a["metrics"] == b["metrics"] and a["config"]["da_k"] == 2
