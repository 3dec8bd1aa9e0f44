"""MUDA and DLFD: their parts, and their behaviour on real data against the gold model.

Behaviour (issue 5): on Fashion-MNIST (a 3000-image subset trained to memorise, random 10%
forgetting) each method's forget accuracy ends closer to the retrained model's than the
original's was, and its test accuracy stays within 3 points of the original's. Without Debian's
dataset-fashion-mnist the same checks run on digits (where the original/gold gap is tiny, so
the check is weaker).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from helpers import accuracy_on as _acc
from helpers import loss_on as _loss
from torch.nn import functional as F

from unlearnkit.bench.recipes import method_recipe
from unlearnkit.data import fashion_mnist_available
from unlearnkit.losses import SinkhornLoss
from unlearnkit.methods import DLFD, METHODS, MUDA
from unlearnkit.methods.dlfd import DLFDParams, forgetting_score, synthesize
from unlearnkit.methods.muda import MUDAParams

FASHION = fashion_mnist_available()
DATASET = "fashion-mnist" if FASHION else "digits"
# The subset: fewer images, more epochs, so the original memorises its forget set (forget acc
# ~0.98 vs the gold model's ~0.83) as the large models of the papers do.
SUBSET = dict(n_train=3000, epochs=25)


@pytest.fixture(scope="module")
def models(request):
    """(split, original, gold): on the Fashion-MNIST subset, or on digits without Fashion-MNIST."""
    return request.getfixturevalue("fashion_models")(**SUBSET) if FASHION else request.getfixturevalue("digits_models")


@pytest.fixture(scope="module")
def run(models):
    """A function ``run(name)`` returning (split, original, gold, unlearned, events) for ``name`` with
    its recipe on ``models``; each run is made once per module."""
    runs: dict = {}

    def get(name):
        if name not in runs:
            split, original, gold = models
            method = METHODS[name](**method_recipe(DATASET, name))
            events = []
            # validation data only, as the runner does: the test split is what the result is scored on
            out = method.unlearn(original, split.forget, split.retain, test=split.val, seed=0,
                                 callbacks=[events.append])
            runs[name] = (split, original, gold, out, events)
        return runs[name]

    return get


# --- defaults and validation -----------------------------------------------------------------------

def test_muda_defaults_are_the_specs():
    p = MUDAParams()
    assert (p.epochs, p.lr, p.momentum, p.weight_decay, p.batch_size) == (5, 0.01, 0.9, 5e-4, 128)
    assert (p.lambda_da, p.lambda_sd, p.temperature, p.ce_cap, p.energy) == (1.0, 1.0, 4.0, 10.0, 0.9)
    assert p.forget_loss == "neg_ce"  # the spec's, and the tuning seeds' choice (docs/benchmarks.md, issue 25)


def test_dlfd_defaults_are_the_papers():
    p = DLFDParams()
    assert (p.batch_size, p.lr, p.momentum, p.weight_decay, p.lambda_f) == (32, 0.008, 0.9, 5e-4, 3.0)
    assert (p.w_start, p.w_end, p.steps, p.alpha) == (0.0, 1.0, 15, 0.4)
    assert (p.forget_threshold, p.max_forgetting_score, p.ot_epsilon, p.ot_max_iter) == (0.15, 0.09, 0.01, 50)
    # issue 26: the ball (8/255) is not the paper's; the score's subsamples are as large as the sets allow
    assert (p.layer, p.mode, p.mia_samples, p.mia_splits) == ("logits", "paper", None, 10)


@pytest.mark.parametrize("cls,field,value,match", [
    (MUDA, "energy", 1.5, "energy: expected"), (MUDA, "batch_size", 0, "batch_size: expected"),
    (MUDA, "ce_cap", -1.0, "ce_cap: expected"), (MUDA, "lambda_da", -1.0, "lambda_da: expected"),
    (DLFD, "mode", "code", "mode: expected one of"), (DLFD, "layer", "conv1", "layer: expected one of"),
    (DLFD, "pixel_range", (1.0, 0.0), "pixel_range: expected"), (DLFD, "steps", -1, "steps: expected"),
])
def test_bad_hyperparameters_name_the_field(cls, field, value, match):
    with pytest.raises(ValueError, match=match):
        cls(**{field: value})


def test_dlfd_needs_unseen_samples(digits_models):
    split, original, _ = digits_models
    with pytest.raises(ValueError, match="test: DLFD needs unseen validation samples"):
        DLFD(epochs=1).unlearn(original, split.forget, split.retain)


# --- DLFD's parts ----------------------------------------------------------------------------------

def _synthesis_inputs(digits_models):
    split, original, _ = digits_models
    xr, yr = split.retain.tensors
    xf, _ = split.forget.tensors
    with torch.no_grad():
        z_f = original(xf[:32])
    ot = SinkhornLoss(epsilon=0.01, cost="cosine", output="cost", scaling=1.0, max_iter=50, tol=0.1)
    return original, xr[:32], yr[:32], z_f, ot


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


# --- behaviour on real data ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["muda", "dlfd"])
def test_forget_accuracy_moves_to_gold_and_test_accuracy_holds(name, run):
    """Properties that survive rounding (the trained models themselves differ between one and two
    torch threads: gold's forget accuracy 0.8400 vs 0.8433 on Fashion-MNIST). Measured there, one
    thread / two threads: MUDA forget accuracy 0.9733 -> 0.9700 / 0.9700, forget loss 0.079 -> 0.082
    (gold 0.545): its recipe moves little; DLFD forget accuracy -> 0.8100 / 0.8533, test accuracy
    -7.0 / -5.4 points (it selects its checkpoint on validation data, not on this test split)."""
    split, original, gold, out, _ = run(name)
    f_o, f_g, f_u = _acc(original, split.forget), _acc(gold, split.forget), _acc(out, split.forget)
    t_o, t_u = _acc(original, split.test), _acc(out, split.test)
    l_o, l_g, l_u = _loss(original, split.forget), _loss(gold, split.forget), _loss(out, split.forget)
    print(f"\n{name} (torch threads {torch.get_num_threads()}): forget accuracy original {f_o:.4f} gold {f_g:.4f} "
          f"unlearned {f_u:.4f}; test accuracy original {t_o:.4f} unlearned {t_u:.4f}; forget loss original "
          f"{l_o:.4f} gold {l_g:.4f} unlearned {l_u:.4f}")
    # towards gold: the forget loss (continuous) rises from the original's towards gold's, the forget
    # accuracy does not move away from gold's (it may stay, as MUDA's nearly does). On digits (no
    # Fashion-MNIST) the original/gold gap is 2 of 144 samples and DLFD's attack finds nothing to
    # forget (it returns the original, measured): there the check is that nothing moves away.
    assert (l_o < l_u if FASHION else l_o <= l_u) and l_u < l_g + 0.5 * (l_g - l_o), (name, l_o, l_g, l_u)
    assert abs(f_u - f_g) <= abs(f_o - f_g), (name, f_o, f_g, f_u)
    if name == "dlfd" and FASHION:  # it forgets more than it loses on unseen data
        # (before issue 26 it went "most of the way to gold" at 7 points of test accuracy: uniform damage;
        # with the score on fixed subsamples and its thresholds raised to its noise, one thread: forget
        # 0.9733 -> 0.9467, test 0.8618 -> 0.8513)
        assert t_o - t_u < f_o - f_u and t_o - t_u <= 0.10, (name, t_o, t_u, f_o, f_u)
    else:
        assert abs(t_u - t_o) <= 0.03, (name, t_o, t_u)
    assert t_o - t_u <= 0.10, (name, t_o, t_u)


def test_muda_logs_da_and_both_phases(run):
    _, _, _, _, events = run("muda")
    phases = {e.phase for e in events}
    assert {"forget", "recover"} <= phases
    das = [e.logs["da"] for e in events if e.phase == "forget"]
    assert das and all(0.0 <= d <= 1.0 for d in das)
    assert all("sd" in e.logs for e in events if e.phase == "recover")


def test_dlfd_logs_forgetting_score_and_synthesis(run):
    _, _, _, _, events = run("dlfd")
    monitors = [e for e in events if e.phase == "monitor"]
    assert monitors and all(0.0 <= e.logs["fs"] <= 0.5 for e in monitors)
    synth = [e for e in events if e.phase == "synthesis"]
    assert synth, "the recipe's forget_threshold should trigger the synthesis on this data"
    assert all(e.logs["ot_last"] >= e.logs["ot_first"] - 1e-6 for e in synth)


def test_original_model_untouched(digits_models):
    split, original, _ = digits_models
    before = {k: v.clone() for k, v in original.state_dict().items()}
    for cls in (MUDA, DLFD):
        hp = {"epochs": 1} if cls is MUDA else {"epochs": 1, "steps": 2, "check_every": 10}
        cls(**hp).unlearn(original, split.forget, split.retain, test=split.val)
    after = original.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_recipes_exist_and_are_valid():
    for dataset in ("digits", "fashion-mnist"):
        for name, cls in (("muda", MUDA), ("dlfd", DLFD)):
            recipe = method_recipe(dataset, name)
            assert recipe, (dataset, name)
            p = cls(**recipe).params
            assert dataclasses.is_dataclass(p)


# --- issue 12: MUDA's forget loss and probe curves, DLFD on validation data ---------------------------

@pytest.mark.parametrize("forget_loss", ["neg_ce", "none"])
def test_muda_forget_phase_loss_is_what_forget_loss_says(forget_loss, digits_models):
    split, original, _ = digits_models
    m = MUDA(epochs=1, forget_loss=forget_loss, ce_cap=1.5, lambda_da=2.0, probe_every=4, probe_samples=100)
    m.unlearn(original, split.forget, split.retain, test=split.val, seed=0)
    forget = [e.logs for e in m.last_history if e.phase == "forget"]
    assert forget
    for lg in forget:  # the logged parts, recombined by hand
        expected = 2.0 * (1.0 - lg["da"]) - (min(lg["ce"], 1.5) if forget_loss == "neg_ce" else 0.0)
        assert lg["loss"] == pytest.approx(expected, abs=1e-5)
    with pytest.raises(ValueError, match="forget_loss"):
        MUDA(forget_loss="ce")


def test_muda_logs_probe_curves_on_a_schedule(digits_models):
    split, original, _ = digits_models
    m = MUDA(epochs=1, probe_every=3, probe_samples=200, recover_ratio=2)
    m.unlearn(original, split.forget, split.retain, test=split.val, seed=0)
    h = m.last_history
    n_f = sum(e.phase == "forget" for e in h)
    n_r = sum(e.phase == "recover" for e in h)
    probes = [e.logs for e in h if e.phase == "probe"]
    assert len(probes) == 2 + n_f // 3 + n_r // 3  # start, end, and every third step of each phase
    assert probes[0]["after"] == "start" and probes[-1]["after"] == "end"
    assert all(0.0 <= p["lp_retain"] <= 1.0 and 0.0 <= p["lp_forget"] <= 1.0 for p in probes)
    # on the original (memorised) digits model a probe on retain features separates the classes
    assert probes[0]["lp_retain"] > 0.85 and probes[0]["lp_forget"] > 0.85
    off = MUDA(epochs=1, probe_every=0)
    off.unlearn(original, split.forget, split.retain, seed=0)
    assert not [e for e in off.last_history if e.phase == "probe"]


def test_dlfd_needs_validation_data_and_warns_when_the_attack_is_at_chance(digits_models):
    split, original, _ = digits_models
    with pytest.raises(ValueError, match="test: DLFD needs unseen validation samples"):
        DLFD(epochs=0).unlearn(original, split.forget, split.retain)
    # forget_threshold 0.5: no score reaches it, so the switch would never synthesise
    with pytest.warns(UserWarning, match="forget_threshold"):
        DLFD(epochs=0, forget_threshold=0.5).unlearn(original, split.forget, split.retain, test=split.val)


def test_runner_warns_once_for_scenarios_a_paper_did_not_target():
    import warnings

    from unlearnkit.bench.runner import warn_untargeted

    assert DLFD.targets == ("random",) and METHODS["tmu"].targets == ("random", "class_partial")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        warn_untargeted(("dlfd", "finetune", "dlfd", "tmu"), "class")
        warn_untargeted(("dlfd", "tmu"), "random")
    msgs = [str(x.message) for x in w]
    assert len(msgs) == 2 and msgs[0].startswith("dlfd: its paper targets random") and msgs[1].startswith("tmu:")
