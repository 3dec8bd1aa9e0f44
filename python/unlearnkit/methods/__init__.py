"""Unlearning methods: one interface (``Method.unlearn``), one registry (``METHODS``).

Adding a method: one file with a ``@register``-ed ``Method`` subclass, and one import below.
"""

from .base import METHODS, Context, Method, UnlearnData, get_method, register
from .finetune import FineTune
from .neggrad import NegGrad
from .random_labels import RandomLabels
from .retrain import Retrain

__all__ = ["METHODS", "Context", "FineTune", "Method", "NegGrad", "RandomLabels", "Retrain", "UnlearnData",
           "get_method", "register"]
