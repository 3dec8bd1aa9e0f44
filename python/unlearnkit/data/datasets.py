"""Datasets, loaded offline into memory as tensors.

Every dataset is returned as an :class:`ImageDataset`: images as float32 in [0, 1] (the
*unnormalised* pixel range, which DLFD's and TMU's pixel-unit step sizes refer to) with shape
(n, channels, height, width), and int64 labels. The per-channel mean and std travel with it so
that the model, not the data, normalises (see ``unlearnkit.models``).
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import torch

from .idx import read_idx
from .types import ImageDataset, _make

FASHION_MNIST_SYSTEM_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def load_digits(*, test_fraction: float = 0.2, split_seed: int = 0) -> ImageDataset:
    """scikit-learn's 8x8 handwritten digits (1797 images, 10 classes), the embedded default.

    Digits has no official split: a stratified split with ``split_seed`` makes one.
    """
    from sklearn.datasets import load_digits as _load
    from sklearn.model_selection import train_test_split

    bunch = _load()
    x = (bunch.images / 16.0).astype(np.float32)[:, None]  # pixel values are 0..16
    y = bunch.target.astype(np.int64)
    idx_train, idx_test = train_test_split(np.arange(len(y)), test_size=test_fraction,
                                           random_state=split_seed, stratify=y)
    idx_train.sort(), idx_test.sort()
    return _make("digits", x[idx_train], y[idx_train], x[idx_test], y[idx_test],
                 [str(i) for i in range(10)])


def _fashion_dirs(root: str | os.PathLike | None) -> list[pathlib.Path]:
    if root is not None:
        return [pathlib.Path(root)]
    dirs = []
    env = os.environ.get("UNLEARNKIT_DATA")
    if env:
        dirs += [pathlib.Path(env) / "fashion-mnist", pathlib.Path(env)]
    return dirs + [FASHION_MNIST_SYSTEM_DIR]


def _find(directory: pathlib.Path, stem: str) -> pathlib.Path | None:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def fashion_mnist_available(root=None) -> bool:
    """True when the four IDX files are found (in ``root``, $UNLEARNKIT_DATA or Debian's folder)."""
    return any(_find(d, "train-images-idx3-ubyte") for d in _fashion_dirs(root))


def load_fashion_mnist(root: str | os.PathLike | None = None) -> ImageDataset:
    """Fashion-MNIST (60000 train / 10000 test, 28x28 grayscale) from its official IDX files.

    Searched in ``root`` if given, else ``$UNLEARNKIT_DATA`` (and its ``fashion-mnist/``
    sub-folder), then ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``).
    """
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    searched = _fashion_dirs(root)
    for d in searched:
        paths = [p for p in (_find(d, s) for s in stems) if p is not None]
        if len(paths) == len(stems):
            xtr, ytr, xte, yte = (read_idx(p) for p in paths)
            if xtr.shape[0] != ytr.shape[0] or xte.shape[0] != yte.shape[0]:
                raise ValueError(f"root: Fashion-MNIST files in {d} disagree: "
                                 f"{xtr.shape[0]} train images vs {ytr.shape[0]} labels")
            return _make("fashion-mnist", xtr[:, None] / np.float32(255), ytr,
                         xte[:, None] / np.float32(255), yte, FASHION_MNIST_CLASSES)
    raise FileNotFoundError(
        "Fashion-MNIST IDX files (train-images-idx3-ubyte[.gz] and the three others) were not found in "
        + ", ".join(str(d) for d in searched)
        + ". Install Debian's package (`apt-get install dataset-fashion-mnist`) or set UNLEARNKIT_DATA "
        "to a folder holding the official files."
    )


# Declared super-class groupings for the sub-class scenario (datasets without a native hierarchy).
GROUPINGS = {
    "fashion-mnist": {"top": (0, 2, 4, 6), "bottom-dress": (1, 3), "footwear": (5, 7, 9), "bag": (8,)},
    "digits": {"round": (0, 6, 8, 9), "straight": (1, 4, 7), "curved": (2, 3, 5)},
}


def _base_name(name: str) -> str:
    """The dataset a subset was drawn from: "fashion-mnist-10k" or "fashion-mnist-train500-seed1"
    -> "fashion-mnist"."""
    for base in sorted(GROUPINGS, key=len, reverse=True):
        if name.startswith(base + "-"):
            return base
    return name


def group_classes(data: ImageDataset, groups: dict[str, tuple[int, ...]] | None = None) -> ImageDataset:
    """Relabels ``data`` to super-classes; the original labels become ``fine_train``/``fine_test``.

    ``groups`` maps a super-class name to the fine classes it holds (default: ``GROUPINGS[data.name]``);
    every class must be in exactly one group.
    """
    from dataclasses import replace

    groups = groups or GROUPINGS.get(data.name) or GROUPINGS.get(_base_name(data.name))
    if not groups:
        raise ValueError(f"groups: expected a grouping of {data.name!r}'s classes, got none declared")
    flat = sorted(c for g in groups.values() for c in g)
    if flat != list(range(data.num_classes)):
        raise ValueError(f"groups: expected every class 0..{data.num_classes - 1} in exactly one group, got {flat}")
    lut = torch.empty(data.num_classes, dtype=torch.int64)
    for gi, members in enumerate(groups.values()):
        lut[list(members)] = gi
    return replace(data, name=f"{data.name}/grouped", y_train=lut[data.y_train], y_test=lut[data.y_test],
                   num_classes=len(groups), classes=tuple(groups), fine_train=data.y_train, fine_test=data.y_test,
                   fine_classes=data.classes)


def _formats(name):
    def load(**kwargs):
        from . import formats

        return getattr(formats, name)(**kwargs)

    return load


def subset_train(data: ImageDataset, train_size: int, *, seed: int = 0, name: str | None = None) -> ImageDataset:
    """A fixed, seeded subset of ``train_size`` training samples (uniform, without replacement,
    kept in their original order); the test split is unchanged and the input statistics are
    recomputed on the subset. ``name`` defaults to ``"<name>-train<train_size>-seed<seed>"``."""
    from dataclasses import replace

    from .types import _stats

    n = len(data.y_train)
    if isinstance(train_size, bool) or not isinstance(train_size, (int, np.integer)) or not 1 <= train_size <= n:
        raise ValueError(f"train_size: expected an int in [1, {n}] (the training split's size), got {train_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    keep = torch.from_numpy(np.sort(np.random.default_rng(int(seed)).permutation(n)[:int(train_size)]))
    x = data.x_train[keep]
    mean, std = _stats(x)
    fine = data.fine_train[keep] if data.fine_train is not None else None
    return replace(data, name=name or f"{data.name}-train{int(train_size)}-seed{int(seed)}", x_train=x,
                   y_train=data.y_train[keep], mean=mean, std=std, fine_train=fine)


def load_fashion_mnist_10k(root: str | os.PathLike | None = None) -> ImageDataset:
    """The memorising regime: a fixed 10,000-sample subset (seed 0) of Fashion-MNIST's training
    split, the official test split. The small CNN (16, 32) trained 30 epochs fits it almost
    perfectly, so an original model is measurably far from a retrained one (issue 12)."""
    return subset_train(load_fashion_mnist(root), 10_000, seed=0, name="fashion-mnist-10k")


DATASETS = {"digits": load_digits, "fashion-mnist": load_fashion_mnist, "fashion-mnist-10k": load_fashion_mnist_10k,
            "cifar10": _formats("load_cifar10"), "cifar100": _formats("load_cifar100"),
            "svhn": _formats("load_svhn"), "faces": _formats("load_face_folder")}


def load_dataset(name: str, train_size: int | None = None, seed: int = 0, **kwargs) -> ImageDataset:
    """Loads a dataset by name: one of ``DATASETS``.

    Args:
        train_size: keep a fixed, seeded subset of this many training samples (``subset_train``);
            None keeps the whole training split. The test split is never subset.
        seed: the seed of that subset (ignored without ``train_size``).
        **kwargs: passed to the loader (e.g. ``root``).
    """
    if name not in DATASETS:
        raise ValueError(f"dataset: expected one of {sorted(DATASETS)}, got {name!r}")
    data = DATASETS[name](**kwargs)
    return data if train_size is None else subset_train(data, train_size, seed=seed)
