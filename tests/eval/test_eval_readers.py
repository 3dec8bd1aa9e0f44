"""Feature-bank readers of ``unlearnkit eval``: every format reads back what was written, chunk
by chunk, and corrupt or mismatched files fail with an error naming the argument."""

from __future__ import annotations

import os
import pathlib
import zipfile

import numpy as np
import pytest

from unlearnkit.eval import memory
from unlearnkit.eval.readers import open_bank, resolve_spec

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
safetensors_torch = pytest.importorskip("safetensors.torch")
torch = pytest.importorskip("torch")

N, D = 1000, 12


def _data(seed=0, n=N, d=D, dtype=np.float16):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(dtype), rng.integers(0, 4, n)


def write_bank(folder: pathlib.Path, fmt: str, x: np.ndarray, y: np.ndarray, name: str = "bank") -> pathlib.Path:
    """Writes (x, y) in one of the formats the readers take; returns the path to pass."""
    if fmt == "npy":
        np.save(folder / f"{name}.npy", x)
        np.save(folder / f"{name}.labels.npy", y)
        return folder / f"{name}.npy"
    if fmt == "npy-dir":
        (folder / name).mkdir()
        np.save(folder / name / "features.npy", x)
        np.save(folder / name / "labels.npy", y)
        return folder / name
    if fmt == "npz":
        np.savez(folder / f"{name}.npz", features=x, labels=y)
        return folder / f"{name}.npz"
    if fmt == "npz-compressed":
        np.savez_compressed(folder / f"{name}.npz", features=x, labels=y)
        return folder / f"{name}.npz"
    if fmt in ("safetensors", "safetensors-bf16"):
        t = torch.from_numpy(np.ascontiguousarray(x))
        if fmt == "safetensors-bf16":
            t = t.float().bfloat16()
        safetensors_torch.save_file({"features": t, "labels": torch.from_numpy(y)}, folder / f"{name}.safetensors")
        return folder / f"{name}.safetensors"
    if fmt in ("parquet", "parquet-list"):
        flat = pa.array(np.ascontiguousarray(x).ravel())
        if fmt == "parquet":
            col = pa.FixedSizeListArray.from_arrays(flat, x.shape[1])
        else:
            col = pa.ListArray.from_arrays(pa.array(np.arange(0, x.size + 1, x.shape[1], dtype=np.int32)), flat)
        pq.write_table(pa.table({"features": col, "labels": y}), folder / f"{name}.parquet", row_group_size=300)
        return folder / f"{name}.parquet"
    raise AssertionError(fmt)


FORMATS = ["npy", "npy-dir", "npz", "npz-compressed", "safetensors", "safetensors-bf16", "parquet", "parquet-list"]


def _read_all(bank, start=0, stop=None, chunk=128):
    cs = list(bank.chunks(start, stop, chunk))
    assert all(c.offset == start + i * chunk for i, c in enumerate(cs))
    return np.concatenate([c.x for c in cs]), np.concatenate([c.y for c in cs])


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_every_format_reads_back_what_was_written(tmp_path, fmt, dtype):
    x, y = _data(dtype=dtype)
    bank = open_bank(resolve_spec(write_bank(tmp_path, fmt, x, y), "forget"))
    assert (bank.n_rows, bank.dim) == (N, D)
    want = x.astype(np.float64 if dtype == np.float64 else np.float32)
    if fmt == "safetensors-bf16":
        want = torch.from_numpy(x.astype(np.float32)).bfloat16().float().numpy()
        assert bank.source_dtype == "bfloat16"
    got_x, got_y = _read_all(bank)
    assert got_x.dtype == want.dtype and np.array_equal(got_x, want)
    assert got_y.dtype == np.int64 and np.array_equal(got_y, y)
    # a window in the middle, chunk by chunk (what a shard reads)
    got_x, got_y = _read_all(bank, 256, 700, 128)
    assert np.array_equal(got_x, want[256:700]) and np.array_equal(got_y, y[256:700])


def test_parquet_split_column_selects_each_sets_rows(tmp_path):
    x, y = _data()
    split = np.array(["forget", "retain", "test"])[np.random.default_rng(1).integers(0, 3, N)]
    col = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), D)
    path = tmp_path / "all.parquet"
    pq.write_table(pa.table({"features": col, "labels": y, "split": pa.array(split).dictionary_encode()}), path,
                   row_group_size=170)
    import pickle

    for s in ("forget", "retain", "test"):
        bank = open_bank(resolve_spec(path, s, split=s))
        assert bank.n_rows == (split == s).sum()
        got_x, got_y = _read_all(bank, 5, None, 64)
        assert np.array_equal(got_x, x[split == s][5:].astype(np.float32))
        assert np.array_equal(got_y, y[split == s][5:])
        again = pickle.loads(pickle.dumps(bank))  # what a Ray worker receives
        assert np.array_equal(_read_all(again, 5, None, 64)[0], got_x)


def test_reading_a_window_maps_only_that_window(tmp_path):
    """Resident memory stays at about a chunk, whatever the file size (mmap windows are unmapped)."""
    x = np.random.default_rng(0).standard_normal((400_000, 64)).astype(np.float16)  # 51 MB on disk
    path = write_bank(tmp_path, "npy", x, np.zeros(len(x), np.int64))
    del x
    bank = open_bank(resolve_spec(path, "retain"))
    memory.reset_peak_rss()
    before = memory.current_rss()
    for _ in bank.chunks(0, None, 8192):
        pass
    grew = memory.peak_rss() - before
    assert grew < 20 << 20, f"reading 51 MB in 8192-row chunks grew RSS by {grew / 2**20:.1f} MiB"


# ---------------------------------------------------------------------------------------------
# Corrupt and mismatched files


def _expect(exc, match, fn, *a, **kw):
    with pytest.raises(exc, match=match):
        fn(*a, **kw)


def test_nonexistent_path_names_the_argument(tmp_path):
    _expect(FileNotFoundError, r"^retain: no such file or directory: .*nope\.npy", resolve_spec,
            tmp_path / "nope.npy", "retain")


def test_unknown_suffix(tmp_path):
    (tmp_path / "x.csv").write_text("1,2\n")
    _expect(ValueError, r"^test: unknown bank format '\.csv'", resolve_spec, tmp_path / "x.csv", "test")


@pytest.mark.parametrize("fmt", ["npy", "npz", "safetensors", "parquet"])
def test_missing_labels_name_the_argument(tmp_path, fmt):
    x, y = _data()
    path = write_bank(tmp_path, fmt, x, y)
    if fmt == "npy":
        (tmp_path / "bank.labels.npy").unlink()
        _expect(ValueError, r"^forget: missing labels: expected bank\.labels\.npy", resolve_spec, path, "forget")
        return
    _expect(ValueError, r"^forget: no (array|tensor|column) 'target' in .*--labels-key",
            lambda: open_bank(resolve_spec(path, "forget", labels_key="target")))


@pytest.mark.parametrize("fmt", ["npy", "npz", "safetensors"])
def test_labels_of_another_length(tmp_path, fmt):
    x, y = _data()
    path = write_bank(tmp_path, fmt, x, y[:-3])
    _expect(ValueError, r"^forget: the labels have 997 rows but the features have 1000",
            lambda: open_bank(resolve_spec(path, "forget")))


@pytest.mark.parametrize("cut", [1, 300, 5000])
def test_truncated_npy(tmp_path, cut):
    x, y = _data()
    path = write_bank(tmp_path, "npy", x, y)
    data = path.read_bytes()
    path.write_bytes(data[:-cut])
    _expect(ValueError, r"^retain: truncated file .*bank\.npy.*shape \(1000, 12\) float16",
            lambda: open_bank(resolve_spec(path, "retain")))


def test_npy_with_a_broken_header(tmp_path):
    x, y = _data()
    path = write_bank(tmp_path, "npy", x, y)
    path.write_bytes(b"\x93NUMPY\x01\x00garbage")
    _expect(ValueError, r"^retain: the features in .* is not a valid \.npy array",
            lambda: open_bank(resolve_spec(path, "retain")))


def test_truncated_npz_and_safetensors(tmp_path):
    x, y = _data()
    for fmt in ("npz", "safetensors"):
        path = write_bank(tmp_path, fmt, x, y)
        path.write_bytes(path.read_bytes()[: 5000])
        with pytest.raises(ValueError, match=r"^test: "):
            open_bank(resolve_spec(path, "test"))


def test_compressed_npz_truncated_inside_a_member(tmp_path):
    """A member whose .npy header promises more rows than it holds fails when the stream runs dry."""
    x, y = _data(n=2000)
    path = tmp_path / "c.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("features.npy", "w") as fh:
            np.lib.format.write_array_header_1_0(fh, {"descr": "<f2", "fortran_order": False, "shape": (2000, D)})
            fh.write(x[:1500].tobytes())
        with zf.open("labels.npy", "w") as fh:
            np.lib.format.write_array(fh, y)
    bank = open_bank(resolve_spec(path, "test"))
    assert bank.n_rows == 2000
    _expect(ValueError, r"^test: truncated member features\.npy in .*c\.npz", _read_all, bank)


def test_wrong_rank_and_dtype(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((10, 2, 3), np.float32))
    np.save(tmp_path / "a.labels.npy", np.zeros(10, np.int64))
    _expect(ValueError, r"^forget: expected the features in .* to be a 2-D array \(rows, features\), got shape "
            r"\(10, 2, 3\)", lambda: open_bank(resolve_spec(tmp_path / "a.npy", "forget")))
    np.save(tmp_path / "b.npy", np.zeros((10, 3), np.int32))
    np.save(tmp_path / "b.labels.npy", np.zeros(10, np.int64))
    _expect(TypeError, r"^forget: expected the features .* float16, bfloat16, float32 or float64, got int32",
            lambda: open_bank(resolve_spec(tmp_path / "b.npy", "forget")))
    np.save(tmp_path / "c.npy", np.zeros((10, 3), np.float32))
    np.save(tmp_path / "c.labels.npy", np.zeros(10, np.float32))
    _expect(TypeError, r"^forget: expected the labels .* integer labels, got float32",
            lambda: open_bank(resolve_spec(tmp_path / "c.npy", "forget")))


@pytest.mark.parametrize("fmt", ["npy", "npz-compressed", "safetensors", "parquet"])
def test_nan_rows_are_reported_with_their_row(tmp_path, fmt):
    x, y = _data(dtype=np.float32)
    x[613, 4] = np.nan
    x[700, 0] = np.inf
    bank = open_bank(resolve_spec(write_bank(tmp_path, fmt, x, y), "gold_test"))
    with pytest.raises(ValueError, match=r"^gold_test: row 613 of .* has NaN or Inf values"):
        _read_all(bank)


def test_parquet_null_and_ragged_rows(tmp_path):
    x, y = _data()
    lists = [list(map(float, r)) for r in x[:10]]
    lists[3] = lists[3][:-1]
    pq.write_table(pa.table({"features": lists, "labels": y[:10]}), tmp_path / "r.parquet")
    _expect(ValueError, r"^test: row 3 of .* has 11 features, expected 12",
            lambda: _read_all(open_bank(resolve_spec(tmp_path / "r.parquet", "test"))))
    lists[3] = None
    pq.write_table(pa.table({"features": lists, "labels": y[:10]}), tmp_path / "n.parquet")
    _expect(ValueError, r"^test: missing \(null\) features or labels",
            lambda: _read_all(open_bank(resolve_spec(tmp_path / "n.parquet", "test"))))


def test_parquet_split_without_the_column(tmp_path):
    x, y = _data()
    path = write_bank(tmp_path, "parquet", x, y)
    _expect(ValueError, r"^forget: no column 'split' in .* to select the 'forget' rows",
            lambda: open_bank(resolve_spec(path, "forget", split="forget")))


def test_not_a_parquet_or_npz_file(tmp_path):
    for suffix in (".parquet", ".npz", ".safetensors"):
        p = tmp_path / f"junk{suffix}"
        p.write_bytes(os.urandom(64))
        with pytest.raises(ValueError, match=r"^forget: "):
            open_bank(resolve_spec(p, "forget"))


# ---------------------------------------------------------------------------------------------
# Memory budget


@pytest.mark.parametrize("text, want", [("4GiB", 4 << 30), ("512MB", 512_000_000), ("1.5G", 1_500_000_000),
                                        ("100", 100), (2048, 2048), ("64 MiB", 64 << 20)])
def test_parse_size(text, want):
    assert memory.parse_size(text) == want


@pytest.mark.parametrize("bad", ["", "4 parsecs", "-1GB", "0", "GiB"])
def test_parse_size_rejects(bad):
    with pytest.raises(ValueError, match=r"^memory_limit: "):
        memory.parse_size(bad)


def test_plan_fits_the_limit_and_refuses_an_impossible_one():
    base = 600 << 20
    plan = memory.make_plan(dim=128, itemsize=2, n_rows_max=10**7, limit_bytes=2 << 30, kmeans_rows=100_000,
                            probe_rows=50_000, knn_queries=1000, baseline_bytes=base)
    assert plan.estimate_bytes <= 2 << 30
    assert plan.chunk_rows & (plan.chunk_rows - 1) == 0 and plan.shard_rows % plan.chunk_rows == 0
    assert -(-10**7 // plan.shard_rows) <= 16
    small = memory.make_plan(dim=128, itemsize=2, n_rows_max=10**7, limit_bytes=base + (400 << 20),
                             kmeans_rows=100_000, probe_rows=50_000, knn_queries=1000, baseline_bytes=base)
    assert small.kmeans_rows < 100_000 and small.notes and small.estimate_bytes <= base + (400 << 20)
    with pytest.raises(ValueError, match=r"^memory_limit: 700.00 MiB is too small: the process already holds"):
        memory.make_plan(dim=128, itemsize=2, n_rows_max=10**7, limit_bytes=700 << 20, kmeans_rows=100_000,
                         probe_rows=50_000, knn_queries=1000, baseline_bytes=base)
