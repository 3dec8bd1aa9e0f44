"""Turning datasets into tensors and tensors into minibatches, without a DataLoader.

The datasets here fit in memory; indexing tensors directly is several times faster than a
DataLoader on a CPU and keeps the data order a pure function of the generator's seed.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Dataset, Subset, TensorDataset


def as_tensors(ds: Dataset | tuple, name: str = "dataset") -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (x, y) of a TensorDataset, a Subset of one, an (x, y) tuple, or any map-style dataset."""
    if isinstance(ds, tuple) and len(ds) == 2 and all(isinstance(t, torch.Tensor) for t in ds):
        x, y = ds
    elif isinstance(ds, TensorDataset):
        x, y = ds.tensors[0], ds.tensors[1]
    elif isinstance(ds, Subset) and isinstance(ds.dataset, TensorDataset):
        idx = torch.as_tensor(ds.indices, dtype=torch.int64)
        x, y = ds.dataset.tensors[0][idx], ds.dataset.tensors[1][idx]
    elif isinstance(ds, Dataset):
        items = [ds[i] for i in range(len(ds))]  # type: ignore[arg-type]
        if not items:
            raise ValueError(f"{name}: expected a non-empty dataset, got 0 samples")
        x = torch.stack([torch.as_tensor(i[0]) for i in items])
        y = torch.as_tensor([int(i[1]) for i in items])
    else:
        raise TypeError(f"{name}: expected a torch Dataset or an (x, y) tuple of tensors, got {type(ds).__name__}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{name}: expected as many labels as inputs, got {x.shape[0]} inputs and {y.shape[0]} labels")
    if x.shape[0] == 0:
        raise ValueError(f"{name}: expected a non-empty dataset, got 0 samples")
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise TypeError(f"{name}: expected integer labels, got dtype {y.dtype}")
    if x.is_floating_point() and not torch.isfinite(x).all():
        raise ValueError(f"{name}: expected finite inputs, got NaN or Inf")
    return x, y.long()


def iterate_batches(n: int, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None,
                    drop_last: bool = False) -> Iterator[torch.Tensor]:
    """Yields index tensors of minibatches over range(n)."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - (n % batch_size) if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]


def cycle_batches(n: int, batch_size: int, *, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless shuffled minibatches (a new permutation every pass)."""
    while True:
        yield from iterate_batches(n, batch_size, shuffle=True, generator=generator)
