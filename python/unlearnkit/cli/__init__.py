"""Layer: cli (the top). Thin argument parsing over ``unlearnkit.bench``, ``unlearnkit.eval``,
``unlearnkit.audit`` and ``unlearnkit.tune``.

One module per subcommand, each with ``add_parser(subparsers)``; nothing heavy is imported at
start-up (a subcommand imports its stack inside its handler), so ``unlearnkit --help`` is fast.
Every handler returns the process exit status; bad input raised as ``ValueError``/``TypeError``/
``OSError`` becomes ``unlearnkit: error: <message>`` and exit status 2; Ctrl-C becomes one line
saying what was kept and how to resume, and exit status 130.
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
    except KeyboardInterrupt:
        print(interrupted_message(args), file=sys.stderr)
        return 130  # 128 + SIGINT, what a shell reports for a process stopped by Ctrl-C


def interrupted_message(args) -> str:
    """The one line printed on Ctrl-C: what was kept and how to go on. A subcommand that chose its
    results folder itself (the default ``--out``) leaves it in ``args.resolved_out``."""
    out = getattr(args, "resolved_out", None)
    if out is None:
        return "\nunlearnkit: interrupted (Ctrl-C)"
    again = "the same command" if getattr(args, "out", None) else f"the same command with --out {out}"
    return (f"\nunlearnkit: interrupted (Ctrl-C); finished work is kept (results in {out}, models in the "
            f"checkpoint cache): run {again} to resume")
