"""DLFD, issue 26: the synthesis inside an epsilon-ball (PGD), the forgetting score on fixed
subsamples with its noise measured once, checks every N batches.

The ball is checked on a hand-worked case (a linear model whose loss gradient has the same sign
at every pixel, so each sign step adds exactly alpha everywhere until the ball or the pixel range
stops it) and on the digits model against the bound epsilon. Also: its defaults (the paper's), the
need for unseen validation data, the synthesis raising the OT distance to the forget outputs (and
ignoring it in reference-code mode), the forgetting score as the loss attack's distance from chance.
The monitor and synthesis logged by its recipe run on the memorising Fashion-MNIST subset are
checked in ``test_muda_dlfd.py``, the one file that reads that run."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from unlearnkit.data.batches import TensorSource
from unlearnkit.losses import SinkhornLoss
from unlearnkit.methods import DLFD
from unlearnkit.methods.dlfd import (
    PAPER_EPSILON,
    DLFDParams,
    _Monitor,
    forgetting_score,
    input_units,
    score_noise,
    synthesize,
)


def _ot():
    return SinkhornLoss(epsilon=0.01, cost="cosine", output="cost", scaling=1.0, max_iter=50, tol=0.1)


class _Linear(nn.Module):
    """features = the pixels; logits = (sum x, -sum x): with label 0 the CE falls as any pixel rises,
    so sign(d(-CE)/dx) = +1 at every pixel."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]]))

    def features(self, x):
        return x.flatten(1)

    def head(self, z):
        return self.lin(z)

    def forward(self, x):
        return self.head(self.features(x))


def _hand_case(**kw):
    model = _Linear()
    x = torch.tensor([0.1, 0.5, 0.99]).view(1, 1, 1, 3)
    y = torch.tensor([0])
    z_f = torch.tensor([[0.3, -0.2]])
    args = dict(ot=_ot(), w=1.0, lambda_f=0.0, steps=5, alpha=0.03)
    args.update(kw)
    x_new, _ = synthesize(model, x, y, z_f, **args)
    return x, x_new.view(-1)


def test_ball_on_a_hand_worked_case():
    # 5 steps of +0.03: unbounded +0.15; the ball 0.1 stops it at +0.1; 0.99 stops at the pixel range's 1.0
    _, unbounded = _hand_case(epsilon=None)
    assert unbounded.tolist() == pytest.approx([0.25, 0.65, 1.0], abs=1e-6)
    _, bounded = _hand_case(epsilon=0.1)
    assert bounded.tolist() == pytest.approx([0.2, 0.6, 1.0], abs=1e-6)
    x, clean = _hand_case(epsilon=0.0)
    assert torch.equal(clean, x.view(-1))
    # reference_code mode (OT on the clean batch) follows the same CE ascent and the same ball
    _, ref = _hand_case(epsilon=0.1, mode="reference_code", lambda_f=3.0)
    assert ref.tolist() == pytest.approx([0.2, 0.6, 1.0], abs=1e-6)


def _synthesis_inputs(digits_models):
    """(original, x_retain, y_retain, forget logits, OT loss) on digits; the ball's tests take the first four."""
    split, original, _ = digits_models
    xr, yr = split.retain.tensors
    xf, _ = split.forget.tensors
    with torch.no_grad():
        z_f = original(xf[:32])
    ot = SinkhornLoss(epsilon=0.01, cost="cosine", output="cost", scaling=1.0, max_iter=50, tol=0.1)
    return original, xr[:32], yr[:32], z_f, ot


@pytest.mark.parametrize("mode", ["paper", "reference_code"])
def test_synthesised_delta_never_leaves_the_ball(digits_models, mode):
    model, x, y, z_f = _synthesis_inputs(digits_models)[:4]
    eps, alpha, steps = 0.05, 0.02, 10  # unbounded, 10 steps of 0.02 could reach 0.2
    x_new, history = synthesize(model, x, y, z_f, ot=_ot(), w=0.5, lambda_f=3.0, steps=steps, alpha=alpha,
                                epsilon=eps, mode=mode)
    d = (x_new - x).abs()
    assert float(d.max()) <= eps + 1e-6
    assert float(d.max()) >= eps - 1e-6  # the projection was active (the steps alone go past it)
    assert float(x_new.min()) >= 0.0 and float(x_new.max()) <= 1.0
    assert len(history) == steps
    x_free, _ = synthesize(model, x, y, z_f, ot=_ot(), w=0.5, lambda_f=3.0, steps=steps, alpha=alpha, mode=mode)
    assert float((x_free - x).abs().max()) > eps + 0.02  # without the ball it goes past it


def test_epsilon_zero_gives_the_clean_batch(digits_models):
    model, x, y, z_f = _synthesis_inputs(digits_models)[:4]
    x_new, _ = synthesize(model, x, y, z_f, ot=_ot(), w=0.5, lambda_f=3.0, steps=5, alpha=0.1, epsilon=0.0)
    assert torch.equal(x_new, x)


def test_pixel_units_convert_through_the_inputs_normalisation():
    p = DLFDParams(epsilon=0.1, alpha=0.03, input_mean=(0.5,), input_std=(0.25,))
    alpha, eps, lo, hi = input_units(p, torch.zeros(()))
    assert float(alpha) == pytest.approx(0.12) and float(eps) == pytest.approx(0.4)
    assert (float(lo), float(hi)) == (pytest.approx(-2.0), pytest.approx(2.0))
    # the hand-worked case on normalised inputs: the same image, the same pixel-unit result
    x_pix = torch.tensor([0.1, 0.5, 0.99]).view(1, 1, 1, 3)
    x_norm = (x_pix - 0.5) / 0.25
    out, _ = synthesize(_Linear(), x_norm, torch.tensor([0]), torch.tensor([[0.3, -0.2]]), ot=_ot(), w=1.0,
                        lambda_f=0.0, steps=5, alpha=alpha, epsilon=eps, pixel_range=(lo, hi))
    assert (out * 0.25 + 0.5).view(-1).tolist() == pytest.approx([0.2, 0.6, 1.0], abs=1e-5)
    # the defaults: the paper's ball in mode "paper", none in the released code's mode
    assert DLFDParams().ball == PAPER_EPSILON and DLFDParams(mode="reference_code").ball is None
    with pytest.raises(ValueError, match="input_mean: expected input_mean and input_std together"):
        DLFD(input_mean=(0.5,))
    with pytest.raises(ValueError, match="epsilon: expected"):
        DLFD(epsilon=-0.1)


# --- the forgetting score --------------------------------------------------------------------------

def test_score_noise_shrinks_with_the_sample():
    g = np.random.default_rng(0)
    a, b = g.exponential(1.0, 2000), g.exponential(1.3, 2000)
    sd_small, _ = score_noise(a[:60], b[:60], resamples=20, splits=5, seed=0)
    sd_large, mean_large = score_noise(a, b, resamples=20, splits=5, seed=0)
    assert 0 < sd_large < sd_small
    # sd of a proportion over ~0.3 * 2n test samples (and the resampling): of the order of sqrt(.25/n)
    assert sd_small > 0.5 * math.sqrt(0.25 / 60) * 0.3 and sd_large < 3 * math.sqrt(0.25 / 2000)


class _Ctx:
    def __init__(self):
        from unlearnkit.training import as_precision
        self.generator, self.amp, self.seed = torch.Generator().manual_seed(0), as_precision("fp32", "cpu"), 0


def test_monitor_samples_are_fixed_and_sized_by_the_sets(digits_models):
    split, original, _ = digits_models

    class Data:
        forget, test = TensorSource(*split.forget.tensors, name="forget"), TensorSource(*split.val.tensors, name="val")

    n_f, n_u = len(split.forget), len(split.val)
    mon = _Monitor(DLFDParams(), Data, _Ctx())
    assert mon.n == min(n_f, n_u, 2000)
    assert len(mon.unseen.y) == max(mon.n, min(2000, n_u))
    a, b = mon(original, 0)[:2], mon(original, 0)[:2]
    assert a == b  # the same samples and splits: two checks of one model agree exactly
    assert _Monitor(DLFDParams(mia_cap=20), Data, _Ctx()).n == 20
    with pytest.raises(ValueError, match="mia_samples: expected at most"):
        _Monitor(DLFDParams(mia_samples=n_f + n_u), Data, _Ctx())


def _run_dlfd(digits_models, **kw):
    split, original, _ = digits_models
    events = []
    hp = dict(epochs=1, batch_size=64, steps=1, alpha=0.01, noise_resamples=5, mia_splits=3)
    hp.update(kw)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        DLFD(**hp).unlearn(original, split.forget, split.retain, test=split.val, seed=0, callbacks=[events.append])
    return split, events, [str(w.message) for w in caught]


def test_noise_is_measured_once_and_a_threshold_inside_it_is_raised(digits_models):
    split, events, msgs = _run_dlfd(digits_models, epochs=0, forget_threshold=0.001, max_forgetting_score=0.0005)
    noise = [e for e in events if e.phase == "noise"]
    assert len(noise) == 1
    sd = noise[0].logs["fs_sd"]
    assert sd > 0.001 and noise[0].logs["samples"] == min(len(split.forget), len(split.val))
    # both thresholds were inside the noise: raised to it, with a warning naming the first
    assert noise[0].logs["forget_threshold"] == pytest.approx(sd)
    assert noise[0].logs["max_forgetting_score"] == pytest.approx(sd)
    assert any(m.startswith("forget_threshold: the forgetting score's noise") for m in msgs), msgs
    # thresholds above the noise, and 0 ("always synthesise"), are left as given, without that warning
    _, events, msgs = _run_dlfd(digits_models, epochs=0, forget_threshold=0.0, max_forgetting_score=0.5)
    logs = [e for e in events if e.phase == "noise"][0].logs
    assert (logs["forget_threshold"], logs["max_forgetting_score"]) == (0.0, 0.5)
    assert not any("noise" in m for m in msgs), msgs


def test_checks_every_n_batches_and_the_ot_weight_schedule(digits_models):
    split, events, _ = _run_dlfd(digits_models, check_every=5, forget_threshold=0.0, max_forgetting_score=0.5,
                                 lambda_f=3.0, lambda_f_end=0.0)
    total = math.ceil(len(split.retain) / 64)
    steps = [e.step for e in events if e.phase == "monitor"]
    assert steps == [0] + [s for s in range(1, total + 1) if s % 5 == 0 or s == total]
    synth = [e for e in events if e.phase == "synthesis"]
    assert len(synth) == total  # threshold 0: every batch synthesised
    # the OT weight ramps linearly from lambda_f to lambda_f_end over the pass, as w does
    lam = [e.logs["lambda_f"] for e in synth]
    assert lam == pytest.approx([3.0 * (1 - k / (total - 1)) for k in range(total)])
    assert [e.logs["w"] for e in synth] == pytest.approx([k / (total - 1) for k in range(total)])


def test_clean_weight_mixes_the_clean_batch_cross_entropy(digits_models):
    # Hand-worked: with steps=0 the synthesised batch is the clean batch, so [x'; x] holds the batch
    # twice (BatchNorm sees the same mean and biased variance) and the mix (1 - c) CE + c CE is CE(x):
    # every clean_weight then takes the same steps, and the loss logged at each is the same.
    base = dict(steps=0, forget_threshold=0.0, max_forgetting_score=0.5, check_every=1000)
    runs = [_run_dlfd(digits_models, clean_weight=c, **base)[1] for c in (0.0, 0.7)]
    a, b = ([e.logs["loss"] for e in ev if e.phase == "synthesis"] for ev in runs)
    assert len(a) == len(b) > 10
    np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=1e-3)
    # with a real synthesis the mix changes the steps: the logged loss is no longer the synthesised CE
    moved = [_run_dlfd(digits_models, clean_weight=c, steps=2, alpha=0.05, epsilon=0.1, forget_threshold=0.0,
                       max_forgetting_score=0.5, check_every=1000)[1] for c in (0.0, 0.7)]
    la, lb = ([e.logs["loss"] for e in ev if e.phase == "synthesis"] for ev in moved)
    assert la[0] != pytest.approx(lb[0], rel=1e-3)
    # the paper's default adds nothing; a weight outside [0, 1] is refused naming the field
    assert DLFDParams().clean_weight == 0.0
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="clean_weight"):
            DLFD(clean_weight=bad)


# --- defaults, validation data, the synthesis and the score, the recipe run's logs (from test_muda_dlfd.py)

def test_dlfd_defaults_are_the_papers():
    p = DLFDParams()
    assert (p.batch_size, p.lr, p.momentum, p.weight_decay, p.lambda_f) == (32, 0.008, 0.9, 5e-4, 3.0)
    assert (p.w_start, p.w_end, p.steps, p.alpha) == (0.0, 1.0, 15, 0.4)
    assert (p.forget_threshold, p.max_forgetting_score, p.ot_epsilon, p.ot_max_iter) == (0.15, 0.09, 0.01, 50)
    # issue 26: the ball (8/255) is not the paper's; the score's subsamples are as large as the sets allow
    assert (p.layer, p.mode, p.mia_samples, p.mia_splits) == ("logits", "paper", None, 10)


def test_dlfd_needs_unseen_samples(digits_models):
    split, original, _ = digits_models
    with pytest.raises(ValueError, match="test: DLFD needs unseen validation samples"):
        DLFD(epochs=1).unlearn(original, split.forget, split.retain)


def test_synthesis_increases_the_ot_distance_to_the_forget_outputs(digits_models):
    model, x, y, z_f, ot = _synthesis_inputs(digits_models)
    before = float(ot(model(x).detach(), z_f))
    x_new, history = synthesize(model, x, y, z_f, ot=ot, w=0.0, lambda_f=3.0, steps=10, alpha=0.01)
    assert len(history) == 10
    assert history[-1] > before * 1.2, (before, history)
    # mostly monotone: each step is a sign-ascent step on the OT term
    rises = sum(b > a for a, b in zip([before] + history, history))
    assert rises >= 8, history
    assert float((x_new - x).abs().max()) <= 10 * 0.01 + 1e-6  # S * alpha bounds the perturbation
    assert float(x_new.min()) >= 0.0 and float(x_new.max()) <= 1.0
    assert all(q.requires_grad for q in model.parameters())  # parameters restored


def test_synthesis_in_reference_code_mode_ignores_ot(digits_models):
    # As released: the OT term is computed on the clean batch, so with w = 0 nothing moves.
    model, x, y, z_f, ot = _synthesis_inputs(digits_models)
    x_new, history = synthesize(model, x, y, z_f, ot=ot, w=0.0, lambda_f=3.0, steps=5, alpha=0.01,
                                mode="reference_code")
    assert torch.equal(x_new, x)
    assert len(set(round(h, 9) for h in history)) == 1
    # with w > 0 it lowers the classification loss only
    x_ce, _ = synthesize(model, x, y, z_f, ot=ot, w=1.0, lambda_f=3.0, steps=5, alpha=0.01, mode="reference_code")
    with torch.no_grad():
        assert float(F.cross_entropy(model(x_ce), y)) <= float(F.cross_entropy(model(x), y)) + 1e-6


def test_forgetting_score_is_distance_of_the_loss_attack_from_chance(digits_models):
    split, original, gold = digits_models
    xf, yf = split.forget.tensors
    xt, yt = split.test.tensors
    fs, mia = forgetting_score(original, xf, yf, xt, yt, samples=100, splits=5, seed=0)
    assert fs == pytest.approx(abs(mia - 0.5)) and 0.0 <= fs <= 0.5
    # the same set on both sides: the attacker can do no better than chance (up to noise)
    fs_same, _ = forgetting_score(original, xt, yt, xt, yt, samples=100, splits=5, seed=0)
    assert fs_same < 0.12


def test_dlfd_needs_validation_data_and_warns_when_the_attack_is_at_chance(digits_models):
    split, original, _ = digits_models
    with pytest.raises(ValueError, match="test: DLFD needs unseen validation samples"):
        DLFD(epochs=0).unlearn(original, split.forget, split.retain)
    # forget_threshold 0.5: no score reaches it, so the switch would never synthesise
    with pytest.warns(UserWarning, match="forget_threshold"):
        DLFD(epochs=0, forget_threshold=0.5).unlearn(original, split.forget, split.retain, test=split.val)
