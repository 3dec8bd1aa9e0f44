"""Split-K covariance: S = (X - mu)^T (X - mu) without a centred copy of X.

Each program owns one upper-triangle (i <= j) tile of S and one slice of rows (the split-K
part); it subtracts the mean while loading, accumulates in fp32 with ``tl.dot`` and writes its
partial tile. The host sums the partials in float64 and mirrors the upper triangle. Only
T (T + 1) / 2 of the T^2 tiles are computed.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._config import blocks

__all__ = ["covariance"]


@triton.jit
def _cov_kernel(X, MEAN, OUT, TI, TJ, n, d, stride_xn, rows_per_split,
                HAS_MEAN: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    pid_t = tl.program_id(0)
    pid_k = tl.program_id(1)
    ti = tl.load(TI + pid_t)
    tj = tl.load(TJ + pid_t)
    offs_i = ti * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_j = tj * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_i = offs_i < d
    mask_j = offs_j < d
    if HAS_MEAN:
        mu_i = tl.load(MEAN + offs_i, mask=mask_i, other=0.0)
        mu_j = tl.load(MEAN + offs_j, mask=mask_j, other=0.0)
    acc = tl.zeros((BLOCK_D, BLOCK_D), dtype=tl.float32)
    row_start = pid_k * rows_per_split
    row_end = tl.minimum(row_start + rows_per_split, n)
    for r0 in range(row_start, row_end, BLOCK_N):
        rows = r0 + tl.arange(0, BLOCK_N)
        mask_r = rows < row_end
        m_a = mask_r[:, None] & mask_i[None, :]
        m_b = mask_r[:, None] & mask_j[None, :]
        a = tl.load(X + rows[:, None] * stride_xn + offs_i[None, :], mask=m_a, other=0.0).to(tl.float32)
        b = tl.load(X + rows[:, None] * stride_xn + offs_j[None, :], mask=m_b, other=0.0).to(tl.float32)
        if HAS_MEAN:
            a = tl.where(m_a, a - mu_i[None, :], 0.0)
            b = tl.where(m_b, b - mu_j[None, :], 0.0)
        acc += tl.dot(tl.trans(a), b, input_precision="ieee")
    out = OUT + pid_k * d * d + offs_i[:, None] * d + offs_j[None, :]
    tl.store(out, acc, mask=mask_i[:, None] & mask_j[None, :])


def covariance(x: torch.Tensor, mean: torch.Tensor | None = None, *, split_k: int | None = None) -> torch.Tensor:
    """(X - mean)^T (X - mean) as float64 (d, d), not divided by n. x: (n, d), any float dtype."""
    if x.stride(1) != 1:
        x = x.contiguous()
    n, d = x.shape
    cfg = blocks("covariance")
    bd, bn = cfg["BLOCK_D"], cfg["BLOCK_N"]
    t = triton.cdiv(d, bd)
    ti, tj = torch.triu_indices(t, t, device=x.device).to(torch.int32)
    if split_k is None:  # enough programs to fill the machine, each with >= 8 row blocks
        split_k = max(1, min(triton.cdiv(n, 8 * bn), max(1, 256 // len(ti))))
    rows_per_split = triton.cdiv(triton.cdiv(n, split_k), bn) * bn
    split_k = triton.cdiv(n, rows_per_split)
    out = torch.zeros(split_k, d, d, dtype=torch.float32, device=x.device)
    mu = mean.to(device=x.device, dtype=torch.float32).contiguous() if mean is not None else out
    _cov_kernel[(len(ti), split_k)](x, mu, out, ti.contiguous(), tj.contiguous(), n, d, x.stride(0),
                                    rows_per_split, HAS_MEAN=mean is not None, **cfg)
    s = out.double().sum(0)
    return torch.triu(s) + torch.triu(s, 1).T
