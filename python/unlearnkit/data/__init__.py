"""Datasets, splits and forget-set selection. Knows nothing of methods."""

from .backdoor import Trigger, poison
from .batches import Batch, BatchSource, LoaderSource, TensorSource, as_source, concat_sources
from .datasets import (
                       DATASETS,
                       FASHION_MNIST_SYSTEM_DIR,
                       GROUPINGS,
                       ImageDataset,
                       fashion_mnist_available,
                       group_classes,
                       load_dataset,
                       load_digits,
                       load_fashion_mnist,
)
from .forget import UnlearningSplit, make_split, select_class, select_random
from .formats import load_cifar10, load_cifar100, load_face_folder, load_svhn
from .idx import read_idx, write_idx
from .tensors import as_tensors, iterate_batches

__all__ = ["as_source", "as_tensors", "Batch", "BatchSource", "concat_sources", "DATASETS", "fashion_mnist_available",
           "FASHION_MNIST_SYSTEM_DIR", "group_classes", "GROUPINGS", "ImageDataset", "iterate_batches",
           "load_cifar10", "load_cifar100", "load_dataset", "load_digits", "load_face_folder",
           "load_fashion_mnist", "load_svhn", "LoaderSource", "make_split", "poison", "read_idx",
           "select_class", "select_random", "TensorSource", "Trigger", "UnlearningSplit", "write_idx"]
