"""Reading ``recipes.toml``: the training recipe per dataset and the hyper-parameters per method."""

from __future__ import annotations

import pathlib
from functools import cache

from ..io import tomllib

RECIPES_PATH = pathlib.Path(__file__).parent.parent / "bench" / "recipes.toml"  # package data, shipped where it always was


@cache
def load_recipes(path: str | None = None) -> dict:
    p = pathlib.Path(path) if path else RECIPES_PATH
    try:
        return tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"recipes: {p} is not valid TOML ({exc})") from None


def dataset_recipe(dataset: str, path: str | None = None) -> dict:
    """The recipe of ``dataset``: ``model`` (a name), ``train`` (a table of ``TrainConfig`` fields),
    optional ``model_kwargs``, ``methods`` and ``scenarios``. A file without a ``[datasets]`` table,
    a dataset without a recipe, or a recipe without its ``model`` or ``train`` is a ``ValueError``
    naming the file and what is missing."""
    where = pathlib.Path(path) if path else RECIPES_PATH
    recipes = load_recipes(path).get("datasets")
    if not isinstance(recipes, dict):
        raise ValueError(f"recipes: expected a [datasets.<name>] table in {where}, got "
                         f"{'none' if recipes is None else type(recipes).__name__}")
    if dataset not in recipes:
        raise ValueError(f"dataset: no recipe for {dataset!r} in {where}; recipes exist for {sorted(recipes)}")
    recipe = recipes[dataset]
    if not isinstance(recipe, dict):
        raise ValueError(f"recipes: expected [datasets.{dataset}] to be a table in {where}, got {recipe!r}")
    for key, kind, example in (("model", str, 'model = "small-cnn"'),
                               ("train", dict, "train = { epochs = 10, batch_size = 64, lr = 0.05 }")):
        if not isinstance(recipe.get(key), kind):
            got = "nothing" if key not in recipe else repr(recipe[key])
            raise ValueError(f"recipes: expected [datasets.{dataset}] in {where} to have a {key!r} "
                             f"{'table' if kind is dict else 'name'} (e.g. {example}), got {got}")
    return recipe


def method_recipe(dataset: str, method: str, path: str | None = None, scenario: str | None = None) -> dict:
    """Hyper-parameters of ``method`` on ``dataset`` (empty: the paper's defaults).

    With ``scenario`` (e.g. ``"class-3"``), the fields under
    ``[datasets.<dataset>.scenarios.<kind>.methods]`` (kind: random, class, class_partial, subclass,
    backdoor) override the dataset's: removing a whole class asks more of a method than removing 10%
    at random; then those under ``[datasets.<dataset>.scenarios."<scenario>".methods]`` (the exact
    scenario, e.g. ``"random-30"``) override both.
    """
    from .._validation import check_scenario

    recipe = dataset_recipe(dataset, path)
    out = dict(recipe.get("methods", {}).get(method, {}))
    if scenario is not None:
        kind = check_scenario(str(scenario), "scenario", parsed=True)["forget"]
        sections = recipe.get("scenarios", {})
        for key in dict.fromkeys((kind, str(scenario))):
            out.update(sections.get(key, {}).get("methods", {}).get(method, {}))
    return out


def hyperparameters(dataset: str, method: str, scenario: str | None = None, overrides: dict | None = None,
                    path: str | None = None) -> dict:
    """What ``method`` runs with: its recipe for ``dataset`` (and ``scenario``'s section, where the
    recipes file has one), then ``overrides`` (``{method: {field: value}}``, e.g. ``--set``) on top.
    The one merge of recipe and overrides, shared by bench, audit and the config checks."""
    return {**method_recipe(dataset, method, path, scenario), **(overrides or {}).get(method, {})}
