"""Layer: methods. The shared held-out stopping rule, ``stop="val-match"``, offered by every
iterative method (its fields are :class:`StopParams`, which such a method's ``Params`` inherits).

A deployer has no retrained model, so it cannot stop "where gold stands". What it has is unseen
data of the same distribution (the validation split): a model retrained without D_f treats D_f as
unseen, so D_f's per-sample losses are then distributed as those of validation samples of the same
classes. The rule measures that, on fixed subsamples chosen once per call, with one of two
two-sample statistics (``stop_statistic``):

    "accuracy" (default): s = acc(forget) - acc_w(val)     (the 0-1 loss's mean difference)
    "auc":                s = AUC(loss_val, loss_forget) - 1/2
                              (P(a val sample's loss > a forget sample's loss) - 1/2)

with the loss read on LiRA's logit scale (``logsumexp(z_other) - z_y``, increasing in the
cross-entropy but free of its float32 underflow to 0, which would tie memorised and confident
unseen samples).

Measured on the memorising regime (fashion-mnist-10k, random-10, seed 0, the original model): the
accuracy statistic is 0.117 with a bootstrap noise of ~0.011 (10 sd); the AUC one 0.054 with 0.013
(4 sd): a model that memorised is as confident on its correct unseen samples as on training ones,
and what sets the forget set apart is mostly how few of it are wrong. Hence the default.

``s > 0``: the forget set is still recognisably "trained on" (lower losses); ``s = 0``: as unseen;
``s < 0``: over-forgotten (worse than unseen data). Validation samples are weighted so that their
class mix equals the forget set's (the class-conditional form: class-partial forgetting compares
class C's forget samples with class C's unseen ones). The noise of ``s`` is measured once, on the
model handed in, as the bootstrap standard deviation over resamples of both subsamples.

At each check (every ``stop_every`` steps of the method's unlearning loop) the rule logs ``s``, its
noise and the accuracy on a retain subsample (phase ``stop-check``). A check is *eligible* when that
accuracy is within ``stop_retain_tol`` of its value at the start (and, when ``stop_val_tol`` is set, the
accuracy on a validation subsample of every class within ``stop_val_tol`` of its own: a method can keep
its training data while losing what it generalised, e.g. TMU on random-10 lost 0.5-1.3 points of test
accuracy with retain within 0.4). The rule keeps the eligible state
with the smallest ``|s|`` seen (the start counts: a rule that never finds a better state hands back
the original and says so); it stops when an eligible ``|s| <= stop_noise * noise`` (matched) or after
``stop_patience`` checks past the target (``s < 0``, over-forgetting) without a better eligible
state; neither a plateau before the target nor a dip in retain accuracy uses up patience, since a
method may take a while to start forgetting, and a large step size often costs retain accuracy
first and wins it back later (l1-sparse's tuned recipe on fashion-mnist-10k: 3 points down within 50
steps). At the end of the schedule or at the stop
the kept state is loaded. The last event, phase ``stop``, says which (``reason``: matched, patience,
schedule).

Invariants: it reads the forget, retain and validation data only (``test=`` of ``Method.unlearn``,
which must be validation data), each subsample once; it never reads ``heldout`` or the evaluation
split. It does not apply to whole-class forgetting (a forgotten class with no retain sample): unseen
samples of that class are classified by the model being unlearned as much as the forget set is, so
they are no reference there; the rule refuses it with a ValueError.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from .._validation import categorical, param
from ..training import predict

STOP_RULES = ("none", "val-match")
STOP_STATISTICS = ("accuracy", "auc")
_BOOTSTRAP = 200  # resamples for the noise level: sd of s to ~5% (relative)


@dataclass(frozen=True)
class StopParams:
    """The held-out stopping rule's fields, shared by every iterative method.

    stop: "none" (default; None too: run the fixed schedule) or "val-match" (stop when the forget set's losses
    are as those of unseen validation samples; see ``unlearnkit.methods._stop``); stop_every: steps
    of the unlearning loop between checks; stop_patience: checks without a better eligible state
    past the target (over-forgotten) before stopping; stop_retain_tol: how far (a fraction, 0.02 =
    2 points) accuracy on a retain subsample may fall below its start value for a state to be kept;
    stop_val_tol: the same for accuracy on a validation subsample of every class (None: not checked; a
    1000-sample subsample resolves 0.1 point, and paired states on it differ by far less than its
    sampling error against the population, ~1 point); stop_noise: a state matches
    when ``|s| <= stop_noise x`` the statistic's noise sd; stop_samples: the cap on each fixed
    subsample (forget, validation, retain); stop_statistic: "accuracy" (forget accuracy minus the
    class-weighted validation accuracy) or "auc" (the loss AUC minus 1/2); see the module docstring.
    """

    stop: str | None = param("none", choices=STOP_RULES, space=categorical(*STOP_RULES))
    stop_every: int = param(10, ge=1)
    stop_patience: int = param(5, ge=1)
    stop_retain_tol: float = param(0.02, ge=0, le=1)
    stop_val_tol: float | None = param(None, ge=0, le=1)
    stop_noise: float = param(2.0, ge=0)
    stop_samples: int = param(1000, ge=10)
    stop_statistic: str = param("accuracy", choices=STOP_STATISTICS)


def stop_enabled(params) -> bool:
    return getattr(params, "stop", None) not in (None, "none")


def _losses(model, x: torch.Tensor, y: torch.Tensor, amp) -> np.ndarray:
    """Per-sample loss on a scale that does not saturate: ``-phi`` with ``phi = log p_y - log(1 - p_y)
    = z_y - logsumexp(z_other)`` (LiRA's logit-scaled confidence), a strictly increasing function of
    the cross-entropy. CE itself underflows to exactly 0 in float32 for a memorised sample and for a
    confidently right unseen one alike, and the ties would pull the statistic toward 1/2."""
    z = predict(model, x, precision=amp).double()
    z_y = z.gather(1, y.long().view(-1, 1)).squeeze(1)
    other = z.scatter(1, y.long().view(-1, 1), float("-inf"))
    return (torch.logsumexp(other, dim=1) - z_y).numpy()


def membership_auc(loss_forget: np.ndarray, loss_val: np.ndarray, w_val: np.ndarray | None = None) -> float:
    """P(loss of a val sample > loss of a forget sample) + 1/2 P(tie), with optional weights on the
    val samples (ranks, O((n_f + n_v) log)). 1/2: indistinguishable; above: forget losses lower."""
    lf = np.asarray(loss_forget, dtype=np.float64)
    lv = np.asarray(loss_val, dtype=np.float64)
    wv = np.ones(len(lv)) if w_val is None else np.asarray(w_val, dtype=np.float64)
    order = np.argsort(lv, kind="stable")
    lv, wv = lv[order], wv[order]
    cw = np.concatenate([[0.0], np.cumsum(wv)])
    lo = np.searchsorted(lv, lf, side="left")   # val losses < lf
    hi = np.searchsorted(lv, lf, side="right")  # val losses <= lf
    below, ties = cw[lo], cw[hi] - cw[lo]
    total = cw[-1]
    return float(np.mean((total - below - ties + 0.5 * ties) / total))


class ValMatch:
    """The ``stop="val-match"`` rule for one ``unlearn`` call (built by ``Method.unlearn``)."""

    def __init__(self, model, data, ctx, params, method: str):
        self.p, self.ctx, self.method = params, ctx, method
        if data.test is None:
            raise ValueError(f"{method}.stop: 'val-match' compares the forget set with unseen validation samples, "
                             "got test=None (pass validation data, e.g. UnlearningSplit.val, as test=)")
        y_f, y_r, y_v = (s.all_labels().long() for s in (data.forget, data.retain, data.test))
        classes = torch.unique(y_f)
        whole = sorted(int(c) for c in classes if not (y_r == c).any())
        if whole:
            raise ValueError(f"{method}.stop: 'val-match' does not apply to whole-class forgetting (class(es) {whole} "
                             "have no retain sample: unseen samples of a forgotten class are classified by the model "
                             "being unlearned like the forget set itself, so they are no reference); got a forget set "
                             "that holds whole classes: use stop=None (the fixed schedule)")
        no_val = sorted(int(c) for c in classes if not (y_v == c).any())
        if no_val:
            raise ValueError(f"{method}.stop: 'val-match' needs validation samples of every forgotten class, got none "
                             f"of class(es) {no_val}")
        g = torch.Generator().manual_seed(int(ctx.seed) + 9_173)
        cap = params.stop_samples
        f_idx = torch.randperm(len(y_f), generator=g)[:cap]
        v_pool = torch.nonzero(torch.isin(y_v, classes)).flatten()
        v_idx = v_pool[torch.randperm(len(v_pool), generator=g)[:cap]]
        r_idx = torch.randperm(len(y_r), generator=g)[:cap]
        self.forget = data.forget.take(f_idx)
        self.val = data.test.take(v_idx)
        self.retain = data.retain.take(r_idx)
        # stop_val_tol's all-class subsample: the val subsample itself when it already spans every class of
        # the validation data (random forgetting: no second prediction per check); else one drawn after the
        # others, so setting stop_val_tol leaves the forget/val/retain subsamples as they were
        self.val_all = (data.test.take(torch.randperm(len(y_v), generator=g)[:cap])
                        if params.stop_val_tol is not None and len(v_pool) < len(y_v) else None)
        # class-conditional weights: the val subsample's class mix made equal to the forget subsample's
        yf, yv = self.forget.y.long(), self.val.y.long()
        share_f = torch.bincount(yf, minlength=int(yv.max()) + 1).double() / len(yf)
        count_v = torch.bincount(yv, minlength=len(share_f)).double()
        w = share_f[yv] / count_v[yv] * len(yv)
        self.w_val = w.numpy()
        self.rng = np.random.default_rng(int(ctx.seed) + 9_173)
        self.calls = self.checks = self.since_best = 0
        s0, acc0, self.val_acc0 = self._measure(model)
        lf, lv = self._last
        boot = []
        for _ in range(_BOOTSTRAP):
            i = self.rng.integers(0, len(lf), len(lf))
            j = self.rng.integers(0, len(lv), len(lv))
            boot.append(self._statistic(lf[i], lv[j], self.w_val[j]))
        self.noise = float(np.std(boot))
        self.threshold = params.stop_noise * self.noise
        self.acc0 = acc0
        self.best_state = copy.deepcopy(model.state_dict())
        self.best_d, self.best_step, self.best_s = abs(s0), 0, s0
        self.done = False
        extra = {} if self.val_acc0 is None else {
            "val_acc": self.val_acc0, "n_val_all": len((self.val if self.val_all is None else self.val_all).y)}
        ctx.log("stop-check", 0, None, s=s0, noise=self.noise, threshold=self.threshold, retain_acc=acc0,
                eligible=True, n_forget=len(yf), n_val=len(yv), n_retain=len(self.retain.y), **extra)

    def _accuracy(self, model, sub) -> float:
        logits = predict(model, sub.x, precision=self.ctx.amp)
        return float((logits.argmax(1) == sub.y).float().mean())

    def _measure(self, model) -> tuple[float, float, float | None]:
        """(s, retain accuracy, all-class validation accuracy or None when ``stop_val_tol`` is unset)."""
        was_training = model.training
        lf = _losses(model, self.forget.x, self.forget.y, self.ctx.amp)
        lv = _losses(model, self.val.x, self.val.y, self.ctx.amp)
        acc = self._accuracy(model, self.retain)
        val_acc = None
        if self.p.stop_val_tol is not None:
            # on the val subsample itself, a sample is right when its loss is < 0, as the statistic counts it
            val_acc = float(np.mean(lv < 0)) if self.val_all is None else self._accuracy(model, self.val_all)
        model.train(was_training)
        self._last = (lf, lv)
        return self._statistic(lf, lv, self.w_val), acc, val_acc

    def _statistic(self, lf: np.ndarray, lv: np.ndarray, wv: np.ndarray) -> float:
        if self.p.stop_statistic == "auc":
            return membership_auc(lf, lv, wv) - 0.5
        # a sample is right when its logit-scale loss is < 0 (z_y above every other logit)
        return float(np.mean(lf < 0) - np.average(lv < 0, weights=wv))

    def check(self, model, *, force: bool = False) -> bool:
        """Called after each step of the unlearning loop; True when the loop should stop."""
        if self.done:
            return True
        self.calls += 1
        if not force and self.calls % self.p.stop_every:
            return False
        self.checks += 1
        s, acc, val_acc = self._measure(model)
        eligible = acc >= self.acc0 - self.p.stop_retain_tol
        if val_acc is not None:
            assert self.val_acc0 is not None and self.p.stop_val_tol is not None  # all set together
            eligible = eligible and val_acc >= self.val_acc0 - self.p.stop_val_tol
        d = abs(s)
        if eligible and d < self.best_d:
            self.best_state, self.best_d, self.best_step, self.best_s = copy.deepcopy(model.state_dict()), d, self.calls, s
            self.since_best = 0
        elif s < 0:  # past the target; a plateau before it, or a dip in retain accuracy, does not count
            self.since_best += 1
        extra = {} if val_acc is None else {"val_acc": val_acc}
        self.ctx.log("stop-check", self.calls, None, s=s, noise=self.noise, threshold=self.threshold, retain_acc=acc,
                     eligible=eligible, **extra)
        if eligible and d <= self.threshold:
            self.reason = "matched"
        elif self.since_best >= self.p.stop_patience:
            self.reason = "patience"
        else:
            return False
        self.done = True
        return True

    def finish(self, model) -> None:
        """Loads the kept state (after a final check if the last step was not checked) and logs the verdict."""
        if not self.done:
            if self.calls % self.p.stop_every:
                self.check(model, force=True)
            if not self.done:
                self.reason = "schedule"
        model.load_state_dict(self.best_state)
        self.ctx.log("stop", self.calls, None, reason=self.reason, kept_step=self.best_step, s=self.best_s,
                     noise=self.noise, checks=self.checks, steps_run=self.calls)
