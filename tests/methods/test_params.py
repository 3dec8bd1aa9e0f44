"""The one parameter schema: every method's Params declares its constraints (and tuning ranges)
in field metadata, and ``Method.__init__`` validates them in one place. The registry: an unknown
method or hyper-parameter is named; the five baselines of the seed papers' tables (CF-k, EU-k, UNSIR,
Fisher forgetting, SISA) registered with a citation, their digits recipes valid, a bad value of each
named by its field (and SISA's ensemble trainer naming its arguments)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from unlearnkit._validation import Space, check_params, constraints, search_space
from unlearnkit.bench.recipes import method_recipe
from unlearnkit.methods import METHODS, get_method
from unlearnkit.methods.sisa import train_sisa

NAMES = sorted(METHODS)
NEW = ("cf_k", "eu_k", "unsir", "fisher", "sisa")  # the five baselines of the seed papers' tables


@pytest.mark.parametrize("name", NAMES)
def test_defaults_pass_their_own_constraints(name):
    cls = get_method(name)
    method = cls()  # defaults (the paper's) must be valid
    assert dataclasses.asdict(method.params) == dataclasses.asdict(cls.Params())


@pytest.mark.parametrize("name", [n for n in NAMES if "epochs" in {f.name for f in dataclasses.fields(get_method(n).Params)}])
def test_every_method_rejects_bad_epochs_naming_the_field(name):
    cls = get_method(name)
    with pytest.raises(ValueError, match=rf"^{name}\.epochs: expected an int >= 0, got -3$"):
        cls(epochs=-3)
    with pytest.raises(TypeError, match=rf"^{name}\.epochs: expected an int >= 0, got float 2\.5$"):
        cls(epochs=2.5)
    with pytest.raises(TypeError, match=rf"^{name}\.epochs: expected an int"):
        cls(epochs=True)


@pytest.mark.parametrize("name", [n for n in NAMES if "lr" in {f.name for f in dataclasses.fields(get_method(n).Params)}])
def test_every_learning_rate_must_be_positive_and_finite(name):
    cls = get_method(name)
    for bad in (0.0, -1e-3):
        with pytest.raises(ValueError, match=rf"^{name}\.lr: expected a number > 0, got"):
            cls(lr=bad)
    with pytest.raises(ValueError, match=rf"^{name}\.lr: expected a finite number"):
        cls(lr=float("nan"))
    with pytest.raises(TypeError, match=rf"^{name}\.lr: expected a number > 0, got str"):
        cls(lr="fast")
    assert cls(lr=1).params.lr == 1.0 and isinstance(cls(lr=1).params.lr, float)  # ints widen to float


def test_a_params_instance_is_checked_too():
    cls = get_method("finetune")
    bad = dataclasses.replace(cls.Params(), epochs=-1)
    with pytest.raises(ValueError, match=r"^finetune\.epochs: expected an int >= 0, got -1$"):
        cls(params=bad)


def test_choices_tuples_and_optionals():
    dlfd = get_method("dlfd")
    with pytest.raises(ValueError, match=r"^dlfd\.layer: expected one of \['logits', 'features'\], got 'pixels'$"):
        dlfd(layer="pixels")
    with pytest.raises(ValueError, match=r"^dlfd\.pixel_range: expected 2 values"):
        dlfd(pixel_range=(0.0, 0.5, 1.0))
    assert dlfd(pixel_range=[0, 1]).params.pixel_range == (0.0, 1.0)  # TOML lists become tuples
    tmu = get_method("tmu")
    with pytest.raises(ValueError, match=r"^tmu\.features\[1\]: expected one of \['df', 'af', 'cf'\], got 'xx'$"):
        tmu(features=["df", "xx"])
    assert tmu(pgd_step_size=None).params.pgd_step_size is None
    muda = get_method("muda")
    assert muda(k=None).params.k is None
    with pytest.raises(ValueError, match=r"^muda\.k: expected an int >= 1, got 0$"):
        muda(k=0)
    with pytest.raises(TypeError, match=r"^muda\.lr: expected a value, got None$"):
        muda(lr=None)


def test_search_spaces_round_trip_from_metadata():
    # every method with a learning rate declares a tuning range for it, and every declared range
    # contains the paper's default (so a search can always find the default again)
    for name in NAMES:
        params = get_method(name).Params
        space = search_space(params)
        for field, s in space.items():
            assert isinstance(s, Space)
            default = getattr(params(), field)
            if (name, field) == ("dlfd", "epsilon"):  # None: the mode's ball (8/255 in the default paper mode)
                assert default is None and params().ball == pytest.approx(8 / 255)
                default = params().ball
            assert s.contains(default), (name, field, default, s)
            # a value drawn from each end of the range passes the field's own constraints
            ends = s.choices if s.kind == "choice" else (s.low, s.high)
            for v in ends:
                v = int(v) if s.kind == "int" else v
                check_params(params, {field: v}, prefix=f"{name}.")
        if "lr" in constraints(params) and name != "retrain":
            assert "lr" in space, name
    ft = search_space(get_method("finetune").Params)
    assert ft["lr"] == Space("log", 1e-5, 1e-1) and ft["epochs"] == Space("int", 1, 10)


def test_registry_and_bad_hyperparameters():
    assert {"finetune", "neggrad", "random_labels", "retrain"} <= set(METHODS)
    with pytest.raises(ValueError, match="method"):
        get_method("nope")
    with pytest.raises(TypeError, match="hparams.*lrr"):
        get_method("finetune")(lrr=0.1)


def test_registered_with_citations_and_recipes():
    for name in NEW:
        cls = METHODS[name]
        assert cls.paper and cls.name == name
        get_method(name)(**method_recipe("digits", name))  # the recipe passes validation


def test_bad_hyperparameters_name_the_field(digits_models):
    with pytest.raises(ValueError, match=r"^cf_k\.k: expected an int >= 1, got 0$"):
        get_method("cf_k")(k=0)
    with pytest.raises(ValueError, match=r"^eu_k\.lr: expected a number > 0"):
        get_method("eu_k")(lr=0.0)
    with pytest.raises(ValueError, match=r"^unsir\.mode: expected one of \['auto', 'class', 'sample'\], got 'x'$"):
        get_method("unsir")(mode="x")
    with pytest.raises(TypeError, match=r"^unsir\.noise_batch: expected an int"):
        get_method("unsir")(noise_batch=2.5)
    with pytest.raises(ValueError, match=r"^fisher\.alpha: expected a number > 0, got -1"):
        get_method("fisher")(alpha=-1.0)
    with pytest.raises(ValueError, match=r"^sisa\.shards: expected an int >= 1, got 0$"):
        get_method("sisa")(shards=0)
    with pytest.raises(ValueError, match=r"^sisa\.aggregation: expected one of \['mean', 'vote'\]"):
        get_method("sisa")(aggregation="median")
    split, original, _ = digits_models
    x, y = split.forget.tensors
    with pytest.raises(ValueError, match=r"^shards, slices: expected at most 10 slices in all"):
        train_sisa(original, x[:10], y[:10], shards=4, slices=3)
    with pytest.raises(ValueError, match=r"^assignment: expected shape \(10, 2\)"):
        train_sisa(original, x[:10], y[:10], assignment=np.zeros((9, 2)))
    with pytest.raises(ValueError, match=r"^executor: expected one of"):
        train_sisa(original, x[:10], y[:10], shards=2, slices=1, epochs=0, executor="dask")
