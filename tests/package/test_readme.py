"""The README's Python example runs as written and shows forgetting (its own asserts: forget accuracy
falls by more than 30 points toward the retrained model's while retain accuracy stays above 95%)."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def test_readme_example_runs_and_forgets(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README.md shows no Python example"
    monkeypatch.chdir(tmp_path)
    for i, code in enumerate(blocks):
        scope = {"__name__": "__readme__"}
        exec(compile(code, f"README.md[{i}]", "exec"), scope)
    assert scope["acc"](scope["unlearned"], *scope["forget"]) < scope["acc"](scope["original"], *scope["forget"]) - 0.3
