"""The runner and `unlearnkit demo`: end to end on digits, results computed not typed."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import unlearnkit.bench.runner as runner_mod
from unlearnkit.bench import RunConfig, run, write_report
from unlearnkit.bench.evaluate import GAP_METRICS


def test_demo_cli_end_to_end(tmp_path):
    env = {**os.environ, "UNLEARNKIT_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "res"
    proc = subprocess.run([sys.executable, "-m", "unlearnkit.cli", "demo", "--quick", "--out", str(out), "--quiet"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "original" in proc.stdout and "gold" in proc.stdout and "avg gap" in proc.stdout
    result = json.loads((out / "results.json").read_text())
    rows = {r["model"]: r for r in result["rows"]}
    assert set(rows) == {"original", "gold", "finetune", "neggrad", "random_labels"}
    assert rows["gold"]["acc_forget"] < rows["original"]["acc_forget"]
    for r in rows.values():  # every gap recomputed from the values
        for k in GAP_METRICS:
            assert r[f"gap_{k}"] == pytest.approx(abs(r[k] - rows["gold"][k]))
        assert r["avg_gap"] == pytest.approx(np.mean([r[f"gap_{k}"] for k in GAP_METRICS]))
        assert r["rte"] == pytest.approx(r["seconds"] / rows["gold"]["seconds"])
    md = (out / "report.md").read_text()
    assert all(m in md for m in rows) and "seeds [0]" in md
    assert (out / "results.csv").read_text().count("\n") == 6
    # second run: both checkpoints come from the cache
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2


def test_gold_never_sees_a_forget_sample(tmp_path, monkeypatch):
    seen = []
    real_fit = runner_mod.fit

    def spy(model, x, y, cfg, **kw):
        seen.append((kw["source"], x.clone()))
        return real_fit(model, x, y, cfg, **kw)

    monkeypatch.setattr(runner_mod, "fit", spy)
    cfg = RunConfig(methods=(), features=False)
    run(cfg, out_dir=tmp_path / "o", cache_dir=tmp_path / "c", progress=False)
    from unlearnkit.data import load_digits, make_split

    data = load_digits()
    split = make_split(data, fraction=0.1, seed=0)
    gold_x = dict(seen)["gold"]
    assert len(gold_x) == len(split.retain_idx)
    forget_rows = {r.numpy().tobytes() for r in data.x_train[split.forget_idx]}
    retain_rows = {r.numpy().tobytes() for r in data.x_train[split.retain_idx]}
    # rows that are pixel-identical in both sets can't tell us anything; all others must be retain rows
    assert all(r.numpy().tobytes() in retain_rows for r in gold_x)
    assert sum(r.numpy().tobytes() in forget_rows - retain_rows for r in gold_x) == 0


def test_interrupted_run_resumes_from_finished_units(tmp_path, monkeypatch):
    cfg = RunConfig(methods=("finetune", "neggrad"), features=False)
    first = run(cfg, out_dir=tmp_path / "o", cache_dir=tmp_path / "c", progress=False)
    units = sorted((tmp_path / "o" / "units").glob("*.json"))
    assert len(units) == 4
    next(u for u in units if "-neggrad-" in u.name).unlink()  # as if killed before the last unit finished
    calls = []
    from unlearnkit.methods.base import Method

    real = Method.unlearn
    monkeypatch.setattr(Method, "unlearn", lambda self, *a, **k: calls.append(self.name) or real(self, *a, **k))
    second = run(cfg, out_dir=tmp_path / "o", cache_dir=tmp_path / "c", progress=False)
    assert len(calls) == 1
    key = lambda r: (r["model"], r["seed"])
    a, b = sorted(first["rows"], key=key), sorted(second["rows"], key=key)
    for ra, rb in zip(a, b):
        assert ra["acc_forget"] == rb["acc_forget"] and ra["mia"] == rb["mia"]


def test_report_files_parse(tmp_path):
    result = run(RunConfig(methods=("finetune",), features=False), out_dir=tmp_path / "o", cache_dir=tmp_path / "c", progress=False)
    paths = write_report(result, tmp_path / "o", plots=False)
    assert json.loads(paths["json"].read_text())["meta"]["env"]["device"] == "cpu"
    assert not list((tmp_path / "o").glob(".*.tmp"))


def test_unknown_method_fails_before_training(tmp_path):
    with pytest.raises(ValueError, match="method"):
        run(RunConfig(methods=("nope",), features=False), out_dir=tmp_path / "o", cache_dir=tmp_path / "c", progress=False)
    assert not (tmp_path / "c").exists()


def test_a_failing_method_is_reported_and_the_others_finish(tmp_path, monkeypatch):
    """One diverging method must not cost the run: its error is recorded and listed in the
    report, the other methods' rows are complete, nothing is cached for it (a resumed run retries)."""
    from unlearnkit.methods.base import Method

    real = Method.unlearn

    def unlearn(self, *a, **k):
        if self.name == "neggrad":
            raise ValueError("student: expected finite values, got NaN or Inf")
        return real(self, *a, **k)

    monkeypatch.setattr(Method, "unlearn", unlearn)
    with pytest.warns(UserWarning, match="neggrad"):
        result = run(RunConfig(methods=("neggrad", "finetune"), features=False), out_dir=tmp_path / "o",
                     cache_dir=tmp_path / "c", progress=False)
    failed = [r for r in result["rows"] if "error" in r]
    assert [r["model"] for r in failed] == ["neggrad"] and "NaN" in failed[0]["error"]
    ok = {r["model"] for r in result["rows"] if "error" not in r}
    assert ok == {"original", "gold", "finetune"}
    assert not list((tmp_path / "o" / "units").glob("*-neggrad-*"))
    paths = write_report(result, tmp_path / "o", plots=True)
    md = paths["markdown"].read_text()
    assert "## Failed runs" in md and "neggrad, seed 0" in md
    table_part = md.split("## Failed runs")[0]
    assert "| neggrad |" not in table_part and "| finetune |" in table_part
    csv_rows = paths["csv"].read_text().splitlines()
    assert any(line.startswith("neggrad,0,") and "NaN" in line for line in csv_rows)
