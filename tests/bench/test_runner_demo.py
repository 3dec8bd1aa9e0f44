"""The runner and `unlearnkit demo`: end to end on digits, results computed not typed."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import unlearnkit.experiment.reference as reference_mod
from unlearnkit.bench import RunConfig, run, table, write_report
from unlearnkit.bench.evaluate import GAP_METRICS


def test_demo_cli_end_to_end(tmp_path):
    env = {**os.environ, "UNLEARNKIT_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "res"
    proc = subprocess.run([sys.executable, "-m", "unlearnkit.cli", "demo", "--quick", "--dataset", "digits", "--out",
                           str(out), "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "original" in proc.stdout and "gold" in proc.stdout and "selectivity" in proc.stdout
    assert "mean closed" in proc.stdout and "one seed" in proc.stdout  # the verdict: no ranking on one seed
    assert "digits" in proc.stderr  # it says which regime it runs
    result = json.loads((out / "results.json").read_text())
    rows = {r["model"]: r for r in result["rows"]}
    assert set(rows) == {"original", "gold", "muda", "dlfd", "tmu", "eu_k"}
    assert rows["gold"]["acc_forget"] < rows["original"]["acc_forget"]
    for r in rows.values():  # every gap recomputed from the values
        for k in GAP_METRICS:
            assert r[f"gap_{k}"] == pytest.approx(abs(r[k] - rows["gold"][k]))
        assert r["avg_gap"] == pytest.approx(np.mean([r[f"gap_{k}"] for k in GAP_METRICS]))
        assert r["rte"] == pytest.approx(r["seconds"] / rows["gold"]["seconds"])
    md = (out / "report.md").read_text()
    assert all(m in md for m in rows) and "seeds [0]" in md
    assert (out / "results.csv").read_text().count("\n") == 7
    # second run: both checkpoints come from the cache
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2


def test_gold_never_sees_a_forget_sample(tmp_path, monkeypatch):
    seen = []
    real_fit = reference_mod.fit  # the reference models are trained in the experiment layer

    def spy(model, x, y, cfg, **kw):
        seen.append((kw["source"], x.clone()))
        return real_fit(model, x, y, cfg, **kw)

    monkeypatch.setattr(reference_mod, "fit", spy)
    cfg = RunConfig(methods=("finetune",), features=False)
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

    def key(r):
        return (r["model"], r["seed"])

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


# --- validation split, closed and the ranking (issue 12) ---------------------------------------------

def test_methods_get_validation_data_never_the_test_split(tmp_path, monkeypatch):
    from unlearnkit.data import load_digits, make_split
    from unlearnkit.methods.base import Method

    seen = []
    real = Method.unlearn
    monkeypatch.setattr(Method, "unlearn", lambda self, *a, **k: seen.append(k["test"].tensors) or real(self, *a, **k))
    run(RunConfig(methods=("finetune",), features=False), out_dir=tmp_path / "o", cache_dir=tmp_path / "c", progress=False)
    split = make_split(load_digits(), fraction=0.1, seed=0)
    (x, y), = seen
    assert torch.equal(x, split.data.x_test[torch.from_numpy(split.val_idx)])
    test_rows = {r.numpy().tobytes() for r in split.data.x_test[torch.from_numpy(split.test_idx)]}
    val_only = [r for r in x if r.numpy().tobytes() not in test_rows]
    assert len(val_only) >= len(x) - 2  # (digits has a few pixel-identical images across the split)


def test_closed_by_hand():
    from unlearnkit.bench.evaluate import closed

    assert closed(95.0, 100.0, 90.0) == pytest.approx(0.5)
    assert closed(90.0, 100.0, 90.0) == 1.0 and closed(100.0, 100.0, 90.0) == 0.0
    assert closed(110.0, 100.0, 90.0) == pytest.approx(-1.0)  # overshooting gold is as bad as undershooting
    assert closed(85.0, 100.0, 90.0) == pytest.approx(0.5)
    assert np.isnan(closed(90.0, 90.5, 90.0)) and not np.isnan(closed(90.0, 91.0, 90.0))
    assert np.isnan(closed(1.0, 2.0, 2.0, min_gap=0.0))
    with pytest.raises(TypeError, match="value"):
        closed("1", 2.0, 3.0)


def _fake(model, seed, forget, retain, test, mia):
    row = {"model": model, "seed": seed, "acc_forget": forget, "acc_retain": retain, "acc_test": test, "mia": mia}
    return row


def test_report_ranks_by_mean_closed_flags_below_original_and_says_when_nothing_moves(tmp_path):
    from unlearnkit.bench.evaluate import add_closed, add_gaps
    from unlearnkit.bench.report import regime_notes, summarize

    rows = []
    for seed in (0, 1):
        gold = _fake("gold", seed, 0.88, 0.99, 0.88, 0.20)
        seed_rows = [_fake("original", seed, 1.00, 1.00, 0.885, 0.10), gold,
                     _fake("good", seed, 0.90, 0.99, 0.88, 0.18), _fake("bad", seed, 1.00, 0.95, 0.80, 0.05),
                     _fake("half", seed, 0.94, 1.00, 0.88, 0.15)]
        for r in seed_rows:
            r["_probs_forget"] = np.full((4, 3), 1 / 3)
        for r in seed_rows:
            add_gaps(r, gold)
        for r in seed_rows:
            r.pop("_probs_forget")
        rows += add_closed(seed_rows)
    by = {r["model"]: r for r in rows if r["seed"] == 0}
    # test accuracy: the original is 0.5 point from gold, so closed is undefined there
    assert by["good"]["closed_acc_test"] is None
    assert by["half"]["closed_acc_forget"] == pytest.approx(0.5) and by["half"]["closed_mia"] == pytest.approx(0.5)
    assert by["original"]["mean_closed"] == 0.0 and by["gold"]["mean_closed"] == 1.0
    order = [e["model"] for e in summarize(rows)]
    assert order == ["gold", "good", "half", "original", "bad"]
    assert [e["model"] for e in summarize(rows) if e.get("below_original")] == ["bad"]
    notes = " ".join(regime_notes(rows))
    assert "within 1 point of gold on test acc" in notes and "bad" in notes
    md = table(rows, markdown=True)
    assert "n/a" in md and "bad ⚠ below original" in md
    # nobody moves forget accuracy: the report says so
    stuck = [dict(r, acc_forget=1.0) if r["model"] not in ("gold", "original") else r for r in rows]
    for r in stuck:
        r["gap_acc_forget"] = abs(r["acc_forget"] - 0.88)
    assert "No method moves forget acc toward gold" in " ".join(regime_notes(stuck))
    # every headline metric within a point: the regime cannot rank
    flat = [dict(r, acc_forget=0.9, acc_retain=0.9, acc_test=0.9, mia=0.2) for r in rows]
    assert "cannot rank methods" in " ".join(regime_notes(flat))


@pytest.mark.parametrize("name", ["neggrad", "neggrad_plus", "scrub"])
def test_shipped_class_recipes_do_not_diverge_on_digits(name, digits_models):
    """Issue 16: with the digits recipes, NegGrad, NegGrad+ and SCRUB diverged to NaN on class-3.
    The per-scenario recipe must keep every weight finite and still lower forget accuracy."""
    from unlearnkit.bench.recipes import method_recipe
    from unlearnkit.data import make_split
    from unlearnkit.methods import get_method
    from unlearnkit.training import predict

    split0, original, _ = digits_models
    split = make_split(split0.data, forget="class", forget_class=3, seed=0)
    out = get_method(name)(**method_recipe("digits", name, None, "class-3")).unlearn(
        original, split.forget, split.retain, test=split.val, seed=0)
    assert all(torch.isfinite(p).all() for p in out.parameters())
    acc = lambda m, ds: float((predict(m, ds.tensors[0]).argmax(1) == ds.tensors[1]).float().mean())  # noqa: E731
    assert acc(out, split.forget) < acc(original, split.forget) - 0.2
    assert acc(out, split.retain) > 0.8


def test_bench_audit_columns_come_from_the_audits_pools(tmp_path):
    """`bench --audit K` adds the audit's columns to each row, equal to what the audit computes on
    the same split from the same (shared, cached) pools; bad values are refused before any work."""
    from unlearnkit.audit.engine import bench_columns
    from unlearnkit.bench.recipes import dataset_recipe, method_recipe
    from unlearnkit.cli import main
    from unlearnkit.data import load_dataset, make_split
    from unlearnkit.training import TrainConfig

    recipe = tmp_path / "recipes.toml"
    recipe.write_text('[datasets.digits]\nmodel = "small-cnn"\nmodel_kwargs = { channels = [8, 16] }\n'
                      'train = { epochs = 3, batch_size = 64, lr = 0.05 }\n'
                      '[datasets.digits.methods]\nfinetune = { epochs = 1 }\n')
    cfg = RunConfig(dataset="digits", scenario="random-10", seeds=(0,), methods=("finetune",), features=False, audit=6)
    result = run(cfg, out_dir=tmp_path / "o", cache_dir=tmp_path / "c", progress=False, recipes=str(recipe))
    rows = {r["model"]: r for r in result["rows"]}
    assert {"original", "gold", "finetune"} <= set(rows)
    for name in ("original", "finetune", "gold"):
        assert rows[name]["audit_k"] == (3 if name == "gold" else 6) and 0 <= rows[name]["audit_F"] <= 1, rows[name]
    # the oracle: the audit itself, on the same split, pools and hyper-parameters (all cached now)
    split = make_split(load_dataset("digits"), forget="random", fraction=0.1, seed=0, val_fraction=cfg.val_fraction)
    r = dataset_recipe("digits", str(recipe))
    cols, _ = bench_columns(split, model=r["model"], model_kwargs=r.get("model_kwargs", {}),
                            train=TrainConfig(**r["train"]), k=6, cache_dir=str(tmp_path / "c"), executor="serial",
                            methods={"finetune": method_recipe("digits", "finetune", str(recipe), "random-10")},
                            progress=False)
    for name in ("original", "finetune", "gold"):
        for key, value in cols[name].items():
            assert rows[name][key] == value or (value != value and rows[name][key] != rows[name][key]), (name, key)
    report = (tmp_path / "o" / "report.md")
    from unlearnkit.bench import write_report
    write_report(result, tmp_path / "o", plots=False)
    assert "Per-example audit" in report.read_text()
    rc = main(["bench", "--audit", "4", "--methods", "finetune", "--out", str(tmp_path / "bad"), "--quiet",
               "--cache-dir", str(tmp_path / "bad-cache")])
    assert rc == 2 and not (tmp_path / "bad-cache").exists()  # refused before any training


def test_bench_precision_bf16_trains_its_own_reference_models(tmp_path):
    """`bench --precision bf16`: reference models trained under bf16 autocast are cached under their
    own keys (never mistaken for the fp32 ones), and the rows stay close to the fp32 run's."""
    recipe = tmp_path / "recipes.toml"
    recipe.write_text('[datasets.digits]\nmodel = "small-cnn"\nmodel_kwargs = { channels = [8, 16] }\n'
                      'train = { epochs = 3, batch_size = 64, lr = 0.05 }\n'
                      '[datasets.digits.methods]\nfinetune = { epochs = 1 }\n')
    out = {}
    for precision in ("fp32", "bf16"):
        cfg = RunConfig(dataset="digits", scenario="random-10", seeds=(0,), methods=("finetune",), features=False,
                        precision=precision)
        res = run(cfg, out_dir=tmp_path / precision, cache_dir=tmp_path / "c", progress=False, recipes=str(recipe))
        out[precision] = {r["model"]: r for r in res["rows"]}
    assert len(list((tmp_path / "c").rglob("*.pt"))) == 4  # original + gold for each precision
    for name in ("original", "gold", "finetune"):
        assert abs(out["bf16"][name]["acc_test"] - out["fp32"][name]["acc_test"]) < 0.05, name
    with pytest.raises(ValueError, match=r"^precision: expected one of \['fp32', 'bf16', 'fp16'\], got 'fp8'$"):
        run(RunConfig(methods=("finetune",), precision="fp8"), out_dir=tmp_path / "x", cache_dir=tmp_path / "c")


def test_a_rows_cost_counts_what_the_method_loaded_from_a_cache(tmp_path, monkeypatch):
    """A method that loaded cached work (TMU's curriculum model) says what that work cost when it
    ran (``Method.last_cached_seconds``): the row's seconds and time/retrain include it, so a row
    costs the same whatever the cache held."""
    from unlearnkit.methods.base import Method

    real = Method.unlearn

    def unlearn(self, *a, **k):
        out = real(self, *a, **k)
        self.last_cached_seconds = 1000.0
        return out

    monkeypatch.setattr(Method, "unlearn", unlearn)
    result = run(RunConfig(methods=("finetune",), features=False), out_dir=tmp_path / "o", cache_dir=tmp_path / "c",
                 progress=False)
    rows = {r["model"]: r for r in result["rows"]}
    gold = rows["gold"]["seconds"]
    assert 1000.0 < rows["finetune"]["seconds"] < 1000.0 + gold  # the credit plus a call shorter than retraining
    assert rows["finetune"]["rte"] == pytest.approx(rows["finetune"]["seconds"] / gold)
