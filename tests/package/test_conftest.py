"""The test configuration forces Triton's interpreter only where no GPU is present, and loads the
shared fixtures without importing torch or the package."""

import os
import subprocess
import sys

import conftest
import torch


def test_interpreter_only_without_a_gpu():
    assert conftest._cuda_present() == torch.cuda.is_available()
    if not torch.cuda.is_available():
        assert os.environ.get("TRITON_INTERPRET") == "1"


def test_fixtures_plugin_is_loaded_and_imports_nothing_heavy(pytestconfig):
    assert conftest.pytest_plugins == ["shared_fixtures"]
    plugin = pytestconfig.pluginmanager.get_plugin("shared_fixtures")
    assert plugin is not None and plugin.__file__ == os.path.join(os.path.dirname(conftest.__file__), "shared_fixtures.py")
    tests = os.path.dirname(os.path.abspath(conftest.__file__))
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import conftest, shared_fixtures; "
            "print(sorted(m for m in ('torch', 'unlearnkit', 'triton') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, tests], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
