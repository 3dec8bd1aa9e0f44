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
from collections.abc import Iterator
from typing import Any

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


def savez_compressed(path: str | os.PathLike, arrays: dict) -> None:
    """``numpy.savez_compressed`` of ``arrays`` into ``path``, atomically (through a file object:
    given a name, numpy would append ".npz" to the temporary one)."""
    import numpy as np

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)


# ----------------------------------------------------------------------------------------------
# Results folders (``--out``): shared by every front-end that writes one (bench, audit)
#
# - One run at a time per folder: :func:`claim_out` holds an exclusive lock (``flock`` on
#   ``.unlearnkit.lock``, released by the kernel even when the process is killed); a second run
#   is refused with the holder's pid, host, start time and command.
# - A folder holds one configuration: ``run-config.json`` records the settings of the run that
#   wrote it; other settings (another configuration, or another front-end's results) are refused
#   unless ``force`` (then the old results are replaced).
# - A run that fails before it has written anything (a failed pre-flight check, Ctrl-C) leaves
#   the folder as it found it: the settings it recorded are removed (or the previous ones put
#   back), and so is a folder it created, so that a corrected retry is not refused.

LOCK_NAME = ".unlearnkit.lock"
CONFIG_NAME = "run-config.json"


def prepare_out(out_dir, name: str = "out_dir", subdirs: tuple[str, ...] = ("units",)) -> pathlib.Path:
    """Creates ``out_dir`` (and ``out_dir/<subdir>`` for each of ``subdirs``) and returns it as a
    path. An empty path (which would mean the current folder) and a path that is an existing file
    are refused with ``ValueError`` naming ``name``."""
    if out_dir is None or not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a folder path, got {type(out_dir).__name__}")
    if not str(out_dir).strip():
        raise ValueError(f"{name}: expected a folder path, got {str(out_dir)!r} (an empty path would write into "
                         f"the current folder)")
    out = pathlib.Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise ValueError(f"{name}: expected a folder, got {out}, which is a file")
    try:
        out.mkdir(parents=True, exist_ok=True)
        for sub in subdirs:
            (out / sub).mkdir(exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:  # a file where a parent folder should be
        raise ValueError(f"{name}: cannot create the folder {out} ({exc.strerror}: {exc.filename})") from None
    return out


def _holder() -> dict:
    import datetime
    import socket
    import sys

    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv)[:500]}


def _describe_holder(text: str) -> str:
    try:
        h = json.loads(text)
        return f"pid {h['pid']} on {h['host']}, started {h['started']}: {h['command']}"
    except (ValueError, KeyError, TypeError):
        return "a run that left no details"


def _acquire(path: pathlib.Path, name: str) -> int:
    """An open descriptor of ``path`` holding an exclusive lock, with this process's details in it."""
    import warnings

    try:
        import fcntl
    except ImportError:  # Windows: exclusive creation instead (a killed run leaves the file behind)
        fcntl = None  # type: ignore[assignment]
    while True:
        if fcntl is None:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                raise ValueError(f"{name}: expected a folder no other run is using, got {path.parent} (in use by "
                                 f"{_describe_holder(path.read_text())}; delete {path} if that run is gone)") from None
            break
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another open file holds it
            text = os.read(fd, 4096).decode(errors="replace")
            os.close(fd)
            raise ValueError(f"{name}: expected a folder no other run is using, got {path.parent} (in use by "
                             f"{_describe_holder(text)})") from None
        except OSError as exc:  # a file system without locks (some network mounts): go on, unprotected
            warnings.warn(f"{name}: cannot lock {path} ({exc.strerror}); two runs into this folder would not be "
                          f"kept apart", stacklevel=4)
            break
        try:  # the releasing run deletes the file: make sure we locked the one that is still there
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(_holder()).encode())
    return fd


def _identity(settings: dict) -> dict:
    return json.loads(json.dumps(settings, sort_keys=True, default=str))  # tuples -> lists, keys sorted


def _stored_settings(out: pathlib.Path, legacy: tuple[str, ...]) -> tuple[dict | None, str | None]:
    """(settings, where they came from) of the run whose results the folder holds, if any."""
    cfg = out / CONFIG_NAME
    if cfg.exists():
        try:
            return json.loads(cfg.read_text()), str(cfg)
        except ValueError:
            return {"unreadable": True}, str(cfg)
    for fname in legacy:  # a folder written before run-config.json existed: its results' meta.config
        res = out / fname
        if res.exists():
            try:
                return {"config": json.loads(res.read_text())["meta"]["config"]}, str(res)
            except (ValueError, KeyError, TypeError):
                return {"unreadable": True}, str(res)
    return None, None


def _differences(old: dict, new: dict) -> str:
    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    a, b = flat(old), flat(new)
    keys = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return "; ".join(f"{k}: {a.get(k)!r} there, {b.get(k)!r} now" for k in keys[:4]) + (" ..." if len(keys) > 4 else "")


def _files(out: pathlib.Path) -> set[str]:
    return {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} - {LOCK_NAME, CONFIG_NAME}


@contextlib.contextmanager
def claim_out(out_dir, settings: dict, *, force: bool = False, name: str = "--out",
              subdirs: tuple[str, ...] = ("units",), legacy: tuple[str, ...] = ("results.json",)) -> Iterator[pathlib.Path]:
    """Holds ``out_dir`` for one run: creates it (with ``subdirs``), locks it against concurrent
    runs, and checks that it holds no results of a run with other ``settings`` (any JSON-able
    dict: the run's config, recipes file, ...). With ``force`` such results are replaced.

    ``legacy``: result files (JSON with ``meta.config``) that identify a folder written before
    ``run-config.json`` existed. When the body raises before any file was written into the
    folder (a failed pre-flight check, Ctrl-C), the folder is left as it was found.

    Raises ``ValueError`` naming ``name`` when the folder is in use, holds another configuration,
    or is a non-empty folder that is not a results folder.
    """
    pre = pathlib.Path(out_dir).expanduser() if isinstance(out_dir, (str, os.PathLike)) and str(out_dir).strip() else None
    created = [p for p in ([pre, *(pre / s for s in subdirs)] if pre is not None else []) if not p.exists()]
    out = prepare_out(out_dir, name, subdirs)
    lock_path = out / LOCK_NAME
    fd = _acquire(lock_path, name)
    cfg_path = out / CONFIG_NAME
    before_cfg = cfg_path.read_bytes() if cfg_path.exists() else None
    try:
        want = _identity(settings)
        stored, where = _stored_settings(out, legacy)
        if stored is None:
            foreign = sorted(p.name for p in out.iterdir() if p.name not in (LOCK_NAME, *subdirs))
            if foreign and not force:
                raise ValueError(f"{name}: expected a new folder or the results folder of this run, got {out}, which "
                                 f"holds other files ({', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}); "
                                 f"pass --force to write into it anyway")
        elif not str(where).endswith(CONFIG_NAME):  # a legacy results file: only the run's config is known there
            want_known = {"config": want.get("config")}
            if stored != want_known and not force:
                raise ValueError(f"{name}: expected a new folder or one holding a run with the same settings, got "
                                 f"{out}, whose results ({where}) come from other settings "
                                 f"({_differences(stored, want_known)}); pass --force to replace them, or choose "
                                 f"another --out")
        elif stored != want and not force:
            raise ValueError(f"{name}: expected a new folder or one holding a run with the same settings, got {out}, "
                             f"whose results ({where}) come from other settings ({_differences(stored, want)}); "
                             f"pass --force to replace them, or choose another --out")
        files = _files(out)
        write_json(cfg_path, want)
        try:
            yield out
        except BaseException:
            if _files(out) == files:  # nothing written: leave the folder as it was found
                if before_cfg is None:
                    cfg_path.unlink(missing_ok=True)
                else:
                    with atomic_path(cfg_path) as tmp:
                        tmp.write_bytes(before_cfg)
                for d in reversed(created):
                    with contextlib.suppress(OSError):  # only if empty (the lock goes first, below)
                        if d == pre:
                            lock_path.unlink(missing_ok=True)
                        d.rmdir()
            raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path)  # while still holding it: a waiting run then locks a fresh file
        os.close(fd)
