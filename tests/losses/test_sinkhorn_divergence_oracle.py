"""Layer: losses (tests). The debiased Sinkhorn divergence, ``SinkhornLoss``'s default output,
against an outside oracle (issue 24).

Oracle: POT's log-domain Sinkhorn (``ot.sinkhorn``, float64, marginal error < 1e-9, checked) gives
the optimal entropic plan P of each of the three problems; the entropic OT value is its primal
objective, computed here from P and the cost matrix of ``ot.dist`` (scipy's ``cdist`` for the
cosine cost):

    OT_eps(a, b) = <P, C> + eps KL(P | a b^T)
    S_eps(a, b)  = OT_eps(a, b) - OT_eps(a, a) / 2 - OT_eps(b, b) / 2     (Feydy et al., 2019)

(POT's own ``empirical_sinkhorn_divergence`` debiases the transport cost <P, C>, not OT_eps:
a different quantity, so it is not used.) Clouds of different sizes, spreads and weights, eps
from 0.01 to 1 times the cost range, both costs, both cost scales.
"""

from __future__ import annotations

import warnings

import numpy as np
import ot
import pytest
import scipy.spatial.distance
import torch

from unlearnkit.losses import SinkhornLoss


def _ot_eps(a: np.ndarray, b: np.ndarray, cost: np.ndarray, eps: float) -> float:
    """Primal entropic OT value of POT's plan (float64), after checking the plan's marginals."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a non-convergence warning is checked below, on the plan itself
        plan = ot.sinkhorn(a, b, cost, eps, method="sinkhorn_log", numItermax=100_000, stopThr=1e-13)
    err = np.abs(plan.sum(1) - a).sum() + np.abs(plan.sum(0) - b).sum()
    assert err < 1e-9, f"the oracle itself did not converge (marginal error {err:.2e})"
    ratio = np.where(plan > 0, plan / np.outer(a, b), 1.0)
    return float((plan * cost).sum() + eps * (plan * np.log(ratio)).sum())


def _cost(x: np.ndarray, y: np.ndarray, kind: str, cost_scale: float) -> np.ndarray:
    if kind == "sqeuclidean":
        return cost_scale * ot.dist(x, y, metric="sqeuclidean")
    return np.maximum(scipy.spatial.distance.cdist(x, y, metric="cosine"), 0.0)


def divergence_oracle(x, y, a, b, eps, kind="sqeuclidean", cost_scale=0.5) -> float:
    def value(u, v, wu, wv):
        return _ot_eps(wu, wv, _cost(u, v, kind, cost_scale), eps)

    return value(x, y, a, b) - 0.5 * value(x, x, a, a) - 0.5 * value(y, y, b, b)


def _clouds(seed, n, m, d, *, weighted):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, d))
    y = rng.uniform(size=(m, d)) * 0.7 + 0.4  # another spread and place: OT(a, a) != OT(b, b)
    a = rng.uniform(0.5, 1.5, n) if weighted else np.ones(n)
    b = rng.uniform(0.2, 1.0, m) if weighted else np.ones(m)
    return x, y, a / a.sum(), b / b.sum()


CASES = [  # (seed, n, m, d, eps, weighted)
    (0, 30, 24, 2, 0.01, False),
    (1, 30, 24, 2, 0.1, True),
    (2, 17, 40, 2, 1.0, True),
    (3, 30, 24, 5, 0.1, False),
    (4, 25, 31, 5, 0.3, True),
]


@pytest.mark.parametrize("seed,n,m,d,eps,weighted", CASES)
def test_divergence_equals_pot_assembled_debiased_value(seed, n, m, d, eps, weighted):
    x, y, a, b = _clouds(seed, n, m, d, weighted=weighted)
    want = divergence_oracle(x, y, a, b, eps)
    loss = SinkhornLoss(epsilon=eps, tol=1e-12, max_iter=100_000)
    got = loss(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(a), torch.from_numpy(b))
    assert loss.last.converged and got.dtype == torch.float64
    assert want > 1e-3  # the clouds differ: the value is no rounding residue
    assert float(got) == pytest.approx(want, rel=1e-8, abs=1e-10)


@pytest.mark.parametrize("cost_scale", [1.0, 0.5])
def test_divergence_with_pot_scale_and_blur(cost_scale):
    # blur 0.2 means eps = 2 * cost_scale * blur^2 (GeomLoss's convention)
    x, y, a, b = _clouds(5, 22, 28, 3, weighted=False)
    eps = 2 * cost_scale * 0.2 ** 2
    want = divergence_oracle(x, y, a, b, eps, cost_scale=cost_scale)
    got = SinkhornLoss(blur=0.2, cost_scale=cost_scale, tol=1e-12, max_iter=100_000)(
        torch.from_numpy(x), torch.from_numpy(y))
    assert float(got) == pytest.approx(want, rel=1e-8, abs=1e-10)


def test_divergence_cosine_cost():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(26, 6))
    y = rng.normal(size=(20, 6)) + 0.8
    a, b = np.full(26, 1 / 26), np.full(20, 1 / 20)
    want = divergence_oracle(x, y, a, b, 0.2, kind="cosine")
    got = SinkhornLoss(epsilon=0.2, cost="cosine", tol=1e-12, max_iter=100_000)(torch.from_numpy(x), torch.from_numpy(y))
    assert float(got) == pytest.approx(want, rel=1e-8, abs=1e-10)


def test_divergence_float32_close_to_the_oracle():
    x, y, a, b = _clouds(7, 40, 30, 4, weighted=False)
    want = divergence_oracle(x, y, a, b, 0.1)
    got = SinkhornLoss(epsilon=0.1)(torch.from_numpy(x).float(), torch.from_numpy(y).float())
    assert got.dtype == torch.float32
    assert float(got) == pytest.approx(want, rel=1e-4)


def test_divergence_gradients_equal_finite_differences_of_the_oracle():
    # d S / d a along a zero-sum direction (the weights are renormalised inside) and d S / d x along a
    # random direction, against central differences of the POT-assembled value
    x, y, a, b = _clouds(8, 12, 9, 2, weighted=True)
    eps, h = 0.3, 1e-5
    xt, at = torch.from_numpy(x).requires_grad_(), torch.from_numpy(a).requires_grad_()
    SinkhornLoss(epsilon=eps, tol=1e-13, max_iter=100_000)(xt, torch.from_numpy(y), at, torch.from_numpy(b)).backward()
    rng = np.random.default_rng(9)
    da = rng.normal(size=a.shape)
    da -= da.mean()
    dx = rng.normal(size=x.shape)
    fd_a = (divergence_oracle(x, y, a + h * da, b, eps) - divergence_oracle(x, y, a - h * da, b, eps)) / (2 * h)
    fd_x = (divergence_oracle(x + h * dx, y, a, b, eps) - divergence_oracle(x - h * dx, y, a, b, eps)) / (2 * h)
    assert float(at.grad @ torch.from_numpy(da)) == pytest.approx(fd_a, rel=1e-5, abs=1e-8)
    assert float((xt.grad * torch.from_numpy(dx)).sum()) == pytest.approx(fd_x, rel=1e-5, abs=1e-8)
