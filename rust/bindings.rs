//! The one PyO3 layer: numpy in (zero-copy for C-contiguous int32/int64 labels and
//! float32/float64 features; strided arrays are copied once), the GIL released while the core
//! computes, core errors raised as Python `ValueError`, wrong dtypes as `TypeError`.

use std::borrow::Cow;

use numpy::ndarray::Array2;
use numpy::{
    Element, IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use crate::contingency::{Contingency, Label};
use crate::error::CoreError;
use crate::float::Real;
use crate::kmeans::{self as km, KMeansOptions};
use crate::knn::{self, KnnOptions, Metric};
use crate::scores::{self, AverageMethod};
use crate::sweep::{self, Alignment, ChunkJob, KnnJob, Probe};
use pyo3::types::PyDict;

fn to_py(err: CoreError) -> PyErr {
    PyValueError::new_err(err.to_string())
}

fn invalid(name: &'static str, expected: impl Into<String>, got: impl Into<String>) -> PyErr {
    to_py(CoreError::invalid(name, expected, got))
}

/// A 1-D integer label array, borrowed from numpy without a copy.
#[derive(FromPyObject)]
enum Labels<'py> {
    I64(PyReadonlyArray1<'py, i64>),
    I32(PyReadonlyArray1<'py, i32>),
}

fn slice_1d<'a, T: Element + Copy>(a: &'a PyReadonlyArray1<'_, T>) -> Cow<'a, [T]> {
    match a.as_slice() {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(a.as_array().iter().copied().collect()),
    }
}

enum LabelSlice<'a> {
    I64(Cow<'a, [i64]>),
    I32(Cow<'a, [i32]>),
}

impl Labels<'_> {
    fn slice(&self) -> LabelSlice<'_> {
        match self {
            Labels::I64(a) => LabelSlice::I64(slice_1d(a)),
            Labels::I32(a) => LabelSlice::I32(slice_1d(a)),
        }
    }
}

fn contingency(a: &LabelSlice<'_>, b: &LabelSlice<'_>) -> Result<Contingency, CoreError> {
    fn go<T: Label, U: Label>(a: &[T], b: &[U]) -> Result<Contingency, CoreError> {
        Contingency::new(a, b)
    }
    use LabelSlice::*;
    match (a, b) {
        (I64(a), I64(b)) => go(a, b),
        (I64(a), I32(b)) => go(a, b),
        (I32(a), I64(b)) => go(a, b),
        (I32(a), I32(b)) => go(a, b),
    }
}

fn parse_average(average_method: &str) -> PyResult<AverageMethod> {
    AverageMethod::parse(average_method).ok_or_else(|| {
        invalid(
            "average_method",
            "one of 'arithmetic', 'geometric', 'min', 'max'",
            format!("{average_method:?}"),
        )
    })
}

/// normalized_mutual_info(labels_true, labels_pred, average_method) -> float
#[pyfunction]
#[pyo3(signature = (labels_true, labels_pred, average_method = "arithmetic"))]
fn normalized_mutual_info(
    py: Python<'_>,
    labels_true: Labels<'_>,
    labels_pred: Labels<'_>,
    average_method: &str,
) -> PyResult<f64> {
    let average = parse_average(average_method)?;
    let (a, b) = (labels_true.slice(), labels_pred.slice());
    py.detach(|| contingency(&a, &b).map(|t| scores::normalized_mutual_info(&t, average)))
        .map_err(to_py)
}

/// adjusted_mutual_info(labels_true, labels_pred, average_method) -> float
#[pyfunction]
#[pyo3(signature = (labels_true, labels_pred, average_method = "arithmetic"))]
fn adjusted_mutual_info(
    py: Python<'_>,
    labels_true: Labels<'_>,
    labels_pred: Labels<'_>,
    average_method: &str,
) -> PyResult<f64> {
    let average = parse_average(average_method)?;
    let (a, b) = (labels_true.slice(), labels_pred.slice());
    py.detach(|| contingency(&a, &b).map(|t| scores::adjusted_mutual_info(&t, average)))
        .map_err(to_py)
}

type Cells<'py> = (
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
);

fn cells_to_py<'py>(py: Python<'py>, t: &Contingency) -> Cells<'py> {
    let rows: Vec<i64> = t.cells.iter().map(|c| c.0 as i64).collect();
    let cols: Vec<i64> = t.cells.iter().map(|c| c.1 as i64).collect();
    let counts: Vec<i64> = t.cells.iter().map(|c| c.2 as i64).collect();
    (
        rows.into_pyarray(py),
        cols.into_pyarray(py),
        counts.into_pyarray(py),
    )
}

/// contingency(labels_true, labels_pred) -> (classes, clusters, rows, cols, counts): the sorted
/// distinct labels of each side and the non-zero cells of the table, sorted by (row, col).
#[pyfunction]
#[allow(clippy::type_complexity)]
fn contingency_cells<'py>(
    py: Python<'py>,
    labels_true: Labels<'py>,
    labels_pred: Labels<'py>,
) -> PyResult<(
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
    Cells<'py>,
)> {
    let (a, b) = (labels_true.slice(), labels_pred.slice());
    let t = py.detach(|| contingency(&a, &b)).map_err(to_py)?;
    let cells = cells_to_py(py, &t);
    Ok((
        t.classes.clone().into_pyarray(py),
        t.clusters.clone().into_pyarray(py),
        cells,
    ))
}

/// What the Hungarian matching (scipy, Python side) still has to solve: the trivial components'
/// best count and F1 summed, and the cells of the other components (see `scores::MatchingParts`),
/// with the table's margins.
#[pyclass(frozen, get_all, module = "unlearnkit._core")]
struct Matching {
    /// Sum of the best counts of the one-row / one-column components.
    trivial_count: u64,
    /// Sum of the best F1 values of those components.
    trivial_f1: f64,
    /// (cells,) int64 component id of each remaining cell, ascending.
    comp: Py<PyArray1<i64>>,
    /// (cells,) int64 row (class position) of each remaining cell.
    rows: Py<PyArray1<i64>>,
    /// (cells,) int64 column (cluster position) of each remaining cell.
    cols: Py<PyArray1<i64>>,
    /// (cells,) int64 count of each remaining cell.
    counts: Py<PyArray1<i64>>,
    /// (n_classes,) int64 samples per class.
    row_sums: Py<PyArray1<i64>>,
    /// (n_clusters,) int64 samples per cluster.
    col_sums: Py<PyArray1<i64>>,
}

/// Every score of one contingency table (`scores::ClusteringScores`), as attributes.
#[pyclass(frozen, get_all, module = "unlearnkit._core")]
struct Scores {
    nmi_arithmetic: f64,
    nmi_geometric: f64,
    nmi_min: f64,
    nmi_max: f64,
    /// AMI entries are NaN when computed without AMI.
    ami_arithmetic: f64,
    ami_geometric: f64,
    ami_min: f64,
    ami_max: f64,
    ari: f64,
    homogeneity: f64,
    completeness: f64,
    v_measure: f64,
    pair_precision: f64,
    pair_recall: f64,
    pair_f1: f64,
    /// Nats.
    mutual_info: f64,
    /// Nats (NaN without AMI).
    expected_mutual_info: f64,
    entropy_true: f64,
    entropy_pred: f64,
    n_samples: u64,
    n_classes: usize,
    n_clusters: usize,
    /// None unless asked for.
    matching: Option<Py<Matching>>,
}

#[pymethods]
impl Scores {
    fn __repr__(&self) -> String {
        format!(
            "Scores(n_samples={}, n_classes={}, n_clusters={}, nmi_arithmetic={}, ari={}, pair_f1={})",
            self.n_samples,
            self.n_classes,
            self.n_clusters,
            self.nmi_arithmetic,
            self.ari,
            self.pair_f1
        )
    }
}

fn i64_array(py: Python<'_>, v: impl Iterator<Item = i64>) -> Py<PyArray1<i64>> {
    v.collect::<Vec<i64>>().into_pyarray(py).unbind()
}

/// The scores of a table, and (with `matching`) what the Hungarian matching still has to solve.
fn scores_to_py(py: Python<'_>, t: &Contingency, matching: bool, ami: bool) -> PyResult<Scores> {
    let (s, m) = py.detach(|| {
        rayon::join(
            || scores::all_scores_with(t, ami),
            || matching.then(|| scores::matching_parts(t)),
        )
    });
    let matching = match m {
        Some(m) => Some(Py::new(
            py,
            Matching {
                trivial_count: m.trivial_count,
                trivial_f1: m.trivial_f1,
                comp: i64_array(py, m.cells.iter().map(|c| c.0 as i64)),
                rows: i64_array(py, m.cells.iter().map(|c| c.1 as i64)),
                cols: i64_array(py, m.cells.iter().map(|c| c.2 as i64)),
                counts: i64_array(py, m.cells.iter().map(|c| c.3 as i64)),
                row_sums: i64_array(py, t.row_sums.iter().map(|&v| v as i64)),
                col_sums: i64_array(py, t.col_sums.iter().map(|&v| v as i64)),
            },
        )?),
        None => None,
    };
    let [nmi_arithmetic, nmi_geometric, nmi_min, nmi_max] = s.nmi;
    let [ami_arithmetic, ami_geometric, ami_min, ami_max] = s.ami;
    Ok(Scores {
        nmi_arithmetic,
        nmi_geometric,
        nmi_min,
        nmi_max,
        ami_arithmetic,
        ami_geometric,
        ami_min,
        ami_max,
        ari: s.ari,
        homogeneity: s.homogeneity,
        completeness: s.completeness,
        v_measure: s.v_measure,
        pair_precision: s.pair_precision,
        pair_recall: s.pair_recall,
        pair_f1: s.pair_f1,
        mutual_info: s.mutual_info,
        expected_mutual_info: s.expected_mutual_info,
        entropy_true: s.entropy_true,
        entropy_pred: s.entropy_pred,
        n_samples: t.n,
        n_classes: t.row_sums.len(),
        n_clusters: t.col_sums.len(),
        matching,
    })
}

/// clustering_scores(labels_true, labels_pred, matching=True, ami=True) -> Scores (without
/// `matching`, `Scores.matching` is None; without `ami` the AMI entries are NaN).
#[pyfunction]
#[pyo3(signature = (labels_true, labels_pred, matching = true, ami = true))]
fn clustering_scores<'py>(
    py: Python<'py>,
    labels_true: Labels<'py>,
    labels_pred: Labels<'py>,
    matching: bool,
    ami: bool,
) -> PyResult<Scores> {
    let (a, b) = (labels_true.slice(), labels_pred.slice());
    let t = py.detach(|| contingency(&a, &b)).map_err(to_py)?;
    scores_to_py(py, &t, matching, ami)
}

/// scores_from_cells(rows, cols, counts, matching=True) -> Scores: the scores of the table with
/// these non-zero cells (row and column ids are arbitrary non-negative integers; empty rows and
/// columns vanish).
#[pyfunction]
#[pyo3(signature = (rows, cols, counts, matching = true))]
fn scores_from_cells<'py>(
    py: Python<'py>,
    rows: PyReadonlyArray1<'py, i64>,
    cols: PyReadonlyArray1<'py, i64>,
    counts: PyReadonlyArray1<'py, i64>,
    matching: bool,
) -> PyResult<Scores> {
    let (r, c, v) = (slice_1d(&rows), slice_1d(&cols), slice_1d(&counts));
    if r.len() != c.len() || r.len() != v.len() {
        return Err(invalid(
            "table",
            "rows, cols and counts of one length",
            format!("{}, {}, {}", r.len(), c.len(), v.len()),
        ));
    }
    if r.iter().chain(c.iter()).chain(v.iter()).any(|&x| x < 0) {
        return Err(invalid(
            "table",
            "non-negative indices and counts",
            "a negative value",
        ));
    }
    let cells: Vec<(u64, u64, u64)> = r
        .iter()
        .zip(c.iter())
        .zip(v.iter())
        .map(|((&a, &b), &x)| (a as u64, b as u64, x as u64))
        .collect();
    let t = py
        .detach(|| Contingency::from_cells(&cells))
        .map_err(to_py)?;
    scores_to_py(py, &t, matching, true)
}

/// A 2-D float array, borrowed from numpy without a copy when C-contiguous.
#[derive(FromPyObject)]
enum Features<'py> {
    F32(PyReadonlyArray2<'py, f32>),
    F64(PyReadonlyArray2<'py, f64>),
}

impl Features<'_> {
    fn dtype(&self) -> &'static str {
        match self {
            Features::F32(_) => "float32",
            Features::F64(_) => "float64",
        }
    }
}

fn slice_2d<'a, T: Element + Copy>(a: &'a PyReadonlyArray2<'_, T>) -> (Cow<'a, [T]>, usize, usize) {
    let shape = a.shape();
    let (n, d) = (shape[0], shape[1]);
    let s = match a.as_slice() {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(a.as_array().iter().copied().collect()),
    };
    (s, n, d)
}

fn neighbors_to_py<'py, T: Real + Element>(
    py: Python<'py>,
    r: knn::Neighbors<T>,
    m: usize,
) -> (Bound<'py, PyArray2<T>>, Bound<'py, PyArray2<i64>>) {
    let k = r.k;
    let dist = Array2::from_shape_vec((m, k), r.distances)
        .expect("m x k distances")
        .into_pyarray(py);
    let idx = Array2::from_shape_vec((m, k), r.indices)
        .expect("m x k indices")
        .into_pyarray(py);
    (dist, idx)
}

fn usize_arg(value: i64, name: &'static str, minimum: i64) -> PyResult<usize> {
    if value < minimum {
        return Err(invalid(
            name,
            format!("an int >= {minimum}"),
            format!("{value}"),
        ));
    }
    Ok(value as usize)
}

/// kneighbors(queries, bank, k, metric, exclude_self, index_offset, block_size, exclude_index)
///   -> (distances (m, k) in the input dtype, indices (m, k) int64), ascending.
#[pyfunction]
#[pyo3(signature = (queries, bank, k, metric = "l2", exclude_self = false, index_offset = 0, block_size = None, exclude_index = None))]
#[allow(clippy::too_many_arguments)]
fn kneighbors<'py>(
    py: Python<'py>,
    queries: Features<'py>,
    bank: Features<'py>,
    k: i64,
    metric: &str,
    exclude_self: bool,
    index_offset: i64,
    block_size: Option<i64>,
    exclude_index: Option<PyReadonlyArray1<'py, i64>>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyArray2<i64>>)> {
    let metric = Metric::parse(metric)
        .ok_or_else(|| invalid("metric", "one of 'l2', 'cosine'", format!("{metric:?}")))?;
    let k = usize_arg(k, "k", 1)?;
    let block_size = block_size
        .map(|b| usize_arg(b, "block_size", 1))
        .transpose()?;
    let exclude_indices = exclude_index.map(|a| slice_1d(&a).into_owned());
    let opt = KnnOptions {
        k,
        metric,
        exclude_self,
        exclude_indices,
        index_offset,
        block_size,
    };
    fn run<'py, T: Real + Element>(
        py: Python<'py>,
        q: &PyReadonlyArray2<'py, T>,
        b: &PyReadonlyArray2<'py, T>,
        opt: &KnnOptions,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyArray2<i64>>)> {
        let (qs, m, d) = slice_2d(q);
        let (bs, n, db) = slice_2d(b);
        if d != db {
            return Err(invalid(
                "bank",
                format!("{d} feature columns (as queries)"),
                format!("{db}"),
            ));
        }
        let r = py
            .detach(|| knn::kneighbors(&qs, m, &bs, n, d, opt))
            .map_err(to_py)?;
        let (dist, idx) = neighbors_to_py(py, r, m);
        Ok((dist.into_any(), idx))
    }
    match (&queries, &bank) {
        (Features::F32(q), Features::F32(b)) => run(py, q, b, &opt),
        (Features::F64(q), Features::F64(b)) => run(py, q, b, &opt),
        _ => Err(PyTypeError::new_err(format!(
            "bank: expected the dtype of queries ({}), got {}",
            queries.dtype(),
            bank.dtype()
        ))),
    }
}

type KMeansOut<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyAny>, f64, usize);

/// kmeans(x, n_clusters, n_init, max_iter, tol, seed, init) -> (labels int64, centroids (k, d)
/// in the dtype of x, inertia, n_iter)
#[pyfunction]
#[pyo3(signature = (x, n_clusters, n_init = 1, max_iter = 100, tol = 1e-4, seed = 0, init = None))]
#[allow(clippy::too_many_arguments)]
fn kmeans<'py>(
    py: Python<'py>,
    x: Features<'py>,
    n_clusters: i64,
    n_init: i64,
    max_iter: i64,
    tol: f64,
    seed: u64,
    init: Option<Features<'py>>,
) -> PyResult<KMeansOut<'py>> {
    let opt = KMeansOptions {
        n_clusters: usize_arg(n_clusters, "n_clusters", 1)?,
        n_init: usize_arg(n_init, "n_init", 1)?,
        max_iter: usize_arg(max_iter, "max_iter", 1)?,
        tol,
        seed,
    };
    fn run<'py, T: Real + Element>(
        py: Python<'py>,
        x: &PyReadonlyArray2<'py, T>,
        init: Option<&PyReadonlyArray2<'py, T>>,
        opt: &KMeansOptions,
    ) -> PyResult<KMeansOut<'py>> {
        let (xs, n, d) = slice_2d(x);
        let init = init.map(slice_2d);
        if let Some((_, ki, di)) = &init {
            if (*ki, *di) != (opt.n_clusters, d) {
                return Err(invalid(
                    "init",
                    format!("an array of shape ({}, {d})", opt.n_clusters),
                    format!("shape ({ki}, {di})"),
                ));
            }
        }
        let r = py
            .detach(|| km::kmeans(&xs, n, d, opt, init.as_ref().map(|(c, _, _)| c.as_ref())))
            .map_err(to_py)?;
        let k = opt.n_clusters;
        let centroids = Array2::from_shape_vec((k, d), r.centroids)
            .expect("k x d centroids")
            .into_pyarray(py);
        Ok((
            r.labels.into_pyarray(py),
            centroids.into_any(),
            r.inertia,
            r.n_iter,
        ))
    }
    match (&x, init.as_ref()) {
        (Features::F32(a), None) => run(py, a, None, &opt),
        (Features::F64(a), None) => run(py, a, None, &opt),
        (Features::F32(a), Some(Features::F32(c))) => run(py, a, Some(c), &opt),
        (Features::F64(a), Some(Features::F64(c))) => run(py, a, Some(c), &opt),
        (_, Some(c)) => Err(PyTypeError::new_err(format!(
            "init: expected the dtype of x ({}), got {}",
            x.dtype(),
            c.dtype()
        ))),
    }
}

/// A 2-D feature block as stored: float16 / bfloat16 bits (uint16), float32 or float64.
#[derive(FromPyObject)]
enum Stored<'py> {
    U16(PyReadonlyArray2<'py, u16>),
    F32(PyReadonlyArray2<'py, f32>),
    F64(PyReadonlyArray2<'py, f64>),
}

fn vec_1d<T: Element + Copy>(a: &PyReadonlyArray1<'_, T>) -> Vec<T> {
    slice_1d(a).into_owned()
}

/// A probe from Python: (scaler mean, scaler scale, coef (c, d), intercept (c,)).
type ProbeArrays<'py, T> = (
    PyReadonlyArray1<'py, T>,
    PyReadonlyArray1<'py, T>,
    PyReadonlyArray2<'py, T>,
    PyReadonlyArray1<'py, T>,
);

/// Options of `eval_chunk` in the compute dtype `T`.
struct ChunkArgs<'py, T: Element> {
    probe: Option<ProbeArrays<'py, T>>,
    centroids: Option<PyReadonlyArray2<'py, T>>,
    queries: Option<PyReadonlyArray2<'py, T>>,
}

fn extract_args<'py, T: Element>(
    probe: Option<&Bound<'py, PyAny>>,
    centroids: Option<&Bound<'py, PyAny>>,
    queries: Option<&Bound<'py, PyAny>>,
    dtype: &str,
) -> PyResult<ChunkArgs<'py, T>> {
    let wrong = |name: &str| {
        PyTypeError::new_err(format!(
            "{name}: expected {dtype} arrays (the compute dtype of x)"
        ))
    };
    Ok(ChunkArgs {
        probe: probe
            .map(|p| p.extract())
            .transpose()
            .map_err(|_| wrong("probe"))?,
        centroids: centroids
            .map(|p| p.extract())
            .transpose()
            .map_err(|_| wrong("centroids"))?,
        queries: queries
            .map(|p| p.extract())
            .transpose()
            .map_err(|_| wrong("knn_queries"))?,
    })
}

/// eval_chunk(x, kind, ...) -> dict: one streamed chunk of a feature bank (`crate::sweep`).
/// x: (n, d) uint16 (kind "f16" or "bf16"), float32 or float64 (kind "f32" / "f64"); the
/// models are in the compute dtype (float64 for float64 x, else float32), `alignment` in
/// float64.
#[pyfunction]
#[pyo3(signature = (x, kind, *, validate = true, moments = false, probe = None, centroids = None, alignment = None, knn_queries = None, knn_k = 5, knn_exclude = None, knn_offset = 0, block_size = None))]
#[allow(clippy::too_many_arguments)]
fn eval_chunk<'py>(
    py: Python<'py>,
    x: Stored<'py>,
    kind: &str,
    validate: bool,
    moments: bool,
    probe: Option<Bound<'py, PyAny>>,
    centroids: Option<Bound<'py, PyAny>>,
    alignment: Option<(
        PyReadonlyArray2<'py, f64>,
        bool,
        Option<PyReadonlyArray1<'py, f64>>,
    )>,
    knn_queries: Option<Bound<'py, PyAny>>,
    knn_k: i64,
    knn_exclude: Option<PyReadonlyArray1<'py, i64>>,
    knn_offset: i64,
    block_size: Option<i64>,
) -> PyResult<Bound<'py, PyDict>> {
    let knn_k = usize_arg(knn_k, "knn_k", 1)?;
    let block_size = block_size
        .map(|b| usize_arg(b, "block_size", 1))
        .transpose()?;
    let align = alignment.map(|(pt, complement, mean)| {
        let (v, p, _) = slice_2d(&pt);
        Alignment {
            proj_t: v.into_owned(),
            p,
            complement,
            mean: mean.map(|m| vec_1d(&m)),
        }
    });
    let exclude = knn_exclude.map(|e| vec_1d(&e));
    let (p, c, q) = (probe.as_ref(), centroids.as_ref(), knn_queries.as_ref());
    let out = PyDict::new(py);
    fn go<'py, T: Real + Element>(
        py: Python<'py>,
        raw: crate::float::Raw<'_>,
        n: usize,
        d: usize,
        args: ChunkArgs<'py, T>,
        validate: bool,
        moments: bool,
        align: Option<&Alignment>,
        knn: (usize, Option<&[i64]>, i64, Option<usize>),
        out: &Bound<'py, PyDict>,
    ) -> PyResult<()> {
        let probe = args.probe.as_ref().map(|(m, s, w, b)| Probe {
            mean: vec_1d(m),
            scale: vec_1d(s),
            coef: slice_2d(w).0.into_owned(),
            intercept: vec_1d(b),
        });
        let cent = args.centroids.as_ref().map(slice_2d);
        if let Some((_, _, dc)) = &cent {
            if *dc != d {
                return Err(invalid(
                    "centroids",
                    format!("{d} feature columns (as x)"),
                    format!("{dc}"),
                ));
            }
        }
        let qs = args.queries.as_ref().map(slice_2d);
        if let Some((_, _, dq)) = &qs {
            if *dq != d {
                return Err(invalid(
                    "knn_queries",
                    format!("{d} feature columns (as x)"),
                    format!("{dq}"),
                ));
            }
        }
        let job = ChunkJob {
            validate,
            moments,
            probe: probe.as_ref(),
            centroids: cent.as_ref().map(|(v, _, _)| v.as_ref()),
            alignment: align,
            knn: qs.as_ref().map(|(v, m, _)| KnnJob {
                queries: v.as_ref(),
                m: *m,
                k: knn.0,
                exclude: knn.1,
                offset: knn.2,
                block_size: knn.3,
            }),
        };
        let r = py
            .detach(|| sweep::eval_chunk(raw, n, d, &job))
            .map_err(to_py)?;
        out.set_item("bad_row", r.bad_row)?;
        if let Some(m) = r.moments {
            let m2 = Array2::from_shape_vec((d, d), m.m2)
                .expect("d x d")
                .into_pyarray(py);
            out.set_item("moments", (m.n, m.mean.into_pyarray(py), m2))?;
        } else {
            out.set_item("moments", py.None())?;
        }
        out.set_item(
            "probe_class",
            (!r.probe_class.is_empty()).then(|| r.probe_class.into_pyarray(py)),
        )?;
        out.set_item(
            "assign",
            (!r.assign.is_empty()).then(|| r.assign.into_pyarray(py)),
        )?;
        out.set_item("da_sum", r.da_sum)?;
        out.set_item("da_zero_rows", r.da_zero_rows)?;
        if let Some((_, m, _)) = &qs {
            let w = r.knn_width;
            let dist: Vec<T> = r.knn_dist.into_iter().map(T::from_f64).collect();
            let dist = Array2::from_shape_vec((*m, w), dist)
                .expect("m x w")
                .into_pyarray(py);
            let idx = Array2::from_shape_vec((*m, w), r.knn_idx)
                .expect("m x w")
                .into_pyarray(py);
            out.set_item("knn", (dist, idx))?;
        } else {
            out.set_item("knn", py.None())?;
        }
        Ok(())
    }
    let knn = (knn_k, exclude.as_deref(), knn_offset, block_size);
    macro_rules! stored {
        ($a:expr, $wrap:expr, $T:ty, $dt:expr) => {{
            let (v, n, d) = slice_2d($a);
            let args = extract_args::<$T>(p, c, q, $dt)?;
            go::<$T>(
                py,
                $wrap(v.as_ref()),
                n,
                d,
                args,
                validate,
                moments,
                align.as_ref(),
                knn,
                &out,
            )?;
        }};
    }
    match (&x, kind) {
        (Stored::U16(a), "f16") => stored!(a, crate::float::Raw::F16, f32, "float32"),
        (Stored::U16(a), "bf16") => stored!(a, crate::float::Raw::Bf16, f32, "float32"),
        (Stored::F32(a), "f32") => stored!(a, crate::float::Raw::F32, f32, "float32"),
        (Stored::F64(a), "f64") => stored!(a, crate::float::Raw::F64, f64, "float64"),
        _ => {
            return Err(invalid(
                "kind",
                "'f16' or 'bf16' for uint16 x, 'f32' for float32, 'f64' for float64",
                format!("{kind:?}"),
            ))
        }
    }
    Ok(out)
}

/// Number of threads of the engine's pool (rayon; RAYON_NUM_THREADS overrides).
#[pyfunction]
fn num_threads() -> usize {
    rayon::current_num_threads()
}

/// The SIMD level the engine's hand-vectorised loops run with ("avx512", "avx2" or "scalar").
#[pyfunction]
fn simd_level() -> &'static str {
    crate::simd::simd_level().name()
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Scores>()?;
    m.add_class::<Matching>()?;
    m.add_function(wrap_pyfunction!(normalized_mutual_info, m)?)?;
    m.add_function(wrap_pyfunction!(adjusted_mutual_info, m)?)?;
    m.add_function(wrap_pyfunction!(contingency_cells, m)?)?;
    m.add_function(wrap_pyfunction!(clustering_scores, m)?)?;
    m.add_function(wrap_pyfunction!(scores_from_cells, m)?)?;
    m.add_function(wrap_pyfunction!(kneighbors, m)?)?;
    m.add_function(wrap_pyfunction!(kmeans, m)?)?;
    m.add_function(wrap_pyfunction!(eval_chunk, m)?)?;
    m.add_function(wrap_pyfunction!(num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(simd_level, m)?)?;
    m.add_function(wrap_pyfunction!(challenge_epsilons, m)?)?;
    Ok(())
}

/// challenge_epsilons(unlearned (n, k_u) float64, retrained (n, k_r) float64, delta) -> (n,)
/// float64: the per-example epsilon of the NeurIPS 2023 unlearning challenge (`crate::audit`).
#[pyfunction]
#[pyo3(signature = (unlearned, retrained, delta = 1e-5))]
fn challenge_epsilons<'py>(
    py: Python<'py>,
    unlearned: PyReadonlyArray2<'py, f64>,
    retrained: PyReadonlyArray2<'py, f64>,
    delta: f64,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let (us, n, k_u) = slice_2d(&unlearned);
    let (rs, n_r, k_r) = slice_2d(&retrained);
    if n != n_r {
        return Err(invalid(
            "retrained",
            format!("{n} rows (as unlearned)"),
            format!("{n_r}"),
        ));
    }
    let out = py
        .detach(|| crate::audit::challenge_epsilons(&us, &rs, n, k_u, k_r, delta))
        .map_err(to_py)?;
    Ok(out.into_pyarray(py))
}
