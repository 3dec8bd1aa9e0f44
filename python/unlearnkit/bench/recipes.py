"""Reading ``recipes.toml``: the training recipe per dataset and the hyper-parameters per method."""

from __future__ import annotations

import pathlib
from functools import lru_cache

from ..io import tomllib

RECIPES_PATH = pathlib.Path(__file__).with_name("recipes.toml")


@lru_cache(maxsize=None)
def load_recipes(path: str | None = None) -> dict:
    p = pathlib.Path(path) if path else RECIPES_PATH
    try:
        return tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"recipes: {p} is not valid TOML ({exc})") from None


def dataset_recipe(dataset: str, path: str | None = None) -> dict:
    recipes = load_recipes(path)["datasets"]
    if dataset not in recipes:
        raise ValueError(f"dataset: no recipe for {dataset!r}; recipes exist for {sorted(recipes)}")
    return recipes[dataset]


def method_recipe(dataset: str, method: str, path: str | None = None, scenario: str | None = None) -> dict:
    """Hyper-parameters of ``method`` on ``dataset`` (empty: the paper's defaults).

    With ``scenario`` (e.g. ``"class-3"``), the fields under
    ``[datasets.<dataset>.scenarios.<kind>.methods]`` (kind: random, class, subclass, backdoor)
    override the dataset's: removing a whole class asks more of a method than removing 10% at random.
    """
    recipe = dataset_recipe(dataset, path)
    out = dict(recipe.get("methods", {}).get(method, {}))
    if scenario is not None:
        kind = str(scenario).partition("-")[0]
        out.update(recipe.get("scenarios", {}).get(kind, {}).get("methods", {}).get(method, {}))
    return out
