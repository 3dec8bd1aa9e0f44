"""Scenarios, the runner that glues data + models + methods + metrics, and the report writer."""

from ..experiment.recipes import dataset_recipe, load_recipes, method_recipe
from . import evaluate, recipes  # noqa: F401 - the old module names (aliases of experiment.evaluate / .recipes)
from .report import table, write_report
from .runner import DEFAULT_METHODS, RunConfig, run

__all__ = ["DEFAULT_METHODS", "RunConfig", "dataset_recipe", "load_recipes", "method_recipe", "run", "table",
           "write_report"]
