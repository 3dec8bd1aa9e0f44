"""Writing files so that nothing half-written is ever left under the final name.

Every result and checkpoint goes to a temporary file in the same folder, is flushed to disk,
then renamed over the target (atomic on POSIX). A crash leaves either the old file or the new.

Only regular files are replaced: a target that exists and is something else (a device such as
``/dev/full``, a FIFO, a socket, a folder) is refused with ``ValueError`` before anything is
written, since renaming over it would destroy it. A symbolic link is written through: the file it
points to is replaced (the temporary file goes beside that file) and the link itself stays.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import stat
import tempfile
from typing import Any, Iterator

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, packaged as tomli (a dependency there)
    import tomli as tomllib  # type: ignore[no-redef]  # noqa: F401 - re-exported for the CLI and recipes


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))


def resolve_target(path: str | os.PathLike, name: str = "path") -> pathlib.Path:
    """The file an atomic write to ``path`` replaces: ``path`` itself, or the file a symbolic link
    at ``path`` points to (followed to the end of a chain).

    Raises ``ValueError`` (message starting with ``name``) when that file exists and is not a
    regular file, and ``FileNotFoundError`` when its folder does not exist.
    """
    path = pathlib.Path(path)
    target = pathlib.Path(os.path.realpath(path)) if path.is_symlink() else path
    try:
        mode = os.stat(target).st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        kind = next((text for test, text in _KINDS if test(mode)), "not a regular file")
        via = f" (the target of the link {path})" if target != path else ""
        raise ValueError(f"{name}: expected a regular file or a new file name, got {target}{via}, which is {kind}")
    if not target.parent.exists():
        raise FileNotFoundError(f"{name}: the folder {target.parent} does not exist (for {path})")
    if not target.parent.is_dir():
        raise ValueError(f"{name}: {target.parent} is not a folder (for {path})")
    return target


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Yields a temporary path beside the target of ``path`` (see :func:`resolve_target`); on
    success renames it over the target, on error deletes it."""
    target = resolve_target(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = pathlib.Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        if target.exists():  # a replaced file keeps its permissions
            os.chmod(tmp_path, stat.S_IMODE(os.stat(target).st_mode))
        resolve_target(path)  # still a regular file (or absent) at rename time
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o):
    import numpy as np

    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, pathlib.Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def torch_save(obj: Any, path: str | os.PathLike) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
