"""unlearnkit: machine unlearning for PyTorch.

Sub-packages (see docs/design.md):

- :mod:`unlearnkit.data`     datasets, splits, forget-set selection
- :mod:`unlearnkit.models`   small CNN / ResNet-18 exposing ``features`` and ``head``
- :mod:`unlearnkit.losses`   drop-in ``nn.Module`` losses (torch reference + Triton on CUDA)
- :mod:`unlearnkit.methods`  unlearning methods behind one interface and one registry
- :mod:`unlearnkit.metrics`  output-space and feature-space metrics (heavy ones in Rust)
- :mod:`unlearnkit.bench`    scenarios, the runner and reports
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

try:  # the one source of the version is Cargo.toml, which maturin copies into the metadata
    __version__ = _version("unlearnkit")
except PackageNotFoundError:  # pragma: no cover - running from a tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
