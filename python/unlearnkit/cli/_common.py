"""Layer: cli. Options and helpers shared by several subcommands."""

from __future__ import annotations

import argparse
import datetime
import pathlib

from .._validation import SCENARIO_HELP  # noqa: F401 - the one scenario syntax (torch-free)


def default_out(name: str) -> pathlib.Path:
    return pathlib.Path("unlearnkit-results") / f"{name}-{datetime.datetime.now():%Y%m%d-%H%M%S}"


def out_folder(text: str) -> pathlib.Path:
    """``--out``'s type: a folder path; an empty one (which would mean the current folder) is refused."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a folder path, got {text!r} (an empty path would write into the "
                                         f"current folder)")
    return pathlib.Path(text)


def add_common(sp) -> None:
    """--out, --cache-dir, --quiet: every subcommand that trains models."""
    sp.add_argument("--out", type=out_folder, help="results folder (default: unlearnkit-results/<name>-<time>)")
    sp.add_argument("--cache-dir", type=pathlib.Path,
                    help="checkpoint cache (default: $UNLEARNKIT_CACHE or ~/.cache/unlearnkit)")
    sp.add_argument("--quiet", action="store_true", help="no progress bars")


