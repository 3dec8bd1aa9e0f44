"""MUDA and DLFD side by side: the tests that check both in one test (each method's own tests are in
``test_muda.py`` and ``test_dlfd.py``): their hyper-parameter errors, their recipes, the original
model left untouched, the runner's warning for scenarios a paper did not target, and their behaviour
on real data against the gold model.

Behaviour (issue 5): on Fashion-MNIST (a 3000-image subset trained to memorise, random 10%
forgetting) each method's forget accuracy ends closer to the retrained model's than the
original's was, and its test accuracy stays within 3 points of the original's. Without Debian's
dataset-fashion-mnist the same checks run on digits (where the original/gold gap is tiny, so
the check is weaker). The runs are shared with the per-method files (``subset_recipe_runs`` in
``shared_fixtures.py``).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from helpers import accuracy_on as _acc
from helpers import loss_on as _loss

from unlearnkit.bench.recipes import method_recipe
from unlearnkit.data import fashion_mnist_available
from unlearnkit.methods import DLFD, METHODS, MUDA

FASHION = fashion_mnist_available()


@pytest.fixture(scope="module")
def run(subset_recipe_runs):
    """``run(name)``: MUDA's or DLFD's recipe run on the memorising Fashion-MNIST subset (digits without
    it), made once per session (``subset_recipe_runs`` in ``shared_fixtures.py``). Every test that
    reads these runs is in this file: the test processes share nothing in memory, and a second file
    on the other worker would repeat the runs (DLFD's alone takes ~35 s on one thread)."""
    return subset_recipe_runs


@pytest.mark.parametrize("cls,field,value,match", [
    (MUDA, "energy", 1.5, "energy: expected"), (MUDA, "batch_size", 0, "batch_size: expected"),
    (MUDA, "ce_cap", -1.0, "ce_cap: expected"), (MUDA, "lambda_da", -1.0, "lambda_da: expected"),
    (DLFD, "mode", "code", "mode: expected one of"), (DLFD, "layer", "conv1", "layer: expected one of"),
    (DLFD, "pixel_range", (1.0, 0.0), "pixel_range: expected"), (DLFD, "steps", -1, "steps: expected"),
])
def test_bad_hyperparameters_name_the_field(cls, field, value, match):
    with pytest.raises(ValueError, match=match):
        cls(**{field: value})


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
