"""Reading ``recipes.toml``: the training recipe per dataset and the hyper-parameters per method."""

from __future__ import annotations

import pathlib
import tomllib
from functools import lru_cache

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


def method_recipe(dataset: str, method: str, path: str | None = None) -> dict:
    """Hyper-parameters of ``method`` on ``dataset`` (empty: the paper's defaults)."""
    return dict(dataset_recipe(dataset, path).get("methods", {}).get(method, {}))
