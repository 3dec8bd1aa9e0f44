"""Layer: kernels. Torch reference of the Sinkhorn reductions of :mod:`.sinkhorn` (same class
interface, :class:`TorchCost`), on a cost matrix materialised once (n * m elements, plus its
transpose for the column reductions of a non-symmetric problem).

Pure ops: the algorithm that calls them is :class:`unlearnkit.losses.SinkhornLoss`. Imports only
torch, so it runs where Triton has no wheel; it is the CPU path and the oracle of the kernels.

Numerical invariants: everything is computed in the dtype of ``p`` (float32 or float64, the
caller's choice); each log-sum-exp is taken relative to its row's maximum (no overflow); terms
below exp(-80) relative to that maximum are dropped, which changes a sum by < 1e-34 relative
and keeps float32 exp out of the denormal range (see :func:`lse_rows_`).
"""

from __future__ import annotations

import torch

__all__ = ["TorchCost", "cost_from_points", "lse_rows_"]

KINDS = ("sqeuclidean", "cosine")


def cost_from_points(p: torch.Tensor, q: torch.Tensor, kind: str, scale: float = 1.0) -> torch.Tensor:
    """C (n, m) by one GEMM: scale * max(0, |p|^2 + |q|^2 - 2 <p, q>) or max(0, 1 - <p, q>).
    Differentiable; the same formula as the Triton tiles."""
    if kind == "cosine":
        return (1.0 - p @ q.T).clamp_min(0.0)
    if kind != "sqeuclidean":
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    c = torch.addmm((p * p).sum(1, keepdim=True) + (q * q).sum(1), p, q.T, alpha=-2.0)
    return c.clamp_min(0.0) * scale


def lse_rows_(h: torch.Tensor, neg_c: torch.Tensor, inv_eps: float, buf: torch.Tensor) -> torch.Tensor:
    """LSE_j(h_j + neg_c_ij * inv_eps) for every row i, computed in ``buf`` (no n x m allocation).

    Terms below exp(-80) relative to the row's largest are clamped to exp(-80) (a change of the
    sum by < 1e-34 relative): without the clamp, exp of very negative arguments yields float32
    denormals, which x86 CPUs process ~25x slower (measured, one thread: a 64 x 64 exp_ of -100s
    takes 195 us, of -40s 8 us; DLFD's eps = 0.01 hits this every step).
    """
    torch.add(h.unsqueeze(0), neg_c, alpha=inv_eps, out=buf)
    mx = buf.amax(1, keepdim=True)
    mx = torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx))
    buf.sub_(mx).clamp_(min=-80.0).exp_()
    return buf.sum(1).log_().add_(mx.squeeze(1))


class TorchCost:
    """The cost between prepared point sets p (n, d) and q (m, d), materialised, with the
    reductions of :class:`unlearnkit.kernels.sinkhorn.TritonCost` (see there for the arguments;
    ``materialize`` is accepted and ignored). Works in p's dtype; detaches its inputs."""

    def __init__(self, p: torch.Tensor, q: torch.Tensor, *, kind: str, scale: float = 1.0,
                 symmetric: bool = False, materialize: bool = True):
        self.p = p.detach()
        self.q = self.p if symmetric else q.detach().to(self.p.dtype)
        self.kind, self.scale, self.symmetric = kind, float(scale), symmetric
        self.dtype = self.p.dtype
        self.n, self.m, self.d = self.p.shape[0], self.q.shape[0], self.p.shape[1]
        self.neg_c = cost_from_points(self.p, self.q, kind, self.scale).neg_().contiguous()
        self.neg_ct: torch.Tensor | None = None if symmetric else self.neg_c.T.contiguous()
        self.buf = torch.empty_like(self.neg_c)
        self.buf_t: torch.Tensor | None = None if self.neg_ct is None else torch.empty_like(self.neg_ct)

    def softmin_rows(self, h_col: torch.Tensor, eps: float) -> torch.Tensor:
        """-eps * LSE_j(h_col[j] - C_ij / eps) for every row i: (n,)."""
        return -eps * lse_rows_(h_col, self.neg_c, 1.0 / eps, self.buf)

    def softmin_cols(self, h_row: torch.Tensor, eps: float) -> torch.Tensor:
        """-eps * LSE_i(h_row[i] - C_ij / eps) for every column j: (m,)."""
        if self.symmetric:
            return self.softmin_rows(h_row, eps)
        assert self.neg_ct is not None and self.buf_t is not None  # built when not symmetric
        return -eps * lse_rows_(h_row, self.neg_ct, 1.0 / eps, self.buf_t)

    def _plan(self, f, g, la, lb, eps: float) -> torch.Tensor:
        # (f + g - C) first: the potentials and the cost cancel to O(eps) near the plan's support
        return torch.exp(la[:, None] + lb[None, :] + (f[:, None] + g[None, :] + self.neg_c) / eps)

    def plan_sums(self, f, g, la, lb, eps: float):
        """(row sums (n,), column sums (m,), <P, C> 0-d) of the plan of potentials (f, g)."""
        plan = self._plan(f, g, la, lb, eps)
        return plan.sum(1), plan.sum(0), -(plan * self.neg_c).sum()

    def plan_apply(self, f, g, la, lb, eps: float, *, cols: bool = True):
        """(P @ q (n, d), row sums (n,), P^T @ p (m, d), column sums (m,)); the last two are None
        when ``cols`` is False."""
        plan = self._plan(f, g, la, lb, eps)
        if not cols:
            return plan @ self.q, plan.sum(1), None, None
        return plan @ self.q, plan.sum(1), plan.T @ self.p, plan.sum(0)
