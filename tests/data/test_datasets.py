import gzip

import numpy as np
import pytest
import torch

from unlearnkit.data import (fashion_mnist_available, load_digits, load_fashion_mnist, make_split, read_idx,
                             select_random, write_idx)
from unlearnkit.data.forget import UnlearningSplit


def test_digits_split_is_deterministic_and_stratified():
    a, b = load_digits(split_seed=3), load_digits(split_seed=3)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert a.x_train.shape[1:] == (1, 8, 8) and 0.0 <= a.x_train.min() and a.x_train.max() <= 1.0
    assert len(a.y_train) + len(a.y_test) == 1797
    # stratified: every class's share in test within 1 sample of 20%
    for c in range(10):
        n_c = int((a.y_train == c).sum() + (a.y_test == c).sum())
        assert abs(int((a.y_test == c).sum()) - 0.2 * n_c) <= 1


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_random_forget_is_deterministic_and_disjoint(seed):
    data = load_digits()
    s1 = make_split(data, forget="random", fraction=0.1, seed=seed)
    s2 = make_split(data, forget="random", fraction=0.1, seed=seed)
    np.testing.assert_array_equal(s1.forget_idx, s2.forget_idx)
    assert np.intersect1d(s1.forget_idx, s1.retain_idx).size == 0
    assert np.array_equal(np.union1d(s1.forget_idx, s1.retain_idx), np.arange(len(data.y_train)))
    assert len(s1.forget_idx) == round(0.1 * len(data.y_train))
    other = make_split(data, forget="random", fraction=0.1, seed=seed + 100)
    assert not np.array_equal(s1.forget_idx, other.forget_idx)


def test_class_forget_takes_exactly_one_class():
    data = load_digits()
    s = make_split(data, forget="class", forget_class=3)
    assert set(data.y_train[s.forget_idx].tolist()) == {3}
    assert 3 not in set(data.y_train[s.retain_idx].tolist())
    x, y = s.forget.tensors
    assert torch.equal(y, data.y_train[torch.from_numpy(s.forget_idx)])


@pytest.mark.parametrize("kwargs, match", [
    ({"forget": "class", "forget_class": 42}, "forget_class"),
    ({"forget": "class"}, "forget_class"),
    ({"forget": "subclass"}, "forget"),
    ({"forget": "random", "fraction": 1.5}, "fraction"),
    ({"forget": "random", "fraction": float("nan")}, "fraction"),
])
def test_bad_forget_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_split(load_digits(), **kwargs)


def test_overlapping_split_is_rejected():
    data = load_digits()
    with pytest.raises(ValueError, match="forget_idx"):
        UnlearningSplit(data, np.array([0, 1]), np.arange(1, len(data.y_train)), "x", 0)


def test_select_random_at_least_one():
    assert len(select_random(5, 0.01, seed=0)) == 1


def test_idx_roundtrip_plain_and_gzip(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, size=(3, 4, 5), dtype=np.uint8)
    for name in ("a-idx3-ubyte", "b-idx3-ubyte.gz"):
        write_idx(tmp_path / name, arr)
        np.testing.assert_array_equal(read_idx(tmp_path / name), arr)
    # the official header layout, byte for byte
    raw = gzip.open(tmp_path / "b-idx3-ubyte.gz").read()
    assert raw[:16] == bytes([0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5])


def test_truncated_idx_fails_clearly(tmp_path):
    write_idx(tmp_path / "t", np.zeros((4, 2, 2), np.uint8))
    (tmp_path / "t").write_bytes((tmp_path / "t").read_bytes()[:-3])
    with pytest.raises(ValueError, match="declares shape"):
        read_idx(tmp_path / "t")
    (tmp_path / "u").write_bytes(b"\x1f\x8bnot idx")
    with pytest.raises(ValueError, match="expected an IDX file"):
        read_idx(tmp_path / "u")


def test_fashion_loader_reads_official_format_from_unlearnkit_data(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    xtr, ytr = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8), rng.integers(0, 10, 12).astype(np.uint8)
    xte, yte = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8), rng.integers(0, 10, 5).astype(np.uint8)
    write_idx(folder / "train-images-idx3-ubyte.gz", xtr)
    write_idx(folder / "train-labels-idx1-ubyte.gz", ytr)
    write_idx(folder / "t10k-images-idx3-ubyte", xte)  # uncompressed also accepted
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", yte)
    monkeypatch.setenv("UNLEARNKIT_DATA", str(tmp_path))
    d = load_fashion_mnist()
    assert d.x_train.shape == (12, 1, 28, 28) and d.x_test.shape == (5, 1, 28, 28)
    np.testing.assert_allclose(d.x_train[:, 0].numpy() * 255, xtr, atol=1e-4)
    np.testing.assert_array_equal(d.y_test.numpy(), yte)


def test_fashion_missing_names_both_places_and_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARNKIT_DATA", str(tmp_path))
    import unlearnkit.data.datasets as ds

    monkeypatch.setattr(ds, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError) as err:
        load_fashion_mnist()
    msg = str(err.value)
    assert str(tmp_path) in msg and "nowhere" in msg and "dataset-fashion-mnist" in msg


@pytest.mark.skipif(not fashion_mnist_available(), reason="Debian's dataset-fashion-mnist is not installed "
                    "(make test installs it where apt-get is available)")
def test_real_fashion_mnist_loads():
    d = load_fashion_mnist()
    assert d.x_train.shape == (60000, 1, 28, 28) and d.x_test.shape == (10000, 1, 28, 28)
    assert torch.bincount(d.y_train).tolist() == [6000] * 10
