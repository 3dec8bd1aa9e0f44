"""Test-session settings that must precede any import of triton.

Where no CUDA GPU is present, Triton kernels run on the CPU through Triton's interpreter
(``TRITON_INTERPRET=1``) at tiny block sizes (``unlearnkit.kernels._config`` reads the variable
to pick blocks of 16). Where a GPU is present the kernels run compiled, as users run them; set
``TRITON_INTERPRET=1`` yourself to force the interpreter there.

Tests are grouped by layer (``engine/``, ``kernels/``, ``losses/``, ``models/``, ``metrics/``,
``methods/``, ``eval/``, ``bench/``, ``audit/``, ``tune/``, ``data/``, ``package/``) and, inside a
layer, by subject: ``methods/test_<method>.py`` holds one method's tests, and the tests every method
is held to sit beside them (``test_contract.py``, ``test_direction.py``, ``test_params.py``,
``test_stop_rule.py``, ``test_byo.py``, ``test_base.py``, the streamed-data files, and the files
that run several methods in one test: ``test_recipes_digits.py``, ``test_muda_dlfd.py``);
``metrics/`` has one file per metric family (``test_output.py``, ``test_membership.py``,
``test_per_example.py``, the registry). The fixtures they share (the digits split, the trained
digits and Fashion-MNIST reference models, the methods' recipe runs that several files look at, a
local Ray, recipe files) are session or module fixtures in ``shared_fixtures.py``, loaded below as a
plugin once ``TRITON_INTERPRET`` is settled; ``helpers.py`` holds plain functions (accuracy and loss
of a model on a dataset, a copy of its state). Test files have distinct names across directories
(no ``__init__.py``: pytest imports each by its file name).

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


# The layers whose files take longest (subprocesses, Ray, real training) run first: under
# pytest-xdist (`make test` runs two workers, a file's tests on one worker) the short files then fill
# the gaps at the end instead of one worker finishing a long file alone. Within a file the order is
# the file's own; a test never depends on another file's having run.
_LONG_FIRST = ("package", "tune", "bench", "audit", "data", "eval", "methods")


def pytest_collection_modifyitems(session, config, items):
    def rank(item) -> int:
        layer = item.path.parent.name
        return _LONG_FIRST.index(layer) if layer in _LONG_FIRST else len(_LONG_FIRST)

    items.sort(key=rank)
