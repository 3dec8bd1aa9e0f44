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
//! * shared dense helpers, one concern each: `float` (the f32/f64 trait with its rounding
//!   unit and safe range), `simd` (run-time dispatch of the lane loops), `gemm` (the blocked
//!   A B^T), `transform` (column statistics, finite check, centre/scale/normalise rows),
//!   `distance` (exact f64 distances); `rng` (portable seeded generator);
//! * `sweep`: one chunk of a feature bank as `unlearnkit eval` evaluates it (upcast per slab,
//!   row metrics per tile, all k-NN queries in one blocked search).

pub mod audit;
pub mod contingency;
pub mod distance;
pub mod error;
pub mod float;
pub mod gemm;
pub mod kmeans;
pub mod knn;
pub mod rng;
pub mod scores;
pub mod simd;
pub mod sweep;
pub mod transform;

#[cfg(feature = "python")]
mod bindings;
