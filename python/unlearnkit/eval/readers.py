"""Feature banks on disk (or in memory), read in row chunks.

A *bank* is one set's features (n, d) and integer labels (n,). Formats, chosen by suffix:

- ``.npy`` (memory-mapped window by window): the features; labels in a sibling file
  ``<stem>.<labels_key>.npy`` or ``<stem>_<labels_key>.npy`` (e.g. ``forget.npy`` +
  ``forget.labels.npy``). A *directory* holding ``<features_key>.npy`` and ``<labels_key>.npy``
  works too.
- ``.npz``: arrays named ``features_key`` and ``labels_key``. Members stored uncompressed
  (``np.savez``) are memory-mapped inside the zip; compressed ones (``np.savez_compressed``)
  are decompressed as a forward stream (fine for one pass, slow to shard).
- ``.safetensors``: tensors named ``features_key`` (F16, BF16, F32, F64) and ``labels_key``
  (any integer type), memory-mapped from the documented layout (8-byte header length, JSON
  header, raw little-endian data).
- ``.parquet`` / ``.pq``: a ``features_key`` column of fixed-size (or equal-length) lists of
  floats and a ``labels_key`` integer column; read batch by batch. One file may hold every set
  when it has a ``split_key`` column whose values are ``"forget"``, ``"retain"``, ``"test"``.
- in memory (Python API): a ``(features, labels)`` pair of numpy arrays or torch tensors.

Features are upcast per chunk: float16 and bfloat16 (and float32) to float32, float64 stays
float64 (see :attr:`Bank.compute_dtype`). A chunk is checked as it is read: a NaN or Inf row
raises ``ValueError`` naming the bank argument, the file and the row.

Only a window of rows is mapped at a time and unmapped after it is copied, so resident memory
stays at about one chunk per bank being read, whatever the file size. Fortran-order (column-major)
``.npy`` arrays and stored ``.npz`` members are read too: a window of rows is then ``d`` strided
pieces, one per column, gathered into a C-ordered chunk (slower than C order, same numbers);
compressed ``.npz`` members must be C-ordered (they can only be streamed forward).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import mmap
import os
import pathlib
import struct
import zipfile
from collections.abc import Iterator
from typing import IO, Any, Literal

import numpy as np

__all__ = ["Bank", "BankSpec", "FORMATS", "Chunk", "RawChunk", "open_bank", "prefetch", "resolve_spec"]

FORMATS = ("npy", "npz", "safetensors", "parquet", "array")
_SUFFIX = {".npy": "npy", ".npz": "npz", ".safetensors": "safetensors", ".parquet": "parquet", ".pq": "parquet"}
_SAFETENSORS_DTYPES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64",
                       "I8": "int8", "I16": "int16", "I32": "int32", "I64": "int64", "U8": "uint8",
                       "U16": "uint16", "U32": "uint32", "U64": "uint64", "BOOL": "bool"}
_FLOAT_KINDS = ("float16", "bfloat16", "float32", "float64")


@dataclasses.dataclass(frozen=True)
class BankSpec:
    """A picklable description of one bank; :func:`open_bank` opens it (on any worker).

    name: the argument it came from (``"forget"``, ``"gold_retain"``...), used in every error.
    """

    name: str
    format: str
    path: str | None = None
    features_key: str = "features"
    labels_key: str = "labels"
    split_key: str = "split"
    split: str | None = None
    labels_path: str | None = None  # .npy: the resolved labels file
    arrays: tuple | None = dataclasses.field(default=None, compare=False, repr=False)  # in-memory (x, y)

    def describe(self) -> dict:
        d = {"format": self.format}
        if self.path is not None:
            d["path"] = self.path
        if self.labels_path is not None:
            d["labels_path"] = self.labels_path
        if self.split is not None:
            d["split"] = self.split
        return d


@dataclasses.dataclass
class Chunk:
    """Rows ``[offset, offset + len(y))`` of a bank: x (m, d) float32/float64, y (m,) int64."""

    offset: int
    x: np.ndarray
    y: np.ndarray


#: how a raw chunk's x is stored: uint16 bits of float16 / bfloat16, float32, float64
StoredKind = Literal["f16", "bf16", "f32", "f64"]


@dataclasses.dataclass
class RawChunk:
    """Rows ``[offset, offset + len(y))`` of a bank as stored: ``x`` (m, d) is uint16 (the bits
    of float16 / bfloat16, ``kind`` "f16" / "bf16"), float32 ("f32") or float64 ("f64");
    y (m,) int64. ``upcast(rows)`` gives (some of) the rows in the bank's compute dtype."""

    offset: int
    x: np.ndarray
    kind: StoredKind
    y: np.ndarray
    bank: Bank = dataclasses.field(repr=False)

    def upcast(self, rows=None) -> np.ndarray:
        x = self.x if rows is None else self.x[rows]
        if self.kind == "f16":
            return x.view(np.float16).astype(np.float32)
        if self.kind == "bf16":
            return (x.astype(np.uint32) << 16).view(np.float32)
        return np.array(x, copy=rows is None)


def prefetch(chunks: Iterator, depth: int = 1) -> Iterator:
    """Iterates ``chunks`` in a background thread, ``depth`` items ahead, so that reading (page
    faults, copies and decompression, which release the GIL) overlaps the engine's work on the
    previous chunk. Errors are raised here, in order."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def work():
        try:
            for item in chunks:
                while not stop.is_set():
                    try:
                        q.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((end, None))
        except BaseException as exc:  # handed to the consumer
            q.put((end, exc))

    t = threading.Thread(target=work, name="unlearnkit-eval-reader", daemon=True)
    t.start()
    try:
        while True:
            item, exc = q.get()
            if exc is not None:
                raise exc
            if item is end:
                return
            yield item
    finally:
        stop.set()
        while t.is_alive():
            with contextlib.suppress(queue.Empty):
                q.get_nowait()
            t.join(0.05)


def _exists(path: pathlib.Path, name: str, what: str = "file") -> None:
    if not path.exists():
        raise FileNotFoundError(f"{name}: no such {what}: {path}")


def resolve_spec(value: Any, name: str, *, features_key: str = "features", labels_key: str = "labels",
                 split_key: str = "split", split: str | None = None) -> BankSpec:
    """A path (str / PathLike), a ``(features, labels)`` pair of arrays, or a BankSpec -> BankSpec."""
    if isinstance(value, BankSpec):
        return value
    if isinstance(value, tuple) and len(value) == 2 and not isinstance(value[0], (str, os.PathLike)):
        return BankSpec(name=name, format="array", arrays=(value[0], value[1]))
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a path or a (features, labels) pair of arrays, got {type(value).__name__}")
    path = pathlib.Path(value).expanduser()
    _exists(path, name, "file or directory")
    if path.is_dir():
        feats, labels = path / f"{features_key}.npy", path / f"{labels_key}.npy"
        _exists(feats, name)
        if not labels.exists():
            raise ValueError(f"{name}: missing labels: expected {labels} beside {feats}")
        return BankSpec(name=name, format="npy", path=str(feats.resolve()), labels_path=str(labels.resolve()),
                        features_key=features_key, labels_key=labels_key, split_key=split_key, split=split)
    fmt = _SUFFIX.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{name}: unknown bank format {path.suffix!r} for {path}; expected one of "
                         f"{sorted(_SUFFIX)} (or a directory of .npy files)")
    if split is not None and fmt != "parquet":
        raise ValueError(f"{name}: a '{split_key}' column selects rows only in Parquet files, got {path}")
    labels_path = None
    if fmt == "npy":
        stem = path.name[: -len(path.suffix)]
        candidates = [path.with_name(f"{stem}.{labels_key}.npy"), path.with_name(f"{stem}_{labels_key}.npy")]
        found = [c for c in candidates if c.exists()]
        if not found:
            raise ValueError(f"{name}: missing labels: expected {candidates[0].name} or {candidates[1].name} "
                             f"beside {path}")
        labels_path = str(found[0].resolve())
    return BankSpec(name=name, format=fmt, path=str(path.resolve()), labels_path=labels_path,
                    features_key=features_key, labels_key=labels_key, split_key=split_key, split=split)


# ----------------------------------------------------------------------------------------------
# Raw row-major arrays inside a file, read window by window


class _RawArray:
    """An array of ``shape`` and ``dtype`` stored at byte ``offset`` of ``path``, in C order (or
    Fortran order when ``fortran``).

    ``rows(start, stop)`` reads just that window (C order: one ``readinto`` of its byte range),
    or maps the span from the window's first element in column 0 to its last in the last column
    (Fortran order, of which only the window's pages are touched), copies the rows out in C
    order and unmaps. bfloat16 is read as uint16 and
    widened to float32 by ``upcast``.
    """

    def __init__(self, path: str, offset: int, shape: tuple, dtype: str, name: str, what: str,
                 fortran: bool = False):
        self.path, self.offset, self.shape, self.dtype, self.name = path, offset, tuple(shape), dtype, name
        self.fortran = bool(fortran) and len(self.shape) == 2
        self.storage = np.dtype("<u2") if dtype == "bfloat16" else np.dtype(dtype)
        row = int(np.prod(self.shape[1:], dtype=np.int64)) if len(self.shape) > 1 else 1
        self.row_bytes = row * self.storage.itemsize
        need = offset + self.shape[0] * self.row_bytes
        size = os.path.getsize(path)
        if size < need:
            raise ValueError(f"{name}: truncated file {path}: the header of {what} says shape {self.shape} {dtype} "
                             f"({need - offset} bytes from byte {offset}), but the file has {size} bytes")

    def rows(self, start: int, stop: int) -> np.ndarray:
        stop = min(stop, self.shape[0])
        n = max(stop - start, 0)
        shape = (n, *self.shape[1:])
        if n == 0 or self.row_bytes == 0:
            return np.empty(shape, self.storage)
        if self.fortran:
            return self._fortran_rows(start, stop)
        # C order: the window is one byte range, read straight into the chunk (one copy from the
        # page cache, the GIL released, nothing mapped that would count as resident afterwards)
        begin = self.offset + start * self.row_bytes
        out = np.empty(shape, self.storage)
        buf = out.data.cast("B")
        with open(self.path, "rb", buffering=0) as fh:
            fh.seek(begin)
            got = 0
            while got < len(buf):
                k = fh.readinto(buf[got:])
                if not k:
                    raise ValueError(f"{self.name}: {self.path} ended inside rows {start}..{stop - 1} (truncated "
                                     f"while being read?)")
                got += k
        return out

    def _fortran_rows(self, start: int, stop: int) -> np.ndarray:
        n_all, d = self.shape
        item = self.storage.itemsize
        begin = self.offset + start * item  # row `start` of column 0
        end = self.offset + ((d - 1) * n_all + stop) * item  # one past row `stop - 1` of the last column
        aligned = begin - begin % mmap.ALLOCATIONGRANULARITY
        with open(self.path, "rb") as fh:
            mm = mmap.mmap(fh.fileno(), end - aligned, access=mmap.ACCESS_READ, offset=aligned)
        try:
            view = np.ndarray((stop - start, d), dtype=self.storage, buffer=mm, offset=begin - aligned,
                              strides=(item, n_all * item))
            out = np.ascontiguousarray(view)
            del view
        finally:
            mm.close()
        return out


class _ZipStream:
    """A compressed .npz member, decompressed forward; reopened when asked to go back."""

    def __init__(self, path: str, member: str, shape: tuple, dtype: np.dtype, name: str):
        self.path, self.member, self.shape, self.dtype, self.name = path, member, tuple(shape), dtype, name
        self.storage = dtype
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * dtype.itemsize if len(shape) > 1 \
            else dtype.itemsize
        self._zf: zipfile.ZipFile | None = None
        self._fh: IO[bytes] | None = None
        self._pos = 0

    def _open(self):
        self.close()
        self._zf = zf = zipfile.ZipFile(self.path)
        self._fh = zf.open(self.member)
        _npy_header(self._fh, self.name, self.path, self.member)
        self._pos = 0

    def close(self):
        if self._fh is not None:
            self._fh.close()
            if self._zf is not None:  # opened with _fh
                self._zf.close()
        self._fh = self._zf = None

    def _read_exact(self, nbytes: int) -> bytes:
        assert self._fh is not None, "rows() opens the member first"
        buf = self._fh.read(nbytes)
        if len(buf) != nbytes:
            raise ValueError(f"{self.name}: truncated member {self.member} in {self.path}: expected {nbytes} "
                             f"more bytes, got {len(buf)}")
        return buf

    def rows(self, start: int, stop: int) -> np.ndarray:
        stop = min(stop, self.shape[0])
        if self._fh is None or start < self._pos:
            self._open()
        while self._pos < start:  # skip forward in bounded pieces
            step = min(start - self._pos, max(1, (8 << 20) // max(self.row_bytes, 1)))
            self._read_exact(step * self.row_bytes)
            self._pos += step
        n = max(stop - start, 0)
        data = self._read_exact(n * self.row_bytes)
        self._pos = stop
        return np.frombuffer(data, dtype=self.dtype).reshape((n, *self.shape[1:])).copy()


def _npy_header(fh, name: str, path: str, what: str) -> tuple[tuple, bool, np.dtype, int]:
    """(shape, fortran_order, dtype, data offset) of the .npy stream at fh's position."""
    try:
        major, _minor = np.lib.format.read_magic(fh)
        if major == 1:
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise ValueError(f"{name}: {what} in {path} is not a valid .npy array ({exc})") from None
    return shape, fortran, dtype, fh.tell()


def _check_dtype_shape(shape, dtype, name: str, what: str, path: str, *, ndim: int, floats: bool):
    """``dtype``: a numpy dtype or the name of one of ``_SAFETENSORS_DTYPES`` (``"bfloat16"``)."""
    if len(shape) != ndim:
        want = "a 2-D array (rows, features)" if ndim == 2 else "a 1-D array of labels"
        raise ValueError(f"{name}: expected {what} in {path} to be {want}, got shape {tuple(shape)}")
    label = dtype if isinstance(dtype, str) else np.dtype(dtype).name
    kind = "f" if label == "bfloat16" else np.dtype(dtype).kind
    if floats and label not in _FLOAT_KINDS:
        raise TypeError(f"{name}: expected {what} in {path} to hold float16, bfloat16, float32 or float64, "
                        f"got {_dtype_words(dtype)}")
    if not floats and kind not in "iub":
        hint = " (map them to integers first, e.g. with np.unique(labels, return_inverse=True))" \
            if kind in "USO" else ""
        raise TypeError(f"{name}: expected {what} in {path} to hold integer labels, got {_dtype_words(dtype)}{hint}")


def _dtype_words(dtype) -> str:
    if isinstance(dtype, str):
        return dtype
    dt = np.dtype(dtype)
    return {"U": f"strings ({dt.str})", "S": f"bytes ({dt.str})", "O": "Python objects"}.get(dt.kind, dt.name)


def _npy_array(path: str, name: str, what: str, *, ndim: int, floats: bool, base: int = 0, fh=None) -> _RawArray:
    own = fh is None
    fh = open(path, "rb") if own else fh  # noqa: SIM115 - closed in the finally below when owned
    try:
        if not own:
            fh.seek(base)
        shape, fortran, dtype, offset = _npy_header(fh, name, path, what)
    finally:
        if own:
            fh.close()
    _check_dtype_shape(shape, dtype, name, what, path, ndim=ndim, floats=floats)
    if dtype.byteorder == ">":
        raise TypeError(f"{name}: expected little-endian {what} in {path}, got big-endian {dtype}")
    return _RawArray(path, offset, shape, dtype.name, name, what, fortran=fortran)


# ----------------------------------------------------------------------------------------------
# Banks


class Bank:
    """An opened bank: ``n_rows``, ``dim``, ``source_dtype``, ``compute_dtype`` and
    ``chunks(start, stop, chunk_rows)`` yielding validated :class:`Chunk` objects."""

    spec: BankSpec
    n_rows: int
    dim: int
    source_dtype: np.dtype | str  # a numpy dtype, or the name of one ("bfloat16": no numpy dtype)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def compute_dtype(self) -> np.dtype:
        return np.dtype(np.float64) if self.source_dtype == "float64" else np.dtype(np.float32)

    @property
    def source_itemsize(self) -> int:
        return 2 if self.source_dtype == "bfloat16" else np.dtype(self.source_dtype).itemsize

    def describe(self) -> dict:
        return {**self.spec.describe(), "rows": self.n_rows, "dim": self.dim, "dtype": self.source_dtype}

    def _read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:  # raw storage, labels
        raise NotImplementedError

    def _upcast(self, raw: np.ndarray) -> np.ndarray:
        if self.source_dtype == "bfloat16":
            return (raw.astype(np.uint32) << 16).view(np.float32)
        return raw.astype(self.compute_dtype, copy=False)

    def _stored(self, raw: np.ndarray) -> tuple[np.ndarray, StoredKind]:
        """(array the engine reads, its kind): float16 and bfloat16 as their uint16 bits."""
        raw = np.ascontiguousarray(raw)
        if self.source_dtype == "bfloat16" and raw.dtype == np.uint16:
            return raw, "bf16"
        if raw.dtype == np.float16:
            return raw.view(np.uint16), "f16"
        if raw.dtype == np.float32 and self.compute_dtype == np.float32:
            return raw, "f32"
        if raw.dtype == np.float64 and self.compute_dtype == np.float64:
            return raw, "f64"
        raw = np.ascontiguousarray(raw, dtype=self.compute_dtype)
        return raw, "f64" if raw.dtype == np.float64 else "f32"

    def raw_chunks(self, start: int = 0, stop: int | None = None, chunk_rows: int = 65536) -> Iterator[RawChunk]:
        """Chunks as stored (not upcast, not checked for NaN/Inf: the engine does both); labels checked."""
        stop = self.n_rows if stop is None else min(stop, self.n_rows)
        for lo in range(start, stop, chunk_rows):
            hi = min(lo + chunk_rows, stop)
            raw, y = self._read(lo, hi)
            x, kind = self._stored(raw)
            del raw
            yield RawChunk(lo, x, kind, _labels(y, self.name, lo), self)

    def chunks(self, start: int = 0, stop: int | None = None, chunk_rows: int = 65536) -> Iterator[Chunk]:
        for c in self.raw_chunks(start, stop, chunk_rows):
            yield Chunk(c.offset, self._validate(c.upcast(), c.offset), c.y)

    def _validate(self, x: np.ndarray, offset: int) -> np.ndarray:
        finite = np.isfinite(x).all(axis=1)
        if not finite.all():
            raise self.nonfinite_error(x, offset, finite)
        return np.ascontiguousarray(x)

    def nonfinite_error(self, x: np.ndarray, offset: int, finite: np.ndarray | None = None) -> ValueError:
        """The error for the NaN/Inf rows of the upcast chunk ``x`` starting at row ``offset``."""
        finite = np.isfinite(x).all(axis=1) if finite is None else finite
        bad = np.flatnonzero(~finite)
        where = f" of {self.spec.path}" if self.spec.path else ""
        return ValueError(f"{self.name}: row {offset + int(bad[0])}{where} has NaN or Inf values "
                          f"({len(bad)} such row(s) in rows {offset}..{offset + len(x) - 1})")

    def close(self) -> None:
        pass

    def __reduce__(self):  # ship the description, reopen on the worker
        return (open_bank, (self.spec,))


def _labels(y: np.ndarray, name: str, offset: int) -> np.ndarray:
    if y.dtype.kind == "b":
        return y.astype(np.int64)
    if y.dtype.kind in "iu":
        return np.ascontiguousarray(y, dtype=np.int64)
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or not (y == np.round(y)).all():
            raise ValueError(f"{name}: labels near row {offset} are not finite integers")
        return y.astype(np.int64)
    raise TypeError(f"{name}: expected integer labels, got dtype {y.dtype}")


class _RawBank(Bank):
    """Features and labels as two raw (or streamed) arrays: .npy, .npz, safetensors."""

    def __init__(self, spec: BankSpec, feats, labels, source_dtype: np.dtype | str):
        self.spec, self._x, self._y, self.source_dtype = spec, feats, labels, source_dtype
        self.n_rows, self.dim = int(feats.shape[0]), int(feats.shape[1])
        if labels.shape[0] != self.n_rows:
            raise ValueError(f"{spec.name}: the labels have {labels.shape[0]} rows but the features have "
                             f"{self.n_rows} ({spec.path})")
        if self.dim == 0:
            raise ValueError(f"{spec.name}: expected at least one feature column, got shape {feats.shape}")

    def _read(self, start, stop):
        return self._x.rows(start, stop), self._y.rows(start, stop)

    def close(self):
        for a in (self._x, self._y):
            if isinstance(a, _ZipStream):
                a.close()


def _file(spec: BankSpec, labels: bool = False) -> str:
    """The file of a file-format bank (its ``path``, or ``labels_path`` of an .npy pair)."""
    path = spec.labels_path if labels else spec.path
    if path is None:
        raise TypeError(f"{spec.name}: expected a {'labels_path' if labels else 'path'} for a {spec.format} bank, got None")
    return path


def _open_npy(spec: BankSpec) -> Bank:
    x = _npy_array(_file(spec), spec.name, "the features", ndim=2, floats=True)
    y = _npy_array(_file(spec, labels=True), spec.name, "the labels", ndim=1, floats=False)
    return _RawBank(spec, x, y, x.dtype)


def _open_npz(spec: BankSpec) -> Bank:
    path = _file(spec)
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{spec.name}: {path} is not a valid .npz file ({exc})") from None
    with zf:
        names = {n[:-4]: n for n in zf.namelist() if n.endswith(".npy")}
        arrays: list[tuple[_RawArray | _ZipStream, np.dtype | str]] = []
        for key, what, ndim, floats in ((spec.features_key, "the features", 2, True),
                                        (spec.labels_key, "the labels", 1, False)):
            if key not in names:
                flag = "--features-key" if floats else "--labels-key"
                raise ValueError(f"{spec.name}: no array {key!r} in {path} (it has: {', '.join(sorted(names))}); "
                                 f"name {what.split()[-1]} with {flag}")
            info = zf.getinfo(names[key])
            if info.compress_type == zipfile.ZIP_STORED:
                with open(path, "rb") as fh:
                    fh.seek(info.header_offset)
                    local = fh.read(30)
                    if len(local) < 30 or local[:4] != b"PK\x03\x04":
                        raise ValueError(f"{spec.name}: {path} is a corrupt .npz (bad local header for {key})")
                    n_name, n_extra = struct.unpack("<HH", local[26:30])
                    base = info.header_offset + 30 + n_name + n_extra
                    arr = _npy_array(path, spec.name, f"{what} ({key!r})", ndim=ndim, floats=floats,
                                     base=base, fh=fh)
                if base + info.file_size > os.path.getsize(path):
                    raise ValueError(f"{spec.name}: truncated file {path}: member {key!r} runs past the end")
                arrays.append((arr, arr.dtype))
            else:
                try:
                    with zf.open(names[key]) as mh:
                        shape, fortran, dtype, _ = _npy_header(mh, spec.name, path, f"{what} ({key!r})")
                except (zipfile.BadZipFile, OSError, EOFError) as exc:
                    raise ValueError(f"{spec.name}: {path} is a corrupt .npz ({exc})") from None
                if fortran and len(shape) > 1:
                    raise ValueError(f"{spec.name}: expected {what} in {path} in C order (a compressed .npz "
                                     f"member can only be streamed forward), got Fortran order; save it with "
                                     f"np.savez (stored) or as np.ascontiguousarray(...)")
                _check_dtype_shape(shape, dtype, spec.name, what, path, ndim=ndim, floats=floats)
                arrays.append((_ZipStream(path, names[key], shape, dtype, spec.name), dtype.name))
    (x, xdt), (y, _) = arrays
    return _RawBank(spec, x, y, xdt)


def _safetensors_header(path: str, name: str) -> tuple[dict, int]:
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise ValueError(f"{name}: {path} is not a safetensors file (only {size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, 100 << 20):
            raise ValueError(f"{name}: {path} is not a valid safetensors file (header length {n}, file {size} bytes)")
        try:
            header = json.loads(fh.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{name}: {path} has a corrupt safetensors header ({exc})") from None
    return header, 8 + n


def _open_safetensors(spec: BankSpec) -> Bank:
    path = _file(spec)
    header, base = _safetensors_header(path, spec.name)
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    out = []
    for key, what, ndim, floats in ((spec.features_key, "the features", 2, True),
                                    (spec.labels_key, "the labels", 1, False)):
        if key not in tensors:
            flag = "--features-key" if floats else "--labels-key"
            raise ValueError(f"{spec.name}: no tensor {key!r} in {path} (it has: {', '.join(sorted(tensors))}); "
                             f"name {what.split()[-1]} with {flag}")
        t = tensors[key]
        dtype = _SAFETENSORS_DTYPES.get(t.get("dtype"))
        if dtype is None:
            raise TypeError(f"{spec.name}: tensor {key!r} in {path} has unsupported dtype {t.get('dtype')!r}")
        shape = tuple(t["shape"])
        _check_dtype_shape(shape, dtype, spec.name, f"{what} ({key!r})", path, ndim=ndim, floats=floats)
        begin, end = t["data_offsets"]
        arr = _RawArray(path, base + begin, shape, dtype, spec.name, f"tensor {key!r}")
        if end - begin != shape[0] * arr.row_bytes:
            raise ValueError(f"{spec.name}: tensor {key!r} in {path}: data_offsets span {end - begin} bytes, "
                             f"shape {shape} {dtype} needs {shape[0] * arr.row_bytes}")
        out.append(arr)
    return _RawBank(spec, out[0], out[1], out[0].dtype)


class _ArrayBank(Bank):
    def __init__(self, spec: BankSpec):
        from .._validation import to_numpy

        if spec.arrays is None:
            raise TypeError(f"{spec.name}: expected the (features, labels) arrays of an array bank, got None")
        x, y = spec.arrays
        self.spec = spec
        self._torch = False
        try:
            import torch

            self._torch = isinstance(x, torch.Tensor)
        except ImportError:  # pragma: no cover
            pass
        if self._torch:
            dt = str(x.dtype).removeprefix("torch.")
        else:
            x = to_numpy(x, spec.name)
            dt = x.dtype.name
        if len(x.shape) != 2:
            raise ValueError(f"{spec.name}: expected features of shape (rows, features), got shape {tuple(x.shape)}")
        if dt not in _FLOAT_KINDS:
            if self._torch or x.dtype.kind not in "iu":
                raise TypeError(f"{spec.name}: expected float features, got dtype {dt}")
            dt = "float64"
        y = to_numpy(y, f"{spec.name} labels")
        if y.ndim != 1:
            raise ValueError(f"{spec.name}: expected 1-D labels, got shape {y.shape}")
        if len(y) != x.shape[0]:
            raise ValueError(f"{spec.name}: the labels have {len(y)} rows but the features have {x.shape[0]}")
        if x.shape[1] == 0:
            raise ValueError(f"{spec.name}: expected at least one feature column, got shape {tuple(x.shape)}")
        self._x, self._yarr = x, y
        self.n_rows, self.dim, self.source_dtype = int(x.shape[0]), int(x.shape[1]), dt

    def _read(self, start, stop):
        x = self._x[start:stop]
        if self._torch:
            x = x.detach().cpu()
            x = x.double().numpy() if self.source_dtype == "float64" else x.float().numpy()
        return x, self._yarr[start:stop]

    def _upcast(self, raw):
        return np.asarray(raw, dtype=self.compute_dtype)

    def __reduce__(self):
        return (_ArrayBank, (self.spec,))


class _ParquetBank(Bank):
    """Parquet: features column of fixed-size (or equal-length) lists, labels column, optional
    ``split`` column selecting this set's rows. Row positions count only the selected rows."""

    def __init__(self, spec: BankSpec, starts: np.ndarray | None = None):
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:  # pragma: no cover
            raise ImportError("reading Parquet banks needs pyarrow: pip install 'unlearnkit[eval]'") from None
        self.spec = spec
        try:
            self._pf = pq.ParquetFile(spec.path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise ValueError(f"{spec.name}: {spec.path} is not a readable Parquet file ({exc})") from None
        schema = self._pf.schema_arrow
        cols = schema.names
        for key, flag in ((spec.features_key, "--features-key"), (spec.labels_key, "--labels-key")):
            if key not in cols:
                raise ValueError(f"{spec.name}: no column {key!r} in {spec.path} (it has: {', '.join(cols)}); "
                                 f"name it with {flag}")
        if spec.split is not None and spec.split_key not in cols:
            raise ValueError(f"{spec.name}: no column {spec.split_key!r} in {spec.path} to select the "
                             f"{spec.split!r} rows (it has: {', '.join(cols)})")
        ftype = schema.field(spec.features_key).type
        if not (pa.types.is_fixed_size_list(ftype) or pa.types.is_list(ftype) or pa.types.is_large_list(ftype)):
            raise TypeError(f"{spec.name}: column {spec.features_key!r} in {spec.path} must hold lists of floats, "
                            f"got {ftype}")
        vt = ftype.value_type
        names = {pa.float16(): "float16", pa.float32(): "float32", pa.float64(): "float64"}
        if vt not in names:
            raise TypeError(f"{spec.name}: column {spec.features_key!r} in {spec.path} must hold float16/32/64 "
                            f"values, got {vt}")
        self.source_dtype = names[vt]
        ltype = schema.field(spec.labels_key).type
        if not pa.types.is_integer(ltype):
            raise TypeError(f"{spec.name}: column {spec.labels_key!r} in {spec.path} must hold integers, got {ltype}")
        self._cols = [spec.features_key, spec.labels_key] + ([spec.split_key] if spec.split is not None else [])
        meta = self._pf.metadata
        # rows of this set in each row group (all rows, or the ones whose split matches)
        if starts is not None:  # reopened on a worker: the row counts travelled with the spec
            counts = np.diff(starts).tolist()
        elif spec.split is None:
            counts = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        else:
            counts = []
            for i in range(meta.num_row_groups):
                col = self._pf.read_row_group(i, columns=[spec.split_key]).column(0)
                counts.append(int(self._mask(col).sum()))
        self._starts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
        self.n_rows = int(self._starts[-1])
        if pa.types.is_fixed_size_list(ftype):
            self.dim = int(ftype.list_size)
        else:
            self.dim = self._first_length()
        if self.dim == 0:
            raise ValueError(f"{spec.name}: column {spec.features_key!r} in {spec.path} holds empty lists")

    def _mask(self, col) -> np.ndarray:
        import pyarrow as pa
        import pyarrow.compute as pc

        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            raise TypeError(f"{self.spec.name}: column {self.spec.split_key!r} in {self.spec.path} must hold strings "
                            f"('forget', 'retain', 'test'), got {col.type}")
        return np.asarray(pc.fill_null(pc.equal(col, self.spec.split), False))

    def _first_length(self) -> int:
        for batch in self._pf.iter_batches(batch_size=1024, columns=self._cols):
            col = batch.column(self.spec.features_key)
            if self.spec.split is not None:
                import pyarrow as pa
                col = col.filter(pa.array(self._mask(batch.column(self.spec.split_key))))
            if len(col):
                return len(col[0].values) if col[0].is_valid else 0
        return 0

    def _batches(self, start: int):
        """(set-row offset, features array, labels) pieces from the row group holding ``start``."""
        import pyarrow as pa

        group = int(np.searchsorted(self._starts, start, side="right") - 1)
        group = max(group, 0)
        pos = int(self._starts[group])
        for batch in self._pf.iter_batches(batch_size=65536, row_groups=range(group, len(self._starts) - 1),
                                           columns=self._cols, use_threads=False):
            feats, labels = batch.column(self.spec.features_key), batch.column(self.spec.labels_key)
            if self.spec.split is not None:
                keep = pa.array(self._mask(batch.column(self.spec.split_key)))
                feats, labels = feats.filter(keep), labels.filter(keep)
            yield pos, feats, labels
            pos += len(labels)

    def _convert(self, feats, labels, offset: int) -> tuple[np.ndarray, np.ndarray]:
        import pyarrow as pa

        if feats.null_count or labels.null_count:
            raise ValueError(f"{self.spec.name}: missing (null) features or labels near row {offset} of "
                             f"{self.spec.path}")
        n = len(feats)
        if pa.types.is_fixed_size_list(feats.type):
            values = feats.flatten()
        else:
            lengths = np.asarray(feats.value_lengths())
            if n and (lengths != self.dim).any():
                bad = int(np.flatnonzero(lengths != self.dim)[0])
                raise ValueError(f"{self.spec.name}: row {offset + bad} of {self.spec.path} has {lengths[bad]} "
                                 f"features, expected {self.dim}")
            values = feats.flatten()
        x = values.to_numpy(zero_copy_only=False).reshape(n, self.dim)
        y = labels.to_numpy(zero_copy_only=False)
        return x, y

    def raw_chunks(self, start: int = 0, stop: int | None = None, chunk_rows: int = 65536) -> Iterator[RawChunk]:
        stop = self.n_rows if stop is None else min(stop, self.n_rows)
        if start >= stop:
            return
        xs, ys, have, lo = [], [], 0, start
        for pos, feats, labels in self._batches(start):
            end = pos + len(labels)
            if end <= lo:
                continue
            a, b = max(lo, pos) - pos, min(end, stop) - pos
            x, y = self._convert(feats.slice(a, b - a), labels.slice(a, b - a), pos + a)
            xs.append(x)
            ys.append(y)
            have += len(y)
            while have >= chunk_rows or (pos + b >= stop and have):
                take = min(chunk_rows, have)
                cx, cy = np.concatenate(xs), np.concatenate(ys)
                out_x, out_y = cx[:take], cy[:take]
                xs, ys = ([cx[take:]], [cy[take:]]) if take < have else ([], [])
                have -= take
                x, kind = self._stored(out_x)
                yield RawChunk(lo, x, kind, _labels(out_y, self.name, lo), self)
                lo += take
            if lo >= stop:
                return
        if lo < stop:
            raise ValueError(f"{self.spec.name}: {self.spec.path} ended at row {lo}, expected {stop} rows")

    def __reduce__(self):
        return (_ParquetBank, (self.spec, self._starts))


_OPENERS = {"npy": _open_npy, "npz": _open_npz, "safetensors": _open_safetensors, "parquet": _ParquetBank,
            "array": _ArrayBank}


def open_bank(spec: BankSpec) -> Bank:
    """Opens (and checks the header of) the bank a :class:`BankSpec` describes."""
    if spec.path is not None:
        _exists(pathlib.Path(spec.path), spec.name)
    try:
        return _OPENERS[spec.format](spec)
    except (KeyError, IndexError, struct.error) as exc:
        raise ValueError(f"{spec.name}: {spec.path} is corrupt or not a {spec.format} bank ({exc!r})") from None
