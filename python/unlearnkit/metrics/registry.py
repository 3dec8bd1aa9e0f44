"""Layer: metrics. The metric registry: one spec per reported quantity, read by every consumer.

A :class:`Metric` declares, beside its key, what a reader and a program must know to use the
number (as torchmetrics' ``Metric`` does with ``higher_is_better`` and plot bounds): its display
name, the scale it is shown at, its direction (higher better, lower better, or "closest to gold /
0.5 / the retrained floor"), its bounds, whether it gets a ``|gap to gold|`` column and a
``closed`` column (the headline four), which report table shows it, and, for a metric computed
from one model's outputs, the function that computes it. Evaluation
(:func:`unlearnkit.experiment.evaluate.evaluate_model`), the bench's report tables, the tune
objective, the audit's table and ``unlearnkit eval``'s table all read this module, so adding a
metric is one :func:`register` call and its function (``docs/design.md``, "How to add a metric").

Invariants:

- Keys are unique; a derived column's key is ``gap_<key>`` (``|value - gold|``, same scale) or
  ``closed_<key>`` (``1 - |value - gold| / |original - gold|``, a ratio). Registering a key twice
  raises unless ``replace=True``.
- The order of registration is the order of the columns in a table.
- A ``compute`` function gets a :class:`ModelOutputs` and the values computed so far (a dict,
  read-only by convention) and returns a float, or None when the metric does not apply to this
  split (then the key is left out of the row, as a backdoor ASR is without a trigger).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Literal

import numpy as np

__all__ = ["DIRECTIONS", "VIEWS", "Metric", "ModelOutputs", "columns", "compute_all", "gap_keys", "get",
           "headline", "mark", "metrics", "register"]

#: "higher"/"lower": better that way; "gold": closest to the retrained model's value is best (the
#: value of a forgetting metric in itself says nothing); "0.5": closest to 0.5 (an attacker no better
#: than a coin); "0.01": closest to 1% (a TPR at 1% FPR at chance); "floor": closest to the retrained
#: floor's value; "none": context (a count, a time in seconds).
Direction = Literal["higher", "lower", "gold", "0.5", "0.01", "floor", "none"]
DIRECTIONS: tuple[str, ...] = ("higher", "lower", "gold", "0.5", "0.01", "floor", "none")
_MARKS = {"higher": "↑", "lower": "↓", "gold": "→gold", "0.5": "→0.5", "0.01": "→0.01", "floor": "→floor",
          "none": ""}
#: The report tables: "main" (output space and the headline), "membership" (every MIA and the
#: distances to gold), "features" (feature space), "audit" (the per-example audit in the bench
#: report; its headers carry the direction mark). A metric in no view is in JSON/CSV only.
VIEWS: tuple[str, ...] = ("main", "membership", "features", "audit")
#: How a column enters its table: values first, then the |gap| columns, the gap summary, the
#: closed columns, then the summary columns (the order of the bench's main table).
Kind = Literal["value", "gap_summary", "summary"]


@dataclasses.dataclass(frozen=True)
class ModelOutputs:
    """What one model produced on a split, handed to a metric's ``compute``.

    Attributes:
        probs: ``{"forget"|"retain"|"test": (n_set, n_classes) float64 probabilities}``.
        labels: ``{set: (n_set,) int labels}``.
        features: ``{set: ((m, d) features, (m,) labels)}`` on a seeded subsample of at most 5000
            rows per set, or None when the run computes no feature metrics.
        num_classes: number of classes of the dataset.
        seed: the seed of the run (for metrics that sample or fit).
    """

    probs: Mapping[str, np.ndarray]
    labels: Mapping[str, np.ndarray]
    features: Mapping[str, tuple[np.ndarray, np.ndarray]] | None
    num_classes: int
    seed: int


@dataclasses.dataclass(frozen=True)
class Metric:
    """One reported quantity.

    Attributes:
        key: the key in a result row (``acc_forget``), unique.
        label: the column header (``forget acc``).
        short: the name inside the derived columns' headers (``|Δforget|``, ``closed forget``);
            defaults to ``label``.
        direction: one of :data:`DIRECTIONS`.
        scale: display factor: 100 for a fraction shown in percent (one decimal), 1 otherwise (two).
        bounds: (low, high) of the stored value, None where unbounded (plots, the search space of a
            constraint, validation of a computed value).
        views: the tables that show it (:data:`VIEWS`); empty: only in JSON/CSV.
        view_labels: another header in one view (``{"membership": "logistic p_y (headline)"}``).
        kind: how it is placed in its table (values, the gap summary, summaries).
        gap: the row gets ``gap_<key>`` = |value - gold's|.
        gap_views: the tables that show that gap column.
        headline: one of the metrics the mean closed and the average gap are taken over; each gets a
            ``closed_<key>`` column in the main table.
        best: the report marks the best method in this column (bold), over several seeds only.
        tune_name: the key the tune objective uses for it (``acc_test`` is ``acc_val`` there: tuning
            never reads the test split); defaults to ``key``.
        compute: ``(ModelOutputs, values so far) -> float | None`` for a metric of one model's outputs
            that evaluation computes; None for a metric computed elsewhere (in bulk, from two models, by
            the runner or the audit).
        doc: one line: what it measures, with units.
    """

    key: str
    label: str
    direction: Direction
    scale: float = 1.0
    short: str | None = None
    bounds: tuple[float | None, float | None] = (None, None)
    views: tuple[str, ...] = ()
    view_labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    kind: Kind = "value"
    gap: bool = False
    gap_views: tuple[str, ...] = ()
    headline: bool = False
    best: bool = False
    tune_name: str | None = None
    compute: Callable[[ModelOutputs, Mapping[str, float]], float | None] | None = None
    doc: str = ""

    def __post_init__(self):
        if not isinstance(self.key, str) or not self.key.isidentifier():
            raise ValueError(f"key: expected an identifier (a row key such as 'acc_forget'), got {self.key!r}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction: expected one of {DIRECTIONS}, got {self.direction!r}")
        if self.scale not in (1, 100):
            raise ValueError(f"scale: expected 1 or 100 (a fraction shown in percent), got {self.scale!r}")
        for name in ("views", "gap_views"):
            bad = [v for v in getattr(self, name) if v not in VIEWS]
            if bad:
                raise ValueError(f"{name}: expected views among {VIEWS}, got {bad}")
        if self.gap_views and not self.gap:
            raise ValueError(f"gap_views: {self.key} shows a gap column but has gap=False")
        if self.headline and not self.gap:
            raise ValueError(f"headline: {self.key} is a headline metric, which needs gap=True")
        lo, hi = self.bounds
        if lo is not None and hi is not None and not lo < hi:
            raise ValueError(f"bounds: expected low < high, got {self.bounds}")

    @property
    def name(self) -> str:
        return self.short or self.label

    def label_in(self, view: str) -> str:
        """The header in ``view``."""
        return self.view_labels.get(view, self.label)

    def check(self, value: float) -> float:
        """``value`` as a float, or ValueError naming the metric when it is outside its bounds."""
        v = float(value)
        lo, hi = self.bounds
        if np.isnan(v) or (lo is not None and v < lo - 1e-9) or (hi is not None and v > hi + 1e-9):
            raise ValueError(f"{self.key}: expected a value in [{lo}, {hi}], got {v!r} (from its compute function)")
        return v


_REGISTRY: dict[str, Metric] = {}


def register(metric: Metric, *, replace: bool = False) -> Metric:
    """Adds ``metric`` to the registry (its columns then appear in every table that shows its views,
    its ``compute`` runs in every evaluation). Returns it, so a module can keep a name for it."""
    if not isinstance(metric, Metric):
        raise TypeError(f"metric: expected a Metric, got {type(metric).__name__}")
    derived = {f"gap_{k}" for k in _REGISTRY} | {f"closed_{k}" for k in _REGISTRY}
    if (metric.key in _REGISTRY or metric.key in derived) and not replace:
        raise ValueError(f"key: {metric.key!r} is already registered (pass replace=True to change it)")
    _REGISTRY[metric.key] = metric
    return metric


def get(key: str) -> Metric:
    """The spec of ``key``; the derived ``gap_<k>``/``closed_<k>`` get a spec built from ``k``'s."""
    if key in _REGISTRY:
        return _REGISTRY[key]
    if key.startswith("gap_") and key[4:] in _REGISTRY:
        m = _REGISTRY[key[4:]]
        return Metric(key=key, label=f"|Δ{m.name}|", direction="lower", scale=m.scale, bounds=(0.0, None), best=True,
                      doc=f"|{m.key} - gold's {m.key}|")
    if key.startswith("closed_") and key[7:] in _REGISTRY:
        m = _REGISTRY[key[7:]]
        return Metric(key=key, label=f"closed {m.name}", direction="higher", scale=1, bounds=(None, 1.0), best=True,
                      doc=f"share of the original's distance to gold closed on {m.key}")
    raise KeyError(f"metric: no metric {key!r} is registered (known: {', '.join(_REGISTRY)})")


def metrics() -> list[Metric]:
    """Every registered metric, in registration order."""
    return list(_REGISTRY.values())


def headline(*, tuning: bool = False) -> tuple[str, ...]:
    """The keys of the headline metrics (mean closed, the average gap), in order; with ``tuning``,
    under the names the tune objective gives them (``acc_val`` for ``acc_test``)."""
    return tuple((m.tune_name or m.key) if tuning else m.key for m in _REGISTRY.values() if m.headline)


def gap_keys() -> tuple[str, ...]:
    """Every key that gets a ``gap_<key>`` to gold (the headline ones first)."""
    head = headline()
    return head + tuple(m.key for m in _REGISTRY.values() if m.gap and m.key not in head)


def mark(key: str) -> str:
    """The direction mark of ``key``: ↑, ↓, →gold, →0.5, →0.01, →floor or '' (context)."""
    return _MARKS[get(key).direction]


def columns(view: str) -> list[tuple[str, str, float]]:
    """``[(key, header, scale)]`` of one table, in the layout every report uses: the values shown
    in ``view``, their gap columns, the gap summaries, the closed columns of the headline metrics
    (main table only), then the summaries."""
    if view not in VIEWS:
        raise ValueError(f"view: expected one of {VIEWS}, got {view!r}")
    ms = metrics()
    def head(m):
        text = m.label_in(view)
        return f"{text} {_MARKS[m.direction]}" if view == "audit" and _MARKS[m.direction] else text

    values = [(m.key, head(m), m.scale) for m in ms if view in m.views and m.kind == "value"]
    gaps = [(f"gap_{m.key}", get(f"gap_{m.key}").label, m.scale) for m in ms if view in m.gap_views]
    summary_gap = [(m.key, head(m), m.scale) for m in ms if view in m.views and m.kind == "gap_summary"]
    closed = ([(f"closed_{m.key}", get(f"closed_{m.key}").label, 1) for m in ms if m.headline]
              if view == "main" else [])
    summary = [(m.key, head(m), m.scale) for m in ms if view in m.views and m.kind == "summary"]
    return values + gaps + summary_gap + closed + summary


def compute_all(outputs: ModelOutputs, values: dict) -> dict:
    """Runs every registered ``compute`` (in registration order) on one model's outputs, adding each
    result to ``values`` (a metric may read those computed before it); returns ``values``."""
    for m in _REGISTRY.values():
        if m.compute is None:
            continue
        v = m.compute(outputs, values)
        if v is not None:
            values[m.key] = m.check(v)
    return values


# ----------------------------------------------------------------------------------------------
# The metrics unlearnkit reports. Values are fractions unless said otherwise.

_P = (0.0, 1.0)
_M, _MIA, _F, _A = ("main",), ("membership",), ("features",), ("audit",)


def _nomus(o: ModelOutputs, v: Mapping[str, float]) -> float:
    from .output import nomus

    return nomus(v["acc_test"], v["mia_forget_vs_test"])


for _m in (
    # output space: the headline four
    Metric("acc_forget", "forget acc", "gold", 100, short="forget", bounds=_P, views=_M, gap=True,
           gap_views=_M, headline=True, doc="accuracy on the forget set (fraction)"),
    Metric("acc_retain", "retain acc", "gold", 100, short="retain", bounds=_P, views=_M, gap=True,
           gap_views=_M, headline=True, doc="accuracy on the retain set (fraction)"),
    Metric("acc_test", "test acc", "gold", 100, short="test", bounds=_P, views=_M, gap=True, gap_views=_M,
           headline=True, tune_name="acc_val",
           doc="accuracy on the unseen split (the test split in reports, validation in tuning)"),
    Metric("mia", "MIA", "gold", 100, short="MIA", bounds=_P, views=("main", "membership"),
           view_labels={"membership": "logistic p_y (headline)"}, gap=True, gap_views=_M, headline=True,
           doc="fraction of forget samples a logistic attack on p_y (retain = member, unseen = non-member) "
               "calls non-members"),
    Metric("ua", "UA", "gold", 100, bounds=_P, gap=False,
           compute=lambda o, v: 1.0 - v["acc_forget"], doc="unlearning accuracy, 1 - forget accuracy"),
    # membership: the other attacks
    Metric("mia_svc_correctness", "SVC correct", "gold", 100, bounds=_P, views=_MIA, gap=True,
           doc="SVC attack on correctness"),
    Metric("mia_svc_confidence", "SVC conf", "gold", 100, bounds=_P, views=_MIA, gap=True,
           doc="SVC attack on the true-class confidence"),
    Metric("mia_svc_entropy", "SVC entropy", "gold", 100, bounds=_P, views=_MIA, gap=True,
           doc="SVC attack on the output entropy"),
    Metric("mia_svc_m_entropy", "SVC m-entropy", "gold", 100, bounds=_P, views=_MIA, gap=True,
           doc="SVC attack on the modified entropy"),
    Metric("mia_svc_prob", "SVC prob", "gold", 100, bounds=_P, views=_MIA, gap=True,
           doc="SVC attack on the probability vector"),
    Metric("mia_loss_threshold", "loss threshold", "gold", 100, bounds=_P, views=_MIA, gap=True,
           doc="loss-threshold attack"),
    Metric("mia_forget_vs_test", "forget-vs-test acc", "gold", 100, bounds=_P, views=_MIA, gap=True,
           doc="accuracy of an attack telling forget from unseen samples (0.5: indistinguishable)"),
    Metric("nomus", "NoMUS", "higher", 100, bounds=_P, views=_MIA, gap=True, compute=_nomus,
           doc="NoMUS: mean of test accuracy and 1 - 2|forget-vs-test attack accuracy - 0.5|"),
    Metric("js", "JS to gold", "lower", 1, bounds=(0.0, None), views=_MIA,
           doc="mean Jensen-Shannon divergence of the forget-set outputs to gold's (nats)"),
    Metric("asr", "backdoor ASR", "gold", 100, bounds=_P, views=_MIA, gap=True,
           doc="attack success rate of the backdoor trigger on unseen samples (fraction)"),
    Metric("delta_easy", "Δ easy (gold right)", "lower", 100, bounds=_P, views=_MIA,
           doc="TMU's Delta on the forget samples gold classifies right: 1 - accuracy there"),
    Metric("delta_hard", "Δ hard (gold wrong)", "lower", 100, bounds=_P, views=_MIA,
           doc="TMU's Delta on the forget samples gold gets wrong: accuracy there"),
    Metric("hard_fraction", "hard share", "none", 100, bounds=_P,
           doc="share of forget samples gold gets wrong (TMU's hard samples; context for the two Deltas)"),
    # feature space
    Metric("da_forget", "DA forget", "gold", 100, short="DA forget", bounds=_P, views=_F, gap=True,
           gap_views=_F, doc="dimensional alignment of forget features with the retain eigenspace"),
    Metric("da_test", "DA test", "gold", 100, bounds=_P, views=_F, gap=True,
           doc="dimensional alignment of unseen features with the retain eigenspace"),
    Metric("lp_forget", "probe forget", "gold", 100, bounds=_P, views=_F, gap=True,
           doc="accuracy of a linear probe (trained on retain features) on forget features"),
    Metric("lp_retain", "probe retain", "gold", 100, bounds=_P, views=_F,
           doc="the probe's accuracy on the retain features it was trained on"),
    Metric("lp_test", "probe test", "gold", 100, bounds=_P, views=_F, gap=True,
           doc="the probe's accuracy on unseen features"),
    Metric("nmi_forget", "NMI forget", "gold", 100, short="NMI forget", bounds=_P, views=_F, gap=True,
           gap_views=_F, doc="NMI of k-means clusters of forget features against the labels"),
    Metric("nmi_test", "NMI test", "gold", 100, bounds=_P, views=_F, gap=True,
           doc="NMI of k-means clusters of unseen features against the labels"),
    Metric("pair_f1_forget", "pair-F1 forget", "gold", 100, bounds=_P, views=_F, gap=True,
           doc="pair-counting F1 of k-means clusters of forget features"),
    Metric("pair_f1_test", "pair-F1 test", "gold", 100, bounds=_P, views=_F, gap=True,
           doc="pair-counting F1 of k-means clusters of unseen features"),
    # feature space, only in ``unlearnkit eval``'s results (the bench evaluates forget and test)
    Metric("da_retain", "DA retain", "gold", 100, bounds=_P, doc="dimensional alignment of the retain bank itself"),
    Metric("nmi_retain", "NMI retain", "gold", 100, bounds=_P, doc="NMI of k-means clusters of retain features"),
    Metric("pair_f1_retain", "pair-F1 retain", "gold", 100, bounds=_P, doc="pair-counting F1, retain features"),
    Metric("matched_f1_forget", "matched-F1 forget", "gold", 100, bounds=_P,
           doc="F1 of k-means clusters matched to classes (Hungarian), forget features"),
    Metric("matched_f1_retain", "matched-F1 retain", "gold", 100, bounds=_P,
           doc="F1 of k-means clusters matched to classes (Hungarian), retain features"),
    Metric("matched_f1_test", "matched-F1 test", "gold", 100, bounds=_P,
           doc="F1 of k-means clusters matched to classes (Hungarian), unseen features"),
    Metric("knn_mia", "kNN MIA", "gold", 100, bounds=_P,
           doc="fraction of forget features a kNN-distance attack calls non-members"),
    Metric("knn_attack_auc", "kNN attack AUC", "none", 1, bounds=_P,
           doc="AUC of the kNN-distance attack on held-out retain vs unseen features (its strength; 0.5: chance)"),
    # summaries of the main table
    Metric("avg_gap", "avg gap", "lower", 100, bounds=(0.0, 1.0), views=_M, kind="gap_summary", best=True,
           doc="mean |gap to gold| over the headline metrics"),
    Metric("damage", "damage", "lower", 1, bounds=(0.0, None), views=_M, kind="summary",
           doc="points lost on the n/a headline metrics beyond the original's distance, in units of the "
               "original's mean distance on the defined ones"),
    Metric("mean_closed", "mean closed", "higher", 1, bounds=(None, 1.0), views=_M, kind="summary", best=True,
           doc="the headline: mean of the defined closed minus damage (original 0, gold 1)"),
    Metric("selectivity", "selectivity", "gold", 1, views=_M, kind="summary",
           doc="(retain acc - forget acc) / gold's (1 = as selective as retraining)"),
    Metric("act_dist", "act dist", "lower", 1, bounds=(0.0, None), views=_M, kind="summary",
           doc="mean L2 distance of the forget-set probability vectors to gold's"),
    Metric("seconds", "time s", "lower", 1, bounds=(0.0, None), views=_M, kind="summary",
           doc="wall-clock seconds of the method (or of training, for original and gold)"),
    Metric("rte", "time/retrain", "lower", 1, bounds=(0.0, None), views=_M, kind="summary",
           doc="the method's time over the retraining time of the same seed"),
    # the per-example audit (pools of K models); bench rows carry them with the audit_ prefix, the
    # audit's own table (``unlearnkit audit``) heads them with ``short`` and the direction mark
    Metric("audit_F", "F (challenge)", "higher", 1, short="F", bounds=_P, views=_A,
           doc="NeurIPS'23 challenge F (per-example epsilon scores mapped to [0, 1])"),
    Metric("audit_challenge_score", "challenge score", "higher", 1, short="score", views=_A,
           doc="F times the utility ratio"),
    Metric("audit_eps_median", "median eps", "lower", 1, short="eps med", bounds=(0.0, None), views=_A,
           doc="median per-example epsilon over the forget set"),
    Metric("audit_eps_at_clip", "eps=50", "lower", 1, bounds=_P,
           doc="fraction of forget samples whose epsilon hits the clip (50)"),
    Metric("audit_ulira_balanced_accuracy", "U-LiRA bal. acc", "0.5", 1, short="U-LiRA bacc", bounds=_P, views=_A,
           doc="U-LiRA balanced accuracy (0.5: chance)"),
    Metric("audit_ulira_auc", "U-LiRA AUC", "0.5", 1, bounds=_P, views=_A, doc="U-LiRA AUC (0.5: chance)"),
    Metric("audit_ulira_tpr_at_1pct_fpr", "U-LiRA TPR@1%", "0.01", 1, bounds=_P,
           doc="U-LiRA TPR at 1% FPR (0.01: chance)"),
    Metric("audit_klom_forget_median", "KLOM forget med", "lower", 1, bounds=(0.0, None), views=_A,
           doc="median KLOM on the forget set"),
    Metric("audit_klom_forget_p95", "KLOM forget p95", "lower", 1, bounds=(0.0, None), views=_A,
           doc="95th percentile KLOM on the forget set"),
    Metric("audit_klom_retain_median", "KLOM retain med", "lower", 1, bounds=(0.0, None), doc="median KLOM, retain"),
    Metric("audit_klom_retain_p95", "KLOM retain p95", "lower", 1, bounds=(0.0, None), doc="95th pct KLOM, retain"),
    Metric("audit_klom_test_median", "KLOM test med", "lower", 1, bounds=(0.0, None), doc="median KLOM, test"),
    Metric("audit_klom_test_p95", "KLOM test p95", "lower", 1, bounds=(0.0, None), doc="95th pct KLOM, test"),
    Metric("audit_rmia_auc", "RMIA AUC", "floor", 1, bounds=_P, views=_A, doc="RMIA AUC (the floor's is the target)"),
    Metric("audit_rmia_tpr_at_1pct_fpr", "RMIA TPR@1%", "floor", 1, bounds=_P, views=_A,
           doc="RMIA TPR at 1% FPR (the floor's is the target)"),
    Metric("audit_retain_acc", "retain acc", "none", 1, bounds=_P, doc="mean retain accuracy over the pool"),
    Metric("audit_test_acc", "test acc", "none", 1, bounds=_P, doc="mean test accuracy over the pool"),
    Metric("audit_pool_seconds_mean", "s/model", "none", 1, bounds=(0.0, None), doc="mean seconds per pool model"),
    Metric("audit_k", "K", "none", 1, views=_A, kind="summary", doc="models per pool"),
):
    register(_m)
del _m
