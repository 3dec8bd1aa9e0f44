"""scripts/gpu_check.py: the dry run walks every step up to its first CUDA call on a CPU machine."""

import os
import pathlib
import subprocess
import sys

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_check.py"


def run(*args, timeout=600):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_dry_run_reaches_the_first_cuda_call_of_every_step():
    proc = run("--dry-run")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for step in ("kernels", "sinkhorn", "alignment"):
        assert f"step {step}: ready (stopped at the first CUDA call)" in proc.stdout, proc.stdout
    # the bench step needs Fashion-MNIST; without it the dry run says so instead of failing
    assert ("step bench: ready (stopped at the first CUDA call)" in proc.stdout
            or "Fashion-MNIST missing" in proc.stdout), proc.stdout
    assert "gpu_check: dry run passed" in proc.stdout
    assert "| step | case | backend | dtype |" in proc.stdout  # the one table


def test_bad_arguments_and_no_cuda():
    proc = run("--dry-run", "--steps", "kernels,warp-drive", timeout=120)
    assert proc.returncode == 2 and "warp-drive" in proc.stderr
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the no-CUDA exit is not reachable here")
    proc = run("--steps", "kernels", timeout=120)
    assert proc.returncode == 2 and "CUDA is not available" in proc.stderr
