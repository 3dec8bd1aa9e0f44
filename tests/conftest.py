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

# Imported by pytest after this module has run, so after the variable above is set. (Not named
# "fixtures": pytest registers its own _pytest.fixtures under that plugin name and would skip ours.)
pytest_plugins = ["shared_fixtures"]
