"""The audit's pools and CLI on digits with a short training recipe: serial and Ray (a local
2-CPU instance) give bit-identical outputs; a rerun loads every model from the cache and an
interrupted audit trains only what is missing; the bench finds the audit's reference checkpoints
under its own keys; methods are shown the validation part, never the test part; and
``unlearnkit audit ... --pool 6`` writes its four files, whose numbers agree with each other
(the writer's rules, the pool minimum and the estimate are in ``test_audit_writer.py``)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from unlearnkit.audit import Member, PoolSetup, run_pools
from unlearnkit.audit.pools import member_keys
from unlearnkit.methods.base import METHODS, Method
from unlearnkit.metrics import epsilon_points
from unlearnkit.training import TrainConfig

pytest.importorskip("ray")  # the pools run serially and on a local Ray

TRAIN = TrainConfig(epochs=2, batch_size=64, lr=0.05)
METHODS_HP = {"finetune": {"epochs": 1, "lr": 0.02, "batch_size": 64},
              "neggrad": {"epochs": 1, "lr": 0.05, "batch_size": 32}}
RECIPES = """
[datasets.digits]
model = "small-cnn"
train = { epochs = 2, batch_size = 64, lr = 0.05, momentum = 0.9, weight_decay = 5e-4 }
[datasets.digits.methods]
finetune = { epochs = 1, lr = 0.02, batch_size = 64 }
neggrad = { epochs = 1, lr = 0.05, batch_size = 32 }
"""


def _setup(cache) -> PoolSetup:
    return PoolSetup(model="small-cnn", train=TRAIN, cache_dir=str(cache), threads=1)


def _assert_same_pools(a: dict, b: dict) -> None:
    assert a["pools"].keys() == b["pools"].keys()
    for pool, sets in a["pools"].items():
        for s, stats in sets.items():
            for stat, v in stats.items():
                w = b["pools"][pool][s][stat]
                assert v.dtype == w.dtype and v.shape == w.shape
                assert v.tobytes() == w.tobytes(), f"{pool}/{s}/{stat} differs"


@pytest.mark.slow  # trains 4 x 8 small models (about 40 s on 2 busy cores)
def test_serial_and_ray_are_bit_identical_and_reruns_come_from_the_cache(digits_split, tmp_path, local_ray):
    k = 2
    serial = run_pools(digits_split, _setup(tmp_path / "serial"), METHODS_HP, k, executor="serial", progress=False)
    on_ray = run_pools(digits_split, _setup(tmp_path / "ray"), METHODS_HP, k, executor="ray", progress=False)
    assert on_ray["executor"]["name"] == "ray" and on_ray["executor"]["cpus"] == 2
    assert serial["cached"] == on_ray["cached"] == {p: 0 for p in ("original", "retrained", *METHODS_HP)}
    _assert_same_pools(serial, on_ray)
    assert serial["pools"]["finetune"]["forget"]["phi"].shape == (k, len(digits_split.forget_idx))
    # distinct seeds give distinct models
    phi = serial["pools"]["original"]["forget"]["phi"]
    assert not np.array_equal(phi[0], phi[1])
    # a rerun trains nothing and gives the same bytes
    again = run_pools(digits_split, _setup(tmp_path / "serial"), METHODS_HP, k, executor="serial", progress=False)
    assert again["cached"] == {p: k for p in ("original", "retrained", *METHODS_HP)}
    _assert_same_pools(serial, again)
    # an interrupted audit (one unlearned checkpoint missing) trains only that one, identically
    key = member_keys([Member("unlearned", 2, "neggrad", METHODS_HP["neggrad"])], digits_split,
                      _setup(tmp_path / "serial"))[("unlearned", 2, "neggrad")]  # seed 2 of 1..2
    victim = next((tmp_path / "serial").glob(f"*-unlearned-neggrad-{key}.pt"))
    victim.unlink()
    resumed = run_pools(digits_split, _setup(tmp_path / "serial"), METHODS_HP, k, executor="serial", progress=False)
    assert resumed["cached"]["neggrad"] == k - 1 and resumed["cached"]["finetune"] == k
    _assert_same_pools(serial, resumed)


def test_bench_loads_the_audits_reference_checkpoints(digits_split, tmp_path):
    from unlearnkit.bench.runner import _train_reference
    from unlearnkit.progress import ProgressBars

    run_pools(digits_split, _setup(tmp_path), {}, 2, executor="serial", progress=False)
    bars = ProgressBars(disable=True)
    for kind in ("original", "gold"):
        model, meta = _train_reference(kind, digits_split, "small-cnn", {}, TRAIN, 2, tmp_path, "cpu", bars)
        assert meta["cached"], f"the bench retrained the audit's {kind} model of seed 2"


@dataclass(frozen=True)
class _SpyParams:
    pass


_SEEN: list = []


class _Spy(Method):
    """Records what it is shown and leaves the model as it is (registered only for its test)."""
    name = "audit_spy"
    paper = "test"
    Params = _SpyParams

    def _unlearn(self, model, data, ctx):
        _SEEN.append((data.x_test, data.y_test))
        return model


def test_methods_monitor_the_validation_part_never_the_test_part(digits_split, tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS, "audit_spy", _Spy)  # not left in the registry for the tests that list it
    _SEEN.clear()
    run_pools(digits_split, _setup(tmp_path), {"audit_spy": {}}, 2, executor="serial", progress=False)
    assert len(_SEEN) == 2
    if not hasattr(digits_split, "val"):  # a split without a validation part: the method monitors nothing
        assert all(x is None and y is None for x, y in _SEEN)
        return
    x_val, y_val = digits_split.val.tensors
    x_test, _ = digits_split.test.tensors
    assert len(x_val) > 0
    for x, y in _SEEN:
        assert torch.equal(x, x_val) and torch.equal(y, y_val)
        # not one test image among what the method saw
        seen = {row.numpy().tobytes() for row in x}
        assert not any(row.numpy().tobytes() in seen for row in x_test)


@pytest.fixture(scope="module")
def pool_cache(tmp_path_factory):
    """One checkpoint cache for the K = 6 tests below: the CLI's recipes train as TRAIN does, on the
    same split, so the second of them loads the pools the first trained."""
    return tmp_path_factory.mktemp("pool-cache")


def test_cli_audit_digits_pool_6(tmp_path, local_ray, capsys, recipes_file, pool_cache):
    from unlearnkit.audit import LEGEND
    from unlearnkit.cli import main

    recipes = recipes_file(RECIPES)
    out = tmp_path / "out"
    args = ["audit", "--dataset", "digits", "--scenario", "random-10", "--methods", "neggrad", "--pool", "6",
            "--seed", "0", "--recipes", recipes, "--out", str(out), "--cache-dir", str(pool_cache), "--quiet"]
    rc = main(args)
    assert rc == 0
    printed = capsys.readouterr().out
    assert "retrained floor" in printed and "K = 6" in printed
    assert "U-LiRA bacc →0.5" in printed and LEGEND in printed  # not "↓": 0.44 is no better than 0.5
    result = json.loads((out / "audit.json").read_text())
    assert result["order"] == ["neggrad", "original", "retrained floor"]
    assert result["k"] == 6 and result["executor"]["name"] == "ray"
    arrays = np.load(out / "per_example.npz")
    n_forget = len(arrays["forget_idx"])
    for name in ("neggrad", "original"):
        row = result["rows"][name]
        eps = arrays[f"{name}/eps"]
        assert eps.shape == (n_forget,) and ((eps >= 0) & (eps <= 50)).all()
        # F in the JSON is the mean of the points of the saved epsilons (K = 6)
        assert row["F"] == pytest.approx(epsilon_points(eps, 6).mean(), abs=1e-12)
        assert row["eps_median"] == pytest.approx(np.median(eps), abs=1e-12)
        assert 0 <= row["ulira_balanced_accuracy"] <= 1 and 0 <= row["rmia_auc"] <= 1
        assert row["klom_forget_median"] == pytest.approx(np.median(arrays[f"{name}/klom_forget"]), abs=1e-12)
        assert row["k"] == 6
    # the floor: halves of 3, so F has bins to score (at K = 4, halves of 2, it was 0 by construction) and
    # U-LiRA's leave-one-out fit has 2 models left
    floor = result["rows"]["retrained floor"]
    eps = arrays["retrained_floor/eps"]
    assert floor["k"] == 3 and floor["F"] == pytest.approx(epsilon_points(eps, 3).mean(), abs=1e-12)
    assert floor["F"] > 0 and 0 <= floor["ulira_balanced_accuracy"] <= 1
    report = (out / "report.md").read_text()
    assert "| neggrad |" in report and "| retrained floor |" in report and "ln(K - 1)" in report and LEGEND in report
    # F against doing nothing: the difference of the saved points, its interval in the JSON and the report
    row = result["rows"]["neggrad"]
    diff = arrays["neggrad/points"].mean() - arrays["original/points"].mean()
    assert row["F_vs_original"] == pytest.approx(diff, abs=1e-12)
    assert row["F_vs_original_low"] <= row["F_vs_original"] <= row["F_vs_original_high"]
    assert (f"interval over the {n_forget} forget examples: neggrad {row['F_vs_original']:+.3f} "
            f"[{row['F_vs_original_low']:+.3f}, {row['F_vs_original_high']:+.3f}]") in report
    assert (out / "eps_hist.png").stat().st_size > 1000
    # the same command again: the same folder and settings, every model from the cache
    assert main(args) == 0
    assert "all 18 models of the pools are in the cache" in capsys.readouterr().out


def test_bench_columns_are_the_audit_rows_under_the_bench_names(digits_split, pool_cache):
    from unlearnkit.audit import BENCH_COLUMNS, bench_columns

    cols, result = bench_columns(digits_split, model="small-cnn", train=TRAIN, methods={"neggrad": METHODS_HP["neggrad"]},
                                 k=6, cache_dir=str(pool_cache), executor="serial", progress=False)
    rows = result["scores"]["rows"]
    assert set(cols) == {"neggrad", "original", "gold"}
    for bench_name, audit_name in (("neggrad", "neggrad"), ("original", "original"), ("gold", "retrained floor")):
        assert cols[bench_name] == {**{f"audit_{c}": rows[audit_name][c] for c in BENCH_COLUMNS},
                                    "audit_k": rows[audit_name]["k"]}
    assert cols["gold"]["audit_k"] == 3 and cols["neggrad"]["audit_k"] == 6
