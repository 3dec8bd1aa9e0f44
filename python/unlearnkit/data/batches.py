"""Layer: data. One batch-source interface over in-memory tensors and streaming datasets.

Every training, unlearning and evaluation loop reads its data through a :class:`BatchSource`:

* :class:`TensorSource`, the fast path: (x, y) tensors in memory, batches gathered by indexing
  (several times faster than a DataLoader on a CPU for small data); on CUDA the tensors are moved
  to the device once when they fit in ``device_cache_bytes``, else each batch is gathered into
  pinned memory and copied without blocking.
* :class:`LoaderSource`, the streaming path: any map-style ``Dataset`` (items ``(x, y)``, or dicts
  with an image and a label key), read by a ``DataLoader`` with workers, pinned memory and
  non-blocking copies; the dataset's own transforms (augmentation) run per item, in the workers.

Invariants. The order of the batches is a function of the ``torch.Generator`` passed in and
nothing else: both paths draw one ``torch.randperm(n, generator=...)`` per pass, at the first
batch of the pass, exactly as :func:`unlearnkit.data.tensors.iterate_batches` (so a loop that also
draws from the generator between batches sees the same stream on either path), and a batch's
``idx`` are the positions of its samples in the source. On the same data without augmentation
both paths yield bit-identical batches. Inputs come out as float32 ((N, C, H, W) images in [0, 1]
for the built-in models: uint8 images and PIL images are scaled by 1/255), labels as int64.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from typing import NamedTuple, cast

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, IterableDataset, Subset, TensorDataset
from torch.utils.data.dataloader import default_collate

__all__ = ["Batch", "BatchSource", "LoaderSource", "TensorSource", "as_source", "check_subset_indices", "concat_sources",
           "cycle_batches", "iterate_batches",
           "IMAGE_KEYS", "LABEL_KEYS"]

#: dict keys tried, in order, for the input and the label of a dict item
IMAGE_KEYS = ("image", "img", "pixel_values", "x", "input", "inputs", "data")
LABEL_KEYS = ("label", "labels", "y", "target", "targets", "class", "fine_label")

Transform = Callable[[torch.Tensor], torch.Tensor]


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


class Batch(NamedTuple):
    """idx: (b,) int64 CPU positions in the source; x: inputs on the device; y: (b,) int64 labels on the device."""

    idx: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor


def _as_input(v) -> torch.Tensor:
    """One item's input as a float tensor: PIL images -> (C, H, W) in [0, 1]; uint8 tensors / arrays / 1/255."""
    if isinstance(v, torch.Tensor):
        t = v
    elif isinstance(v, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(v))
    elif hasattr(v, "mode") and hasattr(v, "size") and hasattr(v, "getbands"):  # a PIL image, without importing PIL
        a = np.asarray(v)
        a = a[:, :, None] if a.ndim == 2 else a
        t = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))
    else:
        raise TypeError(f"dataset: expected item inputs as tensors, arrays or PIL images, got {type(v).__name__}")
    if t.dtype == torch.uint8:
        return t.float().div_(255.0)
    return t.float() if t.dtype != torch.float32 else t


def _split_item(item, keys: tuple[str, str] | None):
    """(input, label) of one dataset item: a tuple/list (x, y, ...) or a dict."""
    if isinstance(item, dict):
        if keys is not None:
            kx, ky = keys
            if kx not in item or ky not in item:
                raise ValueError(f"keys: expected {keys} among the item's keys, got {sorted(item)}")
            return item[kx], item[ky]
        found_x = next((k for k in IMAGE_KEYS if k in item), None)
        found_y = next((k for k in LABEL_KEYS if k in item), None)
        if found_x is None or found_y is None:
            raise ValueError(f"dataset: expected dict items with an input key (one of {IMAGE_KEYS}) and a label key "
                             f"(one of {LABEL_KEYS}), got keys {sorted(item)}; pass keys=(input_key, label_key)")
        return item[found_x], item[found_y]
    if isinstance(item, (tuple, list)) and len(item) >= 2:
        return item[0], item[1]
    raise ValueError(f"dataset: expected items (x, y) or dicts, got {type(item).__name__}")


def _as_label(v) -> int:
    if isinstance(v, (torch.Tensor, np.ndarray)):
        if v.size == 1 if isinstance(v, np.ndarray) else v.numel() == 1:
            v = v.item()
        else:
            raise ValueError(f"dataset: expected one integer label per item, got an array of shape {tuple(v.shape)}")
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) and not (isinstance(v, float) and v.is_integer()):
        raise TypeError(f"dataset: expected integer labels, got {v!r}")
    return int(v)


class _Items(Dataset):
    """A dataset whose items are (float input tensor, int label): parsing runs in the loader's workers."""

    def __init__(self, dataset, keys):
        self.dataset, self.keys = dataset, keys

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        x, y = _split_item(self.dataset[i], self.keys)
        return _as_input(x), _as_label(y)


def _collate_items(items):
    xs, ys = zip(*items)
    return torch.stack(xs), torch.tensor(ys, dtype=torch.int64)


class _BatchList:
    """A batch sampler replaying a list of index batches (set before each pass)."""

    def __init__(self):
        self.batches: list[list[int]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


class BatchSource(ABC):
    """Seeded minibatches of (x, y) on a device. See the module docstring for the invariants.

    Args (of the subclasses):
        transform: optional callable applied to each batch's inputs *on the device* (e.g. a GPU
            augmentation); None on the evaluation paths you want deterministic.
        memory_format: ``torch.channels_last`` to hand 4-D batches in that layout (CUDA conv nets).
    """

    name: str
    transform: Transform | None
    memory_format: torch.memory_format | None

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def _fetch(self, index_batches: Iterable[torch.Tensor], device: torch.device) -> Iterator[tuple]:
        """(x, y) CPU or device tensors for each index batch, in order; iterates ``index_batches`` lazily
        (TensorSource) or all at once at the first batch (LoaderSource)."""

    @abstractmethod
    def labels(self) -> torch.Tensor | None:
        """(n,) int64 labels when known without reading the inputs, else None."""

    @abstractmethod
    def subset(self, idx) -> BatchSource:
        """The samples at positions ``idx`` (in that order)."""

    @abstractmethod
    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) on the CPU, materialised (a streaming source reads itself once and caches the result)."""

    def _finish(self, idx, x, y, device) -> Batch:
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        if self.memory_format is not None and x.dim() == 4:
            x = x.contiguous(memory_format=self.memory_format)
        if self.transform is not None:
            x = self.transform(x)
        return Batch(idx, x, y)

    def batches(self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None,
                device: torch.device | str = "cpu", drop_last: bool = False) -> Iterator[Batch]:
        """One pass in minibatches; the permutation (when ``shuffle``) is drawn at the first batch."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
        device = torch.device(device)
        order = iterate_batches(len(self), batch_size, shuffle=shuffle, generator=generator, drop_last=drop_last)
        idxs: list[torch.Tensor] = []

        def record():
            for idx in order:
                idxs.append(idx)
                yield idx

        for k, (x, y) in enumerate(self._fetch(record(), device)):
            yield self._finish(idxs[k], x, y, device)

    def cycle(self, batch_size: int, *, generator: torch.Generator, device: torch.device | str = "cpu"
              ) -> Iterator[Batch]:
        """Endless shuffled minibatches, a new permutation every pass (``cycle_batches``' order)."""
        while True:
            yield from self.batches(batch_size, shuffle=True, generator=generator, device=device)

    def take(self, idx, device: torch.device | str = "cpu") -> Batch:
        """The samples at positions ``idx`` as one batch (read in this process, no workers)."""
        idx = torch.as_tensor(idx, dtype=torch.int64)
        x, y = self.subset(idx).tensors()
        return self._finish(idx, x, y, torch.device(device))

    def all_labels(self, batch_size: int = 1024) -> torch.Tensor:
        """(n,) int64 CPU labels in position order: ``labels()`` when known without reading the
        inputs, else read in one in-order pass of minibatches (never the whole set at once)."""
        lab = self.labels()
        if lab is not None:
            return lab
        return torch.cat([b.y.cpu() for b in self.batches(batch_size, shuffle=False)])

    def num_classes_hint(self) -> int | None:
        lab = self.labels()
        return int(lab.max()) + 1 if lab is not None and len(lab) else None



def check_pair(x: torch.Tensor, y: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) of one dataset held as tensors: as many labels as inputs, at least one sample, integer
    labels (returned as int64), finite inputs. Shared by ``TensorSource`` and ``as_tensors``."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{name}: expected as many labels as inputs, got {x.shape[0]} inputs and {y.shape[0]} labels")
    if x.shape[0] == 0:
        raise ValueError(f"{name}: expected a non-empty dataset, got 0 samples")
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise TypeError(f"{name}: expected integer labels, got dtype {y.dtype}")
    if x.is_floating_point() and not torch.isfinite(x).all():
        raise ValueError(f"{name}: expected finite inputs, got NaN or Inf")
    return x, y.long()

class TensorSource(BatchSource):
    """In-memory (x, y): the fast path. ``x``: (n, ...) float inputs; ``y``: (n,) integer labels.

    ``device_cache_bytes``: on CUDA, inputs up to this size are copied to the device once and
    indexed there (default 2 GiB); larger ones are gathered on the CPU, pinned and copied per batch.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor | None, *, name: str = "dataset", transform: Transform | None = None,
                 memory_format: torch.memory_format | None = None, device_cache_bytes: int = 2 << 30):
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise TypeError(f"{name}: expected x and y tensors, got {type(x).__name__} and {type(y).__name__}")
        if x.dim() == 0 or y.dim() != 1:
            raise ValueError(f"{name}: expected x (n, ...) and y (n,), got shapes {tuple(x.shape)} and {tuple(y.shape)}")
        self.x, self.y = check_pair(x, y, name)
        self.name, self.transform, self.memory_format = name, transform, memory_format
        self.device_cache_bytes = device_cache_bytes
        self._on_device: dict = {}

    def __len__(self):
        return len(self.y)

    def _device_copy(self, device):
        if device.type != "cuda" or self.x.device.type == "cuda":
            return None
        if device not in self._on_device:
            fits = self.x.numel() * self.x.element_size() <= self.device_cache_bytes
            self._on_device[device] = (self.x.to(device), self.y.to(device)) if fits else None
        return self._on_device[device]

    def _fetch(self, index_batches, device):
        cached = self._device_copy(device)
        pin = device.type == "cuda" and cached is None and self.x.device.type == "cpu"
        for idx in index_batches:
            if cached is not None:
                i = idx.to(device)
                yield cached[0][i], cached[1][i]
            else:
                x, y = self.x[idx], self.y[idx]
                yield (x.pin_memory(), y.pin_memory()) if pin else (x, y)

    def labels(self):
        return self.y

    def subset(self, idx):
        idx = torch.as_tensor(idx, dtype=torch.int64)
        return TensorSource(self.x[idx], self.y[idx], name=self.name, transform=self.transform,
                            memory_format=self.memory_format, device_cache_bytes=self.device_cache_bytes)

    def tensors(self):
        return self.x, self.y


_LOADER_SETTINGS = ("num_workers", "pin_memory", "worker_init_fn", "multiprocessing_context", "prefetch_factor",
                    "persistent_workers", "timeout")


class LoaderSource(BatchSource):
    """A map-style dataset streamed through a ``DataLoader``: the loader path.

    Args:
        dataset: items ``(x, y, ...)`` or dicts (``keys`` names their input and label keys; by default
            the first of ``IMAGE_KEYS`` / ``LABEL_KEYS`` present). Inputs: tensors, arrays or PIL images.
        keys: (input key, label key) for dict items.
        num_workers: loader worker processes (0: read in this process).
        pin_memory: pin batches before the copy to the device (default: when the device is CUDA).
        collate_fn: the user's collate function (its output must be (x, y) or a dict); default: ours.
        loader_kwargs: further ``DataLoader`` settings (``worker_init_fn``, ``prefetch_factor``, ...).
        transform, memory_format: see :class:`BatchSource`.
    """

    def __init__(self, dataset, *, keys: tuple[str, str] | None = None, num_workers: int = 0,
                 pin_memory: bool | None = None, collate_fn=None, name: str = "dataset",
                 transform: Transform | None = None, memory_format: torch.memory_format | None = None,
                 **loader_kwargs):
        if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError(f"{name}: expected a map-style Dataset (with __len__ and __getitem__; an IterableDataset "
                            f"has no positions to draw a seeded order from), got {type(dataset).__name__}")
        if len(dataset) == 0:
            raise ValueError(f"{name}: expected a non-empty dataset, got 0 samples")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers: expected a non-negative integer, got {num_workers!r}")
        if keys is not None and (not isinstance(keys, (tuple, list)) or len(keys) != 2):
            raise ValueError(f"keys: expected (input_key, label_key), got {keys!r}")
        self.dataset = dataset
        self.keys: tuple[str, str] | None = (keys[0], keys[1]) if keys is not None else None
        self.num_workers, self.pin_memory, self.collate_fn = num_workers, pin_memory, collate_fn
        self.loader_kwargs = {k: v for k, v in loader_kwargs.items() if v is not None}
        self.name, self.transform, self.memory_format = name, transform, memory_format
        self._loaders: dict = {}
        self._live = False
        self._tensors: tuple | None = None
        x0, _ = self._parse_batch(self._collate([self._raw(0)]))  # fail now, not mid-run, on a bad item
        self.item_shape = tuple(x0.shape[1:])

    @classmethod
    def from_loader(cls, loader: DataLoader, *, name: str = "dataset", keys=None, **kw) -> LoaderSource:
        """A source with ``loader``'s dataset and worker settings; its batch size and sampler are
        replaced by the method's (the seeded order)."""
        settings = {k: getattr(loader, k) for k in _LOADER_SETTINGS if hasattr(loader, k)}
        if not settings.get("num_workers"):
            for k in ("prefetch_factor", "persistent_workers", "worker_init_fn", "multiprocessing_context"):
                settings.pop(k, None)
        collate = loader.collate_fn if loader.collate_fn is not default_collate else None
        return cls(loader.dataset, name=name, keys=keys, collate_fn=collate, **{**settings, **kw})

    def __len__(self):
        return len(self.dataset)

    def _raw(self, i):
        return self.dataset[i] if self.collate_fn is not None else _Items(self.dataset, self.keys)[i]

    def _collate(self, items):
        return self.collate_fn(items) if self.collate_fn is not None else _collate_items(items)

    def _parse_batch(self, batch):
        if self.collate_fn is None:
            return batch
        x, y = _split_item(batch, self.keys)
        x = _as_input(x)
        y = torch.as_tensor(y)
        if y.dim() != 1 or y.is_floating_point():
            raise ValueError(f"collate_fn: expected (b,) integer labels from the user's collate, got {y.dtype} "
                             f"of shape {tuple(y.shape)}")
        return x, y.long()

    def _fetch(self, index_batches, device):
        batches = [idx.tolist() for idx in index_batches]  # draws the pass's permutation now
        pin = self.pin_memory if self.pin_memory is not None else device.type == "cuda"
        pin = bool(pin) and torch.cuda.is_available()
        if self._live:  # a second pass while one is still live (two cycles of one source): its own loader
            loader, sampler = self._new_loader(pin, persistent=False)
        else:
            key = pin
            if key not in self._loaders:
                self._loaders[key] = self._new_loader(pin, persistent=True)
            loader, sampler = self._loaders[key]
        sampler.batches = batches
        # the workers' base seed comes from this pass's order, not from torch's global RNG (which
        # a DataLoader draws from by default): a streamed pass leaves that RNG as the tensor path does
        loader.generator.manual_seed(hash(tuple(batches[0])) & 0x7FFF_FFFF_FFFF_FFFF if batches else 0)
        owner = not self._live
        self._live = True
        try:
            for batch in loader:
                yield self._parse_batch(batch)
        finally:
            if owner:
                self._live = False

    def _new_loader(self, pin: bool, persistent: bool):
        sampler = _BatchList()
        ds = self.dataset if self.collate_fn is not None else _Items(self.dataset, self.keys)
        kw = dict(self.loader_kwargs)
        if self.num_workers > 0:
            kw.setdefault("persistent_workers", persistent)
        else:
            kw = {k: v for k, v in kw.items() if k == "timeout"}
        kw["generator"] = torch.Generator()  # seeded per pass in _fetch
        loader = DataLoader(ds, batch_sampler=sampler, num_workers=self.num_workers, pin_memory=pin,
                            collate_fn=self._collate, **kw)
        return loader, sampler

    def take(self, idx, device: torch.device | str = "cpu") -> Batch:
        idx = torch.as_tensor(idx, dtype=torch.int64)
        x, y = self._parse_batch(self._collate([self._raw(int(i)) for i in idx]))
        return self._finish(idx, x, y, torch.device(device))

    def labels(self):
        ds, idx = self.dataset, None
        while isinstance(ds, Subset):
            idx = torch.as_tensor(ds.indices, dtype=torch.int64) if idx is None else \
                torch.as_tensor(ds.indices, dtype=torch.int64)[idx]
            ds = ds.dataset
        targets = getattr(ds, "targets", None)
        if targets is None and isinstance(ds, TensorDataset) and len(ds.tensors) >= 2:
            targets = ds.tensors[1]
        if targets is None:
            return None
        t = torch.as_tensor(np.asarray(targets)) if not isinstance(targets, torch.Tensor) else targets
        if t.dim() != 1 or t.is_floating_point():
            return None
        return (t if idx is None else t[idx]).long()

    def _derived(self, dataset):
        return LoaderSource(dataset, keys=self.keys, num_workers=self.num_workers, pin_memory=self.pin_memory,
                            collate_fn=self.collate_fn, name=self.name, transform=self.transform,
                            memory_format=self.memory_format, **self.loader_kwargs)

    def subset(self, idx):
        idx = torch.as_tensor(idx, dtype=torch.int64)
        return self._derived(Subset(self.dataset, idx.tolist()))

    def tensors(self):
        if self._tensors is None:
            order = iterate_batches(len(self), 256, shuffle=False)
            parts = list(self._fetch(order, torch.device("cpu")))  # no device transform baked in
            self._tensors = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        return self._tensors


def _to_dataset(src: BatchSource):
    if isinstance(src, LoaderSource):
        return src.dataset if src.collate_fn is None else None
    x, y = src.tensors()
    return TensorDataset(x, y)


def concat_sources(sources: Sequence[BatchSource], *, name: str = "dataset") -> BatchSource:
    """The samples of ``sources`` one after the other (positions: the first's, then the second's...).
    All in memory: a TensorSource of the concatenated tensors; otherwise a LoaderSource with the
    first streaming source's loader settings."""
    in_memory = [s for s in sources if isinstance(s, TensorSource)]
    if len(in_memory) == len(sources):
        first = in_memory[0]
        return TensorSource(torch.cat([s.x for s in in_memory]), torch.cat([s.y for s in in_memory]), name=name,
                            transform=first.transform, memory_format=first.memory_format,
                            device_cache_bytes=first.device_cache_bytes)
    datasets = [_to_dataset(s) for s in sources]
    if any(d is None for d in datasets):
        raise ValueError(f"{name}: cannot concatenate sources read through a custom collate_fn; pass datasets instead")
    lead = next(s for s in sources if isinstance(s, LoaderSource))
    # every part parsed to (x, y) items so that dict items and tuple items can mix
    parts = [d if isinstance(d, TensorDataset) else _Items(d, s.keys if isinstance(s, LoaderSource) else None)
             for d, s in zip(datasets, sources)]
    return LoaderSource(ConcatDataset(parts), num_workers=lead.num_workers, pin_memory=lead.pin_memory, name=name,
                        transform=lead.transform, memory_format=lead.memory_format, **lead.loader_kwargs)


def as_source(data, name: str = "dataset", *, keys: tuple[str, str] | None = None,
              transform: Transform | None = None, num_workers: int | None = None) -> BatchSource:
    """The batch source for what a user passes as data.

    * a ``BatchSource``: itself;
    * ``(x, y)`` tensors, a ``TensorDataset``, a ``Subset`` of one, or a ``DataLoader`` over one of
      those with the default collate: a :class:`TensorSource` (fast path);
    * any other map-style ``Dataset``: a :class:`LoaderSource` (``num_workers`` workers, default 0);
    * a ``DataLoader``: a :class:`LoaderSource` with its dataset, workers, pinning and collate
      (its batch size and sampler are replaced by the method's seeded order).
    """
    if isinstance(data, BatchSource):
        return data
    if isinstance(data, DataLoader):
        inner = data.dataset
        if data.collate_fn is default_collate and _tensor_backed(inner):
            return as_source(inner, name, transform=transform)
        if isinstance(inner, IterableDataset):
            raise TypeError(f"{name}: expected a DataLoader over a map-style Dataset (a seeded order needs positions), "
                            f"got one over {type(inner).__name__}")
        if isinstance(inner, Subset):
            check_subset_indices(inner, name)
        kw = {} if num_workers is None else {"num_workers": num_workers}
        return LoaderSource.from_loader(data, name=name, keys=keys, transform=transform, **kw)
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        return TensorSource(data[0], data[1], name=name, transform=transform)
    if isinstance(data, TensorDataset):
        if len(data.tensors) < 2:
            raise ValueError(f"{name}: expected a TensorDataset of (x, y), got {len(data.tensors)} tensor(s)")
        return TensorSource(data.tensors[0], data.tensors[1], name=name, transform=transform)
    if isinstance(data, Subset):
        check_subset_indices(data, name)
    if isinstance(data, Subset) and isinstance(data.dataset, TensorDataset):
        idx = torch.as_tensor(data.indices, dtype=torch.int64)
        t = data.dataset.tensors
        return TensorSource(t[0][idx], t[1][idx], name=name, transform=transform)
    if isinstance(data, Dataset) or (hasattr(data, "__getitem__") and hasattr(data, "__len__")
                                     and not isinstance(data, (tuple, list, str, dict, torch.Tensor))):
        return LoaderSource(data, keys=keys, num_workers=num_workers or 0, name=name, transform=transform)
    raise TypeError(f"{name}: expected a torch Dataset, a DataLoader, a BatchSource or an (x, y) tuple of tensors, "
                    f"got {type(data).__name__}")


def check_subset_indices(data: Subset, name: str) -> None:
    """Every level of a (possibly nested) ``Subset``: integer indices in [0, len(its dataset)).
    Checked when a source is made, so that a bad index is named before any work instead of
    surfacing as a raw IndexError from the first batch that reaches it. O(n), reads no item."""
    level: Dataset = data
    while isinstance(level, Subset):
        idx = np.asarray(level.indices.cpu() if isinstance(level.indices, torch.Tensor) else level.indices)
        n = len(cast(Sized, level.dataset))  # torch's Dataset declares no __len__; one without raises TypeError here
        if idx.size and idx.dtype.kind not in "iu":
            raise TypeError(f"{name}: expected integer Subset indices, got dtype {idx.dtype}")
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            bad = idx[(idx < 0) | (idx >= n)]
            raise ValueError(f"{name}: expected Subset indices in [0, {n}) (the length of the dataset it draws "
                             f"from), got {bad.size} out of range, e.g. {int(bad[0])} (indices from {int(idx.min())} "
                             f"to {int(idx.max())})")
        level = level.dataset


def _tensor_backed(ds) -> bool:
    return isinstance(ds, TensorDataset) or (isinstance(ds, Subset) and isinstance(ds.dataset, TensorDataset))
