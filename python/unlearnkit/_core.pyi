"""Type stub of the Rust engine ``unlearnkit._core`` (built from ``rust/bindings.rs``).

Layer: engine. Arrays are numpy; labels are 1-D C-contiguous int32 or int64, features 2-D
float32 or float64 (both arguments of one call in the same dtype). Errors: ``ValueError`` for
bad values (message ``argname: expected ..., got ...``), ``TypeError`` for bad dtypes.
"""

from typing import Literal, final

import numpy as np
import numpy.typing as npt

__all__ = ["Scores", "Matching", "normalized_mutual_info", "adjusted_mutual_info", "contingency_cells",
           "clustering_scores", "scores_from_cells", "kneighbors", "kmeans", "eval_chunk", "num_threads",
           "simd_level", "challenge_epsilons"]

_Labels = npt.NDArray[np.int64] | npt.NDArray[np.int32]
_Features = npt.NDArray[np.float32] | npt.NDArray[np.float64]
_I64 = npt.NDArray[np.int64]
_Average = Literal["arithmetic", "geometric", "min", "max"]

@final
class Matching:
    """What the Hungarian matching still has to solve (components with >1 row and >1 column)."""

    @property
    def trivial_count(self) -> int: ...
    @property
    def trivial_f1(self) -> float: ...
    @property
    def comp(self) -> _I64: ...
    @property
    def rows(self) -> _I64: ...
    @property
    def cols(self) -> _I64: ...
    @property
    def counts(self) -> _I64: ...
    @property
    def row_sums(self) -> _I64: ...
    @property
    def col_sums(self) -> _I64: ...

@final
class Scores:
    """Every score of one contingency table (frozen; entropies and MI in nats)."""

    @property
    def nmi_arithmetic(self) -> float: ...
    @property
    def nmi_geometric(self) -> float: ...
    @property
    def nmi_min(self) -> float: ...
    @property
    def nmi_max(self) -> float: ...
    @property
    def ami_arithmetic(self) -> float: ...
    @property
    def ami_geometric(self) -> float: ...
    @property
    def ami_min(self) -> float: ...
    @property
    def ami_max(self) -> float: ...
    @property
    def ari(self) -> float: ...
    @property
    def homogeneity(self) -> float: ...
    @property
    def completeness(self) -> float: ...
    @property
    def v_measure(self) -> float: ...
    @property
    def pair_precision(self) -> float: ...
    @property
    def pair_recall(self) -> float: ...
    @property
    def pair_f1(self) -> float: ...
    @property
    def mutual_info(self) -> float: ...
    @property
    def expected_mutual_info(self) -> float: ...
    @property
    def entropy_true(self) -> float: ...
    @property
    def entropy_pred(self) -> float: ...
    @property
    def n_samples(self) -> int: ...
    @property
    def n_classes(self) -> int: ...
    @property
    def n_clusters(self) -> int: ...
    @property
    def matching(self) -> Matching | None: ...

def normalized_mutual_info(
    labels_true: _Labels, labels_pred: _Labels, average_method: _Average = "arithmetic"
) -> float: ...
def adjusted_mutual_info(
    labels_true: _Labels, labels_pred: _Labels, average_method: _Average = "arithmetic"
) -> float: ...
def contingency_cells(
    labels_true: _Labels, labels_pred: _Labels
) -> tuple[_I64, _I64, tuple[_I64, _I64, _I64]]:
    """(classes, clusters, (rows, cols, counts)): sorted distinct labels and the non-zero cells."""
    ...
def clustering_scores(
    labels_true: _Labels, labels_pred: _Labels, matching: bool = True, ami: bool = True
) -> Scores: ...
def scores_from_cells(rows: _I64, cols: _I64, counts: _I64, matching: bool = True) -> Scores: ...
def kneighbors(
    queries: _Features,
    bank: _Features,
    k: int,
    metric: Literal["l2", "cosine"] = "l2",
    exclude_self: bool = False,
    index_offset: int = 0,
    block_size: int | None = None,
    exclude_index: _I64 | None = None,
) -> tuple[_Features, _I64]:
    """(distances (m, k) in the input dtype, indices (m, k) int64), ascending by (distance, index)."""
    ...
def kmeans(
    x: _Features,
    n_clusters: int,
    n_init: int = 1,
    max_iter: int = 100,
    tol: float = 1e-4,
    seed: int = 0,
    init: _Features | None = None,
) -> tuple[_I64, _Features, float, int]:
    """(labels int64, centroids (k, d) in the dtype of x, inertia, n_iter)."""
    ...
def eval_chunk(
    x: npt.NDArray[np.uint16] | _Features,
    kind: Literal["f16", "bf16", "f32", "f64"],
    *,
    validate: bool = True,
    moments: bool = False,
    probe: tuple[_Features, _Features, _Features, _Features] | None = None,
    centroids: _Features | None = None,
    alignment: tuple[npt.NDArray[np.float64], bool, npt.NDArray[np.float64] | None] | None = None,
    knn_queries: _Features | None = None,
    knn_k: int = 5,
    knn_exclude: _I64 | None = None,
    knn_offset: int = 0,
    block_size: int | None = None,
) -> dict:
    """One streamed chunk of a feature bank in one engine sweep (``rust/sweep.rs``).

    ``x`` (n, d) as stored: uint16 bits of float16 (``kind="f16"``) or bfloat16 (``"bf16"``),
    float32 (``"f32"``) or float64 (``"f64"``); upcast slab by slab inside the engine. The models
    are in the compute dtype (float64 for float64 ``x``, else float32): ``probe`` = (scaler mean
    (d,), scaler scale (d,), coef (c, d), intercept (c,)), ``centroids`` (kc, d), ``knn_queries``
    (m, d) with ``knn_exclude`` (m,) the global row each must not match (-1: none) and
    ``knn_offset`` the chunk's first global row; ``alignment`` = (basis or complement as rows
    (p, d) float64, complement?, mean (d,) float64 or None).

    Returns {"bad_row": first row with NaN/Inf or None (nothing else computed then),
    "moments": (n, mean (d,), co-moment (d, d)) float64 or None, "probe_class": (n,) int32 index
    into the probe's classes, -1 where the top logits are within rounding (ask the model) or None,
    "assign": (n,) int64 nearest centroid or None, "da_sum": float, "da_zero_rows": int,
    "knn": (distances (m, w) in the compute dtype, indices (m, w) int64) with w = min(k, n),
    missing candidates (inf, 2**63 - 1), or None}.
    """
    ...
def num_threads() -> int: ...
def simd_level() -> Literal["avx512", "avx2", "scalar"]: ...
def challenge_epsilons(
    unlearned: npt.NDArray[np.float64], retrained: npt.NDArray[np.float64], delta: float = 1e-5
) -> npt.NDArray[np.float64]: ...
