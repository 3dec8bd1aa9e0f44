"""Layer: experiment. Evaluating one model on the forget, retain and test sets of a split.

Which metrics exist, their names, directions and which get a gap to gold are declared once in
:mod:`unlearnkit.metrics.registry`; this module computes the ones measured in bulk (the MIA suite,
the feature metrics) and runs every registered ``compute`` (UA, NoMUS, and any metric a user adds).

Output space: accuracy (and UA), every MIA variant, activation distance and JS divergence to
the gold model, NoMUS, attack success rate (backdoor). Feature space: dimensional alignment,
linear probe, k-means clustering F1 and NMI (Rust engine). Gaps to gold are added by ``add_gaps``.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import metrics as M
from ..data.forget import UnlearningSplit
from ..metrics import registry
from ..metrics.backdoor import attack_success_rate
from ..training import predict, predict_with_features

# The headline quantities the average gap is taken over (UA's gap equals acc_forget's), read from the
# registry when this module is imported; the scalars that get a |gap to gold| are read by ``add_gaps``
# when it runs (``registry.gap_keys()``).
GAP_METRICS = registry.headline()

_MAX_BANK = 5000  # rows per set for the feature metrics (k-means, probe): plenty for a score, bounded time


def _subsample(n: int, k: int, seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).permutation(n)[:k]) if n > k else np.arange(n)


def evaluate_model(model: torch.nn.Module, split: UnlearningSplit, *, seed: int = 0, features: bool = True,
                   part: str = "test") -> dict:
    """All per-model metrics. Keys starting with ``_`` hold arrays for plots and gaps, not numbers.

    ``mia`` (the headline) is the fraction of forget samples that a logistic-regression attack on
    p_y (trained on retain = member vs test = non-member) calls non-members; see ``metrics.mia_suite``
    for the other variants.

    Args:
        part: which unseen part of the test split plays "test" (``acc_test``, the MIA's non-members,
            ``*_test`` feature metrics, ASR): ``"test"`` (the reported evaluation split) or ``"val"``
            (``split.val_idx``: for tuning objectives that must never touch the test split). Keys are
            named ``*_test`` either way.
    """
    if part not in ("test", "val"):
        raise ValueError(f"part: expected 'test' or 'val', got {part!r}")
    d = split.data
    unseen_idx = split.test_idx if part == "test" else split.val_idx
    if len(unseen_idx) == 0:
        raise ValueError(f"part: the split has no {part} samples (make_split(val_fraction=...) sets them aside)")
    sets = {"forget": (split.forget_idx, d.x_train, d.y_train), "retain": (split.retain_idx, d.x_train, d.y_train),
            "test": (unseen_idx, d.x_test, d.y_test)}
    out: dict = {}
    probs, labels, feats = {}, {}, {}
    for name, (idx, x, y) in sets.items():
        i = torch.from_numpy(idx)
        labels[name] = y[i].numpy()
        if features:  # one forward pass for both
            logits, z = predict_with_features(model, x[i])
            sub = _subsample(len(idx), _MAX_BANK, seed)
            feats[name] = (z[torch.from_numpy(sub)].numpy(), labels[name][sub])
        else:
            logits = predict(model, x[i])
        out[f"acc_{name}"] = M.accuracy(labels[name], logits)
        probs[name] = M.softmax(logits)
    out.update(M.mia_suite(probs["retain"], labels["retain"], probs["test"], labels["test"], probs["forget"],
                           labels["forget"], seed=seed))
    registry.compute_all(registry.ModelOutputs(probs=probs, labels=labels, features=feats if features else None,
                                               num_classes=d.num_classes, seed=seed), out)
    if split.trigger is not None:
        out["asr"] = attack_success_rate(model, d.x_test[torch.from_numpy(unseen_idx)],
                                         d.y_test[torch.from_numpy(unseen_idx)], split.trigger)
    if features:
        out.update(feature_metrics(feats, d.num_classes, seed=seed))
        na = constant_by_construction(labels["forget"], labels["retain"])
        for k in na:
            out.pop(k, None)
        if na:
            out["na"] = na
    out["_probs_forget"] = probs["forget"]
    out["_y_forget"] = labels["forget"]
    out["_loss_forget"] = M.loss(probs["forget"], labels["forget"])
    out["_loss_test"] = M.loss(probs["test"], labels["test"])
    return out


def constant_by_construction(y_forget: np.ndarray, y_retain: np.ndarray) -> dict[str, str]:
    """{metric: reason} for the feature metrics whose value the forget set's labels fix in advance
    (so they say nothing about the model): NMI of a one-class forget set is 0 whatever the clusters;
    a probe trained on retain features that hold no sample of the forget set's classes scores 0."""
    out = {}
    if len(np.unique(y_forget)) == 1:
        out["nmi_forget"] = "one-class forget set: NMI against a single true label is 0 by construction"
    if not np.isin(y_forget, y_retain).any():
        out["lp_forget"] = ("the probe is trained on retain features, which hold no sample of the forgotten "
                            "class(es): 0 by construction")
    return out


def feature_metrics(feats: dict, num_classes: int, *, seed: int = 0) -> dict:
    """Feature-space metrics from {"forget"|"retain"|"test": (features (n, d), labels (n,))}:

    - ``da_<set>``: dimensional alignment of the set's features with the retain eigenspace
      (top eigenvectors holding 90% of the energy; MUDA);
    - ``lp_<set>``: accuracy of a logistic-regression probe trained on standardised retain features;
    - ``nmi_<set>``, ``pair_f1_<set>``: k-means (k = number of classes) on the set's features,
      scored against the true labels (NMI, pair-counting F1).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out = {}
    z_r, y_r = feats["retain"]
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(z_r, y_r)
    for name in ("forget", "test"):
        z, y = feats[name]
        out[f"da_{name}"] = M.dimensional_alignment(z, z_r)
        out[f"lp_{name}"] = float(probe.score(z, y))
        k = min(num_classes, len(z))
        km = M.kmeans(z, k, seed=seed, n_init=3)
        scores = M.clustering_scores(y, km.labels)
        out[f"nmi_{name}"] = scores["nmi"]
        out[f"pair_f1_{name}"] = scores["pair_f1"]
    out["lp_retain"] = float(probe.score(z_r, y_r))
    return out


def easy_hard_deltas(probs: np.ndarray, gold_probs: np.ndarray, y: np.ndarray) -> dict:
    """TMU's Delta split by easy and hard forget samples: easy = those the gold model classifies
    correctly (they generalise), hard = the rest (only memorisation got them right).
    ``delta_easy`` = |acc(easy) - 1| (gold's accuracy there is 1 by definition), ``delta_hard`` =
    acc(hard) (gold's is 0); ``hard_fraction`` = share of hard forget samples. A set that is empty
    gives None. probs, gold_probs: (n_forget, num_classes); y: (n_forget,)."""
    correct = np.asarray(probs).argmax(1) == y
    easy = np.asarray(gold_probs).argmax(1) == y
    return {"delta_easy": float(1.0 - correct[easy].mean()) if easy.any() else None,
            "delta_hard": float(correct[~easy].mean()) if (~easy).any() else None,
            "hard_fraction": float((~easy).mean())}


def add_gaps(row: dict, gold: dict) -> dict:
    """Adds ``gap_<metric>`` = |row - gold| for every metric both have, ``avg_gap`` = mean gap over
    UA/RA/TA/MIA, and the distances of this model's forget-set outputs to the gold model's
    (``act_dist``: mean L2 between probability vectors; ``js``: mean Jensen-Shannon divergence)."""
    for k in registry.gap_keys():  # read now: a metric registered after import gets its gap too
        if k in row and k in gold:
            row[f"gap_{k}"] = abs(row[k] - gold[k])
    row["avg_gap"] = float(np.mean([row[f"gap_{k}"] for k in registry.headline()]))
    row["act_dist"] = M.activation_distance(row["_probs_forget"], gold["_probs_forget"])
    if "_y_forget" in row and "_y_forget" in gold:
        row.update(easy_hard_deltas(row["_probs_forget"], gold["_probs_forget"], gold["_y_forget"]))
    row["js"] = M.js_divergence(row["_probs_forget"], gold["_probs_forget"])
    return row


# The metrics ``closed`` is reported for (the headline four; UA's |gap| equals forget accuracy's).
CLOSED_METRICS = GAP_METRICS
MIN_GAP_POINTS = 1.0


def closed(value: float, original: float, gold: float, *, min_gap: float = MIN_GAP_POINTS) -> float:
    """How much of the original model's distance to gold a model has closed on one metric:
    ``1 - |value - gold| / |original - gold|`` (1 = as retrained, 0 = as the original, i.e. did
    nothing, negative = further from gold than doing nothing).

    All three in the same units, points (percent) in the bench. NaN when ``|original - gold| <
    min_gap``: the original is already as good as gold there, so the ratio would divide by noise.
    """
    for name, v in (("value", value), ("original", original), ("gold", gold), ("min_gap", min_gap)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
            raise TypeError(f"{name}: expected a number, got {type(v).__name__} {v!r}")
    if not min_gap >= 0:
        raise ValueError(f"min_gap: expected a non-negative number, got {min_gap!r}")
    ref = abs(float(original) - float(gold))
    if not np.isfinite(ref) or ref < min_gap or ref == 0:
        return float("nan")
    return 1.0 - abs(float(value) - float(gold)) / ref


def mean_closed(values: dict, original: dict, gold: dict, metrics=CLOSED_METRICS, *,
                min_gap: float = MIN_GAP_POINTS) -> tuple[float, float, dict]:
    """The headline score of one model: ``(mean closed, damage, {metric: closed or NaN})``.

    ``values``, ``original``, ``gold``: ``{metric: value}`` in points (percent) for each of ``metrics``.
    ``closed`` per metric is :func:`closed` (NaN, shown "n/a", where the original is within ``min_gap``
    of gold). Those n/a metrics cannot tell forgetting from doing nothing, but a method can still
    *damage* them (e.g. lose retain accuracy the original and gold share), and a mean over the defined
    metrics alone would not see it. So::

        mean closed = mean(closed over the defined metrics D) - damage
        damage      = sum over the n/a metrics U of max(|v - g| - |o - g|, 0) / r_D / |D|

    with ``r_D`` the original's mean distance to gold over D (the regime's scale): a point lost on an
    n/a metric costs as much as a point of distance not closed on an average defined one. Invariants:
    the original scores exactly 0 (damage 0), gold exactly 1, a model that matches gold on D but is
    ``r_D`` further from gold on one n/a metric scores ``1 - 1/|D|``. When no metric is defined the
    regime cannot rank: both are NaN.
    """
    per = {k: closed(values[k], original[k], gold[k], min_gap=min_gap) for k in metrics}
    defined = [k for k in metrics if not np.isnan(per[k])]
    if not defined:
        return float("nan"), float("nan"), per
    scale = float(np.mean([abs(original[k] - gold[k]) for k in defined]))
    excess = sum(max(abs(values[k] - gold[k]) - abs(original[k] - gold[k]), 0.0)
                 for k in metrics if k not in defined)
    damage = float(excess / scale / len(defined))
    return float(np.mean([per[k] for k in defined])) - damage, damage, per


def add_closed(rows: list[dict], *, min_gap: float = MIN_GAP_POINTS) -> list[dict]:
    """Adds ``closed_<metric>`` (``closed`` in points; None where undefined) for each of
    ``CLOSED_METRICS``, ``mean_closed`` and ``damage`` (:func:`mean_closed`; None when no metric's
    closed is defined), ``selectivity`` (:func:`selectivity`; None where n/a) and ``uniform_damage``
    (:func:`uniform_damage`) to every row of one seed, given that seed's "original" and "gold" rows. Rows
    that failed (with an ``error``) are left as they are; without an original or a gold row nothing
    is added."""
    ok = [r for r in rows if "error" not in r]
    ref = {r["model"]: r for r in ok if r["model"] in ("original", "gold")}
    if len(ref) < 2:
        return rows
    o, g = ref["original"], ref["gold"]
    metrics = [k for k in CLOSED_METRICS if k in o and k in g]
    for r in ok:
        if not all(k in r for k in metrics) or not metrics:
            continue
        mc, damage, per = mean_closed({k: 100 * r[k] for k in metrics}, {k: 100 * o[k] for k in metrics},
                                      {k: 100 * g[k] for k in metrics}, metrics, min_gap=min_gap)
        for k, c in per.items():
            r[f"closed_{k}"] = None if np.isnan(c) else c
        r["mean_closed"] = None if np.isnan(mc) else mc
        r["damage"] = None if np.isnan(damage) else damage
    for r in ok:
        if all(k in r for k in ("acc_forget", "acc_retain")) and all(k in g for k in ("acc_forget", "acc_retain")):
            sel = selectivity(100 * r["acc_forget"], 100 * r["acc_retain"], 100 * g["acc_forget"],
                              100 * g["acc_retain"], min_gap=min_gap)
            r["selectivity"] = None if np.isnan(sel) else sel
            r["uniform_damage"] = r["model"] not in ("original", "gold") and uniform_damage(
                sel, 100 * r["acc_forget"], 100 * o["acc_forget"], 100 * g["acc_forget"])
    return rows


#: a row whose selectivity is below this while its forget accuracy moved more than
#: ``UNIFORM_DAMAGE_MOVE`` of the way to gold's forgot by damaging everything ("uniform damage")
UNIFORM_DAMAGE_SELECTIVITY = 0.25
UNIFORM_DAMAGE_MOVE = 1.0 / 3.0


def selectivity(acc_forget: float, acc_retain: float, gold_forget: float, gold_retain: float, *,
                min_gap: float = MIN_GAP_POINTS) -> float:
    """How selectively a model forgets, relative to retraining:

        selectivity = (acc_retain - acc_forget)_model / (acc_retain - acc_forget)_gold

    1 = as selective as the retrained model, 0 = forget and retain accuracy moved alike (no sign of
    forgetting the forget set in particular), < 0 = the forget set is now classified *better* than
    the retain set; > 1 = over-forgetting relative to retain. Accuracies in points (percent). NaN
    where gold's own difference is under ``min_gap`` points: gold does not forget selectively there
    (e.g. a regime that does not memorise), so the ratio would divide by noise.
    """
    for name, v in (("acc_forget", acc_forget), ("acc_retain", acc_retain), ("gold_forget", gold_forget),
                    ("gold_retain", gold_retain)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
            raise TypeError(f"{name}: expected a number (points), got {type(v).__name__} {v!r}")
    ref = float(gold_retain) - float(gold_forget)
    if not np.isfinite(ref) or abs(ref) < min_gap:
        return float("nan")
    return (float(acc_retain) - float(acc_forget)) / ref


def uniform_damage(sel: float, acc_forget: float, original_forget: float, gold_forget: float) -> bool:
    """True when a model's forget accuracy moved more than a third of the way from the original's
    toward gold's while its selectivity stayed under 0.25: it lowered forget accuracy by lowering
    everything. False where selectivity is n/a (NaN) or the original is already at gold's forget accuracy."""
    span = float(original_forget) - float(gold_forget)
    if np.isnan(sel) or span == 0:
        return False
    moved = (float(original_forget) - float(acc_forget)) / span
    return bool(sel < UNIFORM_DAMAGE_SELECTIVITY and moved > UNIFORM_DAMAGE_MOVE)
