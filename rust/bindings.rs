//! The one PyO3 layer: numpy in (zero-copy for C-contiguous int32/int64), GIL released while
//! the core computes, core errors raised as Python `ValueError`.

use numpy::PyReadonlyArray1;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::contingency::Contingency;
use crate::error::CoreError;
use crate::scores::{self, AverageMethod};

fn to_py(err: CoreError) -> PyErr {
    PyValueError::new_err(err.to_string())
}

/// A 1-D integer label array, borrowed from numpy without a copy.
#[derive(FromPyObject)]
enum Labels<'py> {
    I64(PyReadonlyArray1<'py, i64>),
    I32(PyReadonlyArray1<'py, i32>),
}

impl Labels<'_> {
    fn slice(&self, name: &'static str) -> PyResult<LabelSlice<'_>> {
        let not_contiguous = |_| to_py(CoreError::invalid(name, "a C-contiguous array", "a strided view"));
        Ok(match self {
            Labels::I64(a) => LabelSlice::I64(a.as_slice().map_err(not_contiguous)?),
            Labels::I32(a) => LabelSlice::I32(a.as_slice().map_err(not_contiguous)?),
        })
    }
}

enum LabelSlice<'a> {
    I64(&'a [i64]),
    I32(&'a [i32]),
}

fn contingency(a: &LabelSlice<'_>, b: &LabelSlice<'_>) -> Result<Contingency, CoreError> {
    use LabelSlice::*;
    match (a, b) {
        (I64(a), I64(b)) => Contingency::new(a, b),
        (I64(a), I32(b)) => Contingency::new(a, b),
        (I32(a), I64(b)) => Contingency::new(a, b),
        (I32(a), I32(b)) => Contingency::new(a, b),
    }
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
    let average = AverageMethod::parse(average_method).ok_or_else(|| {
        to_py(CoreError::invalid(
            "average_method",
            "one of 'arithmetic', 'geometric', 'min', 'max'",
            format!("{average_method:?}"),
        ))
    })?;
    let a = labels_true.slice("labels_true")?;
    let b = labels_pred.slice("labels_pred")?;
    py.detach(|| contingency(&a, &b).map(|t| scores::normalized_mutual_info(&t, average)))
        .map_err(to_py)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(normalized_mutual_info, m)?)?;
    Ok(())
}
