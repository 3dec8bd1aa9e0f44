"""Layer: kernels. Pure tensor ops: Triton kernels (with ``torch.autograd.Function`` wrappers where
an op is differentiable) and the torch reference of the Sinkhorn reductions. No policy, no
algorithm: the losses in :mod:`unlearnkit.losses` decide when to call them (``backend=``).

Importing this package does not import Triton; each module does, so ``import unlearnkit.kernels``
works on platforms without Triton wheels. The kernels run on CUDA, and on the CPU under
``TRITON_INTERPRET=1`` (how the tests check them against the torch path).

* :mod:`.covariance`: split-K X^T X with centring while loading, upper-triangle tiles only.
* :mod:`.projection`: fused per-row projection energies ||U^T z||^2 and ||z||^2.
* :mod:`.sinkhorn`: row / column log-sum-exp of a Gibbs kernel over a cost given by two point
  sets (materialised or recomputed tile by tile, flash-style) and the plan reductions (row and
  column sums, <P, C>, P @ q), as :class:`~.sinkhorn.TritonCost`.
* :mod:`.sinkhorn_ref`: the same reductions in torch (:class:`~.sinkhorn_ref.TorchCost`); no Triton
  import, the CPU path and the kernels' oracle.
"""

__all__ = ["covariance", "projection", "sinkhorn", "sinkhorn_ref"]
