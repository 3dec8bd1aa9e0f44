"""Layer: data. Turning datasets into tensors and tensors into minibatches, without a DataLoader.

For data that fits in memory, indexing tensors directly is several times faster than a
DataLoader on a CPU and keeps the data order a pure function of the generator's seed. Loops
read data through ``unlearnkit.data.batches`` (which uses these index batches on both its
in-memory and its streaming path); ``as_tensors`` materialises any dataset.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from .batches import as_source, check_pair, cycle_batches, iterate_batches

__all__ = ["as_tensors", "cycle_batches", "iterate_batches"]


def as_tensors(ds: Dataset | tuple, name: str = "dataset") -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (x, y) of a TensorDataset, a Subset of one, an (x, y) tuple, or any map-style dataset or
    DataLoader (items (x, y) or dicts with an image and a label key; read once, in memory)."""
    if isinstance(ds, tuple) and len(ds) == 2 and all(isinstance(t, torch.Tensor) for t in ds):
        x, y = ds
    elif isinstance(ds, TensorDataset):
        x, y = ds.tensors[0], ds.tensors[1]
    elif isinstance(ds, Subset) and isinstance(ds.dataset, TensorDataset):
        idx = torch.as_tensor(ds.indices, dtype=torch.int64)
        x, y = ds.dataset.tensors[0][idx], ds.dataset.tensors[1][idx]
    elif isinstance(ds, (Dataset, DataLoader)):
        # items (x, y, ...) or dicts, PIL images, a DataLoader's workers: the streaming source reads it once
        x, y = as_source(ds, name).tensors()
    else:
        raise TypeError(f"{name}: expected a torch Dataset or an (x, y) tuple of tensors, got {type(ds).__name__}")
    return check_pair(x, y, name)
