"""Dimensional alignment (MUDA, ``../shared/papers/muda.md``): how much of the forget-set
features lies in the principal subspace of the retain-set features.

Definitions (Z_r: retain features, n_r x d; Z_f: forget features, n_f x d):

* S_r = Z_r^T Z_r / n_r, the d x d second-moment matrix (``center=True``: the covariance, with
  the retain mean removed from Z_r and from Z_f).
* U_k: its top-k eigenvectors; k given, or the smallest k whose eigenvalues hold ``energy``
  of the trace (default 0.9). P = U_k U_k^T is the projector onto that subspace.
* DA = mean_z ||U_k^T z||^2 / ||z||^2 over forget rows (``reduction="mean"``), or
  ||Z_f U_k||_F^2 / ||Z_f||_F^2 (``reduction="total"``); in [0, 1].
* ``variant="subspace"``: DA = ||U_f^T U_k||_F^2 / k with U_f the forget set's own top-k
  eigenvectors (mean squared cosine of the principal angles).

Precision: the energies are accumulated in float32 for float16 / bfloat16 / float32 features and
in float64 for float64 ones, with autocast disabled (half-precision squared norms overflow at
65,504); the eigen-decompositions are float64; the result has the features' dtype.

Gradients flow through the projector P, never through single eigenvectors: the derivative of
a spectral projector only involves eigenvalue gaps *across* the cut at k (see
:class:`_SpectralProjector`), so repeated eigenvalues inside the kept (or dropped) block give
finite gradients where differentiating ``torch.linalg.eigh`` would give NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ._checks import (
    check_backend,
    check_points,
    check_same_device,
    check_same_width,
    compute_dtype,
    full_precision,
    resolve_backend,
)

__all__ = ["DimensionalAlignmentLoss", "Eigenspace", "dimensional_alignment_torch", "retain_eigenspace",
           "second_moment", "spectral_projector"]

REDUCTIONS = ("mean", "total")
VARIANTS = ("projection", "subspace")


def second_moment(z: torch.Tensor, *, center: bool = False, backend: str = "torch",
                  chunk_rows: int = 65536) -> tuple[torch.Tensor, torch.Tensor | None]:
    """S = Z^T Z / n (or the covariance when ``center``) as float64, and the mean (or None).

    z: (n, d). Returns (S (d, d) float64, mean (d,) float64 or None). The torch path accumulates
    in float64 over row chunks of ``chunk_rows`` so a bank of millions of rows never needs a
    float64 copy; the Triton path uses the split-K kernel (centring while loading, fp32 tiles).
    Differentiable on the torch path (used when the retain features require grad).
    """
    n = z.shape[0]
    mean = z.double().mean(0) if center else None
    if backend == "triton" and not z.requires_grad:
        from ..kernels.covariance import covariance

        return covariance(z, mean=mean).double() / n, mean
    if z.requires_grad or n <= chunk_rows:
        zc = z.double() - mean if mean is not None else z.double()
        return zc.T @ zc / n, mean
    s = torch.zeros(z.shape[1], z.shape[1], dtype=torch.float64, device=z.device)
    for start in range(0, n, chunk_rows):
        block = z[start:start + chunk_rows].double()
        if mean is not None:
            block = block - mean
        s.addmm_(block.T, block)
    return s / n, mean


def _choose_k(eigenvalues_desc: torch.Tensor, k: int | None, energy: float) -> int:
    d = eigenvalues_desc.numel()
    if k is not None:
        return int(k)
    vals = eigenvalues_desc.clamp_min(0)
    total = float(vals.sum())
    if total <= 0.0:
        return 1
    frac = torch.cumsum(vals, 0) / total
    # smallest k with frac >= energy (a tiny slack so energy=1.0 is reachable in floating point)
    return min(int((frac < energy - 1e-12).sum()) + 1, d)


class _SpectralProjector(torch.autograd.Function):
    """P = U_k U_k^T for symmetric S, with the gradient of the projector itself.

    dP = sum_{i in K, j not in K} (u_j^T dS u_i) / (lam_i - lam_j) (u_i u_j^T + u_j u_i^T):
    only gaps across the cut appear. A gap below ``rel_gap * max|lam|`` is clamped to that value
    (the projector is then not differentiable; the clamp keeps the step finite).
    """

    @staticmethod
    def forward(ctx, s: torch.Tensor, k: int, rel_gap: float = 1e-10):
        lam, u = torch.linalg.eigh(s.double())  # ascending
        lam, u = lam.flip(0), u.flip(1)
        ctx.save_for_backward(lam, u)
        ctx.k, ctx.rel_gap, ctx.dtype = k, rel_gap, s.dtype
        uk = u[:, :k]
        return (uk @ uk.T).to(s.dtype)

    @staticmethod
    def backward(ctx, grad_p):
        lam, u = ctx.saved_tensors
        k = ctx.k
        g = grad_p.double()
        g = (g + g.T) / 2
        a = u.T @ g @ u  # a[j, i] = u_j^T G u_i
        gap = lam[:k].unsqueeze(0) - lam[k:].unsqueeze(1)  # (d-k, k): lam_i - lam_j
        floor = ctx.rel_gap * float(lam.abs().max().clamp_min(1e-300))
        gap = torch.where(gap.abs() < floor, torch.full_like(gap, floor), gap)
        m = torch.zeros_like(a)
        m[k:, :k] = 2 * a[k:, :k] / gap
        x = u @ m @ u.T
        return ((x + x.T) / 2).to(ctx.dtype), None, None


def spectral_projector(s: torch.Tensor, k: int) -> torch.Tensor:
    """Projector onto the top-``k`` eigenspace of symmetric ``s`` (d, d), differentiable."""
    return _SpectralProjector.apply(s, int(k))


@dataclass(frozen=True)
class Eigenspace:
    """Top-k eigenspace of a feature set's second moment.

    vectors: (d, k) orthonormal columns, float64; values: (d,) all eigenvalues, descending;
    mean: (d,) the mean removed (``center=True``) or None; k: kept dimensions;
    energy_held: fraction of the trace the k eigenvalues hold.
    """

    vectors: torch.Tensor
    values: torch.Tensor
    mean: torch.Tensor | None
    k: int
    energy_held: float

    @property
    def projector(self) -> torch.Tensor:
        return self.vectors @ self.vectors.T


def _check_k_energy(k, energy, d: int, name_k: str = "k") -> None:
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= d):
        raise ValueError(f"{name_k}: expected an int in [1, {d}] (the feature dimension), got {k!r}")
    if not isinstance(energy, (int, float)) or not 0.0 < float(energy) <= 1.0:
        raise ValueError(f"energy: expected a fraction in (0, 1], got {energy!r}")


def retain_eigenspace(z_retain: torch.Tensor, *, k: int | None = None, energy: float = 0.9,
                      center: bool = False, backend: str = "auto") -> Eigenspace:
    """The retain set's top-k eigenspace (no gradient). z_retain: (n_r, d) features."""
    check_points(z_retain, "z_retain")
    _check_k_energy(k, energy, z_retain.shape[1])
    be = resolve_backend(check_backend(backend), z_retain.device)
    with torch.no_grad():
        s, mean = second_moment(z_retain.detach(), center=center, backend=be)
        lam, u = torch.linalg.eigh(s)
        lam, u = lam.flip(0), u.flip(1)
        kk = _choose_k(lam, k, energy)
        total = float(lam.clamp_min(0).sum())
        held = float(lam[:kk].clamp_min(0).sum()) / total if total > 0 else 0.0
    return Eigenspace(vectors=u[:, :kk].contiguous(), values=lam, mean=mean, k=kk, energy_held=held)


def _energies_torch(z: torch.Tensor, basis: torch.Tensor | None, projector: torch.Tensor | None):
    """Per-row (||P z||^2, ||z||^2) from an orthonormal basis (d, k) or a projector (d, d)."""
    if basis is not None:
        proj = z @ basis.to(z.dtype)
        num = (proj * proj).sum(1)
    else:
        assert projector is not None, "one of basis and projector is given"
        num = ((z @ projector.to(z.dtype)) * z).sum(1)
    return num, (z * z).sum(1)


def _reduce(num: torch.Tensor, den: torch.Tensor, reduction: str) -> torch.Tensor:
    tiny = torch.finfo(den.dtype).tiny
    if reduction == "mean":
        return (num / den.clamp_min(tiny)).mean()
    return num.sum() / den.sum().clamp_min(tiny)


def dimensional_alignment_torch(z_forget: torch.Tensor, z_retain: torch.Tensor | None = None, *,
                                eigenspace: Eigenspace | None = None, k: int | None = None,
                                energy: float = 0.9, center: bool = False, reduction: str = "mean",
                                variant: str = "projection", backend: str = "auto") -> torch.Tensor:
    """DA(D_f; D_r) as a 0-d tensor, differentiable w.r.t. ``z_forget`` and, when it requires
    grad, ``z_retain`` (through the projector). Give ``z_retain`` or a precomputed ``eigenspace``.

    Shapes: z_forget (n_f, d), z_retain (n_r, d). Dimensionless, in [0, 1], z_forget's dtype
    (accumulated in float32, or float64 for float64 features).
    """
    with full_precision(z_forget.device):
        da = _dimensional_alignment(z_forget, z_retain, eigenspace, k, energy, center, reduction, variant, backend)
    return da.to(z_forget.dtype)


def _dimensional_alignment(z_forget, z_retain, eigenspace, k, energy, center, reduction, variant, backend):
    """The body of :func:`dimensional_alignment_torch`, in the compute dtype (not cast back)."""
    check_points(z_forget, "z_forget")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction: expected one of {REDUCTIONS}, got {reduction!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {VARIANTS}, got {variant!r}")
    if (z_retain is None) == (eigenspace is None):
        raise ValueError("z_retain: expected exactly one of z_retain or eigenspace, got "
                         + ("both" if z_retain is not None else "neither"))
    be = resolve_backend(check_backend(backend), z_forget.device)
    d = z_forget.shape[1]
    basis = projector = mean = None
    if eigenspace is not None:
        if eigenspace.vectors.shape[0] != d:
            raise ValueError(f"eigenspace: expected vectors of {d} rows like z_forget's width, "
                             f"got {tuple(eigenspace.vectors.shape)}")
        basis, mean, kk = eigenspace.vectors, eigenspace.mean, eigenspace.k
    else:
        check_points(z_retain, "z_retain")
        check_same_width(z_forget, z_retain, "z_forget", "z_retain")
        check_same_device(z_forget=z_forget, z_retain=z_retain)
        _check_k_energy(k, energy, d)
        if z_retain.requires_grad:
            s, mean = second_moment(z_retain, center=center)
            with torch.no_grad():
                kk = _choose_k(torch.linalg.eigvalsh(s.detach()).flip(0), k, energy)
            projector = spectral_projector(s, kk)
        else:
            space = retain_eigenspace(z_retain, k=k, energy=energy, center=center, backend=backend)
            basis, mean, kk = space.vectors, space.mean, space.k
    cdt = compute_dtype(z_forget)
    zf = z_forget.to(cdt)
    zf = zf - mean.to(cdt) if mean is not None else zf

    if variant == "subspace":
        kf = min(kk, zf.shape[0], d)
        sf = zf.double().T @ zf.double() / zf.shape[0]
        pf = spectral_projector(sf, kf)
        if projector is not None:
            pr = projector.double()
        else:
            assert basis is not None  # set wherever projector is not (above)
            pr = basis.double() @ basis.double().T
        return (pf * pr).sum() / kf

    if be == "triton" and basis is not None and projector is None:
        from ..kernels.projection import projection_energies

        num, den = projection_energies(zf.contiguous(), basis.to(zf.dtype).contiguous())
    else:
        num, den = _energies_torch(zf, basis, projector)
    return _reduce(num, den, reduction)


class DimensionalAlignmentLoss(nn.Module):
    """L_DA = 1 - DA(D_f; D_r), the MUDA regulariser (see the module docstring for DA).

    Args:
        k: kept eigen-directions (default: chosen by ``energy``).
        energy: fraction of the retain spectrum the kept directions hold (default 0.9).
        center: use the covariance instead of the second moment (default False, as the spec).
        reduction: ``"mean"`` of per-sample ratios (default) or ``"total"`` energy ratio.
        variant: ``"projection"`` (default) or ``"subspace"`` (principal angles).
        backend: ``"auto"`` (Triton on CUDA), ``"torch"`` or ``"triton"``.

    Call ``loss(z_forget, z_retain)`` (eigenspace from this batch; gradient also reaches
    ``z_retain`` if it requires grad), or ``loss.refresh(bank)`` every few steps and then
    ``loss(z_forget)`` (eigenspace from a detached retain bank, the MUDA recipe).
    Shapes: (n_f, d) and (n_r, d); returns a 0-d tensor in [0, 1].
    """

    def __init__(self, k: int | None = None, energy: float = 0.9, center: bool = False,
                 reduction: str = "mean", variant: str = "projection", backend: str = "auto"):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction: expected one of {REDUCTIONS}, got {reduction!r}")
        if variant not in VARIANTS:
            raise ValueError(f"variant: expected one of {VARIANTS}, got {variant!r}")
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ValueError(f"k: expected a positive integer or None, got {k!r}")
        if not isinstance(energy, (int, float)) or not 0.0 < float(energy) <= 1.0:
            raise ValueError(f"energy: expected a fraction in (0, 1], got {energy!r}")
        self.k, self.energy, self.center = k, float(energy), center
        self.reduction, self.variant, self.backend = reduction, variant, check_backend(backend)
        self.eigenspace: Eigenspace | None = None

    def refresh(self, z_retain_bank: torch.Tensor) -> Eigenspace:
        """Recomputes (and stores) the retain eigenspace from a bank of retain features."""
        self.eigenspace = retain_eigenspace(z_retain_bank.detach(), k=self.k, energy=self.energy,
                                            center=self.center, backend=self.backend)
        return self.eigenspace

    def forward(self, z_forget: torch.Tensor, z_retain: torch.Tensor | None = None) -> torch.Tensor:
        if z_retain is None and self.eigenspace is None:
            raise ValueError("z_retain: expected retain features, or a bank set by refresh() first, got neither")
        space = None if z_retain is not None else self.eigenspace
        with full_precision(z_forget.device):
            da = _dimensional_alignment(z_forget, z_retain, space, self.k, self.energy, self.center,
                                        self.reduction, self.variant, self.backend)
        return (1.0 - da).to(z_forget.dtype)

    def extra_repr(self) -> str:
        return (f"k={self.k}, energy={self.energy}, center={self.center}, reduction={self.reduction!r}, "
                f"variant={self.variant!r}, backend={self.backend!r}")
