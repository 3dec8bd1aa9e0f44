"""The package claims Python >= 3.10 (pyproject's requires-python and the abi3-py310 wheel tag).

Python 3.10 has no ``tomllib``; the package falls back to ``tomli``. ``make setup-py310`` builds a
small Python 3.10 environment (numpy and tomli, no torch) where one exists on the machine; here
the torch-free part of the package runs on it: every module compiles, the CLI's parser is built,
``--set`` values are parsed as TOML, and the parameter schema checks values.
"""

from __future__ import annotations

import pathlib
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
PY310 = REPO / ".venv310" / "bin" / "python"

SCRIPT = r"""
import sys, dataclasses
assert sys.version_info[:2] == (3, 10), sys.version
from unlearnkit.io import tomllib
assert tomllib.__name__ == "tomli", tomllib.__name__
from unlearnkit.cli import build_parser
args = build_parser().parse_args(["bench", "--set", "neggrad.lr=0.001", "--seeds", "2"])
from unlearnkit.cli.bench import _parse_set
assert _parse_set(["neggrad.lr=0.001", "finetune.epochs=3"]) == {"neggrad": {"lr": 0.001}, "finetune": {"epochs": 3}}
from unlearnkit._validation import check_params, param
@dataclasses.dataclass(frozen=True)
class P:
    lr: float = param(0.1, gt=0)
    k: "int | None" = param(None, ge=1)
assert check_params(P, {"lr": 1, "k": None}) == {"lr": 1.0, "k": None}
try:
    check_params(P, {"lr": -1.0}, prefix="m.")
except ValueError as e:
    assert str(e) == "m.lr: expected a number > 0, got -1.0", str(e)
else:
    raise AssertionError("no error")
print("ok")
"""


@pytest.mark.skipif(not PY310.exists(), reason="no Python 3.10 on this machine (make setup-py310 found none)")
def test_torch_free_part_runs_on_python_310():
    # every module parses and compiles under 3.10 (in memory: no .pyc written into the tree)
    compile_all = ("import pathlib, sys\n"
                   "for p in sorted(pathlib.Path(sys.argv[1]).rglob('*.py')) + sorted(pathlib.Path(sys.argv[2]).rglob('*.py')):\n"
                   "    compile(p.read_text(), str(p), 'exec')\n")
    compiled = subprocess.run([str(PY310), "-c", compile_all, str(REPO / "python" / "unlearnkit"), str(REPO / "scripts")],
                              capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    run = subprocess.run([str(PY310), "-c", SCRIPT], capture_output=True, text=True,
                         env={"PYTHONPATH": str(REPO / "python"), "PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"},
                         cwd=REPO)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stdout + run.stderr
    deps = subprocess.run([str(PY310), str(REPO / "scripts" / "list_deps.py"), "dev"], capture_output=True, text=True)
    assert deps.returncode == 0 and "torch" in deps.stdout, deps.stderr
