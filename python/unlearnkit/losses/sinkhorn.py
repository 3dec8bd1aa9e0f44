"""Entropic optimal transport between two weighted point clouds, and the debiased Sinkhorn
divergence, as a drop-in loss.

With cost C_ij = c(x_i, y_j) and weights a (n,), b (m,) summing to one:

* OT_eps(a, b) = min_P <P, C> + eps KL(P | a b^T) over plans with marginals a, b
  = <a, f> + <b, g> at the optimal dual potentials (f, g)              (``output="ot"``)
* <P, C>, the transport cost of the optimal entropic plan, what POT's ``sinkhorn2`` returns
  (``output="cost"``)
* S_eps = OT_eps(a, b) - OT_eps(a, a) / 2 - OT_eps(b, b) / 2 >= 0, zero for identical clouds
  (Feydy et al., AISTATS 2019)                                            (``output="divergence"``)

Costs: ``"sqeuclidean"`` c = cost_scale * |x - y|^2 (cost_scale 0.5 by default, GeomLoss's
convention; 1.0 is POT's ``ot.dist``), and ``"cosine"`` c = max(0, 1 - cos(x, y)) (DLFD).

Solver: log-domain Sinkhorn (stable for any eps), eps-annealing from the cloud's diameter down
to the target (``scaling`` is the blur ratio per iteration, GeomLoss's meaning; eps shrinks by
scaling^2), then iterations at the target eps until the L1 marginal violation falls below
``tol`` or ``max_iter``. Potentials can be warm-started between calls.

Gradients by the envelope theorem: at the optimum, d OT_eps / dx_i = sum_j P_ij d c(x_i, y_j)/dx_i,
so nothing is back-propagated through the iterations (constant memory in the iteration count).
For ``output="cost"`` the same plan-fixed gradient is used, a first-order approximation
(exact for the dual outputs). Gradients w.r.t. the weights are the potentials.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_backend, check_points, check_same_device, check_same_width, resolve_backend

__all__ = ["SinkhornLoss", "SinkhornResult", "cost_matrix", "sinkhorn"]

COSTS = ("sqeuclidean", "cosine")
OUTPUTS = ("divergence", "ot", "cost")


@dataclass
class SinkhornResult:
    """value: 0-d tensor (differentiable); f, g: (n,), (m,) potentials of the (x, y) problem
    (units of the cost); n_iter: Sinkhorn updates done (all sub-problems); marginal_error: L1
    marginal violation of the (x, y) plan at exit; converged: marginal_error <= tol."""

    value: torch.Tensor
    f: torch.Tensor
    g: torch.Tensor
    n_iter: int
    marginal_error: float
    converged: bool


def cost_matrix(x: torch.Tensor, y: torch.Tensor, cost: str = "sqeuclidean", cost_scale: float = 0.5) -> torch.Tensor:
    """C (n, m) by one GEMM (norm trick for squared Euclidean, clamped at 0). Differentiable."""
    if cost == "cosine":
        xn, yn = F.normalize(x, dim=1, eps=1e-12), F.normalize(y, dim=1, eps=1e-12)
        return (1.0 - xn @ yn.T).clamp_min(0.0)
    # the cost is translation invariant: centring on the joint mean shrinks the norms and with
    # them the cancellation error of |x|^2 + |y|^2 - 2<x, y> in float32
    shift = torch.cat([x, y]).mean(0).detach()
    xs, ys = x - shift, y - shift
    c = torch.addmm((xs * xs).sum(1, keepdim=True) + (ys * ys).sum(1), xs, ys.T, alpha=-2.0)
    return c.clamp_min(0.0) * cost_scale


def _lse_rows(h: torch.Tensor, neg_c: torch.Tensor, inv_eps: float, buf: torch.Tensor) -> torch.Tensor:
    """LSE_j(h_j - C_ij / eps) for every row i, in place in ``buf`` (no n x m allocation)."""
    torch.add(h.unsqueeze(0), neg_c, alpha=inv_eps, out=buf)
    mx = buf.amax(1, keepdim=True)
    mx = torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx))
    # Terms below exp(-80) relative to the row's largest are dropped (clamped to exp(-80), which
    # changes the sum by < 1e-34 relative): without the clamp, exp of very negative arguments
    # yields float32 denormals, which x86 CPUs process ~25x slower (measured, one thread: a
    # 64 x 64 exp_ of -100s takes 195 us, of -40s 8 us; DLFD's eps = 0.01 hits this every step).
    buf.sub_(mx).clamp_(min=-80.0).exp_()
    return buf.sum(1).log_().add_(mx.squeeze(1))


class _Problem:
    """One OT_eps sub-problem on a materialised cost: (x, y) with C and C^T, or symmetric (x, x)."""

    def __init__(self, c: torch.Tensor, loga: torch.Tensor, logb: torch.Tensor, symmetric: bool):
        self.neg_c = (-c).contiguous()
        self.neg_ct = None if symmetric else self.neg_c.T.contiguous()
        self.loga, self.logb, self.symmetric = loga, logb, symmetric
        self.buf = torch.empty_like(self.neg_c)
        self.buf_t = None if symmetric else torch.empty_like(self.neg_ct)

    def row_update(self, g: torch.Tensor, eps: float) -> torch.Tensor:  # f from g
        return -eps * _lse_rows(self.logb + g / eps, self.neg_c, 1.0 / eps, self.buf)

    def col_update(self, f: torch.Tensor, eps: float) -> torch.Tensor:  # g from f
        return -eps * _lse_rows(self.loga + f / eps, self.neg_ct, 1.0 / eps, self.buf_t)


def _epsilon_schedule(eps0: float, eps: float, scaling: float) -> list[float]:
    if eps0 <= eps:
        return [eps]
    ratio = scaling * scaling
    steps = int(math.ceil(math.log(eps / eps0) / math.log(ratio)))
    return [eps0 * ratio ** t for t in range(steps)] + [eps]


def _solve(prob: _Problem, a: torch.Tensor, schedule: list[float], tol: float, max_iter: int,
           f0=None, g0=None) -> tuple[torch.Tensor, torch.Tensor, int, float]:
    """Alternating log-domain updates (symmetric problems: averaged self-updates)."""
    eps_t = schedule[-1]
    n_iter = 0
    if prob.symmetric:
        f = torch.zeros_like(a) if f0 is None else f0.clone()
        for eps in schedule[:-1]:
            f = 0.5 * (f + prob.row_update(f, eps))
            n_iter += 1
        err = math.inf
        for _ in range(max_iter):
            f_new = 0.5 * (f + prob.row_update(f, eps_t))
            err = float((a * torch.expm1((f - f_new).abs() / eps_t)).sum())
            f = f_new
            n_iter += 1
            if err <= tol:
                break
        return f, f, n_iter, err
    f = torch.zeros_like(a) if f0 is None else f0.clone()
    g = None if g0 is None else g0.clone()
    for eps in schedule[:-1]:
        g = prob.col_update(f, eps)
        f = prob.row_update(g, eps)
        n_iter += 1
    err = math.inf
    for _ in range(max_iter):
        g = prob.col_update(f, eps_t)
        f_new = prob.row_update(g, eps_t)
        # row marginal of the plan (f, g): a_i exp((f_i - f_new_i) / eps); its L1 violation
        err = float((a * torch.expm1((f - f_new) / eps_t).abs()).sum())
        f = f_new
        n_iter += 1
        if err <= tol:
            break
    return f, g, n_iter, err


def _normalise_weights(w, n: int, name: str, like: torch.Tensor) -> torch.Tensor:
    if w is None:
        return torch.full((n,), 1.0 / n, dtype=like.dtype, device=like.device)
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of weights or None, got {type(w).__name__}")
    if w.dim() != 1 or w.shape[0] != n:
        raise ValueError(f"{name}: expected shape ({n},), one weight per point, got {tuple(w.shape)}")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or float(w.sum()) <= 0:
        raise ValueError(f"{name}: expected finite non-negative weights with a positive sum")
    return w.to(like.dtype) / w.sum()


def _diameter(x: torch.Tensor, y: torch.Tensor) -> float:
    both = torch.cat([x.detach(), y.detach()])
    return float((both.amax(0) - both.amin(0)).norm())


class SinkhornLoss(nn.Module):
    """Debiased Sinkhorn divergence (default), entropic OT or its transport cost, as a loss.

    Args:
        epsilon: entropic regularisation in cost units; default from ``blur``.
        blur: length scale; eps = 2 * cost_scale * blur^2 for "sqeuclidean" (the Gaussian
            kernel's std is ``blur``, as in GeomLoss), blur^2 for "cosine". Default 0.05.
        cost: ``"sqeuclidean"`` (default) or ``"cosine"``.
        cost_scale: factor on |x - y|^2 (default 0.5; use 1.0 for POT's ``ot.dist``).
        scaling: eps-annealing blur ratio per iteration in (0, 1) (default 0.8); 1 disables it.
        output: ``"divergence"`` (default), ``"ot"`` or ``"cost"`` (see module docstring).
        tol: stop when the L1 marginal violation is below this (default 1e-6).
        max_iter: iterations at the target eps per sub-problem (default 1000).
        warm_start: start from the previous call's potentials when the shapes match (skips
            the annealing; for a training loop whose clouds move a little per step).
        backend: ``"auto"`` (Triton on CUDA), ``"torch"`` or ``"triton"``.
        memory_budget: bytes the Triton path may spend on a materialised cost matrix; above it
            the cost is recomputed tile by tile (default 1 GiB). The torch path always
            materialises C (n * m elements).

    ``loss(x, y, a=None, b=None)``: x (n, d), y (m, d), optional weights a (n,), b (m,)
    (normalised to sum 1; uniform if None). Returns a 0-d tensor; ``loss.last`` holds the
    :class:`SinkhornResult` of the (x, y) problem (potentials, iterations, convergence).
    Degenerate inputs (one point, identical clouds, zero diameter) give finite values.
    """

    def __init__(self, epsilon: float | None = None, *, blur: float = 0.05, cost: str = "sqeuclidean",
                 cost_scale: float = 0.5, scaling: float = 0.8, output: str = "divergence", tol: float = 1e-6,
                 max_iter: int = 1000, warm_start: bool = False, backend: str = "auto",
                 memory_budget: int = 1 << 30):
        super().__init__()
        if cost not in COSTS:
            raise ValueError(f"cost: expected one of {COSTS}, got {cost!r}")
        if output not in OUTPUTS:
            raise ValueError(f"output: expected one of {OUTPUTS}, got {output!r}")
        for name, v in (("blur", blur), ("cost_scale", cost_scale), ("tol", tol)):
            if not isinstance(v, (int, float)) or not v > 0 or not math.isfinite(v):
                raise ValueError(f"{name}: expected a positive number, got {v!r}")
        if epsilon is not None and (not isinstance(epsilon, (int, float)) or not epsilon > 0):
            raise ValueError(f"epsilon: expected a positive number or None, got {epsilon!r}")
        if not isinstance(scaling, (int, float)) or not 0 < scaling <= 1:
            raise ValueError(f"scaling: expected a number in (0, 1], got {scaling!r}")
        if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
            raise ValueError(f"max_iter: expected a positive integer, got {max_iter!r}")
        self.cost, self.cost_scale, self.output = cost, float(cost_scale), output
        self.blur, self.scaling, self.tol, self.max_iter = float(blur), float(scaling), float(tol), max_iter
        self.epsilon = float(epsilon) if epsilon is not None else (
            2.0 * self.cost_scale * self.blur ** 2 if cost == "sqeuclidean" else self.blur ** 2)
        self.warm_start, self.backend, self.memory_budget = warm_start, check_backend(backend), int(memory_budget)
        self._warm: dict[str, tuple] = {}
        self.last: SinkhornResult | None = None

    def reset_warm_start(self) -> None:
        """Forgets the stored potentials: the next call starts cold (with annealing)."""
        self._warm.clear()

    def extra_repr(self) -> str:
        return (f"epsilon={self.epsilon:g}, cost={self.cost!r}, cost_scale={self.cost_scale}, "
                f"scaling={self.scaling}, output={self.output!r}, tol={self.tol:g}, backend={self.backend!r}")

    def _schedule(self, x, y, warm: bool) -> list[float]:
        if warm or self.scaling >= 1.0:
            return [self.epsilon]
        if self.cost == "cosine":
            eps0 = 2.0
        else:
            eps0 = self.cost_scale * _diameter(x, y) ** 2
        return _epsilon_schedule(eps0, self.epsilon, self.scaling)

    def forward(self, x: torch.Tensor, y: torch.Tensor, a: torch.Tensor | None = None,
                b: torch.Tensor | None = None) -> torch.Tensor:
        return self.solve(x, y, a, b).value

    def solve(self, x: torch.Tensor, y: torch.Tensor, a: torch.Tensor | None = None,
              b: torch.Tensor | None = None) -> SinkhornResult:
        """Like ``forward`` but returns the whole :class:`SinkhornResult`."""
        check_points(x, "x")
        check_points(y, "y")
        check_same_width(x, y, "x", "y")
        check_same_device(x=x, y=y)
        if x.dtype != y.dtype:
            raise TypeError(f"y: expected the dtype of x ({x.dtype}), got {y.dtype}")
        a_w = _normalise_weights(a, x.shape[0], "a", x)
        b_w = _normalise_weights(b, y.shape[0], "b", x)
        backend = resolve_backend(self.backend, x.device)
        if backend == "triton":
            from ..kernels.sinkhorn import sinkhorn_triton

            res = sinkhorn_triton(self, x, y, a_w, b_w)
        else:
            res = self._solve_torch(x, y, a_w, b_w)
        self.last = res
        return res

    # --- torch path -----------------------------------------------------------------------
    def _sub_problem(self, key: str, c: torch.Tensor, p: torch.Tensor, q: torch.Tensor, wp: torch.Tensor,
                     wq: torch.Tensor, symmetric: bool):
        """Solves the problem with cost ``c`` (n, m; detached) between the clouds ``p`` and ``q``."""
        with torch.no_grad():
            prob = _Problem(c, wp.log(), wq.log(), symmetric)
            warm = self._warm.get(key) if self.warm_start else None
            if warm is not None and (warm[0].shape != wp.shape or warm[1].shape != wq.shape):
                warm = None
            sched = self._schedule(p, q, warm is not None)
            f0, g0 = (warm if warm is not None else (None, None))
            f, g, it, err = _solve(prob, wp, sched, self.tol, self.max_iter, f0, g0)
            if self.warm_start:
                self._warm[key] = (f, g)
            eps = sched[-1]
            plan = torch.exp(wp.log()[:, None] + wq.log()[None, :] + (f[:, None] + g[None, :] - c) / eps)
        return plan, f, g, it, err

    def _solve_torch(self, x, y, a, b) -> SinkhornResult:
        needs_grad = x.requires_grad or y.requires_grad

        def cost(u, v):
            # computed once: the solver reads it detached, the envelope surrogate keeps its graph
            if not needs_grad:
                u, v = u.detach(), v.detach()
            return cost_matrix(u, v, self.cost, self.cost_scale)

        c_xy = cost(x, y)
        p_xy, f, g, it, err = self._sub_problem("xy", c_xy.detach(), x, y, a, b, symmetric=False)
        ot_xy = (a * f).sum() + (b * g).sum()
        if self.output == "cost":
            value = (p_xy * c_xy.detach()).sum()
            grad_terms = [(1.0, p_xy, c_xy)]
            weight_terms = [(a, f), (b, g)]
        elif self.output == "ot":
            value = ot_xy
            grad_terms = [(1.0, p_xy, c_xy)]
            weight_terms = [(a, f), (b, g)]
        else:
            c_xx, c_yy = cost(x, x), cost(y, y)
            p_xx, f_xx, _, it_x, _ = self._sub_problem("xx", c_xx.detach(), x, x, a, a, symmetric=True)
            p_yy, g_yy, _, it_y, _ = self._sub_problem("yy", c_yy.detach(), y, y, b, b, symmetric=True)
            it += it_x + it_y
            value = ot_xy - (a * f_xx).sum() - (b * g_yy).sum()
            value = value.clamp_min(0.0)  # >= 0 in exact arithmetic; rounding can give -1e-9
            grad_terms = [(1.0, p_xy, c_xy), (-0.5, p_xx, c_xx), (-0.5, p_yy, c_yy)]
            weight_terms = [(a, f - f_xx), (b, g - g_yy)]
        value = value.detach()
        if needs_grad:
            # envelope theorem: gradient of <P*, C(x, y)> with the optimal plan P* held fixed
            surrogate = sum(w * (p * c).sum() for w, p, c in grad_terms)
            value = value + (surrogate - surrogate.detach())
        for w, pot in weight_terms:
            if w.requires_grad:
                value = value + (pot.detach() * (w - w.detach())).sum()
        return SinkhornResult(value=value, f=f, g=g, n_iter=it, marginal_error=err, converged=err <= self.tol)


def sinkhorn(x: torch.Tensor, y: torch.Tensor, a: torch.Tensor | None = None, b: torch.Tensor | None = None,
             **kwargs) -> torch.Tensor:
    """Functional form: ``SinkhornLoss(**kwargs)(x, y, a, b)``."""
    return SinkhornLoss(**kwargs)(x, y, a, b)
