"""Layer: losses. Entropic optimal transport between two weighted point clouds, and the debiased
Sinkhorn divergence, as a drop-in loss.

With cost C_ij = c(x_i, y_j) and weights a (n,), b (m,) summing to one:

* OT_eps(a, b) = min_P <P, C> + eps KL(P | a b^T) over plans with marginals a, b
  = <a, f> + <b, g> at the optimal dual potentials (f, g)              (``output="ot"``)
* <P, C>, the transport cost of the optimal entropic plan, what POT's ``sinkhorn2`` returns
  (``output="cost"``)
* S_eps = OT_eps(a, b) - OT_eps(a, a) / 2 - OT_eps(b, b) / 2 >= 0, zero for identical clouds
  (Feydy et al., AISTATS 2019)                                            (``output="divergence"``)

Costs: ``"sqeuclidean"`` c = cost_scale * |x - y|^2 (cost_scale 0.5 by default, GeomLoss's
convention; 1.0 is POT's ``ot.dist``), and ``"cosine"`` c = max(0, 1 - cos(x, y)) (DLFD).

Solver (one algorithm, two backends): log-domain Sinkhorn, eps-annealing from the cost range down
to the target (``scaling`` is the blur ratio per iteration, GeomLoss's meaning; eps shrinks by
scaling^2), then iterations at the target eps. A non-symmetric problem alternates
g <- softmin_cols(f), f <- softmin_rows(g); the symmetric OT_eps(a, a) of the divergence averages
f <- (f + softmin_rows(f)) / 2. The reductions come from a backend with one interface:
:class:`unlearnkit.kernels.sinkhorn_ref.TorchCost` (torch, materialised cost) or
:class:`unlearnkit.kernels.sinkhorn.TritonCost` (Triton, materialised or tile-recomputed cost);
the schedule, warm start, stopping rule, value and gradient are written once, here.

Stopping rule. Each iteration gives, for free, the L1 row-marginal error of the plan of the
previous potentials (a_i exp((f_i - softmin_i) / eps)); when it falls below the tolerance, the
plan of the current potentials is formed and its two marginals measured (one extra pass); the
solve stops when that measured L1 error ||P 1 - a||_1 + ||P^T 1 - b||_1 is below the tolerance.
``last.marginal_error`` is always that measurement, taken on the returned potentials. The
solve also stops when 100 iterations in a row give no new smallest estimate while the estimate
is within 100 times the precision floor below (``last.stalled``): rounding noise, not the
iteration, then drives the error. Far above the floor a flat error is a plateau of a slow
solve (small eps), which goes on to ``max_iter``.

Precision. The solver runs in float32 for float16 / bfloat16 / float32 inputs and in float64 for
float64 inputs on the torch backend (the Triton kernels are float32), with autocast disabled, and
returns the input dtype. A plan entry
exp((f + g - C) / eps) carries a relative rounding error of about u * R / eps (u: the dtype's
unit roundoff, R: the cost range), so the tolerance is raised to ``precision_floor`` =
2 u (log2(n + m) + R / eps) when it asks for less (``last.tol_used`` is the tolerance the solve
stopped at). When that floor exceeds 1e-2 in float32 (eps below ~1 / 40,000 of the cost range), the
solve runs in float64 (on the torch backend) instead. ``converged`` always refers to the tolerance
asked for (``last.tol``): a ``tol`` given below the floor gives ``converged=False`` unless the
plan happens to meet it, and the warning names both tolerances. The default ``tol=None`` asks for
1e-6 or the floor, whichever is larger. A solve that ends above the tolerance asked for warns once
per module (:class:`SinkhornConvergenceWarning`) and reports ``converged=False``.

Gradients by the envelope theorem: at the optimum, d OT_eps / dx_i = sum_j P_ij d c(x_i, y_j)/dx_i,
so nothing is back-propagated through the iterations (constant memory in the iteration count);
the backend streams the plan reductions (P 1 and P y). For ``output="cost"`` the same plan-fixed
gradient is used, a first-order approximation (exact for the dual outputs). Gradients w.r.t. the
weights are the potentials.
"""

from __future__ import annotations

import math
import sys
import types
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels.sinkhorn_ref import TorchCost, cost_from_points
from ._checks import check_backend, check_points, check_same_device, check_same_width, resolve_backend

__all__ = ["SinkhornConvergenceWarning", "SinkhornLoss", "SinkhornResult", "cost_matrix", "precision_floor",
           "sinkhorn"]

COSTS = ("sqeuclidean", "cosine")
OUTPUTS = ("divergence", "ot", "cost")
FLOOR_FACTOR = 2.0       # precision_floor = FLOOR_FACTOR * u * (log2(n + m) + R / eps)
FLOOR_MAX = 1e-2         # above this in float32, the solve runs in float64
DEFAULT_TOL = 1e-6       # what tol=None asks for (raised to the precision floor)
STALL_WINDOW = 100       # iterations without a new smallest error estimate: stop (a stall) ...
STALL_ZONE = 100.0       # ... counted only while the estimate is within this factor of the floor


class SinkhornConvergenceWarning(RuntimeWarning):
    """A Sinkhorn solve ended with a marginal error above its tolerance (max_iter or a stall)."""


@dataclass
class SinkhornResult:
    """value: 0-d tensor (differentiable, the input dtype); f, g: (n,), (m,) potentials of the (x, y)
    problem (units of the cost, the solver's dtype); n_iter: Sinkhorn updates done (all
    sub-problems); marginal_error: ||P 1 - a||_1 + ||P^T 1 - b||_1 of the (x, y) plan at exit,
    measured on the plan of (f, g); converged: marginal_error <= tol; tol: the tolerance asked
    for (``SinkhornLoss(tol=...)``; with the default None, 1e-6 raised to the precision floor);
    tol_used: the tolerance the solve stopped at (tol raised to the dtype's precision floor,
    :func:`precision_floor`); stalled: stopped for lack of progress."""

    value: torch.Tensor
    f: torch.Tensor
    g: torch.Tensor
    n_iter: int
    marginal_error: float
    converged: bool
    tol: float = math.nan
    stalled: bool = False
    tol_used: float = math.nan


def precision_floor(dtype: torch.dtype, cost_range: float, eps: float, n_points: int) -> float:
    """The smallest L1 marginal error the solver certifies in ``dtype`` for costs in [0, cost_range]
    at regularisation ``eps`` on n + m = ``n_points`` points: 2 u (log2(n + m) + cost_range / eps),
    u = finfo(dtype).eps. The first term is the summation error of the marginals, the second the
    rounding of the exponents (f + g - C) / eps. Measured in float32 with the floor switched off
    (n + m = 127 and 607, d = 3 and 64, raw and unit-norm points, both costs, eps from 1e-3 to 1
    times the largest cost): the 24 solves that stalled did so at 0.02 to 0.57 of this floor."""
    return FLOOR_FACTOR * torch.finfo(dtype).eps * (math.log2(max(n_points, 2)) + cost_range / eps)


def _prepare(x: torch.Tensor, y: torch.Tensor, cost: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The points the backends see (differentiable): unit rows for "cosine", both clouds centred
    on their joint mean for "sqeuclidean" (translation invariant; it shrinks the norms and with
    them the cancellation error of |p|^2 + |q|^2 - 2 <p, q>)."""
    if cost == "cosine":
        # rows divided by their largest entry first, so that the norm cannot overflow
        def unit(z):
            return F.normalize(z / z.detach().abs().amax(1, keepdim=True).clamp_min(1e-30), dim=1, eps=1e-12)
        return unit(x), unit(y)
    shift = torch.cat([x, y]).mean(0).detach()
    return x - shift, y - shift


def cost_matrix(x: torch.Tensor, y: torch.Tensor, cost: str = "sqeuclidean", cost_scale: float = 0.5) -> torch.Tensor:
    """C (n, m) by one GEMM (norm trick for squared Euclidean, clamped at 0). Differentiable."""
    p, q = _prepare(x, y, cost)
    return cost_from_points(p, q, cost, cost_scale)


def _epsilon_schedule(eps0: float, eps: float, scaling: float) -> list[float]:
    if eps0 <= eps:
        return [eps]
    ratio = scaling * scaling
    steps = int(math.ceil(math.log(eps / eps0) / math.log(ratio)))
    return [eps0 * ratio ** t for t in range(steps)] + [eps]


def _normalise_weights(w, n: int, name: str, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if w is None:
        return torch.full((n,), 1.0 / n, dtype=dtype, device=device)
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of weights or None, got {type(w).__name__}")
    if w.dim() != 1 or w.shape[0] != n:
        raise ValueError(f"{name}: expected shape ({n},), one weight per point, got {tuple(w.shape)}")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or float(w.sum()) <= 0:
        raise ValueError(f"{name}: expected finite non-negative weights with a positive sum")
    w = w.to(device=device, dtype=dtype)
    return w / w.sum()


def _diameter(x: torch.Tensor, y: torch.Tensor) -> float:
    """Diagonal of the joint bounding box, in float64 (no overflow for any input dtype)."""
    hi = torch.maximum(x.detach().amax(0), y.detach().amax(0)).double()
    lo = torch.minimum(x.detach().amin(0), y.detach().amin(0)).double()
    return float((hi - lo).norm())


def _radius(p: torch.Tensor) -> float:
    return float(p.detach().double().norm(dim=1).max())


def _marginal_error(sums, a: torch.Tensor, b: torch.Tensor) -> float:
    r, c, _ = sums
    return float((r - a).abs().sum() + (c - b).abs().sum())


def _caller_level() -> int:
    """``stacklevel`` for a warning raised in this module: the first frame outside it and torch.nn."""
    frame: types.FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and (frame.f_code.co_filename == __file__ or "torch/nn/" in frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    return level - 1


class _Envelope(torch.autograd.Function):
    """Returns the precomputed value; backward forms sum_j P_ij grad_p c(p_i, q_j) (and the
    column counterpart) from the backend's plan reductions, for each (weight, sub-problem)."""

    @staticmethod
    def forward(ctx, value, p, q, kind, scale, terms):
        ctx.save_for_backward(p.detach(), q.detach())
        ctx.kind, ctx.scale, ctx.terms = kind, scale, terms
        return value.clone()

    @staticmethod
    def backward(ctx, grad_out):
        with torch.autocast(device_type=grad_out.device.type, enabled=False):  # backward called under autocast
            return _Envelope._backward(ctx, grad_out)

    @staticmethod
    def _backward(ctx, grad_out):
        p, q = ctx.saved_tensors
        gp, gq = torch.zeros_like(p), torch.zeros_like(q)

        def cost_grad(pts, rowsum, plan_pts):  # sum_j P_ij d c(pts_i, other_j) / d pts_i
            plan_pts = plan_pts.to(pts.dtype)
            if ctx.kind == "sqeuclidean":
                return 2.0 * ctx.scale * (rowsum.to(pts.dtype)[:, None] * pts - plan_pts)
            return -plan_pts

        for weight, which, op, f, g, la, lb, eps in ctx.terms:
            if which == "xy":
                pq, r, qp, c = op.plan_apply(f, g, la, lb, eps)
                gp += weight * cost_grad(p, r, pq)
                gq += weight * cost_grad(q, c, qp)
            else:  # c(z_i, z_j) moves through both slots: twice the row term (P is symmetric)
                pz, r, _, _ = op.plan_apply(f, g, la, lb, eps, cols=False)
                target, pts = (gp, p) if which == "xx" else (gq, q)
                target += 2.0 * weight * cost_grad(pts, r, pz)
        g_out = grad_out.to(p.dtype)
        return None, g_out * gp, g_out * gq, None, None, None


class SinkhornLoss(nn.Module):
    """Debiased Sinkhorn divergence (default), entropic OT or its transport cost, as a loss.

    Args:
        epsilon: entropic regularisation in cost units; default from ``blur``.
        blur: length scale; eps = 2 * cost_scale * blur^2 for "sqeuclidean" (the Gaussian
            kernel's std is ``blur``, as in GeomLoss), blur^2 for "cosine". Default 0.05.
        cost: ``"sqeuclidean"`` (default) or ``"cosine"``.
        cost_scale: factor on |x - y|^2 (default 0.5; use 1.0 for POT's ``ot.dist``).
        scaling: eps-annealing blur ratio per iteration in (0, 1] (default 0.8); 1 disables it.
        output: ``"divergence"`` (default), ``"ot"`` or ``"cost"`` (see module docstring).
        tol: the L1 marginal violation of the plan the solve must reach to count as converged.
            The solve stops at ``max(tol, precision_floor)`` (:func:`precision_floor` of the
            solver's dtype: below it rounding, not the iteration, sets the error); a ``tol``
            below that floor is kept for ``last.converged`` and, when the plan misses it, warned
            about once, naming both. None (default): 1e-6 or the floor, whichever is larger,
            without a warning.
        max_iter: iterations at the target eps per sub-problem (default 1000).
        warm_start: start from the previous call's potentials when the shapes match (skips
            the annealing; for a training loop whose clouds move a little per step).
        backend: ``"auto"`` (Triton on CUDA), ``"torch"`` or ``"triton"``.
        memory_budget: bytes the Triton path may spend on a materialised cost matrix; above it
            the cost is recomputed tile by tile (default 1 GiB). The torch path always
            materialises C (n * m elements).

    ``loss(x, y, a=None, b=None)``: x (n, d), y (m, d) of one floating dtype, optional weights
    a (n,), b (m,) (normalised to sum 1; uniform if None). Returns a 0-d tensor of x's dtype;
    ``loss.last`` holds the :class:`SinkhornResult` of the (x, y) problem (potentials, iterations,
    convergence). Degenerate inputs (one point, identical clouds, zero diameter) give finite values.
    Raises ValueError when the squared distances overflow the solver's dtype.
    """

    def __init__(self, epsilon: float | None = None, *, blur: float = 0.05, cost: str = "sqeuclidean",
                 cost_scale: float = 0.5, scaling: float = 0.8, output: str = "divergence", tol: float | None = None,
                 max_iter: int = 1000, warm_start: bool = False, backend: str = "auto",
                 memory_budget: int = 1 << 30):
        super().__init__()
        if cost not in COSTS:
            raise ValueError(f"cost: expected one of {COSTS}, got {cost!r}")
        if output not in OUTPUTS:
            raise ValueError(f"output: expected one of {OUTPUTS}, got {output!r}")
        for name, v in (("blur", blur), ("cost_scale", cost_scale), ("tol", 1e-6 if tol is None else tol)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or not math.isfinite(v):
                raise ValueError(f"{name}: expected a positive finite number, got {v!r}")
        if epsilon is not None and (isinstance(epsilon, bool) or not isinstance(epsilon, (int, float))
                                    or not epsilon > 0 or not math.isfinite(epsilon)):
            raise ValueError(f"epsilon: expected a positive finite number or None, got {epsilon!r}")
        if isinstance(scaling, bool) or not isinstance(scaling, (int, float)) or not 0 < scaling <= 1:
            raise ValueError(f"scaling: expected a number in (0, 1], got {scaling!r}")
        if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
            raise ValueError(f"max_iter: expected a positive integer, got {max_iter!r}")
        if isinstance(memory_budget, bool) or not isinstance(memory_budget, int) or memory_budget < 0:
            raise ValueError(f"memory_budget: expected a non-negative integer (bytes), got {memory_budget!r}")
        self.cost, self.cost_scale, self.output = cost, float(cost_scale), output
        self.blur, self.scaling, self.max_iter = float(blur), float(scaling), max_iter
        self.tol = None if tol is None else float(tol)
        self.epsilon = float(epsilon) if epsilon is not None else (
            2.0 * self.cost_scale * self.blur ** 2 if cost == "sqeuclidean" else self.blur ** 2)
        if not self.epsilon > 0:
            raise ValueError(f"blur: expected a value whose epsilon is positive, got {blur!r}")
        self.warm_start, self.backend, self.memory_budget = warm_start, check_backend(backend), int(memory_budget)
        self._warm: dict[str, tuple] = {}
        self._warned = False
        self.last: SinkhornResult | None = None

    def reset_warm_start(self) -> None:
        """Forgets the stored potentials: the next call starts cold (with annealing)."""
        self._warm.clear()

    def extra_repr(self) -> str:
        return (f"epsilon={self.epsilon:g}, cost={self.cost!r}, cost_scale={self.cost_scale}, "
                f"scaling={self.scaling}, output={self.output!r}, tol={self.tol if self.tol is None else f'{self.tol:g}'}, "
                f"backend={self.backend!r}")

    def _schedule(self, p: torch.Tensor, q: torch.Tensor, warm: bool) -> list[float]:
        if warm or self.scaling >= 1.0:
            return [self.epsilon]
        eps0 = 2.0 if self.cost == "cosine" else self.cost_scale * _diameter(p, q) ** 2
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
        backend = resolve_backend(self.backend, x.device)
        # the Triton kernels are float32; the torch backend keeps float64 inputs in float64
        dtype = torch.float64 if x.dtype == torch.float64 and backend == "torch" else torch.float32
        self._check_range(x, y, dtype)
        with torch.autocast(device_type=x.device.type, enabled=False):
            res = self._solve(x, y, a, b, dtype, backend)
        self.last = res
        return res

    def _check_range(self, x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype) -> None:
        """Squared distances (and the squared norms of the norm trick) must fit in ``dtype``."""
        if self.cost == "cosine":
            return  # rows are rescaled before normalising: nothing can overflow
        limit = torch.finfo(dtype).max / 4
        diam = _diameter(x, y)
        if not diam * diam * max(1.0, self.cost_scale) <= limit:
            name = "x" if float(x.detach().abs().max()) >= float(y.detach().abs().max()) else "y"
            raise ValueError(f"{name}: expected points whose squared distances fit in {dtype} (cost_scale * "
                             f"diameter^2 <= {limit:.3g}), got a diameter of {diam:.3g}; rescale the points"
                             + (" or pass float64 tensors" if dtype != torch.float64 else ""))

    def _solve(self, x, y, a, b, dtype, backend) -> SinkhornResult:
        n, m = x.shape[0], y.shape[0]
        p, q = _prepare(x.to(dtype), y.to(dtype), self.cost)
        # the cost range R: 2 for the cosine cost; cost_scale (max |p| + max |q|)^2 for centred points
        cost_range = 2.0 if self.cost == "cosine" else self.cost_scale * (_radius(p) + _radius(q)) ** 2
        floor = precision_floor(dtype, cost_range, self.epsilon, n + m)
        if floor > FLOOR_MAX and dtype == torch.float32:  # float32 cannot resolve this plan
            dtype, backend = torch.float64, "torch"
            floor = precision_floor(dtype, cost_range, self.epsilon, n + m)
            p, q = _prepare(x.to(dtype), y.to(dtype), self.cost)
        asked = DEFAULT_TOL if self.tol is None else self.tol
        tol = max(asked, min(floor, FLOOR_MAX))  # where the solve stops
        if self.tol is None:
            asked = tol  # the default asks for what the dtype can certify
        a_w = _normalise_weights(a, n, "a", dtype, x.device)
        b_w = _normalise_weights(b, m, "b", dtype, x.device)
        Cost: type
        if backend == "triton":
            from ..kernels.sinkhorn import TritonCost

            Cost = TritonCost
        else:
            Cost = TorchCost
        scale = self.cost_scale if self.cost == "sqeuclidean" else 1.0
        ad, bd = a_w.detach(), b_w.detach()
        la, lb = ad.log(), bd.log()
        failed = []

        def sub(key, u, v, wu, wv, lu, lv, symmetric):
            op = Cost(u, v, kind=self.cost, scale=scale, symmetric=symmetric,
                      materialize=u.shape[0] * v.shape[0] * 4 <= self.memory_budget)
            f, g, it, err, stalled, pc, eps = self._iterate(key, op, u, v, wu, wv, lu, lv, symmetric, tol,
                                                            STALL_ZONE * min(floor, FLOOR_MAX))
            if not err <= tol:
                failed.append((key, it, err, stalled))
            return op, f, g, it, err, stalled, pc, eps

        op_xy, f, g, it, err, stalled, pc, eps = sub("xy", p, q, ad, bd, la, lb, False)
        ot_xy = (ad * f).sum() + (bd * g).sum()
        terms = [(1.0, "xy", op_xy, f, g, la, lb, eps)]
        if self.output == "cost":
            value, wterms = pc, [(a_w, f), (b_w, g)]
        elif self.output == "ot":
            value, wterms = ot_xy, [(a_w, f), (b_w, g)]
        else:
            op_xx, f_xx, _, it_x, _, _, _, eps_x = sub("xx", p, p, ad, ad, la, la, True)
            op_yy, g_yy, _, it_y, _, _, _, eps_y = sub("yy", q, q, bd, bd, lb, lb, True)
            it += it_x + it_y
            value = (ot_xy - (ad * f_xx).sum() - (bd * g_yy).sum()).clamp_min(0.0)  # >= 0 in exact arithmetic
            terms += [(-0.5, "xx", op_xx, f_xx, f_xx, la, la, eps_x), (-0.5, "yy", op_yy, g_yy, g_yy, lb, lb, eps_y)]
            wterms = [(a_w, f - f_xx), (b_w, g - g_yy)]
        value = value.detach().to(dtype)
        if p.requires_grad or q.requires_grad:
            value = _Envelope.apply(value, p, q, self.cost, scale, terms)
        for w, pot in wterms:
            if w.requires_grad:
                value = value + (pot.detach().to(w.dtype) * (w - w.detach())).sum()
        if (failed or not err <= asked) and not self._warned:
            self._warned = True
            dt = str(dtype).removeprefix("torch.")
            if failed:
                what = "; ".join(f"{k}: marginal error {e:.3g} after {i} iterations"
                                 + (" (no progress over the last 100)" if s else "") for k, i, e, s in failed)
                raised = f", raised from the tol {asked:.3g} asked for to {dt}'s precision floor" if tol > asked else ""
                msg = (f"SinkhornLoss: the solve did not reach tol {tol:.3g}{raised} ({what}); raise max_iter or "
                       f"epsilon{', or pass float64 inputs' if dtype != torch.float64 else ''}.")
            else:  # it reached the floor, which is above what was asked for
                msg = (f"SinkhornLoss: tol {asked:.3g} is below the precision floor {tol:.3g} of {dt} for this problem "
                       f"(eps {self.epsilon:.3g}, cost range {cost_range:.3g}, n + m = {n + m}): the solve stopped at "
                       f"tol {tol:.3g} with a marginal error of {err:.3g}, so converged=False for tol {asked:.3g}; pass "
                       f"{'float64 inputs, or ' if dtype != torch.float64 else ''}tol >= {tol:.3g}.")
            warnings.warn(f"{msg} Warned once per module; see loss.last (tol asked for, tol_used).",
                          SinkhornConvergenceWarning, stacklevel=_caller_level())
        return SinkhornResult(value=value.to(x.dtype), f=f, g=g, n_iter=it, marginal_error=err,
                              converged=err <= asked, tol=asked, stalled=stalled, tol_used=tol)

    def _iterate(self, key, op, u, v, a, b, la, lb, symmetric, tol, stall_zone):
        """Annealing then target iterations on one sub-problem; returns (f, g, n_iter, measured
        marginal error, stalled, <P, C>, eps) at the returned potentials."""
        warm = self._warm.get(key) if self.warm_start else None
        if warm is not None and (warm[0].shape != a.shape or warm[1].shape != b.shape):
            warm = None
        sched = self._schedule(u, v, warm is not None)
        eps_t = sched[-1]
        f = torch.zeros_like(a) if warm is None else warm[0].to(a.dtype).clone()
        g = torch.zeros_like(b) if warm is None else warm[1].to(b.dtype).clone()

        def step(f, g, eps):
            """One update; the L1 marginal error of the plan of the incoming potentials."""
            if symmetric:
                t = op.softmin_rows(la + f / eps, eps)
                est = 2.0 * (a * torch.expm1((f - t) / eps).abs()).sum()  # rows = columns
                f = 0.5 * (f + t)
                return f, f, est
            g = op.softmin_cols(la + f / eps, eps)  # columns of plan (f, g) now exact
            f_new = op.softmin_rows(lb + g / eps, eps)
            return f_new, g, (a * torch.expm1((f - f_new) / eps).abs()).sum()

        n_iter = 0
        with torch.no_grad():
            for eps in sched[:-1]:
                f, g, _ = step(f, g, eps)
                n_iter += 1
            sums, best, since, stalled = None, math.inf, 0, False
            for _ in range(self.max_iter):
                f, g, est = step(f, g, eps_t)
                n_iter += 1
                sums = None
                est = float(est)
                if est <= tol:  # the cheap estimate passed: measure the plan itself
                    sums = op.plan_sums(f, g, la, lb, eps_t)
                    if _marginal_error(sums, a, b) <= tol:
                        break
                if est < best or est > stall_zone:
                    best, since = min(best, est), 0
                else:
                    since += 1
                    if since >= STALL_WINDOW:
                        stalled = True
                        break
            if sums is None:
                sums = op.plan_sums(f, g, la, lb, eps_t)
        if self.warm_start:
            self._warm[key] = (f, g)
        return f, g, n_iter, _marginal_error(sums, a, b), stalled, sums[2], eps_t


def sinkhorn(x: torch.Tensor, y: torch.Tensor, a: torch.Tensor | None = None, b: torch.Tensor | None = None,
             **kwargs) -> torch.Tensor:
    """Functional form: ``SinkhornLoss(**kwargs)(x, y, a, b)``."""
    return SinkhornLoss(**kwargs)(x, y, a, b)
