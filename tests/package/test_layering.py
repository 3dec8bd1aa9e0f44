"""The layer order of docs/design.md, enforced: every module of ``python/unlearnkit`` imports only
its own layer or lower ones, and no two modules import each other in a cycle."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2] / "python" / "unlearnkit"
LAYERS = [["_validation", "io", "progress"], ["fanout"], ["data"], ["models", "training", "checkpoints"], ["kernels"],
          ["losses"], ["metrics"], ["methods"], ["experiment"], ["eval", "bench", "audit", "tune"], ["cli"]]
FRONT_ENDS = {"eval", "bench", "audit", "tune"}  # side by side over the experiment layer
RANK = {name: i for i, group in enumerate(LAYERS) for name in group}


def _module(path: pathlib.Path) -> str:
    parts = path.with_suffix("").relative_to(ROOT.parent).parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path) -> set[str]:
    mod = _module(path)
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                names = [".".join(base + [node.module])] if node.module else [".".join(base + [a.name]) for a in node.names]
            else:
                names = [node.module or ""]
            out |= {n for n in names if n.split(".")[0] == "unlearnkit"}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "unlearnkit"}
    return out


def _rank(mod: str):
    parts = mod.split(".")
    return RANK.get(parts[1]) if len(parts) > 1 else None


def graph() -> dict[str, set[str]]:
    return {_module(p): _imports(p) for p in ROOT.rglob("*.py")}


def test_every_top_level_module_has_a_layer():
    tops = {p.stem if p.is_file() else p.name for p in ROOT.iterdir()
            if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())}
    assert tops <= set(RANK), sorted(tops - set(RANK))


def test_imports_only_go_downwards():
    bad = [f"{m} imports {d}" for m, deps in graph().items() for d in deps
           if _rank(m) is not None and _rank(d) is not None and _rank(d) > _rank(m)]
    assert not bad, bad


def test_front_ends_never_import_one_another():
    # what two of them share lives in the experiment layer below them
    bad = [f"{m} imports {d}" for m, deps in graph().items() for d in deps
           if len(m.split(".")) > 1 and len(d.split(".")) > 1 and m.split(".")[1] in FRONT_ENDS
           and d.split(".")[1] in FRONT_ENDS and m.split(".")[1] != d.split(".")[1]]
    assert not bad, bad


def test_no_import_cycles_between_files():
    g = graph()
    mods = set(g)

    def file_of(name: str) -> str | None:  # "unlearnkit.data.forget.make_split" -> the module that defines it
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    edges = {m: {f for d in deps if (f := file_of(d)) and f != m and not m.startswith(f + ".")} for m, deps in g.items()}
    # a package's __init__ re-exporting its children is not a cycle with them
    edges = {m: {d for d in ds if not d.startswith(m + ".")} for m, ds in edges.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(u, stack):
        state[u] = 1
        stack.append(u)
        for v in sorted(edges.get(u, ())):
            if state.get(v) == 1:
                cycles.append(stack[stack.index(v):] + [v])
            elif not state.get(v):
                visit(v, stack)
        stack.pop()
        state[u] = 2

    for m in sorted(edges):
        if not state.get(m):
            visit(m, [])
    assert not cycles, cycles[:3]


def test_the_cli_starts_without_importing_torch():
    code = "import sys, unlearnkit.cli; unlearnkit.cli.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
