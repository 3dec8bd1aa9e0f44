"""Evaluating one model on the forget, retain and test sets of a split (output space)."""

from __future__ import annotations

import numpy as np
import torch

from .. import metrics as M
from ..data.forget import UnlearningSplit
from ..training import predict

# The columns every model row has; "gap" columns are |value - gold value| for these.
GAP_METRICS = ("acc_forget", "acc_retain", "acc_test", "mia")


def evaluate_model(model: torch.nn.Module, split: UnlearningSplit, *, seed: int = 0) -> dict:
    """Accuracy on forget/retain/test, UA, and the confidence-based MIA.

    ``mia`` is the fraction of forget samples that a logistic-regression attack on the true-label
    confidence p_y (trained on retain = member vs test = non-member) calls *non-members*
    (SalUn's MIA-efficacy): the gold model's value is what a perfect unlearner should match.
    """
    d = split.data
    sets = {"forget": (split.forget_idx, d.x_train, d.y_train), "retain": (split.retain_idx, d.x_train, d.y_train),
            "test": (split.test_idx, d.x_test, d.y_test)}
    out, probs = {}, {}
    for name, (idx, x, y) in sets.items():
        i = torch.from_numpy(idx)
        logits = predict(model, x[i])
        labels = y[i].numpy()
        out[f"acc_{name}"] = M.accuracy(labels, logits)
        probs[name] = (M.softmax(logits), labels)
    out["ua"] = 1.0 - out["acc_forget"]
    conf = {k: M.confidence(p, y) for k, (p, y) in probs.items()}
    out["mia"] = 1.0 - M.membership_attack(conf["retain"], conf["test"], conf["forget"], seed=seed)
    out["_probs_forget"] = probs["forget"][0]
    return out


def add_gaps(row: dict, gold: dict) -> dict:
    """Adds ``gap_<metric>`` = |row - gold| for each GAP_METRIC, ``avg_gap`` their mean, and
    ``act_dist`` (activation distance of forget-set outputs to the gold model's)."""
    for k in GAP_METRICS:
        row[f"gap_{k}"] = abs(row[k] - gold[k])
    row["avg_gap"] = float(np.mean([row[f"gap_{k}"] for k in GAP_METRICS]))
    row["act_dist"] = M.activation_distance(row["_probs_forget"], gold["_probs_forget"])
    return row
