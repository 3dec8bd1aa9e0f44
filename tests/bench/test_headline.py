"""The headline score (bench.evaluate.mean_closed) on hand-worked cases: closed per metric, the damage
term on metrics where closed is n/a, and the tuning objective built on it."""

from __future__ import annotations

import math

import pytest

from unlearnkit.bench.evaluate import mean_closed
from unlearnkit.tune import mean_closed as objective

# points; forget and MIA are far from gold (closed defined), retain and test within a point (n/a)
ORIG = {"acc_forget": 99.9, "acc_retain": 99.9, "acc_test": 88.2, "mia": 8.2}
GOLD = {"acc_forget": 91.5, "acc_retain": 99.9, "acc_test": 88.6, "mia": 19.8}


def test_original_scores_zero_and_gold_one():
    assert mean_closed(ORIG, ORIG, GOLD)[:2] == (0.0, 0.0)
    mc, damage, per = mean_closed(GOLD, ORIG, GOLD)
    assert (mc, damage) == (1.0, 0.0)
    assert per["acc_forget"] == 1.0 and math.isnan(per["acc_retain"]) and math.isnan(per["acc_test"])


def test_damage_on_na_metrics_is_charged_in_the_regimes_units():
    # the seed-0 SSD row of docs/benchmarks.md: forgets well, loses 10.9 points of retain accuracy
    ssd = {"acc_forget": 89.4, "acc_retain": 89.0, "acc_test": 79.8, "mia": 21.5}
    mc, damage, per = mean_closed(ssd, ORIG, GOLD)
    # by hand: closed forget 1 - 2.1/8.4 = 0.75, MIA 1 - 1.7/11.6 = 0.853; scale (8.4 + 11.6) / 2 = 10;
    # excess retain 10.9 - 0 = 10.9, test 8.8 - 0.4 = 8.4; damage (10.9 + 8.4) / 10 / 2 = 0.965
    assert per["acc_forget"] == pytest.approx(0.75) and per["mia"] == pytest.approx(1 - 1.7 / 11.6)
    assert damage == pytest.approx(0.965)
    assert mc == pytest.approx((0.75 + 1 - 1.7 / 11.6) / 2 - 0.965)
    assert mc < 0  # further from gold than doing nothing, as its average gap says (5.86 vs 5.10)


def test_moving_closer_to_gold_on_an_na_metric_is_not_a_bonus_and_damage_is_relative_to_the_original():
    # test accuracy 0.2 point from gold (the original is 0.4 away): no excess, no damage
    m = dict(GOLD, acc_test=88.4)
    assert mean_closed(m, ORIG, GOLD)[:2] == (1.0, 0.0)
    # matching gold on the defined metrics but r_D = 10 points off on one n/a metric: 1 - 1/|D|
    m = dict(GOLD, acc_retain=89.9)
    assert mean_closed(m, ORIG, GOLD)[0] == pytest.approx(0.5)


def test_no_defined_metric_means_the_regime_cannot_rank():
    near = {k: v + 0.5 for k, v in GOLD.items()}
    mc, damage, per = mean_closed(ORIG, near, GOLD)
    assert math.isnan(mc) and math.isnan(damage) and all(math.isnan(v) for v in per.values())


def test_the_tuning_objective_charges_the_same_damage():
    frac = {k: v / 100 for k, v in ORIG.items()}
    o = {("acc_val" if k == "acc_test" else k): v for k, v in frac.items()}
    g = {("acc_val" if k == "acc_test" else k): v / 100 for k, v in GOLD.items()}
    keeps = dict(g, acc_forget=0.95, mia=0.15)  # forgets half way, keeps retain and val
    breaks = dict(keeps, acc_retain=0.90)       # the same, but 9.9 points of retain accuracy lost
    a, _ = objective(keeps, o, g)
    b, _ = objective(breaks, o, g)
    # by hand: closed forget 1 - 3.5/8.4, MIA 1 - 4.8/11.6; damage 9.9 / 10 / 2
    base = (2 - 3.5 / 8.4 - 4.8 / 11.6) / 2
    assert a == pytest.approx(base) and b == pytest.approx(base - 0.495)
