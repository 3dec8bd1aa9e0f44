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




def add_config_arguments(parser, config_cls, *, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """One flag per option field of ``config_cls`` (``unlearnkit.experiment.config.option``): the
    field's help, default and choices; ``heldout_fraction`` -> ``--heldout-fraction``; a bool whose
    default is True -> ``--no-<name>``. Returns ``{field: flag}`` for :func:`config_from_args`.
    Torch-free, as the parser must be."""
    import dataclasses
    import typing

    from .._validation import _base_kind, constraints
    from ..experiment.config import CLI_META

    cons = constraints(config_cls)
    hints = typing.get_type_hints(config_cls)
    types = {"int": int, "float": float}
    flags = {}
    for f in dataclasses.fields(config_cls):
        meta = f.metadata.get(CLI_META)
        if meta is None or not meta["cli"] or f.name in skip:
            continue
        default = f.default
        if isinstance(default, bool):
            flag = meta["flag"] or ("--no-" if default else "--") + f.name.replace("_", "-")
            parser.add_argument(flag, dest=f.name, action="store_false" if default else "store_true", help=meta["help"])
        else:
            flag = meta["flag"] or "--" + f.name.replace("_", "-")
            # the default stays the field's own value (a tuple is not re-parsed from text); a value
            # typed on the command line is text that ``parse`` (or the type) turns into the value
            base = _base_kind(hints[f.name])[0]
            kind = types.get(base, str) if meta["parse"] is None else str
            parser.add_argument(flag, dest=f.name, type=kind, default=default, metavar=meta["metavar"],
                                choices=cons[f.name].choices, help=meta["help"])
        flags[f.name] = flag
    return flags


def config_from_args(config_cls, args, flags: dict[str, str], values: dict | None = None,
                     value_flags: dict[str, str] | None = None):
    """``config_cls`` made from the parsed ``args`` of :func:`add_config_arguments` plus ``values``
    (fields the command line spells its own way, e.g. ``seeds`` from ``--seeds N``); an error about
    a field is re-worded with its flag (``pool: ...`` -> ``--pool: ...``; ``value_flags`` names the
    flags of ``values``, e.g. ``{"overrides": "--set"}``)."""
    import dataclasses

    from ..experiment.config import CLI_META

    names = {**flags, **(value_flags or {})}
    kwargs = dict(values or {})
    metas = {f.name: f.metadata[CLI_META] for f in dataclasses.fields(config_cls) if CLI_META in f.metadata}
    try:
        for name in flags:
            v = getattr(args, name)
            parse = metas[name]["parse"]
            kwargs[name] = parse(v) if parse is not None and isinstance(v, str) else v
        return config_cls(**kwargs)
    except (ValueError, TypeError) as exc:
        text = str(exc)
        for name, flag in names.items():
            if text.startswith(f"{name}:"):
                raise type(exc)(flag + text[len(name):]) from None
        raise
