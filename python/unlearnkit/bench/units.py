"""Layer: bench. The files of a bench run's results folder (``--out``): its finished units, its
lock and the settings of the run it holds.

Invariants:

- A unit is two files, ``<stem>.npz`` (arrays for the plots and gaps) then ``<stem>.json`` (the
  row), each written to a temporary name and renamed (``unlearnkit.io``): the JSON is the commit
  mark, so a JSON on disk means both files were complete when written. A unit that cannot be read
  back whole (truncated or corrupt JSON or ``.npz``, a missing ``.npz``) is reported with its path
  and computed again; it never stops a resume.
- The folder's rules (one run at a time: a lock; one configuration: ``run-config.json``; a run
  that fails before writing anything leaves the folder as it found it) are ``unlearnkit.io``'s
  :func:`~unlearnkit.io.claim_out`, shared with ``unlearnkit audit``.
"""

from __future__ import annotations

import json
import os
import pathlib
import warnings
import zipfile

import numpy as np

from .. import io

__all__ = ["CONFIG_NAME", "LOCK_NAME", "claim_out", "prepare_out", "read_unit", "write_unit"]

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
    io.savez_compressed(json_path.with_suffix(".npz"), arrays)
    io.write_json(json_path, row)


# ----------------------------------------------------------------------------------------------
# The results folder: the rules every front-end's ``--out`` follows live in ``unlearnkit.io``
# (the audit uses them too); re-exported here under their bench names.

LOCK_NAME, CONFIG_NAME = io.LOCK_NAME, io.CONFIG_NAME


def prepare_out(out_dir, name: str = "out_dir") -> pathlib.Path:
    """Creates ``out_dir/units`` and returns ``out_dir`` as a path (``unlearnkit.io.prepare_out``)."""
    return io.prepare_out(out_dir, name, ("units",))


def claim_out(out_dir, settings: dict, *, force: bool = False, name: str = "--out"):
    """``unlearnkit.io.claim_out`` for a bench folder (``units/``; ``results.json`` identifies a
    folder written before ``run-config.json`` existed)."""
    return io.claim_out(out_dir, settings, force=force, name=name, subdirs=("units",), legacy=("results.json",))
