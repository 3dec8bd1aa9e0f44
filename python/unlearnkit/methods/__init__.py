"""Unlearning methods: one interface (``Method.unlearn``), one registry (``METHODS``).

Adding a method: one file with a ``@register``-ed ``Method`` subclass, and one import below.
"""

from .bad_teacher import BadTeacher
from .base import METHODS, Context, Method, UnlearnData, get_method, register
from .boundary_shrink import BoundaryShrink
from .cf_k import CFk
from .dlfd import DLFD
from .eu_k import EUk
from .finetune import FineTune
from .fisher import FisherForgetting
from .l1_sparse import L1Sparse
from .muda import MUDA
from .neggrad import NegGrad
from .neggrad_plus import NegGradPlus
from .random_labels import RandomLabels
from .retrain import Retrain
from .salun import SalUn
from .scrub import Scrub
from .sisa import Sisa
from .ssd import SSD
from .tmu import TMU
from .unsir import UNSIR

__all__ = ["METHODS", "Context", "FineTune", "Method", "NegGrad", "RandomLabels", "Retrain", "UnlearnData",
           "get_method", "register"]
__all__ += ["BadTeacher", "BoundaryShrink", "L1Sparse", "NegGradPlus", "SSD", "SalUn", "Scrub"]
__all__ += ["TMU"]
__all__ += ["DLFD", "MUDA"]
__all__ += ["CFk", "EUk", "FisherForgetting", "Sisa", "UNSIR"]
