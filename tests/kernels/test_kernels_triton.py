"""Layer: kernels (tests). Triton kernels against the torch reference path, run on the CPU by
Triton's interpreter.

``tests/conftest.py`` sets TRITON_INTERPRET=1 before triton is imported, so the kernels use
blocks of 16 and the shapes below (none a multiple of 16) exercise every masked edge.
Each case covers both Sinkhorn memory paths: the cost matrix materialised by one GEMM
(budget large) and recomputed tile by tile (budget 0, flash-style). The Sinkhorn reductions are
compared op by op (:class:`TritonCost` against :class:`TorchCost`, the same interface), then
through the one algorithm of ``SinkhornLoss`` run on either backend.
"""

from __future__ import annotations

import os

import pytest
import torch

triton = pytest.importorskip("triton", reason="triton has no wheel for this platform")
if os.environ.get("TRITON_INTERPRET") != "1":  # conftest sets it; someone ran with it unset on purpose
    pytest.skip("TRITON_INTERPRET=1 is needed to run Triton kernels on the CPU", allow_module_level=True)

from unlearnkit.kernels.covariance import covariance  # noqa: E402
from unlearnkit.kernels.projection import projection_energies  # noqa: E402
from unlearnkit.kernels.sinkhorn import TritonCost  # noqa: E402
from unlearnkit.kernels.sinkhorn_ref import TorchCost  # noqa: E402
from unlearnkit.losses import DimensionalAlignmentLoss, SinkhornLoss  # noqa: E402
from unlearnkit.losses.alignment import second_moment  # noqa: E402


def _clouds(n, m, d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(m, d, generator=g) * 0.7 + 0.4


@pytest.mark.parametrize("n,d", [(1, 5), (37, 19), (70, 33)])
@pytest.mark.parametrize("centred", [False, True])
def test_covariance_kernel_matches_torch(n, d, centred):
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(n * d)) + 0.3
    mean = x.double().mean(0) if centred else None
    ref = (x.double() - (mean if centred else 0)).T @ (x.double() - (mean if centred else 0))
    for split_k in (None, 1, 3):
        got = covariance(x, mean, split_k=split_k)
        assert torch.allclose(got, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))
        assert torch.equal(got, got.T)  # mirrored exactly from the upper triangle


def test_covariance_kernel_reads_strided_rows():
    base = torch.randn(40, 30)
    x = base[:, 3:24]  # row stride 30, width 21: no copy needed for the kernel
    s_triton, _ = second_moment(x, center=True, backend="triton")
    s_torch, _ = second_moment(x, center=True, backend="torch")
    assert torch.allclose(s_triton, s_torch, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("m,d,k", [(1, 7, 1), (23, 19, 5), (41, 40, 17)])
def test_projection_kernel_and_gradient_match_torch(m, d, k):
    g = torch.Generator().manual_seed(m + d + k)
    u, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
    u = u[:, :k].contiguous()
    z = torch.randn(m, d, generator=g, requires_grad=True)
    num, den = projection_energies(z, u)
    z2 = z.detach().clone().requires_grad_(True)
    num_ref, den_ref = ((z2 @ u) ** 2).sum(1), (z2 * z2).sum(1)
    assert torch.allclose(num, num_ref, rtol=1e-4, atol=1e-5) and torch.allclose(den, den_ref, rtol=1e-4, atol=1e-5)
    w1, w2 = torch.randn(m, generator=g), torch.randn(m, generator=g)
    (num @ w1 + den @ w2).backward()
    (num_ref @ w1 + den_ref @ w2).backward()
    assert torch.allclose(z.grad, z2.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("center", [False, True])
def test_dimensional_alignment_loss_triton_equals_torch(center):
    zr, zf = _clouds(90, 21, 18, seed=3)
    zr = zr * torch.linspace(3, 0.1, 18)
    losses = {}
    for backend in ("torch", "triton"):
        loss = DimensionalAlignmentLoss(center=center, backend=backend)
        loss.refresh(zr)
        f = zf.clone().requires_grad_(True)
        value = loss(f)
        value.backward()
        losses[backend] = (float(value.detach()), f.grad)
    assert losses["triton"][0] == pytest.approx(losses["torch"][0], rel=1e-4, abs=1e-5)
    assert torch.allclose(losses["triton"][1], losses["torch"][1], rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("n,m,d", [(1, 1, 3), (37, 29, 19), (20, 45, 7)])
@pytest.mark.parametrize("kind", ["sqeuclidean", "cosine"])
@pytest.mark.parametrize("materialize", [True, False])
def test_sinkhorn_reductions_match_the_torch_reference(n, m, d, kind, materialize):
    x, y = _clouds(n, m, d, seed=3 * n + m)
    if kind == "cosine":
        x, y = torch.nn.functional.normalize(x, dim=1), torch.nn.functional.normalize(y, dim=1)
    g = torch.Generator().manual_seed(d)
    eps = 0.3
    f, gg = torch.randn(n, generator=g) * 0.2, torch.randn(m, generator=g) * 0.2
    la, lb = torch.log_softmax(torch.randn(n, generator=g), 0), torch.log_softmax(torch.randn(m, generator=g), 0)
    for symmetric in (False, True):
        q = x if symmetric else y
        gq, lq = (f, la) if symmetric else (gg, lb)
        tr = TritonCost(x, q, kind=kind, scale=0.5, symmetric=symmetric, materialize=materialize)
        ref = TorchCost(x.double(), q.double(), kind=kind, scale=0.5, symmetric=symmetric)
        d64 = [t.double() for t in (f, gq, la, lq)]
        assert torch.allclose(tr.softmin_rows(lq + gq / eps, eps).double(),
                              ref.softmin_rows(d64[3] + d64[1] / eps, eps), atol=1e-5)
        assert torch.allclose(tr.softmin_cols(la + f / eps, eps).double(),
                              ref.softmin_cols(d64[2] + d64[0] / eps, eps), atol=1e-5)
        for got, want in zip(tr.plan_sums(f, gq, la, lq, eps), ref.plan_sums(*d64, eps)):
            assert torch.allclose(got.double(), want, rtol=1e-4, atol=1e-6)
        for got, want in zip(tr.plan_apply(f, gq, la, lq, eps), ref.plan_apply(*d64, eps)):
            assert torch.allclose(got.double(), want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("n,m,d", [(1, 1, 3), (37, 29, 19)])
@pytest.mark.parametrize("output", ["divergence", "ot", "cost"])
@pytest.mark.parametrize("cost", ["sqeuclidean", "cosine"])
@pytest.mark.parametrize("budget", [1 << 30, 0])
def test_sinkhorn_triton_value_and_gradient_match_torch(n, m, d, output, cost, budget):
    _compare_backends(n, m, d, output, cost, budget, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("cost", ["sqeuclidean", "cosine"])
def test_sinkhorn_backends_agree_in_other_dtypes(dtype, cost):
    _compare_backends(20, 45, 7, "divergence", cost, 0, dtype)


def _compare_backends(n, m, d, output, cost, budget, dtype):
    """The same algorithm on both backends: the same value, gradients and iteration count."""
    x, y = _clouds(n, m, d, seed=n + m + d)
    x, y = x.to(dtype), y.to(dtype)
    a = torch.rand(n, generator=torch.Generator().manual_seed(1)) + 0.1
    # blur 1 and scaling 0.5: few iterations, since the interpreter runs each kernel call slowly
    kw = dict(blur=1.0, scaling=0.5, cost=cost, output=output, tol=1e-6, max_iter=300)
    res = {}
    for backend in ("torch", "triton"):
        xx, yy = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
        loss = SinkhornLoss(backend=backend, memory_budget=budget, **kw)
        value = loss(xx, yy, a)
        value.backward()
        assert value.dtype == dtype and xx.grad.dtype == dtype
        res[backend] = (float(value.detach()), xx.grad.double(), yy.grad.double(), loss.last.n_iter)
    v_t, gx_t, gy_t, it_t = res["triton"]
    v_r, gx_r, gy_r, it_r = res["torch"]
    # half inputs: both solve in float32 and round the outputs; float64: Triton solves in float32
    rel = {torch.float16: 2e-3, torch.bfloat16: 1e-2}.get(dtype, 1e-4)
    scale = max(abs(v_r), 1e-3)
    assert abs(v_t - v_r) <= rel * scale + 1e-5
    gscale = max(float(gx_r.abs().max()), float(gy_r.abs().max()), 1e-3)
    assert torch.allclose(gx_t, gx_r, atol=2 * rel * gscale + 1e-6, rtol=10 * rel)
    assert torch.allclose(gy_t, gy_r, atol=2 * rel * gscale + 1e-6, rtol=10 * rel)
    if dtype != torch.float64:  # same updates and stopping rule; rounding may shift the stop a little
        assert abs(it_t - it_r) <= 2 + it_r // 20


def test_sinkhorn_triton_streaming_equals_materialised_and_warm_start_works():
    x, y = _clouds(33, 17, 18, seed=7)
    kw = dict(blur=2.0, scaling=0.5, tol=1e-5, max_iter=100, backend="triton", output="ot")
    big = SinkhornLoss(memory_budget=1 << 30, **kw)
    small = SinkhornLoss(memory_budget=0, **kw)
    assert float(big(x, y)) == pytest.approx(float(small(x, y)), rel=1e-5)
    warm = SinkhornLoss(warm_start=True, **kw)
    cold = SinkhornLoss(**kw)
    warm(x, y)
    v_w, v_c = float(warm(x, y + 0.01)), float(cold(x, y + 0.01))
    assert v_w == pytest.approx(v_c, rel=1e-4)
    assert warm.last.n_iter < cold.last.n_iter
