"""TMU's easy/hard cut (threshold, hard_fraction), feature sets and scaling, the model it unlearns,
the class-partial setting and the cost record (issue 27): hand-worked cases, and short runs on
digits checked against the original model's own predictions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unlearnkit.data import make_split
from unlearnkit.methods import TMU
from unlearnkit.methods.tmu import (
    FEATURE_SETS,
    RELEASED_THRESHOLD,
    TMUParams,
    classwise_standardise,
    least_easy,
    robust_minmax,
    select_hard,
)
from unlearnkit.training import predict

# a run that only exercises the twin problem and the split: one twin epoch, AF only, no unlearning
FAST = dict(twin_epochs=1, curriculum_epochs=1, predictor_epochs=2, epochs=0, features=("af",))


# --- parameters -------------------------------------------------------------------------------------------

def test_feature_sets_threshold_and_model_settings():
    assert TMU(feature_set="df_cf").params.features == ("df", "cf") == FEATURE_SETS["df_cf"]
    assert TMU(feature_set="df_af_cf").params.features == ("df", "af", "cf") == TMUParams().features
    assert TMU(feature_set="df_cf", features=("df", "cf")).params.features == ("df", "cf")
    assert TMU(features=["af", "df"]).params.features == ("af", "df")
    # the released code compares the raw output with 0.5, its sigmoid commented out
    assert math.isclose(RELEASED_THRESHOLD, 1 / (1 + math.exp(-0.5))) and 0.622 < RELEASED_THRESHOLD < 0.623
    p = TMUParams()
    assert (p.hard_fraction, p.unlearn_model, p.feature_scaling) == (None, "original", "auto")
    assert TMU(hard_fraction="auto").params.hard_fraction == "auto"
    assert TMU(hard_fraction=0).params.hard_fraction == 0.0 and TMU(hard_fraction=1).params.hard_fraction == 1.0


@pytest.mark.parametrize("field, value", [
    ("hard_fraction", "most"), ("hard_fraction", 1.5), ("hard_fraction", -0.1), ("hard_fraction", True),
    ("unlearn_model", "gold"), ("feature_scaling", "global"), ("feature_set", "df_af"), ("features", ("df", "zf")), ("features", "df_cf"),
    ("features", ("df", "df")),
])
def test_bad_settings_name_the_field(field, value):
    with pytest.raises((ValueError, TypeError), match=field):
        TMU(**{field: value})


def test_a_named_feature_set_and_other_features_conflict():
    with pytest.raises(ValueError, match="feature_set: 'df_cf' names the features"):
        TMU(feature_set="df_cf", features=("af",))


# --- the easy/hard cut ------------------------------------------------------------------------------------

def test_threshold_is_strict_on_p_easy():
    p = torch.tensor([0.1, 0.5, 0.62, RELEASED_THRESHOLD, 0.7, 0.99])
    y = torch.zeros(6, dtype=torch.long)
    assert select_hard(p, y, threshold=0.5).tolist() == [True, False, False, False, False, False]
    # the released cut: easy only when P(easy) > 0.6225; exactly at the threshold counts as easy
    assert select_hard(p, y, threshold=RELEASED_THRESHOLD).tolist() == [True, True, True, False, False, False]


def test_hard_fraction_picks_exactly_the_k_least_easy():
    p = torch.tensor([0.9, 0.2, 0.7, 0.2, 0.05, 0.8, 0.6, 0.3, 0.95, 0.4])
    y = torch.zeros(10, dtype=torch.long)
    # 30%: the three lowest, 0.05 (4) and the tied 0.2s (1, 3)
    assert torch.nonzero(select_hard(p, y, hard_fraction=0.3)).flatten().tolist() == [1, 3, 4]
    # 20%: 0.05, then the earlier of the tied 0.2s
    assert torch.nonzero(least_easy(p, 2)).flatten().tolist() == [1, 4]
    assert not select_hard(p, y, hard_fraction=0.0).any() and select_hard(p, y, hard_fraction=1.0).all()
    assert int(select_hard(p, y, hard_fraction=0.26).sum()) == 3  # round(2.6)
    # whatever the threshold, a hard_fraction overrides it
    assert int(select_hard(p, y, threshold=0.99, hard_fraction=0.1).sum()) == 1
    with pytest.raises(ValueError, match="k"):
        least_easy(p, 11)


def test_auto_hard_fraction_matches_the_original_error_rate_per_class():
    # D_twin: class 0 has 2 of 4 wrong (50%), class 1 none of 4 (0%): overall 2 of 8 (25%)
    twin_classes = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    twin_labels = torch.tensor([True, False, True, False, True, True, True, True])
    # D_f: six of class 0, three of class 1, four of class 2 (no class-2 twin sample: the overall rate)
    y = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    p = torch.tensor([0.9, 0.1, 0.8, 0.3, 0.2, 0.7, 0.01, 0.02, 0.03, 0.6, 0.5, 0.4, 0.9])
    hard = select_hard(p, y, hard_fraction="auto", twin_labels=twin_labels, twin_classes=twin_classes)
    # class 0: round(0.5 * 6) = 3 lowest (0.1, 0.2, 0.3); class 1: none, although its P(easy) are the
    # lowest of all; class 2: round(0.25 * 4) = 1 (0.4)
    assert torch.nonzero(hard).flatten().tolist() == [1, 3, 4, 11]
    with pytest.raises(ValueError, match="twin_labels"):
        select_hard(p, y, hard_fraction="auto")


def test_classwise_standardise_removes_what_a_class_shares():
    g = torch.Generator().manual_seed(0)
    f = torch.rand(60, 3, generator=g)
    y = torch.arange(60) % 3
    z = classwise_standardise(f, y)
    for c in range(3):
        block = f[y == c].double().numpy()
        expected = (block - block.mean(0)) / block.std(0)
        assert np.allclose(z[y == c].numpy(), expected, atol=1e-5)
    # a class-dependent shift and scale of the raw features (the confound) changes nothing
    shifted = f * (1 + y[:, None].float()) + 5 * y[:, None].float()
    assert torch.allclose(classwise_standardise(shifted, y), z, atol=1e-5)
    # while per-set scaling keeps it: there class 2 sits above class 0 on every feature
    s = robust_minmax(shifted)
    assert s[y == 2].min() > s[y == 0].max()
    # one-sample classes and constant columns give 0
    lone = classwise_standardise(torch.tensor([[1.0, 2.0], [3.0, 2.0], [5.0, 2.0]]), torch.tensor([0, 0, 1]))
    assert torch.allclose(lone, torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, 0.0]]))


# --- in a run -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def splits(digits_models):
    split, original, _ = digits_models
    random = make_split(split.data, forget="random", fraction=0.1, seed=0, heldout_fraction=0.2)
    partial = make_split(split.data, forget="class_partial", forget_class=3, fraction=0.3, seed=0,
                         heldout_fraction=0.5)
    return random, partial, original


def test_class_partial_twin_set_is_that_class_and_the_predictor_is_trained_on_it(splits):
    _, partial, original = splits
    xh, yh = partial.heldout.tensors
    assert len(yh) > 10 and torch.all(yh == 3)  # D_twin: class 3's unseen images only
    assert torch.all(partial.forget.tensors[1] == 3)
    m = TMU(**FAST)
    m.unlearn(original, partial.forget, partial.retain, heldout=partial.heldout)
    d = m.last_details
    assert torch.all(d["twin_classes"] == 3) and len(d["twin_features"]) == len(yh)
    assert torch.equal(d["twin_labels"], predict(original, xh).argmax(1) == yh)
    assert d["feature_scaling"] == "set"  # one class: per-class scaling is the same thing


def test_random_forgetting_scales_features_per_class_by_default(splits):
    random, _, original = splits
    m = TMU(**FAST)
    m.unlearn(original, random.forget, random.retain, heldout=random.heldout)
    assert m.last_details["feature_scaling"] == "class" and len(torch.unique(m.last_details["twin_classes"])) > 1
    m2 = TMU(**FAST, feature_scaling="set")
    m2.unlearn(original, random.forget, random.retain, heldout=random.heldout)
    assert m2.last_details["feature_scaling"] == "set"


def test_auto_hard_fraction_in_a_run_follows_the_original_errors_on_d_twin(splits):
    random, _, original = splits
    xh, yh = random.heldout.tensors
    yf = random.forget.tensors[1]
    wrong = predict(original, xh).argmax(1) != yh
    expected = sum(round(float(wrong[yh == c].float().mean()) * int((yf == c).sum())) for c in torch.unique(yf))
    m = TMU(**FAST, hard_fraction="auto")
    m.unlearn(original, random.forget, random.retain, heldout=random.heldout)
    hard = m.last_details["forget_hard"]
    assert int(hard.sum()) == expected
    # and they are the least-easy of their class
    p = m.last_details["forget_p_easy"]
    for c in torch.unique(yf):
        rows = yf == c
        if hard[rows].any() and (~hard[rows]).any():
            assert p[rows][hard[rows]].max() <= p[rows][~hard[rows]].min()


def test_unlearn_model_twin_hands_back_the_twin(splits):
    """With no unlearning epochs, "original" returns M_o unchanged, "twin" the twin M_t: the one that
    was fine-tuned on D_twin, so it fits D_twin better than M_o does."""
    random, _, original = splits
    xh, yh = random.heldout.tensors
    settings = dict(FAST, twin_match=False, twin_lr=0.05)
    out_o = TMU(**settings).unlearn(original, random.forget, random.retain, heldout=random.heldout)
    out_t = TMU(**settings, unlearn_model="twin").unlearn(original, random.forget, random.retain,
                                                          heldout=random.heldout)
    same = all(torch.equal(a, b) for a, b in zip(out_o.state_dict().values(), original.state_dict().values()))
    assert same
    assert not all(torch.equal(a, b) for a, b in zip(out_t.state_dict().values(), original.state_dict().values()))
    loss = torch.nn.functional.cross_entropy
    assert float(loss(predict(out_t, xh), yh)) < float(loss(predict(original, xh), yh))


def test_each_phase_cost_is_logged(splits):
    import time

    random, _, original = splits
    m = TMU(**dict(FAST, epochs=1, twin_match=False))
    t0 = time.perf_counter()
    m.unlearn(original, random.forget, random.retain, heldout=random.heldout)
    wall = time.perf_counter() - t0
    cost = [e for e in m.last_history if e.phase == "cost"]
    assert len(cost) == 1
    logs = cost[0].logs
    phases = ("twin", "curriculum", "features", "predictor", "unlearn")
    assert set(logs) == {f"{k}_s" for k in (*phases, "total")} | {
        f"{k}_samples" for k in ("twin", "curriculum", "features", "unlearn", "total")}
    # samples through a backward pass: one twin epoch over D_r + D_f + D_twin, one curriculum epoch
    # over the same, 5 PGD steps per D_twin and D_f sample (AF), one unlearning epoch over D_r + D_f
    n_f, n_r, n_h = len(random.forget_idx), len(random.retain_idx), len(random.heldout_idx)
    assert (logs["twin_samples"], logs["curriculum_samples"], logs["features_samples"], logs["unlearn_samples"]) == (
        n_r + n_f + n_h, 0, 5 * (n_h + n_f), n_r + n_f)
    assert m.last_details["samples"]["total"] == logs["total_samples"] == 2 * (n_r + n_f) + n_h + 5 * (n_h + n_f)
    assert all(logs[f"{k}_s"] >= 0 for k in phases) and logs["unlearn_s"] > 0 and logs["twin_s"] > 0
    assert math.isclose(logs["total_s"], sum(logs[f"{k}_s"] for k in phases), rel_tol=1e-9)
    assert logs["total_s"] <= wall
    assert m.last_details["seconds"]["total"] == logs["total_s"]


def test_twin_checked_every_few_steps_stops_at_the_first_check_that_reaches_the_target(splits):
    random, _, original = splits
    xf, yf = random.forget.tensors
    target = float((predict(original, xf).argmax(1) == yf).float().mean())
    n_train = len(random.retain_idx) + len(random.forget_idx) + len(random.heldout_idx)
    per_epoch = math.ceil(n_train / 64)
    m = TMU(**dict(FAST, twin_epochs=4, twin_lr=0.05, twin_check_every=5))
    m.unlearn(original, random.forget, random.retain, heldout=random.heldout)
    checks = [e for e in m.last_history if e.phase == "twin_check"]
    twin_steps = [e for e in m.last_history if e.phase == "twin"]
    tc = m.last_details["twin_check"]
    assert checks[0].step == 0 and checks[0].logs["orig_acc_forget"] == pytest.approx(target)
    # checks every 5 steps and at each epoch's end, at the step counts logged
    assert all(c.step % 5 == 0 or c.step % per_epoch == 0 for c in checks[1:])
    assert [c.step for c in checks] == sorted({c.step for c in checks})
    reached = [c.logs["twin_acc_twin"] >= target - 0.01 for c in checks]
    assert not any(reached[:-1]) and (reached[-1] or tc["steps"] == 4 * per_epoch)
    # it trained exactly up to its last check, no further
    assert tc["steps"] == len(twin_steps) == checks[-1].step
    assert tc["epochs"] == pytest.approx(tc["steps"] / per_epoch)
    assert tc["samples"] == min(tc["steps"] * 64, tc["steps"] // per_epoch * n_train + tc["steps"] % per_epoch * 64)


def test_twin_others_fine_tunes_on_d_twin_and_a_fresh_draw_of_the_rest(splits, monkeypatch):
    """Each twin epoch: every D_twin sample once, plus round(r * |D_twin|) other training samples,
    drawn afresh (different ones each epoch)."""
    from unlearnkit.data.batches import TensorSource

    random, _, original = splits
    n_h = len(random.heldout_idx)
    n_train = len(random.retain_idx) + len(random.forget_idx)
    picked = []
    subset = TensorSource.subset

    def spy(self, idx):
        if self.name == "twin_train":
            picked.append(torch.as_tensor(idx).clone())
        return subset(self, idx)

    monkeypatch.setattr(TensorSource, "subset", spy)
    m = TMU(**dict(FAST, twin_epochs=3, twin_match=False, twin_others=1.5))
    m.unlearn(original, random.forget, random.retain, heldout=random.heldout)
    monkeypatch.undo()
    assert len(picked) == 3
    for idx in picked:
        assert len(idx) == n_h + round(1.5 * n_h) and len(torch.unique(idx)) == len(idx)
        assert torch.equal(idx[:n_h], torch.arange(n_train, n_train + n_h))  # all of D_twin (placed last)
        assert bool((idx[n_h:] < n_train).all())
    assert not torch.equal(picked[0][n_h:], picked[1][n_h:])
    tc = m.last_details["twin_check"]
    assert tc["epochs"] == 3 and tc["samples"] == 3 * (n_h + round(1.5 * n_h))
    assert [e.step for e in m.last_history if e.phase == "twin_check"] == [0, 1, 2, 3]
