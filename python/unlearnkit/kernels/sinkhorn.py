"""Triton Sinkhorn: log-sum-exp partials of cost tiles, plan reductions and the envelope gradient.

The cost tile of rows I and columns J is either read from a cost matrix computed once by a
GEMM (when n * m * 4 bytes fits ``memory_budget``) or recomputed from the points, flash-style,
so that n x m is never materialised. One pass over a tile yields both the row partials
(max, sum exp) of ``h_col[j] - C_ij / eps`` and the column partials of ``h_row[i] - C_ij / eps``;
the host merges the per-block partials. Both potentials are thus updated from the previous
pair (Jacobi order; even and odd iterates are two interleaved Gauss-Seidel sequences, so it
converges like the alternating update at half the memory traffic per iteration).

Cost kinds: 0 = cost_scale * |x - y|^2 via |x|^2 + |y|^2 - 2 <x, y> (clamped at 0; the host
centres both clouds first), 1 = max(0, 1 - <x, y>) on rows the host has normalised.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from ._config import blocks

__all__ = ["sinkhorn_triton"]


@triton.jit
def _cost_tile(X, Y, C, XX, YY, rows, cols, mask_r, mask_c, d, stride_x, stride_y, stride_c, scale,
               COST: tl.constexpr, MATERIALIZED: tl.constexpr,
               BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    if MATERIALIZED:
        c = tl.load(C + rows[:, None] * stride_c + cols[None, :], mask=mask_r[:, None] & mask_c[None, :],
                    other=0.0)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for d0 in range(0, d, BLOCK_D):
            ds = d0 + tl.arange(0, BLOCK_D)
            md = ds < d
            xt = tl.load(X + rows[:, None] * stride_x + ds[None, :], mask=mask_r[:, None] & md[None, :], other=0.0)
            yt = tl.load(Y + cols[:, None] * stride_y + ds[None, :], mask=mask_c[:, None] & md[None, :], other=0.0)
            acc += tl.dot(xt, tl.trans(yt), input_precision="ieee")
        if COST == 0:
            xx = tl.load(XX + rows, mask=mask_r, other=0.0)
            yy = tl.load(YY + cols, mask=mask_c, other=0.0)
            c = tl.maximum(xx[:, None] + yy[None, :] - 2.0 * acc, 0.0) * scale
        else:
            c = tl.maximum(1.0 - acc, 0.0)
    return c


@triton.jit
def _lse_partials_kernel(X, Y, C, XX, YY, HROW, HCOL, RMAX, RSUM, CMAX, CSUM,
                         n, m, d, stride_x, stride_y, stride_c, inv_eps, scale, n_row_blocks, n_col_blocks,
                         COST: tl.constexpr, MATERIALIZED: tl.constexpr, DO_COLS: tl.constexpr,
                         BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_r = rows < n
    mask_c = cols < m
    c = _cost_tile(X, Y, C, XX, YY, rows, cols, mask_r, mask_c, d, stride_x, stride_y, stride_c, scale,
                   COST, MATERIALIZED, BLOCK_M, BLOCK_N, BLOCK_D)
    # rows: LSE over j of h_col[j] - C_ij / eps  (h_col = log b + g / eps)
    hc = tl.load(HCOL + cols, mask=mask_c, other=-float("inf"))
    s = tl.where(mask_c[None, :], hc[None, :] - c * inv_eps, -float("inf"))
    mx = tl.max(s, axis=1)
    mx_safe = tl.where(mx == -float("inf"), 0.0, mx)
    sm = tl.sum(tl.exp(s - mx_safe[:, None]), axis=1)
    tl.store(RMAX + rows * n_col_blocks + pid_n, mx_safe, mask=mask_r)
    tl.store(RSUM + rows * n_col_blocks + pid_n, sm, mask=mask_r)
    if DO_COLS:
        hr = tl.load(HROW + rows, mask=mask_r, other=-float("inf"))
        s2 = tl.where(mask_r[:, None], hr[:, None] - c * inv_eps, -float("inf"))
        mx2 = tl.max(s2, axis=0)
        mx2_safe = tl.where(mx2 == -float("inf"), 0.0, mx2)
        sm2 = tl.sum(tl.exp(s2 - mx2_safe[None, :]), axis=0)
        tl.store(CMAX + cols * n_row_blocks + pid_m, mx2_safe, mask=mask_c)
        tl.store(CSUM + cols * n_row_blocks + pid_m, sm2, mask=mask_c)


@triton.jit
def _plan_kernel(X, Y, C, XX, YY, F_, G_, LA, LB, PY, R, PC,
                 n, m, d, stride_x, stride_y, stride_c, inv_eps, scale,
                 COST: tl.constexpr, MATERIALIZED: tl.constexpr, WITH_PY: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """Streams P_ij = exp(la_i + lb_j + (f_i + g_j - C_ij) / eps) over column tiles:
    row sums R, row sums of P * C (the transport cost) and, for one block of output columns,
    P @ Y (the envelope gradient's GEMM)."""
    pid_m = tl.program_id(0)
    pid_d = tl.program_id(1)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_r = rows < n
    ds_out = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    md_out = ds_out < d
    fi = tl.load(F_ + rows, mask=mask_r, other=0.0)
    la = tl.load(LA + rows, mask=mask_r, other=-float("inf"))
    r = tl.zeros((BLOCK_M,), dtype=tl.float32)
    pc = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
    for n0 in range(0, m, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        mask_c = cols < m
        c = _cost_tile(X, Y, C, XX, YY, rows, cols, mask_r, mask_c, d, stride_x, stride_y, stride_c, scale,
                       COST, MATERIALIZED, BLOCK_M, BLOCK_N, BLOCK_D)
        gj = tl.load(G_ + cols, mask=mask_c, other=0.0)
        lb = tl.load(LB + cols, mask=mask_c, other=-float("inf"))
        logp = la[:, None] + lb[None, :] + (fi[:, None] + gj[None, :] - c) * inv_eps
        p = tl.where(mask_r[:, None] & mask_c[None, :], tl.exp(logp), 0.0)
        r += tl.sum(p, axis=1)
        pc += tl.sum(p * c, axis=1)
        if WITH_PY:
            yt = tl.load(Y + cols[:, None] * stride_y + ds_out[None, :], mask=mask_c[:, None] & md_out[None, :],
                         other=0.0)
            acc += tl.dot(p, yt, input_precision="ieee")
    if WITH_PY:
        tl.store(PY + rows[:, None] * d + ds_out[None, :], acc, mask=mask_r[:, None] & md_out[None, :])
    if pid_d == 0:
        tl.store(R + rows, r, mask=mask_r)
        tl.store(PC + rows, pc, mask=mask_r)


class _Tiles:
    """One (p, q) pair of float32 point sets, their squared norms and, within budget, C."""

    def __init__(self, p: torch.Tensor, q: torch.Tensor, cost: int, scale: float, budget: int):
        self.p, self.q = p.detach().float().contiguous(), q.detach().float().contiguous()
        self.cost, self.scale = cost, scale
        self.pp = (self.p * self.p).sum(1).contiguous()
        self.qq = (self.q * self.q).sum(1).contiguous()
        self.n, self.m, self.d = self.p.shape[0], self.q.shape[0], self.p.shape[1]
        self.c = None
        if self.n * self.m * 4 <= budget:  # the cost matrix once, by one GEMM
            g = self.p @ self.q.T
            self.c = ((self.pp[:, None] + self.qq[None, :] - 2 * g).clamp_min_(0).mul_(scale) if cost == 0
                      else (1.0 - g).clamp_min_(0)).contiguous()

    def transposed(self) -> "_Tiles":
        t = object.__new__(_Tiles)
        t.p, t.q, t.pp, t.qq, t.cost, t.scale = self.q, self.p, self.qq, self.pp, self.cost, self.scale
        t.n, t.m, t.d = self.m, self.n, self.d
        t.c = None if self.c is None else self.c.T.contiguous()
        return t

    def _common(self):
        c = self.c if self.c is not None else self.pp  # unused pointer when not materialised
        stride_c = self.c.stride(0) if self.c is not None else 0
        return c, stride_c

    def softmin(self, h_col: torch.Tensor, h_row: torch.Tensor | None, eps: float):
        """-eps * LSE rows of (h_col - C / eps) and, if h_row given, of columns of (h_row - C / eps)."""
        cfg = blocks("sinkhorn")
        nbm, nbn = triton.cdiv(self.n, cfg["BLOCK_M"]), triton.cdiv(self.m, cfg["BLOCK_N"])
        dev = self.p.device
        rmax = torch.empty(self.n, nbn, device=dev)
        rsum = torch.empty(self.n, nbn, device=dev)
        do_cols = h_row is not None
        cmax = torch.empty(self.m, nbm, device=dev) if do_cols else rmax
        csum = torch.empty(self.m, nbm, device=dev) if do_cols else rsum
        c, stride_c = self._common()
        _lse_partials_kernel[(nbm, nbn)](
            self.p, self.q, c, self.pp, self.qq, h_row if do_cols else h_col, h_col, rmax, rsum, cmax, csum,
            self.n, self.m, self.d, self.p.stride(0), self.q.stride(0), stride_c, 1.0 / eps, self.scale, nbm, nbn,
            COST=self.cost, MATERIALIZED=self.c is not None, DO_COLS=do_cols, **cfg)
        f_new = -eps * _merge(rmax, rsum)
        g_new = -eps * _merge(cmax, csum) if do_cols else None
        return f_new, g_new

    def plan(self, f, g, la, lb, eps: float, with_py: bool):
        """(P @ q or None, row sums of P, row sums of P * C), streaming over column tiles."""
        cfg = blocks("sinkhorn")
        nbm = triton.cdiv(self.n, cfg["BLOCK_M"])
        nbd = triton.cdiv(self.d, cfg["BLOCK_D"]) if with_py else 1
        dev = self.p.device
        py = torch.empty(self.n, self.d, device=dev) if with_py else self.pp
        r = torch.empty(self.n, device=dev)
        pc = torch.empty(self.n, device=dev)
        c, stride_c = self._common()
        _plan_kernel[(nbm, nbd)](self.p, self.q, c, self.pp, self.qq, f, g, la, lb, py, r, pc,
                                 self.n, self.m, self.d, self.p.stride(0), self.q.stride(0), stride_c,
                                 1.0 / eps, self.scale, COST=self.cost, MATERIALIZED=self.c is not None,
                                 WITH_PY=with_py, **cfg)
        return (py if with_py else None), r, pc

    def grad_p(self, f, g, la, lb, eps: float) -> torch.Tensor:
        """sum_j P_ij d c(p_i, q_j) / d p_i."""
        py, r, _ = self.plan(f, g, la, lb, eps, with_py=True)
        if self.cost == 0:
            return 2.0 * self.scale * (r[:, None] * self.p - py)
        return -py


def _merge(mx: torch.Tensor, sm: torch.Tensor) -> torch.Tensor:
    top = mx.amax(1, keepdim=True)
    return top.squeeze(1) + torch.log((sm * torch.exp(mx - top)).sum(1))


def _solve(tiles: _Tiles, la, lb, a, b, schedule, tol, max_iter, symmetric, f0=None, g0=None):
    f = torch.zeros(tiles.n, device=la.device) if f0 is None else f0.float().clone()
    g = torch.zeros(tiles.m, device=la.device) if g0 is None else g0.float().clone()
    eps_t, n_iter, err = schedule[-1], 0, math.inf
    for i in range(len(schedule) - 1 + max_iter):
        eps = schedule[min(i, len(schedule) - 1)]
        # Jacobi updates (f and g both from the previous pair: one pass over each tile gives the
        # row and the column reductions), averaged with the previous potentials as in GeomLoss:
        # plain Jacobi oscillates (two points: f+g flips between 2C and 0), the average does not,
        # and it has the same fixed point f = T(g), g = T(f).
        if symmetric:
            f_raw, _ = tiles.softmin(la + f / eps, None, eps)
            g_raw = f_raw
        else:
            f_raw, g_raw = tiles.softmin(lb + g / eps, la + f / eps, eps)
        n_iter += 1
        if i >= len(schedule) - 1:
            # |f - T(g)| is the log of the row-marginal ratio of the current plan
            err_r = float((a * torch.expm1((f - f_raw).abs() / eps_t)).sum())
            err_c = 0.0 if symmetric else float((b * torch.expm1((g - g_raw).abs() / eps_t)).sum())
            err = max(err_r, err_c)
        f = 0.5 * (f + f_raw)
        g = f if symmetric else 0.5 * (g + g_raw)
        if err <= tol:
            break
    return f, g, n_iter, err


class _Envelope(torch.autograd.Function):
    """Returns the precomputed value; backward streams sum_j P_ij grad c over the plan tiles."""

    @staticmethod
    def forward(ctx, p, q, value, terms):
        ctx.terms = terms
        ctx.shapes = (p.shape, q.shape, p.dtype)
        return value.clone()

    @staticmethod
    def backward(ctx, grad_out):
        (ps, qs, dtype), terms = ctx.shapes, ctx.terms
        gp = torch.zeros(ps, dtype=torch.float32, device=grad_out.device)
        gq = torch.zeros(qs, dtype=torch.float32, device=grad_out.device)
        for weight, which, tiles, f, g, la, lb, eps in terms:
            if which == "xy":
                gp += weight * tiles.grad_p(f, g, la, lb, eps)
                gq += weight * tiles.transposed().grad_p(g, f, lb, la, eps)
            elif which == "xx":  # both slots of c(x_i, x_j) move: twice the row term
                gp += 2.0 * weight * tiles.grad_p(f, g, la, lb, eps)
            else:
                gq += 2.0 * weight * tiles.grad_p(f, g, la, lb, eps)
        g = grad_out.float()
        return (g * gp).to(dtype), (g * gq).to(dtype), None, None


def sinkhorn_triton(loss, x: torch.Tensor, y: torch.Tensor, a: torch.Tensor, b: torch.Tensor):
    """The Triton path of :class:`unlearnkit.losses.SinkhornLoss` (same semantics, fp32 kernels)."""
    from ..losses.sinkhorn import SinkhornResult

    cost = 0 if loss.cost == "sqeuclidean" else 1
    if cost == 1:
        p, q = F.normalize(x, dim=1, eps=1e-12), F.normalize(y, dim=1, eps=1e-12)
    else:
        shift = torch.cat([x, y]).mean(0).detach()
        p, q = x - shift, y - shift
    scale = loss.cost_scale if cost == 0 else 1.0
    a32, b32 = a.detach().float(), b.detach().float()
    la, lb = a32.log().contiguous(), b32.log().contiguous()

    def sub(key, u, v, wu, wv, lu, lv, symmetric):
        tiles = _Tiles(u, v, cost, scale, loss.memory_budget)
        warm = loss._warm.get(key) if loss.warm_start else None
        if warm is not None and (warm[0].shape[0] != tiles.n or warm[1].shape[0] != tiles.m):
            warm = None
        sched = loss._schedule(u, v, warm is not None)
        f0, g0 = warm if warm is not None else (None, None)
        f, g, it, err = _solve(tiles, lu, lv, wu, wv, sched, loss.tol, loss.max_iter, symmetric, f0, g0)
        if loss.warm_start:
            loss._warm[key] = (f, g)
        return tiles, f, g, it, err, sched[-1]

    t_xy, f, g, it, err, eps = sub("xy", p, q, a32, b32, la, lb, False)
    ot_xy = (a32 * f).sum() + (b32 * g).sum()
    terms = [(1.0, "xy", t_xy, f, g, la, lb, eps)]
    if loss.output == "cost":
        _, _, pc = t_xy.plan(f, g, la, lb, eps, with_py=False)
        value, wterms = pc.sum(), [(a, f), (b, g)]
    elif loss.output == "ot":
        value, wterms = ot_xy, [(a, f), (b, g)]
    else:
        t_xx, f_xx, _, it_x, _, eps_x = sub("xx", p, p, a32, a32, la, la, True)
        t_yy, g_yy, _, it_y, _, eps_y = sub("yy", q, q, b32, b32, lb, lb, True)
        it += it_x + it_y
        value = (ot_xy - (a32 * f_xx).sum() - (b32 * g_yy).sum()).clamp_min(0.0)
        terms += [(-0.5, "xx", t_xx, f_xx, f_xx, la, la, eps_x), (-0.5, "yy", t_yy, g_yy, g_yy, lb, lb, eps_y)]
        wterms = [(a, f - f_xx), (b, g - g_yy)]
    value = value.to(x.dtype)
    if p.requires_grad or q.requires_grad:
        value = _Envelope.apply(p, q, value, terms)
    for w, pot in wterms:
        if w.requires_grad:
            value = value + (pot.detach().to(w.dtype) * (w - w.detach())).sum()
    return SinkhornResult(value=value, f=f, g=g, n_iter=it, marginal_error=err, converged=err <= loss.tol)
