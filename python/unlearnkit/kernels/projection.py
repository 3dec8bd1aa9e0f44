"""Fused projection energies: for each row z of Z (m, d) and orthonormal U (d, k),
num = ||U^T z||^2 and den = ||z||^2, in one pass over Z without materialising Z U in memory.
Backward by two GEMMs in torch (it needs Z U, which the forward does not keep)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._config import blocks

__all__ = ["projection_energies"]


@triton.jit
def _energy_kernel(Z, U, NUM, DEN, m, d, k, stride_z, stride_u,
                   BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_K: tl.constexpr):
    pid = tl.program_id(0)
    rows = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_r = rows < m
    den = tl.zeros((BLOCK_M,), dtype=tl.float32)
    num = tl.zeros((BLOCK_M,), dtype=tl.float32)
    for d0 in range(0, d, BLOCK_D):
        cols = d0 + tl.arange(0, BLOCK_D)
        z = tl.load(Z + rows[:, None] * stride_z + cols[None, :], mask=mask_r[:, None] & (cols[None, :] < d),
                    other=0.0).to(tl.float32)
        den += tl.sum(z * z, axis=1)
    for k0 in range(0, k, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        acc = tl.zeros((BLOCK_M, BLOCK_K), dtype=tl.float32)
        for d0 in range(0, d, BLOCK_D):
            cols = d0 + tl.arange(0, BLOCK_D)
            z = tl.load(Z + rows[:, None] * stride_z + cols[None, :], mask=mask_r[:, None] & (cols[None, :] < d),
                        other=0.0).to(tl.float32)
            u = tl.load(U + cols[:, None] * stride_u + ks[None, :], mask=(cols[:, None] < d) & (ks[None, :] < k),
                        other=0.0).to(tl.float32)
            acc += tl.dot(z, u, input_precision="ieee")
        num += tl.sum(acc * acc, axis=1)
    tl.store(NUM + rows, num, mask=mask_r)
    tl.store(DEN + rows, den, mask=mask_r)


class _ProjectionEnergies(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, u):
        z_c, u_c = z.contiguous(), u.contiguous()
        m, d = z_c.shape
        k = u_c.shape[1]
        num = torch.empty(m, dtype=torch.float32, device=z.device)
        den = torch.empty(m, dtype=torch.float32, device=z.device)
        cfg = blocks("projection")
        _energy_kernel[(triton.cdiv(m, cfg["BLOCK_M"]),)](z_c, u_c, num, den, m, d, k, z_c.stride(0),
                                                          u_c.stride(0), **cfg)
        ctx.save_for_backward(z, u)
        return num.to(z.dtype), den.to(z.dtype)

    @staticmethod
    def backward(ctx, g_num, g_den):
        z, u = ctx.saved_tensors
        zu = z @ u
        weighted = 2.0 * g_num[:, None] * zu
        grad_z = weighted @ u.T + 2.0 * g_den[:, None] * z if ctx.needs_input_grad[0] else None
        grad_u = z.T @ weighted if ctx.needs_input_grad[1] else None
        return grad_z, grad_u


def projection_energies(z: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(||U^T z_i||^2, ||z_i||^2) for every row: two (m,) tensors. z: (m, d), u: (d, k)."""
    return _ProjectionEnergies.apply(z, u)
