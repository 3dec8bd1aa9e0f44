"""Content-addressed cache of trained models (the original and the gold model).

A checkpoint's name is a hash of everything that determines it: the dataset's content, the forget
set, the model and its arguments, the training recipe and the seed. A second run with the same
inputs loads it instead of training again; any change gives a new name.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import time
from typing import Callable

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


def load_checkpoint(model: nn.Module, path: str | os.PathLike) -> dict:
    """Loads a checkpoint written by :func:`cached_train` into ``model``; returns its metadata.

    Raises ``ValueError`` naming the path when the file is not a valid checkpoint for this model.
    """
    path = pathlib.Path(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(blob["state_dict"])
    except FileNotFoundError:
        raise
    except Exception as exc:  # truncated, not a checkpoint, or another architecture
        raise ValueError(f"checkpoint: {path} is not a valid checkpoint for {type(model).__name__} ({exc})") from None
    return dict(blob.get("meta", {}))


def cached_train(model: nn.Module, train: Callable[[nn.Module], nn.Module], *, cache_dir: str | os.PathLike,
                 key: str, name: str) -> tuple[nn.Module, dict]:
    """Returns ``model`` trained by ``train`` (in place), from the cache when ``key`` is there.

    Metadata (``seconds`` of the original training, ``key``, ``name``) is returned and stored,
    so a cached gold model still reports the time retraining took. A corrupt cache entry is
    trained again and replaced, with a warning.
    """
    cache_dir = pathlib.Path(cache_dir)
    path = cache_dir / f"{name}-{key}.pt"
    if path.exists():
        try:
            meta = load_checkpoint(model, path)
            model.eval()
            return model, {**meta, "cached": True}
        except ValueError as exc:
            import warnings

            warnings.warn(f"{exc}; training it again", stacklevel=2)
    cache_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model = train(model)
    meta = {"seconds": time.perf_counter() - t0, "key": key, "name": name}
    io.torch_save({"state_dict": model.state_dict(), "meta": meta}, path)
    model.eval()
    return model, {**meta, "cached": False}
