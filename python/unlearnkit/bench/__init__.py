"""Scenarios, the runner that glues data + models + methods + metrics, and the report writer."""

from .recipes import dataset_recipe, load_recipes, method_recipe
from .report import table, write_report
from .runner import DEFAULT_METHODS, RunConfig, run

__all__ = ["DEFAULT_METHODS", "RunConfig", "dataset_recipe", "load_recipes", "method_recipe", "run", "table",
           "write_report"]
