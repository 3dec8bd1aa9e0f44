"""The release artefacts: an sdist that builds from scratch into an abi3 wheel, and that wheel,
installed into a fresh virtual environment outside the repository, works on its own."""

import os
import pathlib
import subprocess
import sys
import sysconfig
import zipfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]

SMOKE = r"""
import pathlib, sys
import numpy as np, torch
import unlearnkit, unlearnkit._core, unlearnkit.kernels
from unlearnkit import metrics, losses
assert "site-packages" in unlearnkit.__file__, unlearnkit.__file__
assert not pathlib.Path(unlearnkit.__file__).is_relative_to(pathlib.Path(sys.argv[1])), unlearnkit.__file__
nmi = metrics.normalized_mutual_info_score(np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0]))
assert abs(nmi - 1.0) < 1e-12, nmi
sd = losses.SelfDistillationLoss(temperature=4.0)
z = torch.randn(4, 3)
assert float(sd(z, z)) < 1e-6
print("ok", unlearnkit.__version__)
"""


def _run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
def test_sdist_builds_wheel_that_works_outside_the_repo(tmp_path):
    dist = tmp_path / "dist"
    maturin = pathlib.Path(sys.executable).with_name("maturin")
    _run([str(maturin), "sdist", "-o", str(dist)], cwd=REPO)
    sdist = next(dist.glob("unlearnkit-*.tar.gz"))
    # Build the wheel from the sdist alone (its own unpacked tree), the way pip does for users.
    env = {**os.environ, "CARGO_TARGET_DIR": str(REPO / "target" / "sdist-check")}
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
          str(sdist)], cwd=tmp_path, env=env, timeout=1200)
    wheel = next(dist.glob("unlearnkit-*.whl"))
    assert "-cp310-abi3-" in wheel.name  # one wheel for every CPython >= 3.10
    names = zipfile.ZipFile(wheel).namelist()
    for required in ("unlearnkit/_core.abi3.so", "unlearnkit/py.typed", "unlearnkit/kernels/__init__.py",
                     "unlearnkit/bench/recipes.toml", "unlearnkit/losses/__init__.py"):
        assert required in names, required

    # A fresh venv outside the repo. Its heavy dependencies (torch, ...) come from this test
    # environment through a .pth file, so the test needs no network and no 3 GB reinstall; the
    # venv's own site-packages comes first on sys.path, so `unlearnkit` is the installed wheel.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    vpy = venv / "bin" / "python"
    site = _run([str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    pathlib.Path(site, "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([str(vpy), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)])

    clean_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    clean_env["UNLEARNKIT_CACHE"] = str(tmp_path / "cache")
    out = _run([str(vpy), "-c", SMOKE, str(REPO)], cwd=tmp_path, env=clean_env)
    assert out.stdout.startswith("ok")
    version = _run([str(venv / "bin" / "unlearnkit"), "--version"], cwd=tmp_path, env=clean_env).stdout
    assert version.strip().startswith("unlearnkit 0.")
    demo = _run([str(venv / "bin" / "unlearnkit"), "demo", "--quick", "--dataset", "digits", "--quiet", "--out",
                 str(tmp_path / "res")],
                cwd=tmp_path, env=clean_env, timeout=600)
    assert (tmp_path / "res" / "results.json").exists() and "gold" in demo.stdout
