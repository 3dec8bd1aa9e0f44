"""Layer: bench. Checks a bench run's whole configuration before any work. The configuration and
its checks are declared once in :mod:`unlearnkit.experiment.config` (shared with the audit):
a :class:`~unlearnkit.experiment.config.RunConfig` checks its own fields when it is made (seeds,
methods, every override against its method's schema, the scenario, the precision, the audit's
pool size); :func:`validate` adds what needs the recipes file and the machine (each method built
from its recipe and the overrides, one scalar made on the device). ``runner.run`` calls it first,
so that a typo fails in a second with ``<argument>: expected ..., got ...`` instead of after the
original and gold models trained.

Nothing here trains, loads data or allocates more than one scalar on the device.
"""

from __future__ import annotations

from .._validation import SCENARIO_HELP, check_scenario
from ..experiment.config import check_device, check_environment, check_methods, check_overrides, check_recipes, check_seeds

__all__ = ["SCENARIO_HELP", "check_device", "check_methods", "check_overrides", "check_recipes", "check_scenario",
           "check_seeds", "validate"]


def validate(config, recipes: str | None = None) -> None:
    """What a ``RunConfig`` cannot check itself: each method built from ``recipes`` (default: the
    shipped file) plus the overrides, and the device; raises the first problem found."""
    check_environment(config, recipes)
