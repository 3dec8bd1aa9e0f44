"""Content-addressed cache of trained models (the original and the gold model).

A checkpoint's name is a hash of everything that determines it: the dataset's content, the forget
set, the model and its arguments, the training recipe and the seed. A second run with the same
inputs loads it instead of training again; any change gives a new name. The key is also stored
inside the checkpoint and checked on loading, so a file copied or renamed under another model's
name is not loaded as that model (it is trained again, with a warning).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import time
import warnings
from collections.abc import Callable

import torch
from torch import nn

from . import io


def default_cache_dir() -> pathlib.Path:
    """``$UNLEARNKIT_CACHE``, else ``$XDG_CACHE_HOME/unlearnkit``, else ``~/.cache/unlearnkit``."""
    if os.environ.get("UNLEARNKIT_CACHE"):
        return pathlib.Path(os.environ["UNLEARNKIT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "unlearnkit"


def cache_key(**parts) -> str:
    """A stable 20-hex-digit hash of JSON-serialisable ``parts``."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def tensors_digest(*tensors: torch.Tensor) -> str:
    """A 20-hex-digit SHA-256 of the tensors' dtypes, shapes and values (bytes of a contiguous CPU
    copy, any dtype): equal for equal content wherever and however the tensors are laid out."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach()
        h.update(f"{t.dtype}{tuple(t.shape)};".encode())
        h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:20]


def load_checkpoint(model: nn.Module, path: str | os.PathLike, *, key: str | None = None) -> dict:
    """Loads a checkpoint written by :func:`cached_train` into ``model``; returns its metadata.

    Args:
        key: when given, the cache key the checkpoint must have been stored under (its metadata
            carries it): a checkpoint of another model, copied or renamed to this file name, is refused.

    Raises ``ValueError`` naming the path when the file is not a valid checkpoint for this model,
    or holds another key than ``key``.
    """
    path = pathlib.Path(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or "state_dict" not in blob:
            raise ValueError("no state_dict")
        stored = blob.get("meta", {}).get("key") if isinstance(blob.get("meta"), dict) else None
    except FileNotFoundError:
        raise
    except Exception as exc:  # truncated, not a checkpoint
        raise ValueError(f"checkpoint: {path} is not a valid checkpoint for {type(model).__name__} ({exc})") from None
    if key is not None and stored != key:
        raise ValueError(f"checkpoint: expected the model stored under key {key} in {path}, got "
                         f"{'no key' if stored is None else 'key ' + str(stored)} (a checkpoint copied or renamed "
                         f"from another model?)")
    try:
        model.load_state_dict(blob["state_dict"])
    except Exception as exc:  # another architecture
        raise ValueError(f"checkpoint: {path} is not a valid checkpoint for {type(model).__name__} ({exc})") from None
    return dict(blob.get("meta", {}))


def checkpoint_path(cache_dir: str | os.PathLike, name: str, key: str) -> pathlib.Path:
    """``<cache_dir>/<name>-<key>.pt``, with every character of ``name`` outside [A-Za-z0-9._+-]
    (a ``/`` as in ``digits/grouped``, a space) replaced by ``-``: one flat folder, no subfolders."""
    safe = re.sub(r"[^A-Za-z0-9._+-]", "-", str(name)).lstrip(".") or "model"
    return pathlib.Path(cache_dir) / f"{safe}-{key}.pt"


def cached_train(model: nn.Module, train: Callable[[nn.Module], nn.Module], *, cache_dir: str | os.PathLike,
                 key: str, name: str) -> tuple[nn.Module, dict]:
    """Returns ``model`` trained by ``train`` (in place), from the cache when ``key`` is there.

    Metadata (``seconds`` of the original training, ``key``, ``name``) is returned and stored,
    so a cached gold model still reports the time retraining took. A corrupt cache entry, or one
    whose stored key is not ``key``, is trained again and replaced, with a warning.
    """
    cache_dir = pathlib.Path(cache_dir)
    path = checkpoint_path(cache_dir, name, key)
    if path.exists():
        try:
            meta = load_checkpoint(model, path, key=key)
            model.eval()
            return model, {**meta, "cached": True}
        except ValueError as exc:
            warnings.warn(f"{exc}; training it again", stacklevel=2)
    cache_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model = train(model)
    meta = {"seconds": time.perf_counter() - t0, "key": key, "name": name}
    io.torch_save({"state_dict": model.state_dict(), "meta": meta}, path)
    model.eval()
    return model, {**meta, "cached": False}
