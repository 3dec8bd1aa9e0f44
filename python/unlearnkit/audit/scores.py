"""Moved to :mod:`unlearnkit.experiment.scores` (the experiment layer that bench, audit and tune share;
none of them imports another). This name stays importable: it is that module itself, so attribute
reads and monkeypatches reach the one implementation."""

import sys

from ..experiment import scores as _moved

sys.modules[__name__] = _moved
