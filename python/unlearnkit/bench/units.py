"""Layer: bench. The files of a bench run's results folder (``--out``): its finished units, its
lock and the settings of the run it holds.

Invariants:

- A unit is two files, ``<stem>.npz`` (arrays for the plots and gaps) then ``<stem>.json`` (the
  row), each written to a temporary name and renamed (``unlearnkit.io``): the JSON is the commit
  mark, so a JSON on disk means both files were complete when written. A unit that cannot be read
  back whole (truncated or corrupt JSON or ``.npz``, a missing ``.npz``) is reported with its path
  and computed again; it never stops a resume.
- One run at a time per folder: :func:`claim_out` holds an exclusive lock (``flock`` on
  ``.unlearnkit.lock``, released by the kernel even when the process is killed); a second run
  is refused with the holder's pid, host, start time and command.
- A folder holds one configuration: ``run-config.json`` records the settings of the run that
  wrote it; another configuration is refused unless ``force`` (then the old results are replaced).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import pathlib
import socket
import sys
import warnings
import zipfile
from typing import Iterator

import numpy as np

from .. import io

__all__ = ["CONFIG_NAME", "LOCK_NAME", "claim_out", "prepare_out", "read_unit", "write_unit"]

LOCK_NAME = ".unlearnkit.lock"
CONFIG_NAME = "run-config.json"


# ----------------------------------------------------------------------------------------------
# Units


def read_unit(json_path: str | os.PathLike) -> dict | None:
    """The row of a finished unit, or None when it must be computed (again).

    None without a word when the unit was never written; None with a warning naming the file when
    its JSON or its ``.npz`` is truncated, corrupt or missing (the unit is then computed again and
    both files are replaced).
    """
    json_path = pathlib.Path(json_path)
    if not json_path.exists():
        return None
    try:
        row = json.loads(json_path.read_text())
        if not isinstance(row, dict) or "model" not in row:
            raise ValueError("not a unit row")
    except (ValueError, UnicodeDecodeError, OSError) as exc:  # JSONDecodeError is a ValueError
        warnings.warn(f"unit {json_path}: unreadable ({type(exc).__name__}: {exc}); computing it again", stacklevel=2)
        return None
    npz_path = json_path.with_suffix(".npz")
    try:
        with np.load(npz_path) as z:
            for key in z.files:  # reads every member: a truncated or corrupt one fails its CRC here
                z[key]
    except FileNotFoundError:
        warnings.warn(f"unit {json_path}: its arrays {npz_path.name} are missing; computing it again", stacklevel=2)
        return None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        warnings.warn(f"unit {npz_path}: unreadable ({type(exc).__name__}: {exc}); computing it again", stacklevel=2)
        return None
    return row


def write_unit(json_path: str | os.PathLike, row: dict, arrays: dict) -> None:
    """Writes ``arrays`` to ``<stem>.npz`` then ``row`` to ``<stem>.json``, each atomically."""
    json_path = pathlib.Path(json_path)
    with io.atomic_path(json_path.with_suffix(".npz")) as tmp:
        with open(tmp, "wb") as fh:  # a file object: numpy would append ".npz" to a temporary name
            np.savez_compressed(fh, **arrays)
    io.write_json(json_path, row)


# ----------------------------------------------------------------------------------------------
# The results folder


def prepare_out(out_dir, name: str = "out_dir") -> pathlib.Path:
    """Creates ``out_dir/units`` and returns ``out_dir`` as a path. An empty path (which would
    mean the current folder) and a path that is an existing file are refused."""
    if out_dir is None or not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a folder path, got {type(out_dir).__name__}")
    if not str(out_dir).strip():
        raise ValueError(f"{name}: expected a folder path, got {str(out_dir)!r} (an empty path would write into "
                         f"the current folder)")
    out = pathlib.Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise ValueError(f"{name}: expected a folder, got {out}, which is a file")
    try:
        (out / "units").mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:  # a file where a parent folder should be
        raise ValueError(f"{name}: cannot create the folder {out} ({exc.strerror}: {exc.filename})") from None
    return out


def _holder() -> dict:
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
    try:
        import fcntl
    except ImportError:  # Windows: exclusive creation instead (a killed run leaves the file behind)
        fcntl = None
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
                          f"kept apart", stacklevel=3)
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


def _stored_settings(out: pathlib.Path) -> tuple[dict | None, str | None]:
    """(settings, where they came from) of the run whose results the folder holds, if any."""
    cfg = out / CONFIG_NAME
    if cfg.exists():
        try:
            return json.loads(cfg.read_text()), str(cfg)
        except ValueError:
            return {"unreadable": True}, str(cfg)
    res = out / "results.json"  # a folder written before run-config.json existed
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


@contextlib.contextmanager
def claim_out(out_dir, settings: dict, *, force: bool = False, name: str = "--out") -> Iterator[pathlib.Path]:
    """Holds ``out_dir`` for one run: creates it, locks it against concurrent runs, and checks
    that it holds no results of a run with other ``settings`` (any JSON-able dict: the run's
    config, recipes file, ...). With ``force`` such results are replaced.

    Raises ``ValueError`` naming ``name`` when the folder is in use, holds another configuration,
    or is a non-empty folder that is not a results folder.
    """
    out = prepare_out(out_dir, name)
    lock_path = out / LOCK_NAME
    fd = _acquire(lock_path, name)
    try:
        want = _identity(settings)
        stored, where = _stored_settings(out)
        if stored is None:
            foreign = sorted(p.name for p in out.iterdir() if p.name not in (LOCK_NAME, "units"))
            if foreign and not force:
                raise ValueError(f"{name}: expected a new folder or the results folder of this run, got {out}, which "
                                 f"holds other files ({', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}); "
                                 f"pass --force to write into it anyway")
        elif where.endswith("results.json"):  # only the run's config is known there
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
        io.write_json(out / CONFIG_NAME, want)
        yield out
    finally:
        try:
            os.unlink(lock_path)  # while still holding it: a waiting run then locks a fresh file
        except FileNotFoundError:
            pass
        os.close(fd)
