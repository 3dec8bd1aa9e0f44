"""``unlearnkit audit``'s writer (issue 23, item 4): its ``--out`` follows the bench's rules and is
checked before any work; a pool too small for the retrained floor is refused with the reason; the
cost of the pools is estimated and printed first, and a long run needs ``--yes``; Ctrl-C prints one
line and keeps what was done. Everything here runs serially on digits with a one-epoch recipe; no
test trains more than one model."""

from __future__ import annotations

import json
import re
from dataclasses import asdict

import numpy as np
import pytest
import torch

from unlearnkit.audit import MIN_POOL, AuditConfig, estimate_pools, prepare_audit, run_audit, score_pools
from unlearnkit.cli import main
from unlearnkit.io import CONFIG_NAME, claim_out
from unlearnkit.metrics import epsilon_points

RECIPES = """
[datasets.digits]
model = "small-cnn"
train = { epochs = 1, batch_size = 64, lr = 0.05 }
[datasets.digits.methods]
finetune = { epochs = 1, lr = 0.02, batch_size = 64 }
"""


def _audit(recipes, out, cache, *extra):
    return ["audit", "--methods", "finetune", "--pool", "6", "--recipes", recipes, "--serial", "--quiet",
            "--no-plots", "--out", str(out), "--cache-dir", str(cache), *extra]


def _run(argv, capsys):
    rc = main(argv)
    got = capsys.readouterr()
    return rc, got.out, got.err


def _snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_a_pool_too_small_for_the_floor_is_refused_with_the_reason(k, tmp_path, capsys, recipes_file):
    # Before: --pool 2 and 3 exited 0 with a failed floor row; at --pool 4 the floor showed F 0.000 (halves
    # of 2 models: F's bins end at ceil(ln(2 - 1)) = 0) beside the original's 0.257.
    out, cache = tmp_path / "out", tmp_path / "cache"
    rc, _, err = _run(_audit(recipes_file(RECIPES), out, cache)[:-6] + ["--pool", str(k), "--out", str(out),
                                                                       "--cache-dir", str(cache)], capsys)
    assert rc == 2
    assert f"unlearnkit: error: --pool: expected K >= 6 models per pool, got {k}: the retrained floor" in err
    assert "F = 0 by construction" in err and "U-LiRA's leave-one-out fit needs 3 models per pool" in err
    assert not out.exists() and not cache.exists()  # before any work
    with pytest.raises(ValueError, match=rf"^pool: expected K >= 6 models per pool, got {k}"):
        run_audit(AuditConfig(pool=k), cache_dir=tmp_path / "cache", executor="serial", progress=False)


def test_the_floors_minimum_is_where_its_f_stops_being_zero_by_construction():
    # the reason, worked by hand: with 2 models per side every epsilon scores 0 points; with 3, an
    # epsilon of 0 scores 1 (bin 0) and 0.6 scores 0.5 (bin 1); the bins end at ceil(ln(3 - 1)) = 1
    eps = np.array([0.0, 0.3, 0.6, 0.9, 1.2, 50.0])
    assert epsilon_points(eps, 2).tolist() == [0.0] * 6
    assert epsilon_points(eps, 3).tolist() == [1.0, 1.0, 0.5, 0.5, 0.0, 0.0]
    assert MIN_POOL == 6
    # score_pools on pools of 4 (the Python API still scores the methods) says why the floor is missing
    rng = np.random.default_rng(0)

    def pool(k):
        n = 5
        sets = {}
        for s in ("forget", "retain", "test"):
            sets[s] = {"phi": rng.normal(size=(k, n)), "margin": rng.normal(size=(k, n)),
                       "p": rng.uniform(0.1, 0.9, size=(k, n)), "correct": rng.random((k, n)) < 0.8}
        return sets

    scored = score_pools({"pools": {"original": pool(4), "retrained": pool(4)}})
    assert "error" not in scored["rows"]["original"]
    assert re.search(r"needs K >= 6 \(3 models per half; with 2, F's bins end at ceil\(ln\(1\)\) = 0",
                     scored["rows"]["retrained floor"]["error"])
    scored = score_pools({"pools": {"original": pool(6), "retrained": pool(6)}})
    assert scored["rows"]["retrained floor"]["k"] == 3


def test_an_out_that_is_a_file_fails_before_any_work(tmp_path, capsys, recipes_file):
    # Before: a file as --out failed only after the pools had trained.
    target = tmp_path / "a-file"
    target.write_text("keep me")
    rc, out, err = _run(_audit(recipes_file(RECIPES), target, tmp_path / "cache"), capsys)
    assert rc == 2 and f"unlearnkit: error: --out: expected a folder, got {target}, which is a file" in err
    assert target.read_text() == "keep me" and not (tmp_path / "cache").exists() and out == ""


def test_an_out_holding_a_bench_run_or_another_audit_is_refused_and_left_alone(tmp_path, capsys, recipes_file):
    # Before: --out pointing at a bench folder or an earlier audit was overwritten without a word.
    from unlearnkit.bench.units import claim_out as bench_claim

    recipes = recipes_file(RECIPES)
    bench = tmp_path / "bench"
    with bench_claim(bench, {"config": {"dataset": "digits", "seeds": [0]}, "recipes": None}):
        (bench / "results.json").write_text('{"rows": []}')
        (bench / "units" / "seed0-original-x.json").write_text("{}")
    before = _snapshot(bench)
    rc, _, err = _run(_audit(recipes, bench, tmp_path / "cache"), capsys)
    assert rc == 2 and "--out: expected a new folder or one holding a run with the same settings" in err, err
    assert "command: None there, 'audit' now" in err and "pass --force to replace them" in err
    assert _snapshot(bench) == before and not (tmp_path / "cache").exists()

    # an earlier audit of other settings: as written now (run-config.json) ...
    other = tmp_path / "audit8"
    config8 = asdict(AuditConfig(methods=("finetune",), pool=8))  # what `--pool 8` would have stored
    with claim_out(other, {"command": "audit", "config": config8, "recipes": recipes}, subdirs=()):
        (other / "audit.json").write_text(json.dumps({"meta": {"config": config8}}))
    before = _snapshot(other)
    rc, _, err = _run(_audit(recipes, other, tmp_path / "cache"), capsys)
    assert rc == 2 and "config.pool: 8 there, 6 now" in err, err
    assert _snapshot(other) == before
    # ... and as written before run-config.json existed (its audit.json's meta.config)
    (other / CONFIG_NAME).unlink()
    rc, _, err = _run(_audit(recipes, other, tmp_path / "cache"), capsys)
    assert rc == 2 and "audit.json) come from other settings" in err and "config.pool: 8 there, 6 now" in err, err
    # a folder of something else altogether
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("...")
    rc, _, err = _run(_audit(recipes, home, tmp_path / "cache"), capsys)
    assert rc == 2 and "holds other files (thesis.tex); pass --force" in err, err
    assert not (tmp_path / "cache").exists()


def test_an_out_in_use_by_another_run_is_refused(tmp_path, capsys, recipes_file):
    out = tmp_path / "out"
    with claim_out(out, {"anything": 1}, subdirs=()):
        rc, _, err = _run(_audit(recipes_file(RECIPES), out, tmp_path / "cache"), capsys)
    assert rc == 2 and re.search(r"--out: expected a folder no other run is using, got .* \(in use by pid \d+", err), err
    assert not (tmp_path / "cache").exists()


def test_the_estimate_comes_first_a_long_run_needs_yes_and_ctrl_c_is_one_line(tmp_path, capsys, monkeypatch,
                                                                             recipes_file):
    import unlearnkit.audit.run as audit_run
    import unlearnkit.cli.audit as cli_audit

    recipes = recipes_file(RECIPES)
    out, cache = tmp_path / "out", tmp_path / "cache"
    monkeypatch.setattr(cli_audit, "CONFIRM_SECONDS", 0.0)  # any run counts as long
    rc, printed, err = _run(_audit(recipes, out, cache), capsys)
    assert rc == 2
    assert printed.startswith("audit: 18 models in the pools, 17 to train (1 in the cache)\n"), printed
    assert "from one original model (k = 1) trained now" in printed and "on 1 worker(s)" in printed
    assert re.search(r"--pool: expected a confirmation for 17 models to train \(about .* of wall time\), got none; "
                     r"pass --yes to start", err), err
    assert not out.exists()  # released: nothing was written there
    trained = list(cache.glob("*.pt"))
    assert len(trained) == 1  # the model the estimate timed, and only it

    # the estimate, against the checkpoint itself: its recorded seconds and its size on disk
    split, setup, methods = prepare_audit(AuditConfig(methods=("finetune",), pool=6), cache_dir=cache, recipes=recipes)
    est = estimate_pools(split, setup, methods, 6, workers=2)
    meta = torch.load(trained[0], map_location="cpu", weights_only=True)["meta"]
    size = trained[0].stat().st_size
    assert (est["models"], est["to_train"], est["cached"]) == (18, 17, 1)
    assert est["seconds_per_model"] == meta["seconds"] and est["bytes_per_model"] == size
    assert est["cpu_seconds"] == pytest.approx(17 * meta["seconds"]) and est["disk_bytes"] == 17 * size
    assert est["wall_seconds"] == pytest.approx(17 * meta["seconds"] / 2)

    # with --yes it starts; Ctrl-C in the pools: one line, exit 130, --out released (nothing written)
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(audit_run, "audit_split", interrupted)
    rc, printed, err = _run(_audit(recipes, out, cache, "--yes"), capsys)
    assert rc == 130
    assert "from the recorded training time of the cached original model k = 1" in printed
    assert err.strip() == (f"unlearnkit: interrupted (Ctrl-C); finished work is kept (results in {out}, models in the "
                           f"checkpoint cache): run the same command to resume")
    assert not out.exists() and len(list(cache.glob("*.pt"))) == 1


def test_the_estimate_takes_the_median_of_every_cached_reference_model(tmp_path, recipes_file):
    """Three cached reference models recording 10, 20 and 90 s: the estimate is 20 s a model (the
    median, statistics.median), not the first one found; with one cached, that one's own time."""
    import statistics

    from unlearnkit.audit.run import _member_path
    from unlearnkit.experiment.pools import member_keys, pool_members

    recipes, cache = recipes_file(RECIPES), tmp_path / "cache"
    split, setup, methods = prepare_audit(AuditConfig(methods=("finetune",), pool=6), cache_dir=cache, recipes=recipes)
    members = [m for m in pool_members(6, methods) if m.kind != "unlearned"]
    keys = member_keys(members, split, setup)
    cache.mkdir(exist_ok=True)
    times = [10.0, 20.0, 90.0]
    for member, seconds in zip(members[:1], times[:1]):
        torch.save({"state_dict": {}, "meta": {"seconds": seconds}}, _member_path(member, split, setup, keys[member.ident]))
    one = estimate_pools(split, setup, methods, 6, measure=False)
    assert one["seconds_per_model"] == 10.0 and "cached" in one["seconds_source"]
    for member, seconds in zip(members[1:3], times[1:]):
        torch.save({"state_dict": {}, "meta": {"seconds": seconds}}, _member_path(member, split, setup, keys[member.ident]))
    est = estimate_pools(split, setup, methods, 6, measure=False)
    assert est["seconds_per_model"] == statistics.median(times) == 20.0
    assert est["seconds_source"] == "the median recorded training time of 3 cached reference models"
    assert (est["to_train"], est["cached"]) == (15, 3) and est["cpu_seconds"] == 15 * 20.0
