"""Bad teacher: on whole-class forgetting the forget samples' outputs move to the incompetent
teacher's and the retained ones stay with the competent teacher's; the incompetent teacher is a fresh
seeded initialisation.

On real data (digits), with its digits recipe: the forget loss rises towards the gold model's (the
original memorises every forget sample: loss ~0.001, gold ~0.03), retained and unseen accuracy stay
close to the original's. Its effect and its logging, beside the other baselines', are in
``test_recipes_digits.py``.
"""

import torch
from helpers import accuracy_on as _acc
from torch.nn import functional as F

from unlearnkit.bench.recipes import method_recipe
from unlearnkit.data import make_split
from unlearnkit.methods import get_method
from unlearnkit.methods.bad_teacher import incompetent_teacher
from unlearnkit.training import predict


def test_bad_teacher_forget_outputs_move_towards_the_random_teacher(digits_models):
    """Whole-class forgetting (class 3 of digits; the original model is the same, trained on all
    data): the forget samples' outputs move to the incompetent teacher's, the retained ones stay
    with the competent teacher's. (On a random forget set the two cannot be told apart by the
    network, which then just softens every output; the effect test above covers that case.)"""
    split, original, _ = digits_models
    cs = make_split(split.data, forget="class", forget_class=3, seed=0)
    out = get_method("bad_teacher")(**method_recipe("digits", "bad_teacher")).unlearn(
        original, cs.forget, cs.retain, seed=0)
    bad = incompetent_teacher(original, seed=0)  # the teacher unlearn(seed=0) used
    xf, yf = cs.forget.tensors
    xr, yr = cs.retain.tensors

    def kl_to(teacher, model, x):
        t, s = F.log_softmax(predict(teacher, x), 1), F.log_softmax(predict(model, x), 1)
        return float(F.kl_div(s, t, log_target=True, reduction="batchmean"))

    shrink_f = kl_to(bad, out, xf) / kl_to(bad, original, xf)
    shrink_r = kl_to(bad, out, xr) / kl_to(bad, original, xr)
    assert shrink_f < 0.3 and shrink_f < 0.5 * shrink_r
    assert kl_to(original, out, xr) < 0.1 * kl_to(original, out, xf)
    assert _acc(out, cs.forget) < 0.2 and _acc(out, cs.retain) > 0.85
    # the incompetent teacher is a fresh, seeded initialisation that knows nothing
    assert _acc(bad, split.test) < 0.3
    assert all(torch.equal(a, b) for a, b in zip(bad.parameters(), incompetent_teacher(original, 0).parameters()))
