"""Metrics, scikit-learn style: arrays in (numpy or torch), floats or dicts out.

Output space (``output``, ``membership``): accuracy, membership-inference attacks, gaps to
the gold model. Feature space (``clustering``, ``kmeans``, ``neighbors``, ``knn_membership``,
``alignment``): the heavy ones run in the Rust engine ``unlearnkit._core``.
"""

from .alignment import *  # noqa: F401,F403
from .alignment import __all__ as _alignment_all
from .backdoor import attack_success_rate
from .clustering import *  # noqa: F401,F403
from .clustering import __all__ as _clustering_all
from .kmeans import *  # noqa: F401,F403
from .kmeans import __all__ as _kmeans_all
from .knn_membership import *  # noqa: F401,F403
from .knn_membership import __all__ as _knn_membership_all
from .membership import *  # noqa: F401,F403
from .membership import __all__ as _membership_all
from .neighbors import *  # noqa: F401,F403
from .neighbors import __all__ as _neighbors_all
from .output import *  # noqa: F401,F403
from .output import __all__ as _output_all
from .per_example import *  # noqa: F401,F403
from .per_example import __all__ as _per_example_all

__all__ = ["attack_success_rate", *_alignment_all, *_clustering_all, *_kmeans_all, *_neighbors_all,
           *_knn_membership_all, *_membership_all, *_output_all, *_per_example_all]
