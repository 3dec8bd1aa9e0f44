"""The Ray path of `unlearnkit eval` on a local 2-CPU cluster equals the single-process path:
integer results exactly, floats to 1e-9 (one module-scoped cluster: Ray starts slowly)."""

from __future__ import annotations

import numpy as np
import pytest
from test_eval_job import make_sets, write_sets

from unlearnkit.eval import run

ray = pytest.importorskip("ray")
pytest.importorskip("pyarrow")


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _same(a: dict, b: dict) -> None:
    for section in ("metrics", "gold", "gaps"):
        assert a.get(section, {}).keys() == b.get(section, {}).keys()
        for key, v in a.get(section, {}).items():
            assert abs(v - b[section][key]) <= 1e-9, f"{section}.{key}: local {v!r} vs ray {b[section][key]!r}"
    for side in a["details"]:
        da, db = a["details"][side], b["details"][side]
        # integers: exactly
        for key in ("rows", "classes", "label_counts", "contingency"):
            assert da[key] == db[key], f"{side}.{key}"
        assert da["probe"]["correct"] == db["probe"]["correct"]
        assert da["knn"]["queries"] == db["knn"]["queries"]
        for key in ("neighbours",):
            if key in da["knn"]:
                assert da["knn"][key] == db["knn"][key]


def test_ray_equals_single_process(tmp_path, cluster):
    model = make_sets(seed=5, shift=1.0, sizes={"forget": 700, "retain": 3000, "test": 900})
    gold = make_sets(seed=5, sizes={"forget": 700, "retain": 3000, "test": 900})
    mp = write_sets(tmp_path / "m", "npy", model)
    gp = write_sets(tmp_path / "g", "parquet", gold)
    kw = dict(gold_forget=gp["forget"], gold_retain=gp["retain"], gold_test=gp["test"], chunk_rows=128,
              kmeans_rows=1000, probe_rows=1500, knn_queries=200)
    local = run(mp["forget"], mp["retain"], mp["test"], **kw)
    dist = run(mp["forget"], mp["retain"], mp["test"], ray="auto", **kw)
    assert dist["meta"]["executor"] == "ray" and dist["meta"]["ray"]["cpus"] == 2
    assert dist["plan"]["shard_rows"] < 3000  # the retain bank really was cut into several shards
    _same(local, dist)
    # and bit for bit: same functions, same chunks, same merge order
    assert local["metrics"] == dist["metrics"] and local["gold"] == dist["gold"]


def test_ray_worker_errors_name_the_argument(tmp_path, cluster):
    sets = make_sets(seed=6)
    x = sets["retain"][0].copy()
    x[1400, 2] = np.nan
    sets["retain"] = (x, sets["retain"][1])
    p = write_sets(tmp_path, "npz", sets)
    out = tmp_path / "r.json"
    with pytest.raises(ValueError, match=r"^retain: row 1400 of .*retain\.npz has NaN or Inf"):
        run(p["forget"], p["retain"], p["test"], ray="auto", chunk_rows=100, out=out)
    assert not out.exists()
