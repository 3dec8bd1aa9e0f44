"""Loaders of CIFAR-10/100, SVHN and face folders, on small files written here in exactly the
official on-disk formats."""

import pickle

import numpy as np
import pytest
import scipy.io
from PIL import Image

from unlearnkit.data import load_cifar10, load_cifar100, load_face_folder, load_svhn, make_split

rng = np.random.default_rng(0)


def _dump(path, obj):
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)


def test_cifar10_python_batches(tmp_path):
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    batches = [rng.integers(0, 256, (4, 3072), dtype=np.uint8) for _ in range(6)]
    labels = [list(rng.integers(0, 10, 4)) for _ in range(6)]
    for i in range(5):
        _dump(base / f"data_batch_{i + 1}", {b"data": batches[i], b"labels": labels[i], b"batch_label": b"x"})
    _dump(base / "test_batch", {b"data": batches[5], b"labels": labels[5]})
    _dump(base / "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)]})
    d = load_cifar10(base)
    assert d.x_train.shape == (20, 3, 32, 32) and d.x_test.shape == (4, 3, 32, 32)
    # CHW order: the first 1024 bytes of a row are the red plane
    np.testing.assert_allclose(d.x_train[0, 0].numpy().ravel() * 255, batches[0][0, :1024], atol=1e-3)
    np.testing.assert_array_equal(d.y_train.numpy(), np.concatenate(labels[:5]))
    assert d.classes[3] == "c3"


def test_cifar100_coarse_supports_subclass_forgetting(tmp_path, monkeypatch):
    base = tmp_path / "cifar-100-python"
    base.mkdir()
    fine = rng.integers(0, 100, 30)
    coarse = fine // 5
    _dump(base / "train", {b"data": rng.integers(0, 256, (30, 3072), dtype=np.uint8), b"fine_labels": list(fine),
                           b"coarse_labels": list(coarse)})
    _dump(base / "test", {b"data": rng.integers(0, 256, (6, 3072), dtype=np.uint8), b"fine_labels": list(fine[:6]),
                          b"coarse_labels": list(coarse[:6])})
    _dump(base / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                          b"coarse_label_names": [f"s{i}".encode() for i in range(20)]})
    monkeypatch.setenv("UNLEARNKIT_DATA", str(tmp_path))  # found as $UNLEARNKIT_DATA/cifar-100-python
    d = load_cifar100(coarse=True)
    assert d.num_classes == 20 and d.fine_train is not None
    target = int(fine[0])
    s = make_split(d, forget="subclass", forget_class=target)
    assert set(d.fine_train[s.forget_idx].tolist()) == {target}
    assert load_cifar100(base).num_classes == 100


def test_svhn_mat_files(tmp_path):
    for part, n in (("train", 5), ("test", 3)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = np.array([[10], [1], [2], [3], [4]][:n], dtype=np.uint8)
        scipy.io.savemat(tmp_path / f"{part}_32x32.mat", {"X": x, "y": y})
        if part == "train":
            x_train = x
    d = load_svhn(tmp_path)
    assert d.x_train.shape == (5, 3, 32, 32)
    assert d.y_train.tolist() == [0, 1, 2, 3, 4]  # 10 means the digit 0
    np.testing.assert_allclose(d.x_train[2, 1].numpy() * 255, x_train[:, :, 1, 2], atol=1e-3)


def test_face_folder(tmp_path):
    for ident in ("bob", "alice", "carol"):
        (tmp_path / ident).mkdir()
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(tmp_path / ident / f"{i}.png")
    (tmp_path / "alice" / "notes.txt").write_text("not an image")
    d = load_face_folder(tmp_path, image_size=16, test_fraction=0.2)
    assert d.classes == ("alice", "bob", "carol")
    assert d.x_train.shape == (12, 3, 16, 16) and d.x_test.shape == (3, 3, 16, 16)
    assert sorted(d.y_test.tolist()) == [0, 1, 2]


def test_missing_and_corrupt_files_name_the_place(tmp_path):
    with pytest.raises(FileNotFoundError, match="root: cifar-10-batches-py"):
        load_cifar10(tmp_path)
    (tmp_path / "train_32x32.mat").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not an SVHN"):
        load_svhn(tmp_path)
    base = tmp_path / "c"
    base.mkdir()
    (base / "batches.meta").write_bytes(b"not a pickle")
    (base / "data_batch_1").write_bytes(b"not a pickle either")
    with pytest.raises(ValueError, match="not a CIFAR batch"):
        load_cifar10(base)
