"""The shared held-out stopping rule (``stop="val-match"``, ``unlearnkit.methods._stop``).

Oracles: a synthetic model whose forget-set accuracy is made to reach the validation accuracy at a
known step (so where the rule must stop is computed by hand); brute-force pair counting for the
weighted AUC; sources that raise when read (the rule must never touch held-out or evaluation data).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from unlearnkit.data.batches import TensorSource
from unlearnkit.methods import METHODS, get_method
from unlearnkit.methods._stop import StopParams, membership_auc
from unlearnkit.methods.base import Method

# ---------------------------------------------------------------------------------------------
# A synthetic case with a known answer.
#
# Inputs are (n, 1, 2, 2): pixel (0,0) carries a class signal s = 2y-1 flipped for 30% of all
# samples (so a signal-only model is right on 70%), pixel (0,1) marks forget samples, pixel (1,0)
# holds a per-sample memory strength m_i in [0.5, 1] times (2y-1) for forget samples only. The logit
# margin is  w_s * s + w_m * m_i * (2y-1) : with w_m >= 2 w_s the forget set is memorised (100%
# right); the method lowers w_m by a fixed amount per step, so a forget sample whose signal is
# flipped turns wrong once w_m * m_i < w_s. Forget accuracy reaches the validation accuracy (70%)
# at the step where w_m <= w_s, and falls below it once w_m < -w_s (over-forgetting).
# ---------------------------------------------------------------------------------------------
W_S, W_M0, DELTA = 1.0, 4.0, 0.05
K_MATCH = int(np.ceil((W_M0 - W_S) / DELTA))  # first step with w_m <= w_s: forget acc = 70% from here on


class Memo(nn.Module):
    num_classes = 2

    def __init__(self):
        super().__init__()
        self.w_m = nn.Parameter(torch.tensor(W_M0), requires_grad=False)

    def features(self, x):
        return x.flatten(1)

    def head(self, z):
        margin = W_S * z[:, 0] + self.w_m * z[:, 2]
        return torch.stack([-margin / 2, margin / 2], dim=1)

    def forward(self, x):
        return self.head(self.features(x))


def _synthetic(n: int, forget: bool, seed: int):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    sign = (2 * y - 1).float()
    flip = torch.rand(n, generator=g) < 0.3
    x = torch.zeros(n, 1, 2, 2)
    x[:, 0, 0, 0] = torch.where(flip, -sign, sign)
    if forget:
        x[:, 0, 0, 1] = 1.0
        x[:, 0, 1, 0] = (0.5 + 0.5 * torch.rand(n, generator=g)) * sign
    return x, y


@dataclasses.dataclass(frozen=True)
class FadeParams(StopParams):
    steps: int = 150


class Fade(Method):
    """Lowers the memory weight by DELTA per step, asking the stopping rule after each step."""

    name = "_test_fade"
    paper = "test"
    Params = FadeParams

    def _unlearn(self, model, data, ctx):
        for step in range(1, self.params.steps + 1):
            with torch.no_grad():
                model.w_m -= DELTA
            ctx.log("fade", step, self.params.steps, w_m=float(model.w_m))
            if ctx.stop_check(model):
                break
        return model


@pytest.fixture(scope="module")
def synthetic_sets():
    xf, yf = _synthetic(1000, True, 1)
    xr, yr = _synthetic(2000, False, 2)
    xv, yv = _synthetic(1000, False, 3)
    return (xf, yf), (xr, yr), (xv, yv)


def _acc(model, x, y):
    return float((model(x).argmax(1) == y).float().mean())


class Raising(TensorSource):
    """A source whose inputs fail the test if anything reads them (its labels, metadata that
    ``Method.unlearn`` checks for every source it is given, stay readable)."""

    def _fetch(self, index_batches, device):
        raise AssertionError(f"{self.name} was read")

    def tensors(self):
        raise AssertionError(f"{self.name} was read")


def test_stops_where_the_forget_set_matches_validation(synthetic_sets):
    (xf, yf), retain, val = synthetic_sets
    val_acc = _acc(Memo(), *val)
    # the fixed schedule over-forgets: at 150 steps w_m = -3.5, far below the validation accuracy
    free = Fade(steps=150).unlearn(Memo(), (xf, yf), retain, test=val)
    assert _acc(free, xf, yf) < val_acc - 0.1
    method = Fade(steps=150, stop="val-match", stop_every=1, stop_patience=20)
    model = method.unlearn(Memo(), (xf, yf), retain, test=val, heldout=Raising(*_synthetic(100, False, 4), name="heldout"))
    hist = method.last_history
    stop = [e for e in hist if e.phase == "stop"]
    assert len(stop) == 1 and stop[0].logs["reason"] == "matched"
    checks = [e for e in hist if e.phase == "stop-check"]
    noise = checks[0].logs["noise"]
    assert 0.003 < noise < 0.05  # a bootstrap sd of a difference of two accuracies over ~1000 samples
    # the rule stops within the noise band before the known crossing, and never after it
    stopped_at = stop[0].logs["steps_run"]
    assert stopped_at <= K_MATCH
    # where it stopped, forget accuracy is within the threshold of the validation accuracy, both
    # by its own log and recomputed here on the whole sets
    assert abs(checks[-1].logs["s"]) <= checks[-1].logs["threshold"]
    assert abs(_acc(model, xf, yf) - val_acc) <= 2 * checks[0].logs["threshold"] + 0.02
    # the kept state is the one of the stopping step: w_m = W_M0 - step * DELTA
    assert float(model.w_m) == pytest.approx(W_M0 - stop[0].logs["kept_step"] * DELTA, abs=1e-5)


def test_patience_keeps_the_best_state_when_the_schedule_overshoots(synthetic_sets):
    (xf, yf), retain, val = synthetic_sets
    val_acc = _acc(Memo(), *val)
    # checks every 40 steps straddle the crossing; a zero threshold never "matches", so the rule
    # runs out of patience after the crossing and keeps the check closest to the validation accuracy
    method = Fade(steps=150, stop="val-match", stop_every=40, stop_patience=2, stop_noise=0.0)
    model = method.unlearn(Memo(), (xf, yf), retain, test=val)
    stop = [e for e in method.last_history if e.phase == "stop"][0].logs
    assert stop["reason"] in ("patience", "schedule")
    checked = [40, 80, 120]
    accs = {}
    for k in [0] + checked:
        m = Memo()
        with torch.no_grad():
            m.w_m -= DELTA * k
        accs[k] = _acc(m, *[t[:1000] for t in (xf, yf)])
    want = min(accs, key=lambda k: abs(accs[k] - val_acc))
    assert stop["kept_step"] == want
    assert float(model.w_m) == pytest.approx(W_M0 - want * DELTA, abs=1e-5)


def test_retain_tolerance_makes_a_damaged_state_ineligible(synthetic_sets):
    # a retain set that the fading memory also serves (a copy of the forget samples: the contract
    # cannot see that two separate tensors hold the same images): retain accuracy falls sample for
    # sample with the forget set's, so with no tolerance no later state is eligible, and the rule
    # hands back the model it was given
    (xf, yf), _, val = synthetic_sets
    xr, yr = xf.clone(), yf.clone()
    method = Fade(steps=100, stop="val-match", stop_every=5, stop_patience=100, stop_retain_tol=0.0)
    model = method.unlearn(Memo(), (xf, yf), (xr, yr), test=val)
    stop = [e for e in method.last_history if e.phase == "stop"][0].logs
    assert stop["kept_step"] == 0 and float(model.w_m) == pytest.approx(W_M0)
    assert any(not e.logs["eligible"] for e in method.last_history if e.phase == "stop-check")


class MemoV(Memo):
    """Memo plus a weight on pixel (1,1), which only the validation samples of the test below carry:
    lowering it pushes them toward class 0, so validation accuracy falls while retain (pixel 0) and
    the forget set's memory do not see it."""

    def __init__(self):
        super().__init__()
        self.w_v = nn.Parameter(torch.tensor(0.0), requires_grad=False)

    def head(self, z):
        margin = W_S * z[:, 0] + self.w_m * z[:, 2] + self.w_v * z[:, 3]
        return torch.stack([-margin / 2, margin / 2], dim=1)


DAMAGE_FROM = 46  # first step that lowers w_v


class DamagingFade(Fade):
    """Fade, and from step DAMAGE_FROM on also lowers w_v by 0.5 a step: once w_v <= -W_S (step 48)
    every class-1 validation sample with the right signal is called class 0."""

    name = "_test_damaging_fade"

    def _unlearn(self, model, data, ctx):
        for step in range(1, self.params.steps + 1):
            with torch.no_grad():
                model.w_m -= DELTA
                if step >= DAMAGE_FROM:
                    model.w_v -= 0.5
            if ctx.stop_check(model):
                break
        return model


def test_val_tolerance_makes_a_state_that_lost_generalisation_ineligible(synthetic_sets):
    # By hand: forget accuracy first falls below 1 once w_m < 2 (step 40), so the check at step 45
    # (w_m = 1.75, ~14% of the flipped forget samples wrong) is the first better state; from step 48
    # validation accuracy is ~50% while retain accuracy is unchanged. With stop_val_tol = 0 every
    # check from step 50 on is ineligible and the rule keeps step 45; without it, the rule goes on
    # (s = acc_f - acc_v is smallest near step 60 once acc_v has fallen) and keeps a damaged state.
    (xf, yf), retain, (xv, yv) = synthetic_sets
    xv = xv.clone()
    xv[:, 0, 1, 1] = 1.0
    kw = dict(steps=100, stop="val-match", stop_every=5, stop_patience=100, stop_noise=0.0)
    tol = DamagingFade(**kw, stop_val_tol=0.0)
    tol.unlearn(MemoV(), (xf, yf), retain, test=(xv, yv))
    free = DamagingFade(**kw)
    free_model = free.unlearn(MemoV(), (xf, yf), retain, test=(xv, yv))
    checks = [e.logs for e in tol.last_history if e.phase == "stop-check"]
    assert checks[0]["val_acc"] == pytest.approx(_acc(MemoV(), xv, yv))
    by_step = {e.step: e.logs for e in tol.last_history if e.phase == "stop-check"}
    assert by_step[45]["eligible"] and by_step[45]["val_acc"] == pytest.approx(checks[0]["val_acc"])
    assert all(not by_step[k]["eligible"] and by_step[k]["val_acc"] < checks[0]["val_acc"] - 0.1
               for k in range(50, 101, 5))
    # retain accuracy never moved: only the validation tolerance made those checks ineligible
    assert all(c["retain_acc"] == pytest.approx(checks[0]["retain_acc"]) for c in checks)
    kept = [e.logs for e in tol.last_history if e.phase == "stop"][0]["kept_step"]
    kept_free = [e.logs for e in free.last_history if e.phase == "stop"][0]["kept_step"]
    assert kept == 45
    assert kept_free > 45 and _acc(free_model, xv, yv) < checks[0]["val_acc"] - 0.1
    # without the field, no all-class validation subsample is drawn or logged
    assert all("val_acc" not in e.logs for e in free.last_history if e.phase == "stop-check")


def test_val_tolerance_reads_every_class_when_the_forget_set_holds_one(synthetic_sets):
    # forget samples of class 1 only: the statistic's val subsample is class 1's, so the tolerance
    # draws its own subsample of every class (here the whole 1000-sample validation set)
    (xf, yf), retain, (xv, yv) = synthetic_sets
    one = yf == 1
    method = Fade(steps=5, stop="val-match", stop_every=5, stop_val_tol=0.0)
    method.unlearn(Memo(), (xf[one], yf[one]), retain, test=(xv, yv))
    first = [e.logs for e in method.last_history if e.phase == "stop-check"][0]
    assert first["n_val"] == int((yv == 1).sum()) and first["n_val_all"] == len(yv)
    assert first["val_acc"] == pytest.approx(_acc(Memo(), xv, yv))


def test_val_tolerance_leaves_an_undamaged_run_as_it_was(synthetic_sets):
    # validation accuracy does not move under Fade, so a zero tolerance changes nothing: the same
    # subsamples (drawn before the new one), the same checks, the same kept step
    (xf, yf), retain, val = synthetic_sets
    runs = []
    for extra in ({}, {"stop_val_tol": 0.0}):
        method = Fade(steps=150, stop="val-match", stop_every=1, stop_patience=20, **extra)
        model = method.unlearn(Memo(), (xf, yf), retain, test=val)
        stop = [e.logs for e in method.last_history if e.phase == "stop"][0]
        s = [e.logs["s"] for e in method.last_history if e.phase == "stop-check"]
        runs.append((stop["kept_step"], stop["reason"], s, float(model.w_m)))
    assert runs[0] == runs[1]


def test_refuses_whole_class_forgetting_and_missing_validation(synthetic_sets):
    (xf, yf), retain, val = synthetic_sets
    keep = retain[1] == 0
    one_class_retain = (retain[0][keep], retain[1][keep])
    with pytest.raises(ValueError, match=r"_test_fade\.stop: 'val-match' does not apply to whole-class forgetting.*\[1\]"):
        Fade(stop="val-match").unlearn(Memo(), (xf, yf), one_class_retain, test=val)
    with pytest.raises(ValueError, match=r"_test_fade\.stop: .*got test=None"):
        Fade(stop="val-match").unlearn(Memo(), (xf, yf), retain, test=None)
    keep = val[1] == 0
    with pytest.raises(ValueError, match=r"validation samples of every forgotten class.*\[1\]"):
        Fade(stop="val-match").unlearn(Memo(), (xf, yf), retain, test=(val[0][keep], val[1][keep]))


def test_without_a_rule_nothing_is_checked_or_read(synthetic_sets):
    (xf, yf), retain, _ = synthetic_sets
    method = Fade(steps=10)
    model = method.unlearn(Memo(), (xf, yf), retain, test=Raising(*synthetic_sets[2], name="val"))
    assert float(model.w_m) == pytest.approx(W_M0 - 10 * DELTA)
    assert not [e for e in method.last_history if e.phase.startswith("stop")]


def test_weighted_auc_against_brute_force_pair_counting():
    rng = np.random.default_rng(0)
    lf = np.round(rng.normal(0, 1, 60), 1)  # rounded: ties occur
    lv = np.round(rng.normal(0.3, 1, 80), 1)
    wv = rng.uniform(0.2, 3, 80)
    brute = sum(w * ((v > f) + 0.5 * (v == f)) for f in lf for v, w in zip(lv, wv)) / (len(lf) * wv.sum())
    assert membership_auc(lf, lv, wv) == pytest.approx(brute, rel=1e-12)
    assert membership_auc(lf, lv) == pytest.approx(np.mean([(v > f) + 0.5 * (v == f) for f in lf for v in lv]))


def test_class_weights_match_the_forget_sets_class_mix():
    # forget: all class 1. validation: 90% class 0 (always right), 10% class 1 (half right). The
    # class-conditional statistic compares with class 1's validation accuracy (0.5), not 0.55.
    from unlearnkit.methods._stop import ValMatch

    class Ctx:
        seed, amp = 0, "fp32"

        def log(self, *a, **k):
            self.last = k

    class Lookup(nn.Module):  # right exactly where pixel (0,0) is 1
        def __init__(self):
            super().__init__()
            self.unused = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            right = x[:, 0, 0, 0] > 0.5
            return torch.stack([right.float(), (~right).float()], 1) * 10

    def src(y, right):
        x = torch.zeros(len(y), 1, 2, 2)
        x[:, 0, 0, 0] = right.float()
        # a label-1 sample is "right" when logit 1 wins: flip the encoding for class 1
        x[y == 1, 0, 0, 0] = 1 - x[y == 1, 0, 0, 0]
        return TensorSource(x, y)

    yv = torch.tensor([0] * 900 + [1] * 100)
    right_v = torch.cat([torch.ones(900, dtype=torch.bool), torch.arange(100) % 2 == 0])
    yf = torch.ones(200, dtype=torch.long)
    data = type("D", (), {})()
    data.forget, data.test = src(yf, torch.ones(200, dtype=torch.bool)), src(yv, right_v)
    data.retain = src(torch.tensor([0, 1] * 50), torch.ones(100, dtype=torch.bool))
    params = FadeParams(stop="val-match", stop_samples=1000)
    ctx = Ctx()
    ValMatch(Lookup(), data, ctx, params, "x")
    assert ctx.last["s"] == pytest.approx(1.0 - 0.5, abs=1e-12)


def _iterative_methods():
    return [name for name, cls in sorted(METHODS.items())
            if issubclass(cls.Params, StopParams) and not name.startswith("_")]


def test_the_iterative_methods_offer_the_rule():
    names = _iterative_methods()
    for must in ("finetune", "neggrad", "neggrad_plus", "l1_sparse", "salun", "scrub", "random_labels",
                 "bad_teacher", "boundary_shrink", "cf_k", "eu_k", "muda", "dlfd", "tmu"):
        assert must in names
    for name in names:
        assert "stop" in {f.name for f in dataclasses.fields(get_method(name).Params)}


@pytest.mark.parametrize("name", _iterative_methods())
def test_every_iterative_method_checks_the_rule_in_its_loop(name, digits_models):
    """Each method's unlearning loop asks the rule (checks logged beyond the initial one) and hands
    back the state the rule kept; on the digits split, every one of them, in seconds."""
    split, original, _ = digits_models
    small = {"finetune": {"epochs": 1}, "neggrad": {"epochs": 1}, "neggrad_plus": {"epochs": 1},
             "l1_sparse": {"epochs": 1}, "salun": {"epochs": 1}, "scrub": {"epochs": 1},
             "random_labels": {"epochs": 1}, "bad_teacher": {"epochs": 1}, "boundary_shrink": {"epochs": 1},
             "cf_k": {"epochs": 1}, "eu_k": {"epochs": 1}, "muda": {"epochs": 1, "recover_ratio": 4.0},
             "dlfd": {"epochs": 1, "steps": 2}, "tmu": {"epochs": 1, "twin_epochs": 1, "curriculum_epochs": 1,
                                                         "predictor_epochs": 5}}.get(name, {})
    cls = get_method(name)
    fields = {f.name for f in dataclasses.fields(cls.Params)}
    hp = {k: v for k, v in small.items() if k in fields}
    method = cls(**hp, stop="val-match", stop_every=1, stop_patience=1000, stop_noise=0.0)
    extra = {"heldout": split.heldout} if cls.needs_heldout else {}
    if cls.needs_heldout and len(split.heldout_idx) == 0:
        from unlearnkit.data import make_split
        split = make_split(split.data, forget="random", fraction=0.1, seed=0, heldout_fraction=0.2)
        extra = {"heldout": split.heldout}
    model = method.unlearn(original, split.forget, split.retain, test=split.val, seed=0, **extra)
    hist = method.last_history
    checks = [e for e in hist if e.phase == "stop-check"]
    stop = [e for e in hist if e.phase == "stop"]
    assert len(stop) == 1 and len(checks) >= 2, f"{name}: {len(checks)} checks"
    assert stop[0].logs["steps_run"] == len(checks) - 1  # one check per step (stop_every=1)
    # the model handed back is the kept state: its statistic, recomputed, is the logged one
    kept = stop[0].logs["kept_step"]
    logged = [e for e in checks if e.step == kept][0].logs["s"]
    assert stop[0].logs["s"] == pytest.approx(logged)
    assert all(torch.isfinite(p).all() for p in model.parameters())
