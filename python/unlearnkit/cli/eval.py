"""Layer: cli. ``unlearnkit eval``: feature-space metrics of feature banks on disk, thin parsing
over ``unlearnkit.eval``.

The flags are generated from the fields of ``unlearnkit.eval.EvalConfig`` (name, group, help,
metavar, kind), so the command line, ``unlearnkit.eval.run`` and the config cannot drift apart:
a field ``da_k`` is ``--da-k``; a ``bool`` field is a switch (``progress`` is ``--quiet``, its
inverse); values are checked by the config itself, with errors naming the field.
"""

from __future__ import annotations

_GROUPS = {"banks": "banks (.npy + <stem>.labels.npy, a folder of .npy, .npz, .safetensors, .parquet)",
           "resources": "resources", "metrics": "metrics", "output": None}


def _fields():
    # Imported here, not at start-up: `unlearnkit --help` must not import numpy's whole stack.
    from ..eval.options import option_fields

    return option_fields()


def cmd_eval(args) -> int:
    from ..eval import EvalConfig, format_table, run

    options = {f.name: getattr(args, f.name) for f in _fields()}
    result = run(config=EvalConfig(**options))
    print(format_table(result))
    for note in result["plan"]["notes"]:
        print(f"note: {note}")
    for caveat in result.get("caveats", []):
        print(f"caveat: {caveat}")
    if args.out is not None:
        print(f"\nwrote {args.out}")
    return 0


def add_parser(sub) -> None:
    e = sub.add_parser("eval", help="feature-space metrics of feature banks on disk (forget/retain/test), "
                                    "within a memory budget, optionally on a Ray cluster")
    groups = {key: (e.add_argument_group(title) if title else e) for key, title in _GROUPS.items()}
    for f in _fields():
        m = f.metadata["unlearnkit.eval"]
        if not m["cli"]:
            continue
        flag = m["flag"] or "--" + f.name.replace("_", "-")
        target = groups[m["group"]]
        if m["kind"] == "bool":
            invert = flag == "--quiet"  # the one inverted switch: progress bars unless --quiet
            target.add_argument(flag, dest=f.name, action="store_false" if invert else "store_true",
                                default=not f.default if invert else f.default, help=m["help"])
            continue
        parse = {"int": int, "float": float}.get(m["kind"], str)
        metavar = m["metavar"] or {"int": "N", "float": "X", "str": "NAME"}.get(m["kind"])
        target.add_argument(flag, dest=f.name, type=parse, default=f.default, metavar=metavar, help=m["help"])
    e.set_defaults(func=cmd_eval)
