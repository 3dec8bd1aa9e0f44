"""Layer: losses (tests). SinkhornLoss's stopping rule, precision floor and errors (issue 14).

Oracles: the L1 marginal error of the returned potentials' plan recomputed in float64 from the
exact costs (torch.cdist), POT (``ot.emd2`` exact OT, ``ot.sinkhorn2`` log-domain), and a float64
solve of the same problem. Each test names the behaviour it pins and what happened before.
"""

from __future__ import annotations

import math
import sys
import warnings

import numpy as np
import ot
import pytest
import torch

from unlearnkit.losses import SinkhornConvergenceWarning, SinkhornLoss

S = sys.modules["unlearnkit.losses.sinkhorn"]  # the module (the package exports a function of that name)


def _plan_error64(x, y, res, eps, cost_scale=0.5):
    """||P 1 - a||_1 + ||P^T 1 - b||_1 of the plan of (res.f, res.g), uniform weights, in float64."""
    c = cost_scale * torch.cdist(x.double(), y.double()) ** 2
    n, m = c.shape
    plan = torch.exp(-math.log(n) - math.log(m) + (res.f.double()[:, None] + res.g.double()[None, :] - c) / eps)
    return float((plan.sum(1) - 1 / n).abs().sum() + (plan.sum(0) - 1 / m).abs().sum())


def _solve(loss, x, y):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = loss(x, y)
    return value, [w for w in caught if issubclass(w.category, SinkhornConvergenceWarning)]


@pytest.mark.parametrize("eps", [1e-4, 1e-2, 0.3])
def test_marginal_error_is_measured_on_the_plan(eps):
    # Before: at eps 1e-4 this float32 problem reported converged=True and marginal_error=0.0
    # (the potentials' change had rounded to zero) while the plan's error was 2.8e-4.
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(12, 5, generator=g), torch.rand(9, 5, generator=g)
    loss = SinkhornLoss(epsilon=eps, output="cost", tol=1e-6)
    value, warned = _solve(loss, x, y)
    r = loss.last
    true = _plan_error64(x, y, r, eps)
    assert r.tol >= 1e-6
    assert r.tol == 1e-6 and r.tol_used >= 1e-6  # converged refers to the tol asked for; tol_used is where it stopped
    assert r.marginal_error == pytest.approx(true, abs=r.tol_used)  # the same quantity, up to float32 rounding
    assert r.converged == (r.marginal_error <= r.tol)
    assert bool(warned) == (not r.converged)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # POT's exp overflows at eps 1e-4 in its log-domain solver, harmlessly
        ref = float(ot.sinkhorn2(np.full(12, 1 / 12), np.full(9, 1 / 9),
                                 0.5 * ot.dist(x.double().numpy(), y.double().numpy()),
                                 eps, method="sinkhorn_log", numItermax=100000, stopThr=1e-12))
    if r.converged:  # the float32 value, where float32 resolves the plan (eps 0.3 here)
        assert true <= 2 * r.tol
        assert float(value) == pytest.approx(ref, rel=1e-3)
    else:  # not converged is a true report: the plan really is further from its marginals than tol
        assert true > r.tol
    # the value at every eps, converged or not in float32: the same problem in float64 reaches tol 1e-9
    loss64 = SinkhornLoss(epsilon=eps, output="cost", tol=1e-9, max_iter=100000)
    v64, warned64 = _solve(loss64, x.double(), y.double())
    assert loss64.last.converged and not warned64
    assert float(v64) == pytest.approx(ref, rel=1e-8)


def test_tiny_epsilon_is_not_reported_converged_with_a_wrong_value():
    # Before: eps 1e-10 in float32 returned 5.2e12 (exact OT 0.047) with converged=True.
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(12, 2, generator=g), torch.rand(9, 2, generator=g)
    loss = SinkhornLoss(epsilon=1e-10, output="cost", tol=1e-6)
    value, warned = _solve(loss, x, y)
    r = loss.last
    assert r.f.dtype == torch.float64 and value.dtype == torch.float32  # float32 cannot resolve eps 1e-10
    assert math.isfinite(float(value))
    assert r.marginal_error == pytest.approx(_plan_error64(x, y, r, 1e-10), rel=1e-6, abs=r.tol)
    assert r.converged == (r.marginal_error <= r.tol)
    assert bool(warned) == (not r.converged)


def test_float32_solve_moves_to_float64_when_float32_cannot_resolve_the_plan():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([[0.05, 1.0], [1.0, 0.1], [0.0, 0.02]])
    eps = 1e-6  # R / eps ~ 1e6: the float32 floor is ~0.25
    assert S.precision_floor(torch.float32, 1.0, eps, 6) > S.FLOOR_MAX
    loss = SinkhornLoss(epsilon=eps, output="cost", tol=1e-6)
    value, warned = _solve(loss, x, y)
    exact = ot.emd2(np.full(3, 1 / 3), np.full(3, 1 / 3), 0.5 * ot.dist(x.double().numpy(), y.double().numpy()))
    assert loss.last.f.dtype == torch.float64 and value.dtype == torch.float32
    assert loss.last.converged and not warned
    assert float(value) == pytest.approx(float(exact), abs=1e-5)


def test_tolerance_below_float32_precision_is_clamped_and_stops_early():
    # Before: float32 with tol 1e-7 could run to max_iter (n = m = 2048, d = 256: 5,000
    # iterations, 27.6 s). The solve now stops at the float32 floor (last.tol_used); converged
    # still refers to the tol asked for, which the plan misses, and one warning names both.
    g = torch.Generator().manual_seed(4)
    x = torch.nn.functional.normalize(torch.randn(200, 16, generator=g), dim=1)
    y = torch.nn.functional.normalize(torch.randn(150, 16, generator=g) + 0.3, dim=1)
    loss = SinkhornLoss(epsilon=0.05, output="ot", tol=1e-9, max_iter=5000)
    value, warned = _solve(loss, x, y)
    r = loss.last
    p, q = S._prepare(x, y, "sqeuclidean")
    cost_range = 0.5 * (S._radius(p) + S._radius(q)) ** 2
    floor = S.precision_floor(torch.float32, cost_range, 0.05, 350)
    assert r.tol == 1e-9 and r.tol_used == pytest.approx(floor) and floor > 1e-9
    assert r.n_iter < 200 and r.marginal_error <= r.tol_used
    assert r.converged == (r.marginal_error <= 1e-9)
    assert _plan_error64(x, y, r, 0.05) <= r.tol_used
    assert bool(warned) == (not r.converged)
    v64 = float(SinkhornLoss(epsilon=0.05, output="ot", tol=1e-12, max_iter=5000)(x.double(), y.double()))
    assert float(value) == pytest.approx(v64, rel=1e-5)


def test_a_stall_stops_the_solve_and_is_reported(monkeypatch):
    # With the floor switched off, tol 1e-12 is out of float32's reach: the error stops improving
    # and the solve must stop on its own (before: it ran to max_iter).
    monkeypatch.setattr(S, "FLOOR_FACTOR", 1e-9)
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(150, 8, generator=g), torch.randn(120, 8, generator=g) + 0.5
    loss = SinkhornLoss(blur=1.0, output="ot", tol=1e-12, max_iter=5000)
    value, warned = _solve(loss, x, y)
    r = loss.last
    assert r.stalled and not r.converged and r.n_iter < 1000
    assert len(warned) == 1 and "no progress" in str(warned[0].message)
    assert r.marginal_error < 1e-4  # it stalled at float32's precision, not far from the solution
    v64 = float(SinkhornLoss(blur=1.0, output="ot", tol=1e-12, max_iter=5000)(x.double(), y.double()))
    assert float(value) == pytest.approx(v64, rel=1e-5)


def test_slow_float64_plateau_is_not_a_stall():
    # small eps, far above the precision floor: a flat error is a slow solve, not rounding noise
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(12, 2, generator=g, dtype=torch.float64), torch.rand(9, 2, generator=g, dtype=torch.float64)
    loss = SinkhornLoss(epsilon=1e-5, output="cost", tol=1e-6, max_iter=400)
    _solve(loss, x, y)
    assert not loss.last.stalled and loss.last.n_iter >= 400


def test_unconverged_solve_warns_once_per_module():
    g = torch.Generator().manual_seed(6)
    x, y = torch.randn(20, 3, generator=g, dtype=torch.float64), torch.randn(15, 3, generator=g, dtype=torch.float64)
    loss = SinkhornLoss(blur=0.05, max_iter=2)
    _, first = _solve(loss, x, y)
    _, second = _solve(loss, x, y)
    assert len(first) == 1 and not second and not loss.last.converged
    assert "did not reach tol" in str(first[0].message)
    _, fresh = _solve(SinkhornLoss(blur=0.05, max_iter=2), x, y)
    assert len(fresh) == 1
    _, converged = _solve(SinkhornLoss(blur=1.0, max_iter=1000), x, y)
    assert not converged


@pytest.mark.parametrize("kwargs,match", [
    ({"epsilon": float("inf")}, "epsilon: expected a positive finite number"),
    ({"epsilon": float("nan")}, "epsilon: expected a positive finite number"),
    ({"blur": float("inf")}, "blur: expected a positive finite number"),
    ({"memory_budget": -1}, "memory_budget: expected a non-negative integer"),
])
def test_non_finite_parameters_are_rejected(kwargs, match):
    # Before: SinkhornLoss(float("inf")) was accepted and returned NaN.
    with pytest.raises(ValueError, match=match):
        SinkhornLoss(**kwargs)


@pytest.mark.parametrize("scaling", [0.8, 1.0])
@pytest.mark.parametrize("dtype,big", [(torch.float32, 3e19), (torch.float16, None), (torch.float64, 1e160)])
def test_overflowing_squared_distances_are_a_clear_error(scaling, dtype, big):
    # Before: "math domain error" (scaling 0.8) or a silent NaN / finite value (scaling 1.0).
    g = torch.Generator().manual_seed(7)
    x, y = torch.randn(4, 2, generator=g, dtype=torch.float64), torch.randn(3, 2, generator=g, dtype=torch.float64)
    if big is None:  # float16 points cannot overflow the float32 solver
        xh, yh = (x * 100).to(dtype), y.to(dtype)  # |x - y|^2 up to ~1e5, beyond float16 range (65504)
        loss = SinkhornLoss(scaling=scaling, output="ot")
        value = loss(xh, yh)
        ref = SinkhornLoss(scaling=scaling, output="ot", tol=1e-9)(xh.double(), yh.double())
        assert value.dtype == dtype and torch.isfinite(loss.last.f).all() and torch.isfinite(loss.last.g).all()
        assert float(value) == pytest.approx(float(ref), rel=2e-3)
        return
    with pytest.raises(ValueError, match=f"x: expected points whose squared distances fit in {dtype}"):
        SinkhornLoss(scaling=scaling)((x * big).to(dtype), y.to(dtype))
    with pytest.raises(ValueError, match="y: expected points whose squared distances fit"):
        SinkhornLoss(scaling=scaling)(x.to(dtype), (y * big).to(dtype))
    # the cosine cost normalises rows whatever their scale
    assert torch.isfinite(SinkhornLoss(cost="cosine", scaling=scaling)((x * big).to(dtype), y.to(dtype)))


def test_a_tolerance_below_the_floor_warns_once_naming_both_and_converged_means_the_tol_asked_for():
    # Before (issue 23): tol=1e-6 on a float32 problem at eps 1e-4 was silently raised to the
    # floor (2.5e-3) and reported converged=True with a marginal error 2,400 times the tol asked for.
    g = torch.Generator().manual_seed(9)
    x = torch.nn.functional.normalize(torch.randn(60, 8, generator=g), dim=1)
    y = torch.nn.functional.normalize(torch.randn(50, 8, generator=g) + 0.2, dim=1)
    loss = SinkhornLoss(epsilon=0.01, output="ot", tol=1e-7, max_iter=5000)
    _, first = _solve(loss, x, y)
    r = loss.last
    p, q = S._prepare(x, y, "sqeuclidean")
    floor = S.precision_floor(torch.float32, 0.5 * (S._radius(p) + S._radius(q)) ** 2, 0.01, 110)
    assert 1e-7 < floor < S.FLOOR_MAX  # the problem: float32 cannot certify 1e-7 here
    true = _plan_error64(x, y, r, 0.01)  # the oracle: the plan's error recomputed in float64
    assert r.tol == 1e-7 and r.tol_used == pytest.approx(floor)
    assert true > 1e-7 and not r.converged  # the plan misses the tol asked for, and says so
    assert true <= 2 * r.tol_used  # it did reach the floor it stopped at
    assert len(first) == 1
    msg = str(first[0].message)
    assert "tol 1e-07 is below the precision floor" in msg and f"{r.tol_used:.3g}" in msg and "float64" in msg
    _, second = _solve(loss, x, y)  # once per module
    assert not second and not loss.last.converged
    # the same problem in float64 reaches the tol asked for, without a warning
    loss64 = SinkhornLoss(epsilon=0.01, output="ot", tol=1e-7, max_iter=5000)
    _, warned64 = _solve(loss64, x.double(), y.double())
    assert loss64.last.converged and not warned64 and loss64.last.tol == loss64.last.tol_used == 1e-7
    assert _plan_error64(x, y, loss64.last, 0.01) <= 1e-7
    # the default tol (None) asks for what the dtype can certify: converged there, no warning
    default = SinkhornLoss(epsilon=0.01, output="ot", max_iter=5000)
    _, warned_default = _solve(default, x, y)
    assert default.last.tol == default.last.tol_used == pytest.approx(floor) and default.last.converged
    assert not warned_default
