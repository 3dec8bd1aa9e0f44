//! unlearnkit-core: the evaluation engine behind `unlearnkit.metrics`.
//!
//! Everything except `bindings` is pure Rust (no PyO3 types) and is tested by `cargo test`
//! without a Python interpreter. `bindings` is the one thin layer that converts numpy arrays,
//! releases the GIL and maps errors to Python exceptions; it only exists with the `python`
//! feature, which maturin enables.

pub mod contingency;
pub mod error;
pub mod scores;

#[cfg(feature = "python")]
mod bindings;
