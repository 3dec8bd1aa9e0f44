"""Selectivity, the ⚠ uniform-damage mark, "did nothing" and the verdict sentence, on hand-worked rows.

Oracle: each expected value is worked out by hand from the definition in the issue:
selectivity = (retain - forget)_model / (retain - forget)_gold, n/a where gold's difference is under
one point; uniform damage = selectivity < 0.25 while forget accuracy moved more than a third of the
way from the original's to gold's.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from unlearnkit.bench.evaluate import add_closed, selectivity, uniform_damage
from unlearnkit.bench.report import summarize, table, verdict

# the independent check of issue 22 (forget / retain / test accuracy, as fractions)
GOLD = {"model": "gold", "acc_forget": 0.882, "acc_retain": 0.998, "acc_test": 0.884, "mia": 0.30}
ORIG = {"model": "original", "acc_forget": 0.998, "acc_retain": 0.998, "acc_test": 0.887, "mia": 0.05}


def _row(model, f, r, t, mia, seed=0, **extra):
    return {"model": model, "acc_forget": f, "acc_retain": r, "acc_test": t, "mia": mia, "seed": seed, **extra}


def test_selectivity_hand_worked():
    # gold: (99.8 - 88.2) / (99.8 - 88.2) = 1
    assert selectivity(88.2, 99.8, 88.2, 99.8) == pytest.approx(1.0)
    # the original: (99.8 - 99.8) / 11.6 = 0
    assert selectivity(99.8, 99.8, 88.2, 99.8) == pytest.approx(0.0)
    # MUDA's row of the issue: (73.7 - 75.2) / 11.6 = -0.1293...: the forget set now better classified
    assert selectivity(75.2, 73.7, 88.2, 99.8) == pytest.approx(-1.5 / 11.6)
    # over-forgetting: (99.0 - 70.0) / 11.6 = 2.5
    assert selectivity(70.0, 99.0, 88.2, 99.8) == pytest.approx(2.5)
    # n/a where gold's own difference is under a point
    assert math.isnan(selectivity(90.0, 99.0, 99.5, 99.9))
    assert not math.isnan(selectivity(90.0, 99.0, 98.9, 99.9))  # exactly 1 point: defined
    with pytest.raises(TypeError, match="acc_forget: expected a number"):
        selectivity("88", 99.8, 88.2, 99.8)


def test_uniform_damage_hand_worked():
    # MUDA: selectivity -0.13 < 0.25, forget moved (99.8-75.2)/(99.8-88.2) = 2.1 of the way: flagged
    assert uniform_damage(-1.5 / 11.6, 75.2, 99.8, 88.2)
    # DLFD: (84.4-83.8)/11.6 = 0.05, moved (99.8-83.8)/11.6 = 1.38: flagged
    assert uniform_damage(0.6 / 11.6, 83.8, 99.8, 88.2)
    # EU-k: (96.8-89.4)/11.6 = 0.64 >= 0.25: selective enough, not flagged
    assert not uniform_damage(7.4 / 11.6, 89.4, 99.8, 88.2)
    # TMU: (99.2-97.2)/11.6 = 0.17 < 0.25, but forget moved only 2.6/11.6 = 0.22 <= 1/3: not flagged
    assert not uniform_damage(2.0 / 11.6, 97.2, 99.8, 88.2)
    # n/a selectivity: never flagged
    assert not uniform_damage(float("nan"), 80.0, 99.8, 88.2)


def test_add_closed_adds_selectivity_and_the_mark():
    rows = [dict(GOLD, seed=0), dict(ORIG, seed=0), _row("muda", 0.752, 0.737, 0.730, 0.2),
            _row("eu_k", 0.894, 0.968, 0.882, 0.25)]
    add_closed(rows)
    by = {r["model"]: r for r in rows}
    assert by["gold"]["selectivity"] == pytest.approx(1.0)
    assert by["original"]["selectivity"] == pytest.approx(0.0)
    assert by["muda"]["selectivity"] == pytest.approx(-1.5 / 11.6)
    assert by["eu_k"]["selectivity"] == pytest.approx(7.4 / 11.6)
    assert by["muda"]["uniform_damage"] is True and by["eu_k"]["uniform_damage"] is False
    assert by["gold"]["uniform_damage"] is False and by["original"]["uniform_damage"] is False
    # n/a: a regime where gold forgets no more than it retains
    flat = [dict(GOLD, acc_forget=0.995, seed=0), dict(ORIG, seed=0), _row("x", 0.9, 0.9, 0.88, 0.1)]
    add_closed(flat)
    assert all(r["selectivity"] is None and r["uniform_damage"] is False for r in flat)


def _seeds(rows_by_seed):
    out = []
    for seed, extra in rows_by_seed:
        rows = [dict(GOLD, seed=seed), dict(ORIG, seed=seed)] + [dict(r, seed=seed) for r in extra]
        add_closed(rows)
        out += rows
    return out


def test_report_marks_uniform_damage_and_did_nothing():
    rows = _seeds([(s, [_row("muda", 0.752, 0.737, 0.730, 0.2), _row("eu_k", 0.894 - s / 1000, 0.968, 0.882, 0.25),
                        _row("dlfd", 0.998, 0.998, 0.887, 0.05, did_nothing=True)]) for s in (0, 1)])
    text = table(rows)
    lines = {ln.split()[0]: ln for ln in text.splitlines()[2:]}
    assert "⚠ uniform damage" in lines["muda"] and "⚠ uniform damage" not in lines["eu_k"]
    assert "(did nothing)" in lines["dlfd"] and "(did nothing)" not in lines["eu_k"]
    assert "selectivity" in text.splitlines()[0]
    md = table(rows, markdown=True)
    dlfd_md = [ln for ln in md.splitlines() if ln.startswith("| dlfd")][0]
    assert "**" not in dlfd_md  # a row that did nothing is never bold, even where its gap is the smallest
    eu_md = [ln for ln in md.splitlines() if ln.startswith("| eu_k")][0]
    assert "**" in eu_md  # two seeds: the best closed is bold
    assert [e["model"] for e in summarize(rows) if e.get("did_nothing")] == ["dlfd"]


def test_no_bold_and_no_claim_of_best_on_one_seed():
    rows = _seeds([(0, [_row("eu_k", 0.894, 0.968, 0.882, 0.25), _row("ft", 0.95, 0.99, 0.885, 0.1)])])
    assert "**" not in table(rows, markdown=True)
    v = verdict(rows)
    assert "one seed" in v and "eu_k" in v and "best" not in v.lower().replace("highest", "")


def test_verdict_over_seeds_says_whether_the_leader_is_separable():
    close = _seeds([(s, [_row("a", 0.894 + s / 100, 0.968, 0.882, 0.25),
                         _row("b", 0.896 + s / 200, 0.968, 0.882, 0.25)]) for s in (0, 1, 2)])
    v = verdict(close)
    assert "not separable" in v and "± " in v
    apart = _seeds([(s, [_row("a", 0.885 + s / 1000, 0.998, 0.884, 0.30),
                         _row("b", 0.97 + s / 1000, 0.99, 0.884, 0.1)]) for s in (0, 1, 2)])
    v = verdict(apart)
    assert v.startswith("Highest mean closed: a") and "below its spread" in v


def test_closer_than_the_original_is_judged_on_the_headline():
    from unlearnkit.bench.evaluate import add_gaps
    from unlearnkit.bench.report import regime_notes

    def rows_for(method_row):
        rows = []
        for seed in (0, 1):
            rs = [dict(GOLD, seed=seed), dict(ORIG, seed=seed), dict(method_row, seed=seed)]
            g = rs[0]
            for r in rs:
                r["_probs_forget"] = np.full((4, 3), 1 / 3)
            for r in rs:
                add_gaps(r, g)
            for r in rs:
                r.pop("_probs_forget")
            rows += add_closed(rs)
        return rows

    # forgets most of the way (closed forget 0.9) but damages retain: avg gap above the original's,
    # mean closed still > 0: no "closer than nothing" complaint, the damage column says the rest
    mixed = rows_for(_row("m", 0.894, 0.95, 0.884, 0.20))
    assert summarize(mixed)[1]["mean_closed"][0] > 0
    assert not any("closer to gold than the original" in n for n in regime_notes(mixed))
    worse = rows_for(_row("m", 0.998, 0.90, 0.80, 0.05))
    assert any("No method is closer to gold than the original on the headline" in n for n in regime_notes(worse))
