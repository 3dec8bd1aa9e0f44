"""Test-session settings that must precede any import of triton.

Triton kernels run on the CPU through Triton's interpreter (``TRITON_INTERPRET=1``) at tiny
block sizes; ``unlearnkit.kernels._config`` reads the variable to pick blocks of 16.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
