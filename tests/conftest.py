"""Test-session settings that must precede any import of triton.

Where no CUDA GPU is present, Triton kernels run on the CPU through Triton's interpreter
(``TRITON_INTERPRET=1``) at tiny block sizes (``unlearnkit.kernels._config`` reads the variable
to pick blocks of 16). Where a GPU is present the kernels run compiled, as users run them; set
``TRITON_INTERPRET=1`` yourself to force the interpreter there.

Tests are grouped by layer (``engine/``, ``losses/``, ``methods/``, ``eval/``, ``bench/``,
``audit/``, ``tune/``, ``data/``, ``package/``). The fixtures they share (the digits split, the
trained digits and Fashion-MNIST reference models, a local Ray, recipe files) are session or module
fixtures in ``shared_fixtures.py``, loaded below as a plugin once ``TRITON_INTERPRET`` is settled;
``helpers.py`` holds plain functions (accuracy and loss of a model on a dataset).

Torch threads: ``UNLEARNKIT_TEST_THREADS=n`` runs the test process's torch ops on ``n`` intra-op
threads (``torch.set_num_threads`` at the session's start; processes the tests start, such as Ray
workers, keep their own settings). Float reductions are summed in another order under another thread count, so a
training run's weights differ in their last bits between one and two threads and the trajectories
drift apart: ``make test`` runs the method tests under both (they assert properties that survive
that, never one run's exact weights). The header line ``torch threads: n`` says which applied.
"""

import os
import shutil
import subprocess


def _cuda_present() -> bool:
    # Asking the driver (nvidia-smi) rather than torch: importing torch here would be slow and
    # would initialise CUDA before the tests choose their devices.
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return False
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


if not _cuda_present():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def _test_threads() -> int | None:
    raw = os.environ.get("UNLEARNKIT_TEST_THREADS", "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"UNLEARNKIT_TEST_THREADS: expected a positive integer, got {raw!r}")
    return int(raw)


_THREADS = _test_threads()


def pytest_sessionstart(session):
    if _THREADS is not None:
        import torch

        torch.set_num_threads(_THREADS)


def pytest_report_header(config):
    import torch

    return f"torch threads: {torch.get_num_threads()}" + (" (UNLEARNKIT_TEST_THREADS)" if _THREADS else "")

# Imported by pytest after this module has run, so after the variable above is set. (Not named
# "fixtures": pytest registers its own _pytest.fixtures under that plugin name and would skip ours.)
pytest_plugins = ["shared_fixtures"]
