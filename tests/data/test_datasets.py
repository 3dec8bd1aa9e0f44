import gzip

import numpy as np
import pytest
import torch

from unlearnkit.data import fashion_mnist_available, load_digits, load_fashion_mnist, make_split, read_idx, select_random, write_idx
from unlearnkit.data.forget import UnlearningSplit


def test_digits_split_is_deterministic_and_stratified():
    a, b = load_digits(split_seed=3), load_digits(split_seed=3)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert a.x_train.shape[1:] == (1, 8, 8) and a.x_train.min() >= 0.0 and a.x_train.max() <= 1.0
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
    with gzip.open(tmp_path / "b-idx3-ubyte.gz") as fh:
        raw = fh.read()
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


# --- validation split and training subsets (issue 12) -------------------------------------------------

@pytest.mark.parametrize("heldout", [0.0, 0.2])
def test_val_test_and_heldout_are_disjoint_and_cover_the_test_split(heldout):
    data = load_digits()
    s = make_split(data, seed=3, heldout_fraction=heldout)
    n = len(data.y_test)
    assert len(s.val_idx) == round(0.2 * n) and len(s.heldout_idx) == round(heldout * n)
    parts = [s.val_idx, s.test_idx, s.heldout_idx]
    assert sum(len(p) for p in parts) == n
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(n))  # disjoint and complete
    assert all(np.array_equal(p, np.sort(p)) for p in parts)
    x, y = s.val.tensors
    assert torch.equal(y, data.y_test[torch.from_numpy(s.val_idx)]) and torch.equal(x, data.x_test[s.val_idx])
    # seeded: the same seed gives the same val, another seed another one
    assert np.array_equal(make_split(data, seed=3, heldout_fraction=heldout).val_idx, s.val_idx)
    assert not np.array_equal(make_split(data, seed=4, heldout_fraction=heldout).val_idx, s.val_idx)


def test_fingerprint_covers_val():
    data = load_digits()
    s = make_split(data, seed=0)
    moved = UnlearningSplit(data, s.forget_idx, s.retain_idx, s.description, 0, test_idx=s.test_idx,
                            val_idx=s.val_idx[:-1])
    assert moved.fingerprint() != s.fingerprint()
    assert make_split(data, seed=0, val_fraction=0.0).val_idx.size == 0


@pytest.mark.parametrize("kwargs, match", [
    ({"val_fraction": 0.6, "heldout_fraction": 0.5}, "val_fraction"),
    ({"val_fraction": -0.1}, "val_fraction"),
    ({"val_fraction": 1.0}, "val_fraction"),
])
def test_bad_val_fraction_names_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_split(load_digits(), **kwargs)


def test_val_overlapping_test_is_rejected():
    data = load_digits()
    s = make_split(data, seed=0)
    with pytest.raises(ValueError, match="val_idx"):
        UnlearningSplit(data, s.forget_idx, s.retain_idx, "x", 0, test_idx=s.test_idx,
                        val_idx=np.r_[s.val_idx, s.test_idx[:1]])


def test_load_dataset_train_subset_is_seeded_and_keeps_the_test_split():
    from unlearnkit.data import load_dataset

    full = load_digits()
    a, b = load_dataset("digits", train_size=500, seed=1), load_dataset("digits", train_size=500, seed=1)
    c = load_dataset("digits", train_size=500, seed=2)
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
    assert torch.equal(a.x_test, full.x_test) and torch.equal(a.y_test, full.y_test)
    # a subset of the training split, each image once, in the original order
    keep = np.sort(np.random.default_rng(1).permutation(len(full.y_train))[:500])
    assert torch.equal(a.x_train, full.x_train[keep]) and torch.equal(a.y_train, full.y_train[keep])
    assert a.mean[0] == pytest.approx(float(full.x_train[keep].mean()), rel=1e-5)
    assert a.fingerprint() != full.fingerprint()
    with pytest.raises(ValueError, match="train_size"):
        load_dataset("digits", train_size=10**6)


@pytest.mark.skipif(not fashion_mnist_available(), reason="Fashion-MNIST (Debian's dataset-fashion-mnist) not installed")
def test_fashion_mnist_10k_is_the_seed0_subset():
    from unlearnkit.data import group_classes, load_dataset

    d = load_dataset("fashion-mnist-10k")
    full = load_fashion_mnist()
    assert d.name == "fashion-mnist-10k" and len(d.y_train) == 10_000 and len(d.y_test) == 10_000
    keep = np.sort(np.random.default_rng(0).permutation(60_000)[:10_000])
    assert torch.equal(d.y_train, full.y_train[keep])
    assert group_classes(d).num_classes == 4  # the sub-class scenario finds Fashion-MNIST's grouping
