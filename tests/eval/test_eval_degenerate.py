"""`unlearnkit eval` on inputs that used to give a silent or misleading answer (issue 23, item 6):
the memory limit counts what the process really holds, overflowing distances, string labels,
and degenerate banks whose metrics are constant by construction (caveats)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from unlearnkit.cli import main
from unlearnkit.eval import memory, run


def _bank(folder, name, x, y):
    np.save(folder / f"{name}.npy", x)
    np.save(folder / f"{name}.labels.npy", y)
    return str(folder / f"{name}.npy")


def _sets(folder, scale=1.0, dtype=np.float32, n=120, forget_labels=None, forget_x=None):
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 8)) * 3
    out = {}
    for s in ("forget", "retain", "test"):
        y = rng.integers(0, 3, n)
        x = (centers[y] + rng.normal(size=(n, 8))) * scale
        if s == "forget" and forget_labels is not None:
            y = forget_labels(y)
        if s == "forget" and forget_x is not None:
            x = forget_x(x)
        out[s] = _bank(folder, s, x.astype(dtype), y)
    return out


def test_memory_limit_counts_the_imported_libraries_and_names_the_floor(tmp_path, capsys):
    import sklearn.linear_model  # noqa: F401  # what the job imports, so the RSS below includes it
    import torch  # noqa: F401

    rss_after_imports = memory.current_rss()
    memory.reset_peak_rss()  # this test process may have peaked higher in earlier tests
    b = _sets(tmp_path)
    got = run(b["forget"], b["retain"], b["test"], memory_limit="4GiB")
    assert got["plan"]["baseline_bytes"] >= 0.9 * rss_after_imports
    assert got["meta"]["peak_rss_bytes"] <= 4 << 30
    # a limit below the floor is refused before any work, naming the floor
    with pytest.raises(ValueError, match=r"^memory_limit: 200.00 MiB is too small: the process already holds .*"
                                         r"this job's floor is [0-9.]+ (MiB|GiB); give at least that"):
        run(b["forget"], b["retain"], b["test"], memory_limit="200MiB")
    rc = main(["eval", "--quiet", "--forget", b["forget"], "--retain", b["retain"], "--test", b["test"],
               "--memory-limit", "200MiB"])
    assert rc == 2 and "floor is" in capsys.readouterr().err
    assert "torch" in sys.modules  # the floor includes it: unlearnkit.metrics imports it


def test_overflowing_distances_name_the_cause_not_knn_k(tmp_path):
    b = _sets(tmp_path, scale=1e19)  # float32: squared distances ~1e40 overflow
    with pytest.raises(ValueError, match=r"^retain: the squared distances .* overflow float32") as exc:
        run(b["forget"], b["retain"], b["test"], knn_queries=20)
    assert "knn_k" not in str(exc.value)
    # the same numbers in float64 are evaluated
    b = _sets(tmp_path, scale=1e19, dtype=np.float64)
    got = run(b["forget"], b["retain"], b["test"], knn_queries=20)
    assert np.isfinite(list(got["metrics"].values())).all()


def test_string_labels_name_the_file(tmp_path):
    b = _sets(tmp_path)
    np.save(tmp_path / "forget.labels.npy", np.array(["cat", "dog"] * 60))
    with pytest.raises(TypeError, match=r"^forget: expected the labels in .*forget\.labels\.npy to hold integer "
                                        r"labels, got strings \(<U3\)"):
        run(b["forget"], b["retain"], b["test"])


def test_forget_classes_the_probe_never_saw_get_a_caveat(tmp_path):
    b = _sets(tmp_path, forget_labels=lambda y: y + 10)  # forget classes 10..12, retain 0..2
    got = run(b["forget"], b["retain"], b["test"], knn_queries=20)
    assert got["metrics"]["lp_forget"] == 0.0
    assert any(c.startswith("lp_forget: none of the forget bank's classes (10, 11, 12) occur") for c in got["caveats"])
    assert not any(c.startswith("lp_retain") for c in got["caveats"])
    # partly unseen: counted and said
    b = _sets(tmp_path, forget_labels=lambda y: np.where(np.arange(len(y)) < 30, 7, y))
    got = run(b["forget"], b["retain"], b["test"], knn_queries=20)
    assert any(c.startswith("lp_forget: 30 of the forget bank's 120 rows have classes the probe never saw")
               for c in got["caveats"])


def test_all_zero_features_get_a_caveat(tmp_path):
    b = _sets(tmp_path, forget_x=lambda x: np.zeros_like(x))
    got = run(b["forget"], b["retain"], b["test"], knn_queries=20)
    assert got["metrics"]["da_forget"] == 0.0
    assert any(c.startswith("da_forget: every row of the forget bank is all zeros") for c in got["caveats"])
    assert got["details"]["model"]["da"]["zero_rows"] == {"forget": 120, "retain": 0, "test": 0}
    assert not any(c.startswith(("da_retain", "da_test")) for c in got["caveats"])


def test_timings_say_where_the_time_went(tmp_path):
    b = _sets(tmp_path)
    got = run(b["forget"], b["retain"], b["test"], knn_queries=20)
    t = got["timings"]
    assert t["cores"] >= 1 and t["total_s"] >= t["stages_total"]["seconds"] > 0
    for name in ("scan", "score"):
        st = t["stages"][name]
        assert 0 <= st["cpu_utilisation"] <= 1.5 and st["engine_s"] > 0 and st["read_wait_s"] >= 0
        assert st["engine_s"] + st["read_wait_s"] + st["python_s"] <= st["seconds"] * 1.05 + 0.05
