"""Loaders for datasets in their official on-disk formats (nothing is downloaded).

- CIFAR-10 / CIFAR-100: the "python version" archives, unpacked (``cifar-10-batches-py/``,
  ``cifar-100-python/``): pickled dicts with ``data`` (N, 3072) uint8 in CHW order and labels.
  CIFAR-100 carries its 20 super-classes, so the sub-class scenario works natively.
- SVHN: the cropped-digits MATLAB files ``train_32x32.mat`` / ``test_32x32.mat`` (``X`` of shape
  (32, 32, 3, N), ``y`` (N, 1) with 10 standing for the digit 0).
- Face folders: ``root/<identity>/<image>`` (any format Pillow reads), as VGGFace2-style subsets
  are stored; split per identity with a seed.

Each loader takes ``root`` or looks in ``$UNLEARNKIT_DATA/<name>`` and says where it looked.
"""

from __future__ import annotations

import os
import pathlib
import pickle

import numpy as np
import torch

from .types import ImageDataset, _make


def _root(root, name: str, marker: str) -> pathlib.Path:
    candidates = [pathlib.Path(root)] if root is not None else []
    env = os.environ.get("UNLEARNKIT_DATA")
    if root is None and env:
        candidates += [pathlib.Path(env) / name, pathlib.Path(env)]
    for c in candidates:
        if (c / marker).exists():
            return c
    where = ", ".join(str(c) for c in candidates) or "nowhere (pass root= or set UNLEARNKIT_DATA)"
    raise FileNotFoundError(f"root: {name} ({marker}) was not found in {where}")


def _unpickle(path: pathlib.Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise ValueError(f"root: {path} is not a CIFAR batch file ({exc})") from None


def _chw(data: np.ndarray, path) -> np.ndarray:
    data = np.asarray(data, dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"root: expected (N, 3072) image rows in {path}, got shape {data.shape}")
    return data.reshape(-1, 3, 32, 32).astype(np.float32) / 255


def load_cifar10(root=None) -> ImageDataset:
    """CIFAR-10 (50000 train / 10000 test, 32x32 RGB, 10 classes) from ``cifar-10-batches-py``."""
    base = _root(root, "cifar-10-batches-py", "batches.meta")
    parts = [_unpickle(base / f"data_batch_{i}") for i in range(1, 6)]
    test = _unpickle(base / "test_batch")
    names = [n.decode() for n in _unpickle(base / "batches.meta")[b"label_names"]]
    x = np.concatenate([_chw(p[b"data"], base) for p in parts])
    y = np.concatenate([np.asarray(p[b"labels"]) for p in parts])
    return _make("cifar10", x, y, _chw(test[b"data"], base), np.asarray(test[b"labels"]), names)


def load_cifar100(root=None, *, coarse: bool = False) -> ImageDataset:
    """CIFAR-100 from ``cifar-100-python``: 100 fine classes, or with ``coarse=True`` the 20
    super-classes as labels and the fine classes kept as ``fine_train``/``fine_test``."""
    base = _root(root, "cifar-100-python", "meta")
    tr, te, meta = _unpickle(base / "train"), _unpickle(base / "test"), _unpickle(base / "meta")
    fine_names = [n.decode() for n in meta[b"fine_label_names"]]
    coarse_names = [n.decode() for n in meta[b"coarse_label_names"]]
    xtr, xte = _chw(tr[b"data"], base), _chw(te[b"data"], base)
    if not coarse:
        return _make("cifar100", xtr, np.asarray(tr[b"fine_labels"]), xte, np.asarray(te[b"fine_labels"]), fine_names)
    from dataclasses import replace

    d = _make("cifar100-coarse", xtr, np.asarray(tr[b"coarse_labels"]), xte, np.asarray(te[b"coarse_labels"]),
              coarse_names)
    return replace(d, fine_train=torch.as_tensor(np.asarray(tr[b"fine_labels"]), dtype=torch.int64),
                   fine_test=torch.as_tensor(np.asarray(te[b"fine_labels"]), dtype=torch.int64),
                   fine_classes=tuple(fine_names))


def _svhn_part(path: pathlib.Path):
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
    except Exception as exc:
        raise ValueError(f"root: {path} is not an SVHN .mat file ({exc})") from None
    if "X" not in mat or "y" not in mat:
        raise ValueError(f"root: expected variables X and y in {path}, got {sorted(k for k in mat if not k.startswith('__'))}")
    x = np.transpose(mat["X"], (3, 2, 0, 1)).astype(np.float32) / 255  # (32,32,3,N) -> (N,3,32,32)
    y = mat["y"].reshape(-1).astype(np.int64) % 10  # label 10 is the digit 0
    return x, y


def load_svhn(root=None) -> ImageDataset:
    """SVHN cropped digits (73257 train / 26032 test, 32x32 RGB) from ``train_32x32.mat`` and ``test_32x32.mat``."""
    base = _root(root, "svhn", "train_32x32.mat")
    xtr, ytr = _svhn_part(base / "train_32x32.mat")
    xte, yte = _svhn_part(base / "test_32x32.mat")
    return _make("svhn", xtr, ytr, xte, yte, [str(i) for i in range(10)])


_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp"}


def load_face_folder(root, *, image_size: int = 32, test_fraction: float = 0.2, split_seed: int = 0,
                     name: str = "faces") -> ImageDataset:
    """Images in ``root/<identity>/<file>``: one class per identity (sorted by folder name),
    resized to ``image_size`` x ``image_size`` RGB, split per identity with ``split_seed``."""
    from PIL import Image

    root = pathlib.Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"root: expected a folder of identity sub-folders, got {root}")
    identities = sorted(d.name for d in root.iterdir() if d.is_dir())
    if len(identities) < 2:
        raise ValueError(f"root: expected at least 2 identity folders in {root}, got {len(identities)}")
    images, labels = [], []
    for label, ident in enumerate(identities):
        files = sorted(f for f in (root / ident).iterdir() if f.suffix.lower() in _IMAGE_SUFFIXES)
        for f in files:
            with Image.open(f) as im:
                im = im.convert("RGB").resize((image_size, image_size), Image.Resampling.BILINEAR)
                images.append(np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / 255)
                labels.append(label)
    x, y = np.stack(images), np.asarray(labels)
    rng = np.random.default_rng(split_seed)
    test = np.zeros(len(y), bool)
    for c in range(len(identities)):
        idx = rng.permutation(np.flatnonzero(y == c))
        test[idx[: int(round(test_fraction * len(idx)))]] = True
    return _make(name, x[~test], y[~test], x[test], y[test], identities)
