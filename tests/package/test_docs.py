"""The documentation: its examples run, and the site builds without a warning."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs"
BLOCKS = [(p.name, i, code) for p in sorted(DOCS.glob("*.md"))
          for i, code in enumerate(re.findall(r"```python\n(.*?)```", p.read_text(), re.S))]


@pytest.mark.parametrize("page, index, code", BLOCKS, ids=[f"{p}-{i}" for p, i, _ in BLOCKS])
def test_doc_example_runs(page, index, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"{page}[{index}]", "exec"), {"__name__": "__doc_example__"})


def test_there_are_examples():
    assert len(BLOCKS) >= 2


# Blocks that do not assert yet: none; every example states its claim as an assert, so running it checks it.
NO_ASSERT_YET: set = set()


def test_every_example_asserts_what_it_shows():
    silent = {(page, index) for page, index, code in BLOCKS if not re.search(r"^\s*assert ", code, re.M)}
    assert silent <= NO_ASSERT_YET, f"examples that run but check nothing: {sorted(silent - NO_ASSERT_YET)}"


@pytest.mark.slow
def test_site_builds_strict(tmp_path):
    mkdocs = pathlib.Path(sys.executable).with_name("mkdocs")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}
    proc = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")], env=env,
                          cwd=DOCS.parent, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (tmp_path / "site" / "methods" / "finetune" / "index.html").exists()
    assert (tmp_path / "site" / "metrics" / "modified_entropy" / "index.html").exists()
