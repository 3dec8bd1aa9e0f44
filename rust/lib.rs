//! unlearnkit-core: the evaluation engine behind `unlearnkit.metrics`.
//!
//! Everything except `bindings` is pure Rust (no PyO3 types) and is tested by `cargo test`
//! without a Python interpreter. `bindings` is the one thin layer that converts numpy arrays,
//! releases the GIL and maps errors to Python exceptions; it only exists with the `python`
//! feature, which maturin enables.
//!
//! * `contingency`: the table of two labelings (parallel, dense or hashed);
//! * `scores`: NMI (4 averages), AMI, ARI, homogeneity/completeness/V, pair P/R/F1, and the
//!   decomposition of the Hungarian matching;
//! * `kmeans`: k-means++ and Lloyd over blocked GEMM;
//! * `knn`: exact k nearest neighbours over blocked GEMM with exact re-ranking;
//! * `linalg`, `rng`: shared helpers.

pub mod contingency;
pub mod error;
pub mod kmeans;
pub mod knn;
pub mod linalg;
pub mod rng;
pub mod scores;

#[cfg(feature = "python")]
mod bindings;
