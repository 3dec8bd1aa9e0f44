"""Layer: kernels. Triton reductions of a Gibbs kernel exp(h - C / eps) over a cost matrix C that
is given by two point sets: the log-sum-exp along rows or columns, and the reductions of the plan
P_ij = exp(la_i + lb_j + (f_i + g_j - C_ij) / eps) (row and column sums, <P, C>, P @ q).

Pure ops on tensors and scalars: no schedule, no stopping rule, no autograd. The algorithm that
calls them is :class:`unlearnkit.losses.SinkhornLoss`; :mod:`.sinkhorn_ref` holds the torch
reference of the same ops (same class interface), against which the tests check these kernels.

The cost tile of rows I and columns J is either read from a cost matrix computed once by a GEMM
(``materialize=True``) or recomputed from the points, flash-style, so that n x m is never held.
Cost kinds: ``"sqeuclidean"``: scale * max(0, |p|^2 + |q|^2 - 2 <p, q>) (the caller centres the
clouds first, which shrinks the cancellation error); ``"cosine"``: max(0, 1 - <p, q>) on rows the
caller has normalised.

Numerical invariants: every tile is computed and reduced in float32 (inputs of another dtype are
converted once at construction); the log-sum-exp partials of a tile are taken relative to the
tile's maximum and merged on the host relative to the row's maximum, so no exp overflows; a row
whose every term is -inf gives -inf (softmin +inf), never NaN.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._config import blocks

__all__ = ["TritonCost"]

_KINDS = {"sqeuclidean": 0, "cosine": 1}


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
                         COST: tl.constexpr, MATERIALIZED: tl.constexpr, DO_ROWS: tl.constexpr,
                         DO_COLS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                         BLOCK_D: tl.constexpr):
    """Per-tile (max, sum exp) partials: rows of h_col[j] - C_ij / eps, columns of h_row[i] - C_ij / eps."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_r = rows < n
    mask_c = cols < m
    c = _cost_tile(X, Y, C, XX, YY, rows, cols, mask_r, mask_c, d, stride_x, stride_y, stride_c, scale,
                   COST, MATERIALIZED, BLOCK_M, BLOCK_N, BLOCK_D)
    if DO_ROWS:
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
def _plan_kernel(X, Y, C, XX, YY, F_, G_, LA, LB, PY, R, PC, CS,
                 n, m, d, stride_x, stride_y, stride_c, inv_eps, scale,
                 COST: tl.constexpr, MATERIALIZED: tl.constexpr, WITH_PY: tl.constexpr, WITH_COLS: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """Streams P over column tiles for one block of rows: row sums R, row sums of P * C, the
    per-row-block column sums CS (n_row_blocks, m) and, for one block of output columns, P @ Y."""
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
        if WITH_COLS:  # noqa: SIM102 - a constexpr branch (compiled out), then a run-time one
            if pid_d == 0:
                tl.store(CS + pid_m * m + cols, tl.sum(p, axis=0), mask=mask_c)
        if WITH_PY:
            yt = tl.load(Y + cols[:, None] * stride_y + ds_out[None, :], mask=mask_c[:, None] & md_out[None, :],
                         other=0.0)
            acc += tl.dot(p, yt, input_precision="ieee")
    if WITH_PY:
        tl.store(PY + rows[:, None] * d + ds_out[None, :], acc, mask=mask_r[:, None] & md_out[None, :])
    if pid_d == 0:
        tl.store(R + rows, r, mask=mask_r)
        tl.store(PC + rows, pc, mask=mask_r)


def _merge(mx: torch.Tensor, sm: torch.Tensor) -> torch.Tensor:
    """LSE of a row from its per-block (max, sum exp) partials."""
    top = mx.amax(1, keepdim=True)
    return top.squeeze(1) + torch.log((sm * torch.exp(mx - top)).sum(1))


class TritonCost:
    """The cost between point sets p (n, d) and q (m, d), as the operand of the Triton reductions.

    Args:
        p, q: prepared points (centred for ``"sqeuclidean"``, unit rows for ``"cosine"``); read
            as float32, detached.
        kind: ``"sqeuclidean"`` or ``"cosine"``; scale: the factor on |p - q|^2 (sqeuclidean).
        symmetric: q is p (the column reductions are then the row reductions).
        materialize: compute C (n * m float32) once by a GEMM instead of per tile.

    Every method returns float32 tensors on p's device; potentials and log-weights are (n,)/(m,).
    """

    dtype = torch.float32

    def __init__(self, p: torch.Tensor, q: torch.Tensor, *, kind: str, scale: float = 1.0,
                 symmetric: bool = False, materialize: bool = True):
        if kind not in _KINDS:
            raise ValueError(f"kind: expected one of {tuple(_KINDS)}, got {kind!r}")
        self.p = p.detach().float().contiguous()
        self.q = self.p if symmetric else q.detach().float().contiguous()
        self.kind, self.cost, self.scale, self.symmetric = kind, _KINDS[kind], float(scale), symmetric
        self.pp = (self.p * self.p).sum(1).contiguous()
        self.qq = self.pp if symmetric else (self.q * self.q).sum(1).contiguous()
        self.n, self.m, self.d = self.p.shape[0], self.q.shape[0], self.p.shape[1]
        self.c = None
        if materialize:
            g = self.p @ self.q.T
            self.c = ((self.pp[:, None] + self.qq[None, :] - 2 * g).clamp_min_(0).mul_(self.scale) if self.cost == 0
                      else (1.0 - g).clamp_min_(0)).contiguous()
        self._t: TritonCost | None = None

    def transposed(self) -> TritonCost:
        """The operand of C^T (q against p); built once, shares the point buffers."""
        if self.symmetric:
            return self
        if self._t is None:
            t = object.__new__(TritonCost)
            t.p, t.q, t.pp, t.qq = self.q, self.p, self.qq, self.pp
            t.kind, t.cost, t.scale, t.symmetric = self.kind, self.cost, self.scale, False
            t.n, t.m, t.d, t._t = self.m, self.n, self.d, self
            t.c = None if self.c is None else self.c.T.contiguous()
            self._t = t
        return self._t

    def _c_arg(self):
        if self.c is None:  # an unused pointer and stride when the tiles are recomputed
            return self.pp, 0
        return self.c, self.c.stride(0)

    def _lse(self, h_row, h_col, eps: float):
        cfg = blocks("sinkhorn")
        nbm, nbn = triton.cdiv(self.n, cfg["BLOCK_M"]), triton.cdiv(self.m, cfg["BLOCK_N"])
        dev = self.p.device
        do_rows, do_cols = h_col is not None, h_row is not None
        rmax = torch.empty(self.n, nbn, device=dev) if do_rows else self.pp
        rsum = torch.empty(self.n, nbn, device=dev) if do_rows else self.pp
        cmax = torch.empty(self.m, nbm, device=dev) if do_cols else self.pp
        csum = torch.empty(self.m, nbm, device=dev) if do_cols else self.pp
        c, stride_c = self._c_arg()
        hr = h_row.float().contiguous() if do_cols else self.pp
        hc = h_col.float().contiguous() if do_rows else self.pp
        _lse_partials_kernel[(nbm, nbn)](
            self.p, self.q, c, self.pp, self.qq, hr, hc, rmax, rsum, cmax, csum,
            self.n, self.m, self.d, self.p.stride(0), self.q.stride(0), stride_c, 1.0 / eps, self.scale, nbm, nbn,
            COST=self.cost, MATERIALIZED=self.c is not None, DO_ROWS=do_rows, DO_COLS=do_cols, **cfg)
        return (_merge(rmax, rsum) if do_rows else None), (_merge(cmax, csum) if do_cols else None)

    def softmin_rows(self, h_col: torch.Tensor, eps: float) -> torch.Tensor:
        """-eps * LSE_j(h_col[j] - C_ij / eps) for every row i: (n,)."""
        return -eps * self._lse(None, h_col, eps)[0]

    def softmin_cols(self, h_row: torch.Tensor, eps: float) -> torch.Tensor:
        """-eps * LSE_i(h_row[i] - C_ij / eps) for every column j: (m,)."""
        if self.symmetric:
            return self.softmin_rows(h_row, eps)
        return -eps * self._lse(h_row, None, eps)[1]

    def _plan(self, f, g, la, lb, eps: float, with_py: bool, with_cols: bool):
        cfg = blocks("sinkhorn")
        nbm = triton.cdiv(self.n, cfg["BLOCK_M"])
        nbd = triton.cdiv(self.d, cfg["BLOCK_D"]) if with_py else 1
        dev = self.p.device
        py = torch.empty(self.n, self.d, device=dev) if with_py else self.pp
        cs = torch.empty(nbm, self.m, device=dev) if with_cols else self.pp
        r = torch.empty(self.n, device=dev)
        pc = torch.empty(self.n, device=dev)
        c, stride_c = self._c_arg()
        args = [t.float().contiguous() for t in (f, g, la, lb)]
        _plan_kernel[(nbm, nbd)](self.p, self.q, c, self.pp, self.qq, *args, py, r, pc, cs,
                                 self.n, self.m, self.d, self.p.stride(0), self.q.stride(0), stride_c,
                                 1.0 / eps, self.scale, COST=self.cost, MATERIALIZED=self.c is not None,
                                 WITH_PY=with_py, WITH_COLS=with_cols, **cfg)
        return (py if with_py else None), r, pc, (cs.sum(0) if with_cols else None)

    def plan_sums(self, f, g, la, lb, eps: float):
        """(row sums (n,), column sums (m,), <P, C> 0-d) of the plan of potentials (f, g)."""
        _, r, pc, cs = self._plan(f, g, la, lb, eps, with_py=False, with_cols=True)
        return r, cs, pc.sum()

    def plan_apply(self, f, g, la, lb, eps: float, *, cols: bool = True):
        """(P @ q (n, d), row sums (n,), P^T @ p (m, d), column sums (m,)); the last two are None
        when ``cols`` is False (what a symmetric problem needs)."""
        py, r, _, _ = self._plan(f, g, la, lb, eps, with_py=True, with_cols=False)
        if not cols:
            return py, r, None, None
        t = self.transposed()
        px, c, _, _ = t._plan(g, f, lb, la, eps, with_py=True, with_cols=False)
        return py, r, px, c
