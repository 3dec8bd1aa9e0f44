#!/usr/bin/env python3
"""The GPU check: the first thing to run when a GPU is lent to the project (``make gpu-check``).

Steps, each printed as rows of one table, under ~8 minutes on one GPU:

1. kernels: the Triton kernels *compiled* (TRITON_INTERPRET unset, production block sizes) on
   CUDA tensors, on the cases of ``tests/kernels/test_kernels_triton.py`` (shapes that are not a
   multiple of any block, both Sinkhorn memory paths), against the torch path at the tests'
   tolerances. (That test file runs under the interpreter only; these are its cases on the GPU.)
2. sinkhorn: the debiased Sinkhorn divergence, n = m = 4096 and 16384, d = 256, fp32 / bf16:
   ``unlearnkit.losses.SinkhornLoss`` with ``backend="torch"``, ``"triton"`` (materialised) and
   ``"triton"`` streaming (``memory_budget=0``), GeomLoss and flash-sinkhorn where they import:
   time of value + gradient (median of 3 after a warm-up), relative difference to our torch path
   at the same dtype, peak memory.
3. alignment: the split-K covariance kernel against ``torch.cov`` (float64 oracle), the retain
   eigenspace (``retain_eigenspace(backend=...)``) against ``torch.linalg.eigh`` of that oracle,
   the fused projection energies against ``(Z U)^2``, and the DA loss triton vs torch.
4. bench: ResNet-18 (CIFAR stem) on Fashion-MNIST, random 10% forgotten, seed 0: train (fit),
   then fine-tune and MUDA at their Fashion-MNIST recipes, at ``--precision`` (default bf16),
   with images per second and accuracies.

Exit status: 0 when every comparison is within tolerance, 1 on any mismatch or error of ours
(an external library that fails is reported ``n/a``), 2 when CUDA is not available.

``--dry-run`` runs every step on this machine up to its first CUDA call (imports, data, models,
recipes, case lists, library probes) and stops there: ``python scripts/gpu_check.py --dry-run``.
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import statistics
import sys
import time
import traceback

ROOT = pathlib.Path(__file__).resolve().parents[1]
# --smoke (for developing this script on a CPU): every step on the CPU, Triton interpreted, tiny sizes
SMOKE = "--smoke" in sys.argv
if SMOKE:
    os.environ["TRITON_INTERPRET"] = "1"
elif os.environ.get("TRITON_INTERPRET") == "1":  # the tests' setting; here the kernels must compile
    del os.environ["TRITON_INTERPRET"]

import torch  # noqa: E402


class DryRunStop(Exception):
    """Raised at a step's first CUDA call in ``--dry-run``."""


class Check:
    def __init__(self, dry_run: bool, budget_s: float):
        self.dry_run, self.budget_s, self.start = dry_run, budget_s, time.perf_counter()
        self.rows: list[dict] = []
        self.failed: list[str] = []

    def device(self) -> torch.device:
        """The gate every step passes before touching the GPU."""
        if self.dry_run:
            raise DryRunStop
        return torch.device("cpu" if SMOKE else "cuda")

    def row(self, step, case, backend="", dtype="", ms=None, value=None, err=None, tol=None, mib=None,
            status=None, note=""):
        if status is None:
            status = "ok" if err is None or tol is None or (math.isfinite(err) and err <= tol) else "MISMATCH"
        if status in ("MISMATCH", "ERROR"):
            self.failed.append(f"{step} {case} {backend} {dtype}: {status} {note}".strip())
        self.rows.append(dict(step=step, case=case, backend=backend, dtype=dtype, ms=ms, value=value, err=err,
                              tol=tol, mib=mib, status=status, note=note))

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def table(self) -> str:
        head = "| step | case | backend | dtype | time ms | value | rel. diff | tol | peak MiB | status |"
        lines = [head, "|" + "---|" * 10]
        def f(v, spec):
            return "" if v is None else (format(v, spec) if isinstance(v, (int, float)) else str(v))

        for r in self.rows:
            status = r["status"] + (f" ({r['note']})" if r["note"] else "")
            lines.append(f"| {r['step']} | {r['case']} | {r['backend']} | {r['dtype']} | {f(r['ms'], '.1f')} | "
                         f"{f(r['value'], '.6g')} | {f(r['err'], '.2e')} | {f(r['tol'], '.0e')} | "
                         f"{f(r['mib'], '.0f')} | {status} |")
        return "\n".join(lines)


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def sync() -> None:
    if not SMOKE:
        torch.cuda.synchronize()


def free() -> None:
    if not SMOKE:
        torch.cuda.empty_cache()


def timed(fn, repeats: int = 3):
    """(median ms over ``repeats`` after one warm-up, peak MiB, last result) of a CUDA callable."""
    fn()
    sync()
    if not SMOKE:
        torch.cuda.reset_peak_memory_stats()
    times, out = [], None
    for _ in range(1 if SMOKE else repeats):
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times), None if SMOKE else torch.cuda.max_memory_allocated() / 2 ** 20, out


# ------------------------------------------------------------------------------------------ 1. kernels


def step_kernels(c: Check) -> None:
    from unlearnkit.kernels.covariance import covariance
    from unlearnkit.kernels.projection import projection_energies
    from unlearnkit.losses import SinkhornLoss

    big = not SMOKE
    cov_cases = [(n, d, centred) for n, d in ((1, 5), (37, 19), (70, 33)) + ((4099, 257),) * big
                 for centred in (False, True)]
    proj_cases = [(1, 7, 1), (23, 19, 5), (41, 40, 17)] + [(5000, 300, 70)] * big
    sk_cases = [(n, m, d, out, cost, budget) for n, m, d in ((1, 1, 3), (37, 29, 19)) + ((1000, 777, 65),) * big
                for out in ("divergence", "ot", "cost") for cost in ("sqeuclidean", "cosine") for budget in (1 << 30, 0)]
    dev = c.device()
    g = torch.Generator().manual_seed(0)
    for n, d, centred in cov_cases:
        x = (torch.randn(n, d, generator=g) + 0.3).to(dev)
        mean = x.double().mean(0) if centred else None
        xc = x.double() - (mean if centred else 0)
        ref = xc.T @ xc
        err = max(float((covariance(x, mean, split_k=s) - ref).abs().max()) / max(float(ref.abs().max()), 1e-30)
                  for s in (None, 1, 3))
        c.row("kernels", f"covariance n={n} d={d} centred={centred}", "triton", "fp32", err=err, tol=1e-4)
    for m, d, k in proj_cases:
        u, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
        u = u[:, :k].contiguous().to(dev)
        z = torch.randn(m, d, generator=g).to(dev).requires_grad_(True)
        num, den = projection_energies(z, u)
        (num.sum() + 0.5 * den.sum()).backward()
        z2 = z.detach().double().requires_grad_(True)
        num_r, den_r = ((z2 @ u.double()) ** 2).sum(1), (z2 * z2).sum(1)
        (num_r.sum() + 0.5 * den_r.sum()).backward()
        err = max(rel_max(num, num_r), rel_max(den, den_r), rel_max(z.grad, z2.grad))
        c.row("kernels", f"projection m={m} d={d} k={k} (+grad)", "triton", "fp32", err=err, tol=1e-4)
    for n, m, d, out, cost, budget in sk_cases:
        x = torch.randn(n, d, generator=g).to(dev)
        y = (torch.randn(m, d, generator=g) * 0.7 + 0.4).to(dev)
        a = (torch.rand(n, generator=g) + 0.1).to(dev)
        kw = dict(blur=1.0, scaling=0.5, cost=cost, output=out, tol=1e-6, max_iter=300)
        res = {}
        for backend in ("torch", "triton"):
            xx, yy = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
            v = SinkhornLoss(backend=backend, memory_budget=budget, **kw)(xx, yy, a)
            v.backward()
            res[backend] = (float(v.detach()), xx.grad, yy.grad)
        (vt, gxt, gyt), (vr, gxr, gyr) = res["triton"], res["torch"]
        # as the test: |dv| <= 1e-4 max(|v|, 1e-3) + 1e-5; |dgrad| <= 2e-4 gscale + 1e-6 + 1e-3 |grad|
        ratio_v = abs(vt - vr) / (1e-4 * max(abs(vr), 1e-3) + 1e-5)
        gscale = max(float(gxr.abs().max()), float(gyr.abs().max()), 1e-3)
        ratio_g = max(float(((gt - gr).abs() / (2e-4 * gscale + 1e-6 + 1e-3 * gr.abs())).max())
                      for gt, gr in ((gxt, gxr), (gyt, gyr)))
        c.row("kernels", f"sinkhorn {n}x{m} d={d} {out} {cost} {'stream' if budget == 0 else 'dense'}", "triton",
              "fp32", value=vt, err=max(ratio_v, ratio_g), tol=1.0, note="diff / the test's tolerance")


def rel_max(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max()) / max(float(b.abs().max()), 1e-30)


# ------------------------------------------------------------------------------------------ 2. sinkhorn


def _external_losses():
    """{name: factory(blur, scaling) -> callable(x, y)} of the libraries that import, and notes for the rest."""
    found, notes = {}, {}
    try:
        from geomloss import SamplesLoss as GeomSamplesLoss

        found["geomloss"] = lambda blur, scaling: GeomSamplesLoss("sinkhorn", p=2, blur=blur, scaling=scaling,
                                                                  debias=True, backend="tensorized")
    except Exception as e:  # noqa: BLE001 - any import failure means "not installable here"
        notes["geomloss"] = f"not importable: {type(e).__name__}"
    try:
        from flash_sinkhorn import SamplesLoss as FlashSamplesLoss

        found["flash-sinkhorn"] = lambda blur, scaling: FlashSamplesLoss(loss="sinkhorn", blur=blur, scaling=scaling,
                                                                         debias=True, half_cost=True)
    except Exception as e:  # noqa: BLE001
        notes["flash-sinkhorn"] = f"not importable: {type(e).__name__}"
    return found, notes


def step_sinkhorn(c: Check, sizes=(4096, 16384), d: int = 256) -> None:
    from unlearnkit.losses import SinkhornLoss

    # eps = blur^2 on clouds of unit scale (GeomLoss's convention, cost |x-y|^2 / 2); --smoke: few iterations
    blur, scaling = (1.0, 0.5) if SMOKE else (0.05, 0.8)
    ours = {"torch": dict(backend="torch"), "triton": dict(backend="triton"),
            "triton-stream": dict(backend="triton", memory_budget=0)}
    external, notes = _external_losses()
    for name, note in notes.items():
        c.row("sinkhorn", "all sizes", name, "", status="n/a", note=note)
    g = torch.Generator().manual_seed(1)
    clouds = {n: (torch.randn(n, d, generator=g) / math.sqrt(d), torch.randn(n, d, generator=g) / math.sqrt(d) + 0.05)
              for n in sizes}
    dev = c.device()
    for n in sizes:
        for dtype, dname in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
            x0, y0 = (t.to(dev, dtype) for t in clouds[n])
            ref = None
            for name, kw in ours.items():
                loss = SinkhornLoss(blur=blur, scaling=scaling, **kw)

                def run(loss=loss):
                    x = x0.clone().requires_grad_(True)
                    v = loss(x, y0)
                    v.backward()
                    return float(v.detach())
                try:
                    ms, mib, v = timed(run)
                except Exception as e:  # noqa: BLE001 - ours must not fail: an error row
                    c.row("sinkhorn", f"n=m={n} d={d}", name, dname, status="ERROR", note=f"{type(e).__name__}: {e}")
                    continue
                if ref is None:
                    ref = v
                c.row("sinkhorn", f"n=m={n} d={d}", name, dname, ms=ms, value=v, err=rel(v, ref), tol=1e-3, mib=mib,
                      note=f"{loss.last.n_iter} it" if loss.last is not None else "")
            for name, factory in external.items():
                loss = factory(blur, scaling)

                def run_ext(loss=loss):
                    x = x0.clone().requires_grad_(True)
                    v = loss(x, y0)
                    v.sum().backward()
                    return float(v.detach().float().sum())
                try:
                    ms, mib, v = timed(run_ext)
                except Exception as e:  # noqa: BLE001 - a library that cannot run this case
                    c.row("sinkhorn", f"n=m={n} d={d}", name, dname, status="n/a", note=f"{type(e).__name__}")
                    continue
                # a fixed annealing schedule (no convergence test): agreement to 2% is what to expect
                c.row("sinkhorn", f"n=m={n} d={d}", name, dname, ms=ms, value=v,
                      err=rel(v, ref) if ref is not None else None, tol=2e-2, mib=mib)
            x0 = y0 = None  # noqa: F841 - frees the clouds before the next dtype
            free()


# ------------------------------------------------------------------------------------------ 3. alignment


def step_alignment(c: Check, n: int = 65536, d: int = 512, k: int = 64, m: int = 4096) -> None:
    from unlearnkit.kernels.covariance import covariance
    from unlearnkit.kernels.projection import projection_energies
    from unlearnkit.losses import dimensional_alignment_torch, retain_eigenspace

    g = torch.Generator().manual_seed(2)
    scales = torch.ones(d)
    scales[:k] = 4.0  # a spectral gap after k: the top-k eigenspace is well defined
    z_cpu = torch.randn(n, d, generator=g) * scales + 0.2
    zf_cpu = torch.randn(m, d, generator=g) * scales
    dev = c.device()
    for dtype, dname in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        z, zf = z_cpu.to(dev, dtype), zf_cpu.to(dev, dtype)
        oracle = torch.cov(z.double().T)  # float64, of the very values the kernel reads
        ms_t, mib_t, s_torch = timed(lambda: torch.cov(z.float().T))
        c.row("alignment", f"covariance n={n} d={d}", "torch.cov", dname, ms=ms_t, mib=mib_t,
              err=rel_max(s_torch, oracle), tol=1e-3 if dtype == torch.float32 else 1e-2)
        mean = z.double().mean(0)
        ms_k, mib_k, s_kernel = timed(lambda: covariance(z, mean) / (n - 1))
        c.row("alignment", f"covariance n={n} d={d}", "triton", dname, ms=ms_k, mib=mib_k,
              err=rel_max(s_kernel, oracle), tol=1e-4)
        lam, u = torch.linalg.eigh(oracle)
        p_ref = u[:, -k:] @ u[:, -k:].T
        for backend in ("torch", "triton"):
            ms, mib, space = timed(lambda: retain_eigenspace(z, k=k, center=True, backend=backend))
            # retain_eigenspace uses the population covariance (divided by n): rescale to torch.cov's n - 1
            top = space.values[:k].double() * n / (n - 1)
            err = max(float((top - lam.flip(0)[:k]).abs().max()) / float(lam[-1]),
                      float((space.projector.double() - p_ref).abs().max()))
            c.row("alignment", f"eigenspace k={k} vs torch.linalg.eigh", backend, dname, ms=ms, mib=mib, err=err,
                  tol=1e-4 if dtype == torch.float32 else 1e-3)
        basis = u[:, -k:].to(dtype).contiguous()
        ms_p, mib_p, (num, den) = timed(lambda: projection_energies(zf, basis))
        zb, ub = zf.double(), basis.double()
        err = max(rel_max(num, ((zb @ ub) ** 2).sum(1)), rel_max(den, (zb * zb).sum(1)))
        c.row("alignment", f"projection energies m={m} d={d} k={k}", "triton", dname, ms=ms_p, mib=mib_p, err=err,
              tol=1e-4 if dtype == torch.float32 else 1e-2)
        vals = {}
        for backend in ("torch", "triton"):
            ms, mib, v = timed(lambda: float(dimensional_alignment_torch(zf, z, k=k, backend=backend)))
            vals[backend] = v
            c.row("alignment", "DA loss value", backend, dname, ms=ms, mib=mib, value=v,
                  err=rel(v, vals["torch"]), tol=1e-4 if dtype == torch.float32 else 1e-3)
        z = zf = None  # noqa: F841
        free()


# ------------------------------------------------------------------------------------------ 4. bench


def step_bench(c: Check, precision: str, train_epochs: int, train_size: int | None = None) -> None:
    from unlearnkit.bench.recipes import dataset_recipe, method_recipe
    from unlearnkit.data import fashion_mnist_available, load_dataset, make_split
    from unlearnkit.methods import get_method
    from unlearnkit.models import build_model
    from unlearnkit.training import TrainConfig, fit, predict

    if not fashion_mnist_available():
        c.row("bench", "fashion-mnist random-10", "", precision, status="n/a" if c.dry_run else "ERROR",
              note="Fashion-MNIST missing: make fashion-data")
        return
    data = load_dataset("fashion-mnist", train_size=train_size)
    split = make_split(data, forget="random", fraction=0.1, seed=0)
    train = dataset_recipe("fashion-mnist")["train"]
    cfg = TrainConfig(**{**train, "epochs": train_epochs, "batch_size": 256})
    recipes = {m: method_recipe("fashion-mnist", m, scenario="random-10") for m in ("finetune", "muda")}
    methods = {m: get_method(m)(**r) for m, r in recipes.items()}
    torch.manual_seed(0)
    model = build_model("resnet18", data)
    fi, ri = torch.from_numpy(split.forget_idx), torch.from_numpy(split.retain_idx)
    xf, yf, xr, yr = data.x_train[fi], data.y_train[fi], data.x_train[ri], data.y_train[ri]
    xt, yt = data.x_test, data.y_test
    dev = c.device()
    model = model.to(dev, memory_format=torch.channels_last)
    least = 0.0 if SMOKE else 1.0  # --smoke trains on a few hundred images: accuracies are not judged

    def acc(m, x, y):
        return float((predict(m, x, precision=precision).argmax(1) == y).float().mean())

    sync()
    t0 = time.perf_counter()
    fit(model, data.x_train, data.y_train, cfg, seed=0, precision=precision)
    sync()
    dt = time.perf_counter() - t0
    a_test = acc(model, xt, yt)
    c.row("bench", f"train resnet18 {train_epochs} ep, {len(data.y_train) * train_epochs / dt:.0f} img/s", "fit",
          precision, ms=1000 * dt, value=a_test, status="ok" if a_test >= 0.8 * least else "MISMATCH",
          note="value: test accuracy (expect >= 0.80)")
    t0 = time.perf_counter()
    p = predict(model, xt, precision=precision)
    sync()
    dt = time.perf_counter() - t0
    c.row("bench", f"inference, {len(yt) / dt:.0f} img/s", "predict", precision, ms=1000 * dt,
          status="ok" if torch.isfinite(p).all() else "MISMATCH")
    for name, method in methods.items():
        sync()
        t0 = time.perf_counter()
        out = method.unlearn(model, (xf, yf), (xr, yr), seed=0, precision=precision)
        sync()
        dt = time.perf_counter() - t0
        images = _images_seen(method, recipes[name])
        finite = all(torch.isfinite(q).all() for q in out.parameters())
        a_f, a_t = acc(out, xf, yf), acc(out, xt, yt)
        c.row("bench", f"{name} random-10, {images / dt:.0f} img/s", "unlearn", precision, ms=1000 * dt, value=a_t,
              status="ok" if finite and a_t >= 0.5 * least else "MISMATCH",
              note=f"value: test acc; forget acc {a_f:.3f}; {images} images")


def _images_seen(method, recipe: dict) -> int:
    """Samples processed: steps logged by the method times their batch size (last batches count full)."""
    bs = recipe.get("batch_size", getattr(method.params, "batch_size", 128))
    return sum(bs for e in method.last_history if e.phase in ("retain", "forget", "recover"))


# ------------------------------------------------------------------------------------------ main


STEPS = ("kernels", "sinkhorn", "alignment", "bench")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="run every step up to its first CUDA call (CPU only)")
    ap.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)}")
    ap.add_argument("--precision", default="bf16", choices=("fp32", "bf16", "fp16"), help="bench precision")
    ap.add_argument("--train-epochs", type=int, default=2, help="bench: epochs of ResNet-18 training")
    ap.add_argument("--sizes", default="4096,16384", help="sinkhorn: n = m values")
    ap.add_argument("--budget-s", type=float, default=450.0, help="skip the remaining steps past this many seconds")
    ap.add_argument("--out", help="also write the table (markdown) here")
    ap.add_argument("--smoke", action="store_true", help="develop this script on a CPU: every step on the CPU, "
                    "Triton interpreted, tiny sizes (its numbers mean nothing)")
    args = ap.parse_args(argv)
    steps = [s for s in args.steps.split(",") if s]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        ap.error(f"--steps: expected some of {STEPS}, got {unknown}")
    c = Check(args.dry_run, args.budget_s)
    if not args.dry_run and not SMOKE and not torch.cuda.is_available():
        print("gpu_check: CUDA is not available (use --dry-run on a CPU machine)", file=sys.stderr)
        return 2
    import triton

    info = f"torch {torch.__version__}, triton {triton.__version__}"
    if not args.dry_run and not SMOKE:
        info += f", {torch.cuda.get_device_name()}"
    print(f"gpu_check: {info}{' (dry run: each step stops at its first CUDA call)' if args.dry_run else ''}")
    runners = {"kernels": lambda: step_kernels(c),
               "sinkhorn": lambda: step_sinkhorn(c, sizes=(48,) if SMOKE else tuple(int(v) for v in args.sizes.split(",")),
                                                 d=16 if SMOKE else 256),
               "alignment": lambda: step_alignment(c, **(dict(n=300, d=24, k=4, m=50) if SMOKE else {})),
               "bench": lambda: step_bench(c, args.precision, 1 if SMOKE else args.train_epochs,
                                           train_size=300 if SMOKE else None)}
    for s in steps:
        if c.elapsed() > c.budget_s:
            c.row(s, "skipped", status="ERROR", note=f"time budget of {c.budget_s:.0f} s spent")
            continue
        t0 = time.perf_counter()
        try:
            runners[s]()
            done = "done"
        except DryRunStop:
            done = "ready (stopped at the first CUDA call)"
        except Exception as e:  # noqa: BLE001 - reported as a failed step, the others still run
            traceback.print_exc()
            c.row(s, "step", status="ERROR", note=f"{type(e).__name__}: {e}")
            done = "failed"
        print(f"  step {s}: {done} in {time.perf_counter() - t0:.1f} s", flush=True)
    table = c.table()
    print(table)
    if args.out:
        pathlib.Path(args.out).write_text(table + "\n")
    if c.failed:
        print(f"gpu_check: {len(c.failed)} mismatch(es) or error(s):", *c.failed, sep="\n  ", file=sys.stderr)
        return 1
    print(f"gpu_check: {'dry run passed' if args.dry_run else 'all checks passed'} in {c.elapsed():.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
