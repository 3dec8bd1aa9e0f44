"""The drop-in losses (torch path) against independent oracles.

Sinkhorn: POT (``ot.sinkhorn2`` with the log-domain solver, ``ot.emd2`` for exact OT).
Dimensional alignment: numpy (eigh of the second moment, the formula of muda.md).
Self-distillation: ``torch.nn.functional.kl_div`` written out by hand.
"""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch

from unlearnkit.losses import DimensionalAlignmentLoss, SelfDistillationLoss, SinkhornLoss
from unlearnkit.losses.alignment import dimensional_alignment_torch, retain_eigenspace, spectral_projector
from unlearnkit.losses.sinkhorn import cost_matrix
from unlearnkit.metrics import dimensional_alignment


def _clouds(n, m, d, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    y = torch.randn(m, d, generator=g, dtype=dtype) * 0.8 + 0.5
    return x, y


def _weights(n, seed):
    w = np.random.default_rng(seed).random(n) + 0.1
    return w / w.sum()


# --- Sinkhorn ------------------------------------------------------------------------------

@pytest.mark.parametrize("n,m,d", [(7, 11, 2), (40, 25, 5), (64, 64, 16)])
@pytest.mark.parametrize("cost_scale", [0.5, 1.0])
def test_sinkhorn_cost_matches_pot(n, m, d, cost_scale):
    x, y = _clouds(n, m, d, seed=n + m)
    a, b = _weights(n, 1), _weights(m, 2)
    eps = 0.5
    loss = SinkhornLoss(epsilon=eps, cost_scale=cost_scale, output="cost", tol=1e-10, max_iter=5000)
    ours = float(loss(x, y, torch.from_numpy(a), torch.from_numpy(b)))
    M = ot.dist(x.numpy(), y.numpy()) * cost_scale  # squared Euclidean, times the scale
    ref = float(ot.sinkhorn2(a, b, M, eps, method="sinkhorn_log", numItermax=20000, stopThr=1e-12))
    assert ours == pytest.approx(ref, rel=1e-5)
    assert loss.last.converged


def test_sinkhorn_ot_dual_value_matches_primal():
    # OT_eps = <P, C> + eps KL(P | ab^T) at the optimum: check against POT's plan
    x, y = _clouds(30, 20, 3, seed=3)
    a, b = np.full(30, 1 / 30), np.full(20, 1 / 20)
    eps = 0.3
    M = ot.dist(x.numpy(), y.numpy()) * 0.5
    P = ot.sinkhorn(a, b, M, eps, method="sinkhorn_log", numItermax=20000, stopThr=1e-13)
    kl = float((P * np.log(P / np.outer(a, b))).sum())
    primal = float((P * M).sum()) + eps * kl
    ours = float(SinkhornLoss(epsilon=eps, output="ot", tol=1e-11, max_iter=5000)(x, y))
    assert ours == pytest.approx(primal, rel=1e-6)


def test_sinkhorn_tends_to_exact_ot_as_epsilon_shrinks():
    x, y = _clouds(25, 25, 2, seed=5)
    a = b = np.full(25, 1 / 25)
    exact = float(ot.emd2(a, b, ot.dist(x.numpy(), y.numpy()) * 0.5))
    gaps = []
    for eps in (1.0, 0.1, 0.01, 0.001):
        val = float(SinkhornLoss(epsilon=eps, output="cost", tol=1e-9, max_iter=20000)(x, y))
        gaps.append(abs(val - exact))
    assert gaps == sorted(gaps, reverse=True)  # monotone approach
    assert gaps[-1] < 1e-2 * exact


def test_divergence_nonnegative_and_zero_for_identical_clouds():
    x, y = _clouds(30, 40, 4, seed=7)
    loss = SinkhornLoss(blur=0.3, tol=1e-9)
    assert float(loss(x, x)) == pytest.approx(0.0, abs=1e-9)
    assert float(loss(x, y)) > 1e-3
    # a translated cloud: S_eps grows with the shift (for small eps it tends to W2^2 / 2 = |t|^2 / 2)
    vals = [float(SinkhornLoss(blur=0.05, tol=1e-8)(x, x + t)) for t in (0.5, 1.0, 2.0)]
    assert vals == sorted(vals)
    assert vals[-1] == pytest.approx(0.5 * 2.0 ** 2 * x.shape[1], rel=0.05)  # |t|^2 = t^2 d


@pytest.mark.parametrize("case", ["single_point", "identical", "zero_diameter", "one_vs_many"])
@pytest.mark.parametrize("output", ["divergence", "ot", "cost"])
def test_sinkhorn_degenerate_inputs_are_finite(case, output):
    x, y = _clouds(6, 5, 3, seed=9)
    if case == "single_point":
        x, y = x[:1], y[:1]
    elif case == "identical":
        y = x.clone()
    elif case == "zero_diameter":
        x = torch.ones(4, 3, dtype=torch.float64)
        y = torch.ones(3, 3, dtype=torch.float64)
    else:
        x = x[:1]
    x.requires_grad_(True)
    val = SinkhornLoss(output=output)(x, y)
    val.backward()
    val = val.detach()
    assert torch.isfinite(val) and torch.isfinite(x.grad).all()
    if case in ("identical", "zero_diameter") and output == "divergence":
        assert float(val) == pytest.approx(0.0, abs=1e-9)
    if case == "single_point" and output == "cost":
        assert float(val) == pytest.approx(0.5 * float(((x - y) ** 2).sum()), rel=1e-9)


@pytest.mark.parametrize("output", ["divergence", "ot"])
@pytest.mark.parametrize("cost", ["sqeuclidean", "cosine"])
def test_sinkhorn_envelope_gradient_matches_finite_differences(output, cost):
    # The dual outputs are differentiable with the envelope gradient exactly (at convergence).
    x, y = _clouds(6, 5, 3, seed=11)
    x.requires_grad_(True)
    loss = SinkhornLoss(epsilon=0.2, cost=cost, output=output, tol=1e-13, max_iter=20000)
    assert torch.autograd.gradcheck(lambda u: loss(u, y), (x,), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_sinkhorn_weight_gradient_is_the_potential():
    x, y = _clouds(5, 4, 2, seed=13)
    a = torch.full((5,), 0.2, dtype=torch.float64, requires_grad=True)
    loss = SinkhornLoss(epsilon=0.3, output="ot", tol=1e-13, max_iter=20000)
    loss(x, y, a).backward()
    # a is renormalised inside; perturbing along a zero-sum direction is what the potentials price
    dirn = torch.tensor([1.0, -1.0, 0.0, 0.5, -0.5], dtype=torch.float64)
    h = 1e-6
    fd = (float(loss(x, y, (a + h * dirn).detach())) - float(loss(x, y, (a - h * dirn).detach()))) / (2 * h)
    assert float(a.grad @ dirn) == pytest.approx(fd, rel=1e-4, abs=1e-7)


def test_sinkhorn_warm_start_converges_faster_to_the_same_value():
    x, y = _clouds(50, 50, 4, seed=15)
    cold = SinkhornLoss(blur=1.0, tol=1e-9, output="ot")
    warm = SinkhornLoss(blur=1.0, tol=1e-9, output="ot", warm_start=True)
    warm(x, y)
    y2 = y + 0.01
    v_cold = float(cold(x, y2))
    v_warm = float(warm(x, y2))
    assert cold.last.converged and warm.last.converged
    assert v_warm == pytest.approx(v_cold, rel=1e-7)
    assert warm.last.n_iter < cold.last.n_iter


def test_sinkhorn_annealing_scaling_changes_work_not_result():
    x, y = _clouds(40, 30, 3, seed=17)
    vals, iters = [], []
    for scaling in (0.5, 0.8, 1.0):
        loss = SinkhornLoss(blur=0.05, scaling=scaling, tol=1e-8, max_iter=20000, output="ot")
        vals.append(float(loss(x, y)))
        iters.append(loss.last.n_iter)
    assert vals[0] == pytest.approx(vals[2], rel=1e-5) and vals[1] == pytest.approx(vals[2], rel=1e-5)


def test_cosine_cost_is_clamped_one_minus_cosine():
    x, y = _clouds(5, 6, 4, seed=19)
    c = cost_matrix(x, y, "cosine")
    ref = 1 - torch.nn.functional.cosine_similarity(x[:, None], y[None], dim=-1)
    assert torch.allclose(c, ref.clamp_min(0), atol=1e-12)
    assert torch.allclose(cost_matrix(x, y, "sqeuclidean", 1.0), torch.cdist(x, y) ** 2, atol=1e-10)


def test_sinkhorn_float32_close_to_float64():
    x, y = _clouds(64, 48, 8, seed=21)
    v64 = float(SinkhornLoss(blur=0.1, output="divergence")(x, y))
    v32 = float(SinkhornLoss(blur=0.1, output="divergence", tol=1e-5)(x.float(), y.float()))
    assert v32 == pytest.approx(v64, rel=1e-4)


@pytest.mark.parametrize("bad,match", [
    (lambda x, y: (x.numpy(), y), "x: expected a torch.Tensor"),
    (lambda x, y: (x.long(), y), "x: expected a floating-point"),
    (lambda x, y: (x[0], y), "x: expected a 2-D"),
    (lambda x, y: (x[:, :2], y), "y: expected 2 feature columns"),
    (lambda x, y: (x.clone().fill_(float("nan")), y), "x: expected finite"),
    (lambda x, y: (x[:0], y), "x: expected at least 1 row"),
    (lambda x, y: (x, y.float()), "y: expected the dtype"),
])
def test_sinkhorn_bad_inputs(bad, match):
    x, y = _clouds(4, 4, 3)
    with pytest.raises((ValueError, TypeError), match=match):
        SinkhornLoss()(*bad(x, y))


@pytest.mark.parametrize("kwargs,match", [
    ({"cost": "l1"}, "cost: expected one of"), ({"output": "w2"}, "output: expected one of"),
    ({"blur": -1.0}, "blur: expected a positive"), ({"scaling": 1.5}, "scaling: expected"),
    ({"max_iter": 0}, "max_iter: expected"), ({"epsilon": 0.0}, "epsilon: expected"),
    ({"backend": "cuda"}, "backend: expected one of"),
])
def test_sinkhorn_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SinkhornLoss(**kwargs)


def test_sinkhorn_bad_weights():
    x, y = _clouds(4, 3, 2)
    with pytest.raises(ValueError, match="a:"):
        SinkhornLoss()(x, y, torch.tensor([1.0, -1.0, 0.5, 0.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="b:"):
        SinkhornLoss()(x, y, None, torch.ones(5, dtype=torch.float64))


def test_triton_backend_on_cpu_without_interpreter_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    x, y = _clouds(4, 3, 2, dtype=torch.float32)
    with pytest.raises(ValueError, match="backend: 'triton'"):
        SinkhornLoss(backend="triton")(x, y)


# --- dimensional alignment ------------------------------------------------------------------

def _numpy_da(zf, zr, k=None, energy=0.9, center=False, reduction="mean"):
    zf, zr = np.asarray(zf, np.float64), np.asarray(zr, np.float64)
    if center:
        mu = zr.mean(0)
        zf, zr = zf - mu, zr - mu
    lam, u = np.linalg.eigh(zr.T @ zr / len(zr))
    lam, u = lam[::-1], u[:, ::-1]
    if k is None:
        frac = np.cumsum(np.clip(lam, 0, None)) / np.clip(lam, 0, None).sum()
        k = int(np.searchsorted(frac, energy - 1e-12) + 1)
    uk = u[:, :k]
    num = ((zf @ uk) ** 2).sum(1)
    den = (zf ** 2).sum(1)
    return (num / den).mean() if reduction == "mean" else num.sum() / den.sum()


@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "total"])
@pytest.mark.parametrize("k", [None, 1, 3])
def test_da_matches_numpy_formula(center, reduction, k):
    rng = np.random.default_rng(1)
    zr = rng.normal(size=(200, 6)) * np.array([5, 3, 2, 1, 0.5, 0.1])
    zf = rng.normal(size=(30, 6))
    ours = dimensional_alignment(zf, zr, k=k, center=center, reduction=reduction)
    assert ours == pytest.approx(_numpy_da(zf, zr, k, 0.9, center, reduction), rel=1e-10)


def test_da_is_one_inside_the_subspace_and_zero_orthogonal_to_it():
    rng = np.random.default_rng(2)
    basis, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    inside, outside = basis[:, :3], basis[:, 3:]
    zr = rng.normal(size=(500, 3)) @ inside.T * 4
    zf_in = rng.normal(size=(40, 3)) @ inside.T
    zf_out = rng.normal(size=(40, 7)) @ outside.T
    assert dimensional_alignment(zf_in, zr, energy=0.999) == pytest.approx(1.0, abs=1e-10)
    assert dimensional_alignment(zf_out, zr, energy=0.999) == pytest.approx(0.0, abs=1e-10)
    assert dimensional_alignment(zf_in, zr, k=3, variant="subspace") == pytest.approx(1.0, abs=1e-8)
    assert dimensional_alignment(zf_out, zr, k=3, variant="subspace") == pytest.approx(0.0, abs=1e-8)


def test_da_energy_picks_the_smallest_k():
    zr = np.diag([3.0, 2.0, 1.0, 0.5]) * np.sqrt(4)  # eigenvalues 9, 4, 1, .25 (times 4/4)
    space = retain_eigenspace(torch.from_numpy(zr), energy=0.9)
    lam = np.array([9, 4, 1, 0.25])
    assert space.k == int(np.searchsorted(np.cumsum(lam) / lam.sum(), 0.9) + 1)
    assert space.energy_held >= 0.9


def test_da_gradient_finite_with_repeated_eigenvalues():
    # isotropic retain features inside a 4-d block: eigenvalues (1,1,1,1,0,0) repeat on both sides
    # of nothing but the cut; differentiating eigh itself would give NaN here.
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    zr = np.zeros((8, 6))
    zr[:4, :4] = q * 2
    zr[4:, :4] = -q * 2  # second moment exactly 1 * I on the first block
    zr = torch.tensor(zr, requires_grad=True)
    zf = torch.tensor(rng.normal(size=(5, 6)), requires_grad=True)
    # naive path for contrast: eigenvector derivative is NaN/inf for the degenerate spectrum
    lam, u = torch.linalg.eigh(zr.T @ zr / 8)
    naive = ((zf @ u[:, -2:]) ** 2).sum()
    naive.backward()
    assert not torch.isfinite(zr.grad).all()
    zr.grad = None
    da = dimensional_alignment_torch(zf, zr, k=4)
    da.backward()
    assert torch.isfinite(zr.grad).all() and torch.isfinite(zf.grad).all()


def test_projector_gradient_matches_finite_differences():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(5, 5))
    s = torch.tensor(a @ a.T + np.diag([10, 5, 2, 1, 0.1]), requires_grad=True)
    assert torch.autograd.gradcheck(lambda m: spectral_projector((m + m.T) / 2, 2), (s,), eps=1e-6, atol=1e-6)


def test_da_loss_gradcheck_through_both_feature_sets():
    rng = np.random.default_rng(5)
    zr = torch.tensor(rng.normal(size=(20, 4)) * np.array([3, 2, 1, 0.3]), requires_grad=True)
    zf = torch.tensor(rng.normal(size=(6, 4)), requires_grad=True)
    loss = DimensionalAlignmentLoss(k=2)
    assert torch.autograd.gradcheck(lambda f, r: loss(f, r), (zf, zr), eps=1e-6, atol=1e-6)


def test_da_loss_refresh_bank_detaches_the_eigenspace():
    rng = np.random.default_rng(6)
    bank = torch.tensor(rng.normal(size=(100, 5)), requires_grad=True)
    zf = torch.tensor(rng.normal(size=(10, 5)), requires_grad=True)
    loss = DimensionalAlignmentLoss()
    space = loss.refresh(bank)
    value = loss(zf)
    value.backward()
    assert bank.grad is None and zf.grad is not None
    assert float(value) == pytest.approx(1 - _numpy_da(zf.detach(), bank.detach(), space.k), rel=1e-10)
    assert torch.autograd.gradcheck(lambda f: loss(f), (zf,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("call,match", [
    (lambda L, f, r: L(f), "z_retain: expected retain features"),
    (lambda L, f, r: L(f, r[:, :3]), "z_retain: expected 4 feature columns"),
    (lambda L, f, r: L(f.long(), r), "z_forget: expected a floating-point"),
    (lambda L, f, r: L(f * float("inf"), r), "z_forget: expected finite"),
])
def test_da_loss_bad_inputs(call, match):
    f, r = torch.randn(3, 4), torch.randn(10, 4)
    with pytest.raises((ValueError, TypeError), match=match):
        call(DimensionalAlignmentLoss(), f, r)


@pytest.mark.parametrize("kwargs,match", [({"k": 0}, "k: expected"), ({"energy": 1.5}, "energy: expected"),
                                          ({"reduction": "sum"}, "reduction: expected"),
                                          ({"variant": "x"}, "variant: expected")])
def test_da_loss_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DimensionalAlignmentLoss(**kwargs)


def test_da_metric_bad_inputs():
    with pytest.raises(ValueError, match="retain_features: expected 4 columns"):
        dimensional_alignment(np.ones((3, 4)), np.ones((5, 3)))
    with pytest.raises(ValueError, match="forget_features: expected finite"):
        dimensional_alignment(np.full((3, 4), np.nan), np.ones((5, 4)))
    with pytest.raises(ValueError, match="k: expected an int in"):
        dimensional_alignment(np.ones((3, 4)), np.random.rand(5, 4), k=9)


# --- self-distillation ------------------------------------------------------------------------

def test_self_distillation_matches_handwritten_kl():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(8, 10, generator=g, dtype=torch.float64), torch.randn(8, 10, generator=g, dtype=torch.float64)
    T = 4.0
    p_t = torch.softmax(t / T, 1)
    ref = (p_t * (p_t.log() - torch.log_softmax(s / T, 1))).sum(1).mean() * T * T
    assert float(SelfDistillationLoss(temperature=T)(s, t)) == pytest.approx(float(ref), rel=1e-12)
    per = SelfDistillationLoss(temperature=T, reduction="none")(s, t)
    assert per.shape == (8,) and float(per.mean()) == pytest.approx(float(ref), rel=1e-12)


def test_self_distillation_zero_for_same_outputs_and_teacher_gets_no_gradient():
    s = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    t = s.detach().clone().requires_grad_(True)
    loss = SelfDistillationLoss()
    assert float(loss(s, t)) == pytest.approx(0.0, abs=1e-12)
    (loss(s * 2, t)).backward()
    assert t.grad is None and s.grad is not None
    assert torch.autograd.gradcheck(lambda u: loss(u, t.detach()), (s,))


def test_self_distillation_bad_inputs():
    with pytest.raises(ValueError, match="temperature"):
        SelfDistillationLoss(temperature=0)
    with pytest.raises(ValueError, match="teacher"):
        SelfDistillationLoss()(torch.randn(3, 4), torch.randn(3, 5))
