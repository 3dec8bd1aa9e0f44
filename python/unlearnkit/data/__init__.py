"""Datasets, splits and forget-set selection. Knows nothing of methods."""

from .backdoor import Trigger, poison
from .batches import Batch, BatchSource, LoaderSource, TensorSource, as_source, concat_sources
from .datasets import (DATASETS, FASHION_MNIST_SYSTEM_DIR, GROUPINGS, ImageDataset, fashion_mnist_available,
                       group_classes, load_dataset, load_digits, load_fashion_mnist)
from .formats import load_cifar10, load_cifar100, load_face_folder, load_svhn
from .forget import UnlearningSplit, make_split, select_class, select_random
from .idx import read_idx, write_idx
from .tensors import as_tensors, iterate_batches

__all__ = ["Batch", "BatchSource", "LoaderSource", "TensorSource", "as_source", "concat_sources", "DATASETS", "FASHION_MNIST_SYSTEM_DIR", "GROUPINGS", "ImageDataset", "Trigger",
           "group_classes", "load_cifar10", "load_cifar100", "load_face_folder", "load_svhn", "poison", "UnlearningSplit", "as_tensors",
           "fashion_mnist_available", "iterate_batches", "load_dataset", "load_digits",
           "load_fashion_mnist", "make_split", "read_idx", "select_class", "select_random", "write_idx"]
