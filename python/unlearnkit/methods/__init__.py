"""Unlearning methods: one interface (``Method.unlearn``), one registry (``METHODS``).

Adding a method: one file with a ``@register``-ed ``Method`` subclass, and one import below.
"""

from .base import METHODS, Context, Method, UnlearnData, get_method, register
from .finetune import FineTune
from .neggrad import NegGrad
from .random_labels import RandomLabels
from .retrain import Retrain
from .tmu import TMU
from .neggrad_plus import NegGradPlus
from .boundary_shrink import BoundaryShrink
from .l1_sparse import L1Sparse
from .scrub import Scrub
from .salun import SalUn
from .bad_teacher import BadTeacher
from .ssd import SSD
from .muda import MUDA
from .dlfd import DLFD
from .cf_k import CFk
from .eu_k import EUk
from .unsir import UNSIR
from .fisher import FisherForgetting
from .sisa import Sisa

__all__ = ["METHODS", "Context", "FineTune", "Method", "NegGrad", "RandomLabels", "Retrain", "UnlearnData",
           "get_method", "register"]
__all__ += ["BadTeacher", "BoundaryShrink", "L1Sparse", "NegGradPlus", "SSD", "SalUn", "Scrub"]
__all__ += ["TMU"]
__all__ += ["DLFD", "MUDA"]
__all__ += ["CFk", "EUk", "FisherForgetting", "Sisa", "UNSIR"]
