"""`unlearnkit.eval.run` / `unlearnkit eval`: on banks written in every format the job's
numbers equal the in-memory metric functions; bad inputs fail early, naming the argument,
and leave no output file."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from test_eval_readers import FORMATS, write_bank

import unlearnkit.metrics as M
from unlearnkit.cli import main
from unlearnkit.eval import job, run

pytest.importorskip("pyarrow")
pytest.importorskip("safetensors")

D, C = 16, 5
SIZES = {"forget": 300, "retain": 1500, "test": 400}


def make_sets(seed=0, dtype=np.float16, sizes=SIZES, shift=0.0):
    """Gaussian clusters (C classes) in D dims; ``shift`` moves the forget set off-manifold."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(C, D)) * 2.5
    out = {}
    for s, n in sizes.items():
        y = rng.integers(0, C, n)
        x = centers[y] + rng.normal(size=(n, D))
        if s == "forget":
            x = x + shift
        out[s] = (x.astype(dtype), y)
    return out


def write_sets(folder: pathlib.Path, fmt: str, sets: dict, prefix: str = "") -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    return {s: write_bank(folder, fmt, x, y, name=f"{prefix}{s}") for s, (x, y) in sets.items()}


def reference(sets: dict, *, seed=0, knn_k=5, knn_queries=1000, kmeans_rows=100_000, probe_rows=50_000,
              center=False) -> dict:
    """The same metrics from the in-memory functions on whole arrays (float32 upcast)."""
    x = {s: v[0].astype(np.float64 if v[0].dtype == np.float64 else np.float32) for s, v in sets.items()}
    y = {s: v[1] for s, v in sets.items()}
    n_classes = len(np.unique(np.concatenate(list(y.values()))))
    out = {}
    for s in job.SETS:
        out[f"da_{s}"] = M.dimensional_alignment(x[s], x["retain"], center=center)
    # the probe, built here: standardised logistic regression (300 iterations, the default
    # probe_max_iter) on the retain rows, or on the seeded sample of probe_rows of them the job draws
    # (a numpy Generator seeded with [seed, 1 (retain), 2 (probe)], without replacement, sorted)
    n_r = len(y["retain"])
    pi = (np.arange(n_r) if n_r <= probe_rows else
          np.sort(np.random.default_rng([seed, 1, 2]).choice(n_r, probe_rows, replace=False)))
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(x["retain"][pi], y["retain"][pi])
    for s in job.SETS:
        out[f"lp_{s}"] = probe.score(x[s], y[s])
    for s in job.SETS:
        ki = job._sample(len(y[s]), kmeans_rows, seed, job.SETS.index(s), "kmeans")
        km = M.kmeans(x[s][ki], min(n_classes, len(ki)), seed=seed, n_init=1)
        full = len(ki) == len(y[s])
        labels = km.labels if full else M.kneighbors(x[s], np.asarray(km.centroids, dtype=x[s].dtype), 1)[1][:, 0]
        sc = M.clustering_scores(y[s], labels)
        for key in ("nmi", "pair_f1", "matched_f1"):
            out[f"{key}_{s}"] = sc[key]
    # k-NN attack: knn_mia itself, on the forget rows the job samples as targets
    fi = job._sample(len(y["forget"]), knn_queries, seed, 0, "knn")
    mia = M.knn_mia(x["forget"][fi], x["retain"], x["test"], k=knn_k, forget_labels=y["forget"][fi],
                    retain_labels=y["retain"], test_labels=y["test"], seed=seed, max_per_set=knn_queries)
    out["knn_mia"], out["knn_attack_auc"] = mia["knn_mia"], mia["knn_attack_auc"]
    return out


def assert_same(got: dict, want: dict, tol=1e-9):
    for key, w in want.items():
        g = got[key]
        if key.startswith(("lp_", "nmi_", "pair_f1_", "matched_f1_", "knn_")):
            assert g == w, f"{key}: job {g!r} != in-memory {w!r}"
        else:
            assert abs(g - w) <= tol, f"{key}: job {g!r} vs in-memory {w!r}"


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_equals_the_in_memory_metrics(tmp_path, fmt):
    sets = make_sets(dtype=np.float32 if fmt == "safetensors-bf16" else np.float16)
    paths = write_sets(tmp_path, fmt, sets)
    got = run(paths["forget"], paths["retain"], paths["test"], chunk_rows=256, knn_queries=1000)
    if fmt == "safetensors-bf16":  # the reference sees what the file holds: bfloat16 values
        import torch

        sets = {s: (torch.from_numpy(x).bfloat16().float().numpy(), y) for s, (x, y) in sets.items()}
    assert_same(got["metrics"], reference(sets))
    assert got["inputs"]["retain"]["rows"] == SIZES["retain"]
    assert sum(sum(r) for r in got["details"]["model"]["contingency"]["retain"]) == SIZES["retain"]


def test_one_parquet_file_with_a_split_column(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    sets = make_sets()
    x = np.concatenate([sets[s][0] for s in job.SETS])
    y = np.concatenate([sets[s][1] for s in job.SETS])
    split = np.repeat(np.array(job.SETS), [SIZES[s] for s in job.SETS])
    perm = np.random.default_rng(3).permutation(len(y))  # interleaved rows
    col = pa.FixedSizeListArray.from_arrays(pa.array(x[perm].ravel()), D)
    pq.write_table(pa.table({"emb": col, "label": y[perm], "set": split[perm]}), tmp_path / "all.parquet",
                   row_group_size=333)
    # each set keeps its rows' file order: the reference sees them in that order too
    ordered = {s: (x[perm][split[perm] == s], y[perm][split[perm] == s]) for s in job.SETS}
    got = run(bank=tmp_path / "all.parquet", features_key="emb", labels_key="label", split_key="set", chunk_rows=128)
    assert_same(got["metrics"], reference(ordered))


def test_sampled_fits_assign_every_row_chunk_by_chunk(tmp_path):
    """k-means fit on a sample, every row assigned to the nearest centroid; probe on a sample."""
    sets = make_sets(seed=1)
    paths = write_sets(tmp_path, "npy", sets)
    kw = dict(kmeans_rows=250, probe_rows=400, knn_queries=50)
    got = run(paths["forget"], paths["retain"], paths["test"], chunk_rows=100, **kw)
    assert_same(got["metrics"], reference(sets, **kw))
    det = got["details"]["model"]
    assert det["kmeans"]["retain"]["sampled"] and det["kmeans"]["retain"]["fit_rows"] == 250
    assert det["probe"]["train_rows"] == 400 and det["probe"]["sampled"]
    assert det["knn"]["queries"] == {"forget": 50, "retain": 50, "test": 50}
    # the forget queries' k-NN features are knn_mia_features of the same rows
    x = {s: v[0].astype(np.float32) for s, v in sets.items()}
    fi = job._sample(SIZES["forget"], 50, 0, 0, "knn")
    feats = M.knn_mia_features(x["forget"][fi], x["retain"], x["test"], 5, query_labels=sets["forget"][1][fi],
                               train_labels=sets["retain"][1])
    want = dict(zip(("d_train", "d_heldout", "ratio", "label_agreement"), feats.mean(axis=0)))
    assert det["knn"]["feature_means"]["forget"] == pytest.approx(want, rel=1e-12)


def test_chunking_does_not_change_the_result(tmp_path):
    sets = make_sets(seed=2)
    paths = write_sets(tmp_path, "npz", sets)
    a = run(paths["forget"], paths["retain"], paths["test"], chunk_rows=64, kmeans_rows=500, knn_queries=80)
    b = run(paths["forget"], paths["retain"], paths["test"], chunk_rows=4096, kmeans_rows=500, knn_queries=80)
    assert a["details"]["model"]["contingency"] == b["details"]["model"]["contingency"]
    assert a["details"]["model"]["probe"]["correct"] == b["details"]["model"]["probe"]["correct"]
    assert_same(a["metrics"], b["metrics"])


@pytest.mark.parametrize("center, k", [(True, None), (False, 3), (True, 12)])
def test_alignment_options_match_the_metric(tmp_path, center, k):
    """Covariance from merged chunk moments (centre) and a fixed k, both sides of k = d/2."""
    sets = make_sets(seed=4, dtype=np.float32)
    for s in sets:  # a large common offset: centring must not cancel catastrophically
        sets[s] = (sets[s][0] + 50.0, sets[s][1])
    paths = write_sets(tmp_path, "npy", sets)
    got = run(paths["forget"], paths["retain"], paths["test"], chunk_rows=128, center=center, k=k, knn_queries=20)
    for s in job.SETS:
        want = M.dimensional_alignment(sets[s][0], sets["retain"][0], center=center, k=k)
        assert abs(got["metrics"][f"da_{s}"] - want) <= 1e-9, (s, got["metrics"][f"da_{s}"], want)
    assert got["details"]["model"]["da"]["k"] == (k or got["details"]["model"]["da"]["k"])


def test_gold_banks_give_gaps(tmp_path):
    model = make_sets(seed=0, shift=1.5)
    gold = make_sets(seed=0)
    mp = write_sets(tmp_path / "m", "npy", model)
    gp = write_sets(tmp_path / "g", "safetensors", gold)
    got = run(mp["forget"], mp["retain"], mp["test"], gold_forget=gp["forget"], gold_retain=gp["retain"],
              gold_test=gp["test"], chunk_rows=512)
    assert_same(got["gold"], reference(gold))
    for key, v in got["metrics"].items():
        assert got["gaps"][f"gap_{key}"] == pytest.approx(abs(v - got["gold"][key]), abs=0)
    assert got["gaps"]["gap_da_forget"] > 0.01  # the shifted forget set left the retain subspace


def test_in_memory_banks_and_torch_bfloat16():
    torch = pytest.importorskip("torch")
    sets = make_sets(dtype=np.float32)
    tens = {s: (torch.from_numpy(x).bfloat16(), torch.from_numpy(y)) for s, (x, y) in sets.items()}
    got = run(tens["forget"], tens["retain"], tens["test"], chunk_rows=300)
    want = reference({s: (t[0].float().numpy(), t[1].numpy()) for s, t in tens.items()})
    assert_same(got["metrics"], want)


def test_memory_limit_sets_the_plan_and_a_tiny_one_is_refused(tmp_path):
    sets = make_sets()
    paths = write_sets(tmp_path, "npy", sets)
    got = run(paths["forget"], paths["retain"], paths["test"], memory_limit="3GiB")
    assert got["plan"]["limit_bytes"] == 3 << 30 and got["plan"]["chunk_rows"] >= 1024
    assert got["meta"]["peak_rss_bytes"] <= 3 << 30
    assert set(got["stages"]) == {"scan", "fit", "score", "attack"}
    with pytest.raises(ValueError, match=r"^memory_limit: .* is too small"):
        run(paths["forget"], paths["retain"], paths["test"], memory_limit="100MB")


# ---------------------------------------------------------------------------------------------
# The command line


def test_cli_writes_json_atomically_and_prints_a_table(tmp_path, capsys):
    sets = make_sets()
    paths = write_sets(tmp_path, "npy", sets)
    out = tmp_path / "res" / "result.json"
    out.parent.mkdir()
    rc = main(["eval", "--forget", str(paths["forget"]), "--retain", str(paths["retain"]), "--test",
               str(paths["test"]), "--gold-forget", str(paths["forget"]), "--gold-retain", str(paths["retain"]),
               "--gold-test", str(paths["test"]), "--out", str(out), "--quiet", "--chunk-rows", "200"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "da_forget" in text and "|gap|" in text and f"wrote {out}" in text
    res = json.loads(out.read_text())
    assert_same(res["metrics"], reference(sets))
    assert all(v == 0 for v in res["gaps"].values())  # gold banks = the same files
    assert sorted(p.name for p in out.parent.iterdir()) == ["result.json"]  # no temporary left behind


# ---------------------------------------------------------------------------------------------
# Bad inputs: an error naming the argument, and no output file


def _bad_cases(tmp_path):
    sets = make_sets()
    good = write_sets(tmp_path / "good", "npy", sets)
    cases = {}

    d = tmp_path / "dims"
    d.mkdir()
    cases["wrong dims"] = ({**good, "test": write_bank(d, "npy", sets["test"][0][:, :8], sets["test"][1], "test")},
                           ValueError, r"^test: expected 16 feature columns like forget, got 8")
    d = tmp_path / "nolabels"
    d.mkdir()
    np.savez(d / "retain.npz", features=sets["retain"][0])
    cases["missing labels"] = ({**good, "retain": d / "retain.npz"}, ValueError,
                               r"^retain: no array 'labels' in .*retain\.npz")
    d = tmp_path / "nan"
    d.mkdir()
    x = sets["forget"][0].copy()
    x[123, 5] = np.nan
    cases["NaN row"] = ({**good, "forget": write_bank(d, "npy", x, sets["forget"][1], "forget")}, ValueError,
                        r"^forget: row 123 of .*forget\.npy has NaN or Inf")
    d = tmp_path / "trunc"
    d.mkdir()
    p = write_bank(d, "npy", *sets["retain"], "retain")
    p.write_bytes(p.read_bytes()[:-100])
    cases["truncated npy"] = ({**good, "retain": p}, ValueError, r"^retain: truncated file .*retain\.npy")
    cases["nonexistent path"] = ({**good, "test": tmp_path / "missing" / "test.npy"}, FileNotFoundError,
                                 r"^test: no such file or directory: .*missing/test\.npy")
    return good, cases


@pytest.mark.parametrize("case", ["wrong dims", "missing labels", "NaN row", "truncated npy", "nonexistent path"])
def test_bad_banks_fail_clearly_and_write_nothing(tmp_path, case):
    _, cases = _bad_cases(tmp_path)
    banks, exc, match = cases[case]
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(exc, match=match):
        run(banks["forget"], banks["retain"], banks["test"], out=out / "r.json", chunk_rows=64)
    assert list(out.iterdir()) == []
    # the command line: exit status 2 and the same message, nothing written
    rc = main(["eval", "--forget", str(banks["forget"]), "--retain", str(banks["retain"]), "--test",
               str(banks["test"]), "--out", str(out / "r.json"), "--quiet"])
    assert rc == 2 and list(out.iterdir()) == []


def test_gold_nan_row_fails_after_the_model_pass_and_writes_nothing(tmp_path):
    sets = make_sets()
    good = write_sets(tmp_path / "good", "npy", sets)
    x = sets["test"][0].copy()
    x[7] = np.inf
    bad = write_bank(tmp_path, "npz", x, sets["test"][1], "gold_test")
    out = tmp_path / "r.json"
    with pytest.raises(ValueError, match=r"^gold_test: row 7 of .*gold_test\.npz has NaN or Inf"):
        run(good["forget"], good["retain"], good["test"], gold_forget=good["forget"], gold_retain=good["retain"],
            gold_test=bad, out=out)
    assert not out.exists() and not list(tmp_path.glob(".r.json*"))


def test_unwritable_or_missing_output_folder_fails_before_any_work(tmp_path, monkeypatch):
    good, _ = _bad_cases(tmp_path)
    called = []
    monkeypatch.setattr(job, "open_bank", lambda *a, **k: called.append(a))
    with pytest.raises(FileNotFoundError, match=r"^out: the folder .*nowhere does not exist"):
        run(good["forget"], good["retain"], good["test"], out=tmp_path / "nowhere" / "r.json")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match=r"^out: .*afile is not a folder"):
        run(good["forget"], good["retain"], good["test"], out=tmp_path / "afile" / "r.json")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        import os

        if os.access(ro, os.W_OK):  # root ignores permissions: use a read-only filesystem instead
            ro = pathlib.Path("/proc")
        with pytest.raises(ValueError, match=r"^out: cannot write in the folder"):
            run(good["forget"], good["retain"], good["test"], out=ro / "r.json")
    finally:
        (tmp_path / "ro").chmod(0o700)
    assert called == []


@pytest.mark.parametrize("kwargs, match", [
    (dict(forget=None), r"^forget: expected a bank for each of forget, retain, test, missing forget"),
    (dict(gold_forget="x"), r"^gold_retain: expected a bank for each of gold_forget, gold_retain, gold_test"),
    (dict(bank="x.parquet"), r"^bank: expected either one file with a split column or separate"),
    (dict(knn_k=0), r"^knn_k: expected an int >= 1"),
    (dict(energy=1.5), r"^energy: expected a fraction in \(0, 1\]"),
    (dict(memory_limit="lots"), r"^memory_limit: expected a size such as '4GiB'"),
])
def test_bad_arguments_name_themselves(tmp_path, kwargs, match):
    good, _ = _bad_cases(tmp_path)
    args = {"forget": good["forget"], "retain": good["retain"], "test": good["test"], **kwargs}
    with pytest.raises(ValueError, match=match):
        run(args.pop("forget"), args.pop("retain"), args.pop("test"), **args)


# ---------------------------------------------------------------------------------------------
# Shard merging of k-NN candidates


@pytest.mark.parametrize("chunk", [3, 5, 7, 64])
def test_chunked_neighbours_equal_one_search_of_the_whole_bank(chunk):
    """Chunks smaller than k, queries excluding their own row, duplicate rows (ties): the merged
    per-chunk candidates equal a brute-force search of the whole bank ordered by (distance,
    index), labels following their rows. (Compared with brute force, not with one engine search:
    with more exact ties than the engine's spare candidates, its whole-bank answer may keep a
    higher index among equal distances; the distances agree either way.)"""
    from unlearnkit.eval import _engine as E

    rng = np.random.default_rng(0)
    bank = rng.integers(0, 3, (200, 4)).astype(np.float32)  # many exact ties
    labels = rng.integers(0, 5, 200)
    own = np.sort(rng.choice(200, 30, replace=False))
    queries = bank[own]
    k = 5
    full = ((queries[:, None, :].astype(np.float64) - bank[None].astype(np.float64)) ** 2).sum(-1)
    full[np.arange(len(own)), own] = np.inf
    want_i = np.lexsort((np.broadcast_to(np.arange(200), full.shape), full), axis=1)[:, :k]
    want_d = np.take_along_axis(full, want_i, 1).astype(np.float32)
    engine_d, _ = M.kneighbors(queries, bank, k, exclude_index=own)
    assert np.array_equal(engine_d, want_d)
    got = None
    for lo in range(0, 200, chunk):
        c = E.knn_candidates(queries, bank[lo:lo + chunk], k, offset=lo, exclude=own, bank_labels=labels[lo:lo + chunk])
        got = c if got is None else E.merge_candidates(got, c, k)
    assert np.array_equal(got[0], want_d) and np.array_equal(got[1], want_i)
    assert np.array_equal(got[2], labels[want_i])
    parts = [M.kneighbors(queries, bank[lo:lo + 64], k, index_offset=lo) for lo in range(0, 200, 64)]
    ref = M.merge_kneighbors(parts, k)
    mine = None
    for p in parts:
        t = (p[0], p[1], None)
        mine = t if mine is None else E.merge_candidates(mine, t, k)
    assert np.array_equal(mine[0], ref[0]) and np.array_equal(mine[1], ref[1])
