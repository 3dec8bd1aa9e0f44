"""Prints the dependencies of pyproject.toml (and of the extras named in argv) for pip.

The Makefile installs these before `maturin develop`, so the editable build itself needs no
network and the heavy wheels (torch) come from pip's cache on a fresh virtual environment.
"""

import pathlib
import sys

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

project = tomllib.loads((pathlib.Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]
deps = list(project["dependencies"])
for extra in sys.argv[1:]:
    deps += project["optional-dependencies"][extra]
print("\n".join(deps))
