"""Layer: metrics (tests). The metric registry: one spec per metric, read by every consumer.

What is checked, each against something computed independently here:

- every key the evaluation and ``unlearnkit eval`` put in a result is registered (no consumer can
  meet a metric the registry does not describe), and every registered view's layout is the one
  the reports use (values, gaps, the gap summary, closed, summaries);
- adding a metric is one :func:`register` call and its function: a metric registered in the test
  (the forget set's mean top-class confidence) is computed by ``evaluate_model`` (equal to numpy on
  the model's own softmax), gets a ``|gap to gold|`` from ``add_gaps`` (equal to |a - b|), and
  appears as a column in the bench report's table, its Markdown report and its CSV;
- the spec's own checks: bad keys, directions, scales, views; a computed value outside the declared
  bounds raises naming the metric; a key cannot be registered twice.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unlearnkit.metrics import registry as R


@pytest.fixture
def scratch_registry(monkeypatch):
    """The registry, restored after the test (a metric registered in a test never leaks)."""
    monkeypatch.setattr(R, "_REGISTRY", dict(R._REGISTRY))
    return R


def test_every_key_the_evaluation_writes_is_registered(digits_models):
    from unlearnkit.experiment.evaluate import add_closed, add_gaps, evaluate_model

    split, original, gold = digits_models
    rows = []
    for name, model in (("original", original), ("gold", gold)):
        row = evaluate_model(model, split, seed=0)
        rows.append({"model": name, **row})
    for r in rows:
        add_gaps(r, rows[1])
    add_closed(rows)
    keys = {k for r in rows for k in r if not k.startswith("_") and k not in ("model", "na", "uniform_damage")}
    unknown = []
    for k in sorted(keys):
        try:
            R.get(k)
        except KeyError:
            unknown.append(k)
    assert not unknown, f"evaluation writes metrics the registry does not describe: {unknown}"
    # and the registry's gap keys are exactly the gaps add_gaps wrote
    assert {k[4:] for k in keys if k.startswith("gap_")} == {k for k in R.gap_keys() if k in rows[0]}


def test_every_key_unlearnkit_eval_writes_is_registered():
    from unlearnkit.eval import run

    rng = np.random.default_rng(0)

    def bank(n):
        return rng.normal(size=(n, 6)).astype(np.float32), rng.integers(0, 3, n)

    result = run(bank(40), bank(120), bank(60), progress=False)
    for k in result["metrics"]:
        R.get(k)  # KeyError names the metric


def test_views_follow_the_report_layout():
    main = [k for k, _, _ in R.columns("main")]
    head = list(R.headline())
    assert head == ["acc_forget", "acc_retain", "acc_test", "mia"]
    n = len(head)
    assert main[:n] == head
    assert main[n:2 * n] == [f"gap_{k}" for k in head]
    assert main[2 * n] == "avg_gap"
    assert main[2 * n + 1:3 * n + 1] == [f"closed_{k}" for k in head]
    assert "mean_closed" in main[3 * n + 1:] and "selectivity" in main[3 * n + 1:]
    # the tune objective's names: the test split is never read there
    assert R.headline(tuning=True) == ("acc_forget", "acc_retain", "acc_val", "mia")
    # the audit view carries each metric's direction mark in its header
    audit = dict((k, h) for k, h, _ in R.columns("audit"))
    assert audit["audit_ulira_auc"].endswith("→0.5") and audit["audit_F"].endswith("↑")
    assert audit["audit_rmia_auc"].endswith("→floor") and audit["audit_eps_median"].endswith("↓")


def test_derived_specs():
    g, c = R.get("gap_acc_forget"), R.get("closed_mia")
    assert (g.label, g.direction, g.scale) == ("|Δforget|", "lower", 100)
    assert (c.label, c.direction, c.scale) == ("closed MIA", "higher", 1)
    with pytest.raises(KeyError, match="gap_nonexistent"):
        R.get("gap_nonexistent")


def _confidence(outputs: R.ModelOutputs, values) -> float:
    return float(outputs.probs["forget"].max(axis=1).mean())


def test_a_metric_is_one_entry_and_its_function(scratch_registry, digits_models, tmp_path):
    from unlearnkit.bench.report import table, write_report
    from unlearnkit.experiment.evaluate import add_closed, add_gaps, evaluate_model

    R.register(R.Metric("conf_forget", "forget conf", "gold", 100, bounds=(0.0, 1.0), views=("membership",),
                        gap=True, gap_views=("membership",), compute=_confidence,
                        doc="mean top-class probability on the forget set"))
    split, original, gold = digits_models
    rows = []
    for name, model in (("original", original), ("gold", gold)):
        rows.append({"model": name, "seed": 0, **evaluate_model(model, split, seed=0)})
    # the evaluation computed it: numpy on the model's own softmax
    for r, model in zip(rows, (original, gold)):
        with torch.no_grad():
            p = torch.softmax(model.eval()(split.data.x_train[torch.from_numpy(split.forget_idx)]).double(), 1)
        assert r["conf_forget"] == pytest.approx(p.max(1).values.mean().item(), abs=1e-6)
    for r in rows:
        add_gaps(r, rows[1])
    add_closed(rows)
    assert rows[0]["gap_conf_forget"] == pytest.approx(abs(rows[0]["conf_forget"] - rows[1]["conf_forget"]))
    assert rows[1]["gap_conf_forget"] == 0.0
    # the report's membership table shows it and its gap
    text = table(rows, columns=R.columns("membership"))
    assert "forget conf" in text and "|Δforget conf|" in text
    for r in rows:
        for k in [k for k in r if k.startswith("_")]:
            r.pop(k)
    meta = {"dataset": "digits", "scenario": "random-10", "model": "mlp", "config": {"seeds": [0]},
            "env": {"unlearnkit": "test", "torch": torch.__version__, "device": "cpu"}}
    paths = write_report({"rows": rows, "meta": meta}, tmp_path, plots=False)
    assert "forget conf" in paths["markdown"].read_text()
    assert "conf_forget" in paths["csv"].read_text().splitlines()[0].split(",")


def test_a_computed_value_outside_its_bounds_names_the_metric(scratch_registry, digits_models):
    from unlearnkit.experiment.evaluate import evaluate_model

    R.register(R.Metric("broken", "broken", "higher", 1, bounds=(0.0, 1.0), compute=lambda o, v: 2.5))
    split, original, _ = digits_models
    with pytest.raises(ValueError, match=r"broken: expected a value in \[0.0, 1.0\], got 2.5"):
        evaluate_model(original, split, seed=0, features=False)


def test_a_metric_that_does_not_apply_is_left_out(scratch_registry, digits_models):
    from unlearnkit.experiment.evaluate import evaluate_model

    R.register(R.Metric("only_with_trigger", "x", "gold", 100, compute=lambda o, v: None))
    split, original, _ = digits_models
    assert "only_with_trigger" not in evaluate_model(original, split, seed=0, features=False)


@pytest.mark.parametrize("kwargs, match", [
    ({"key": "not a key"}, "key: expected an identifier"),
    ({"direction": "up"}, "direction: expected one of"),
    ({"scale": 10}, "scale: expected 1 or 100"),
    ({"views": ("sidebar",)}, "views: expected views among"),
    ({"gap_views": ("main",)}, "gap_views: .* has gap=False"),
    ({"headline": True}, "headline: .* needs gap=True"),
    ({"bounds": (1.0, 0.0)}, "bounds: expected low < high"),
])
def test_bad_specs_are_refused(kwargs, match):
    spec = {"key": "m", "label": "m", "direction": "higher", **kwargs}
    with pytest.raises(ValueError, match=match):
        R.Metric(**spec)


def test_a_key_cannot_be_registered_twice(scratch_registry):
    with pytest.raises(ValueError, match="'acc_forget' is already registered"):
        R.register(R.Metric("acc_forget", "again", "gold"))
    with pytest.raises(ValueError, match="'gap_mia' is already registered"):
        R.register(R.Metric("gap_mia", "a derived key", "lower"))
    R.register(R.Metric("acc_forget", "forget accuracy", "gold", 100, gap=True, headline=True), replace=True)
    assert R.get("acc_forget").label == "forget accuracy"
