"""Triton kernels and their ``torch.autograd.Function`` wrappers. No policy here: the losses in
:mod:`unlearnkit.losses` decide when to call them (``backend=``).

Importing this package does not import Triton; each module does, so ``import unlearnkit.kernels``
works on platforms without Triton wheels. The kernels run on CUDA, and on the CPU under
``TRITON_INTERPRET=1`` (how the tests check them against the torch path).

* :mod:`.covariance`: split-K X^T X with centring while loading, upper-triangle tiles only.
* :mod:`.projection`: fused per-row projection energies ||U^T z||^2 and ||z||^2.
* :mod:`.sinkhorn`: log-sum-exp partials of a cost tile (materialised or recomputed, flash-style),
  plan cost and the streaming envelope gradient.
"""

__all__ = ["covariance", "projection", "sinkhorn"]
