"""Layer: cli (the top). Thin argument parsing over ``unlearnkit.bench``, ``unlearnkit.eval``,
``unlearnkit.audit`` and ``unlearnkit.tune``.

One module per subcommand, each with ``add_parser(subparsers)``; nothing heavy is imported at
start-up (a subcommand imports its stack inside its handler), so ``unlearnkit --help`` is fast.
Every handler returns the process exit status; bad input raised as ``ValueError``/``TypeError``/
``OSError`` becomes ``unlearnkit: error: <message>`` and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from . import audit, bench, tune
from . import eval as eval_cmd

SUBCOMMANDS = [bench, eval_cmd, audit, tune]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="unlearnkit", description="Machine unlearning for PyTorch, measured against retraining.")
    p.add_argument("--version", action="version", version=f"unlearnkit {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError) as exc:
        print(f"unlearnkit: error: {exc}", file=sys.stderr)
        return 2
