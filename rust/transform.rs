//! Column statistics with the finite check, and the row transform applied before the GEMM
//! (centre on the column means, scale by a power of two, optionally normalise to unit norm).
//!
//! Invariants: the transform only serves the ranking (k-NN and k-means recompute distances
//! exactly from the original rows); centring keeps the norm trick
//! |x - y|^2 = |x|^2 + |y|^2 - 2 x.y accurate for data far from the origin, and the power-of-two
//! scale (exact) keeps squared norms away from overflow and subnormals. Every pass reduces
//! fixed-size chunks in order, so results do not depend on the number of threads.

use crate::error::{CoreError, CoreResult};
use crate::float::{Real, MAX_MAGNITUDE_F64};
use crate::simd::{dispatch, LANES};
use rayon::prelude::*;

/// Validates a row-major (n x d) array: length, at least `min_rows` rows, d >= 1.
pub fn check_shape<T>(
    x: &[T],
    n: usize,
    d: usize,
    name: &'static str,
    min_rows: usize,
) -> CoreResult<()> {
    if d == 0 {
        return Err(CoreError::invalid(
            name,
            "at least one feature column",
            format!("shape ({n}, 0)"),
        ));
    }
    if n < min_rows {
        return Err(CoreError::invalid(
            name,
            format!("at least {min_rows} row(s)"),
            format!("{n} row(s)"),
        ));
    }
    if x.len() != n * d {
        return Err(CoreError::invalid(
            name,
            format!("{} values for shape ({n}, {d})", n * d),
            format!("{}", x.len()),
        ));
    }
    Ok(())
}

/// Rows per work item in the statistics passes (fixed: sums are reduced in chunk order, so the
/// results do not depend on the number of threads).
const STAT_ROWS: usize = 2048;

/// Column statistics of a row-major (n x d) array.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Column means.
    pub mean: Vec<f64>,
    /// Mean over columns of the column variances (population variance), as sklearn's tolerance.
    pub mean_var: f64,
    /// An upper bound (within a factor 2) of max |x_ij - mean_j|.
    pub max_dev: f64,
}

/// The error for row `row` (global index) of `name`, holding `values`, which failed the check.
fn bad_row<T: Real>(name: &'static str, row: usize, values: &[T]) -> CoreError {
    match values.iter().find(|v| v.is_finite() && !v.magnitude_ok()) {
        Some(v) if values.iter().all(|v| v.is_finite()) => CoreError::invalid(
            name,
            format!("values of magnitude at most {MAX_MAGNITUDE_F64:e} (squared distances must stay finite in float64)"),
            format!("{:e} in row {row}", v.to_f64()),
        ),
        _ => CoreError::invalid(name, "finite values", format!("NaN or Inf in row {row}")),
    }
}

/// Adds one chunk of rows into per-column sums of y = x - shift, of y^2 and max |y|; returns
/// the index (in the chunk) of the first row holding NaN/Inf.
#[inline(always)]
fn stats_chunk_impl<T: Real>(
    chunk: &[T],
    d: usize,
    shift: &[f64],
    s1: &mut [f64],
    s2: &mut [f64],
    mx: &mut [f64],
) -> Option<usize> {
    for (ri, row) in chunk.chunks_exact(d).enumerate() {
        let mut bad = 0u32;
        for ((((&v, &sh), a), b), m) in row
            .iter()
            .zip(shift)
            .zip(s1.iter_mut())
            .zip(s2.iter_mut())
            .zip(mx.iter_mut())
        {
            bad |= (!v.magnitude_ok()) as u32;
            let y = v.to_f64() - sh;
            *a += y;
            *b += y * y;
            let ay = y.abs();
            *m = if ay > *m { ay } else { *m };
        }
        if bad != 0 {
            return Some(ri);
        }
    }
    None
}

dispatch! {
    fn stats_chunk<T: Real>(chunk: &[T], d: usize, shift: &[f64], s1: &mut [f64], s2: &mut [f64], mx: &mut [f64]) -> Option<usize> => stats_chunk_impl
}

/// One parallel pass: the finite check and shifted sums (shift = first row, which keeps the
/// one-pass variance accurate when the data sit far from the origin).
pub fn column_stats<T: Real>(x: &[T], n: usize, d: usize, name: &'static str) -> CoreResult<Stats> {
    let shift: Vec<f64> = x[..d].iter().map(|v| v.to_f64()).collect();
    type Part = CoreResult<(Vec<f64>, Vec<f64>, f64)>;
    let parts: Vec<Part> = x
        .par_chunks(STAT_ROWS * d)
        .enumerate()
        .map(|(ci, chunk)| {
            let mut s1 = vec![0f64; d];
            let mut s2 = vec![0f64; d];
            let mut mx = vec![0f64; d];
            if let Some(ri) = stats_chunk(chunk, d, &shift, &mut s1, &mut s2, &mut mx) {
                return Err(bad_row(
                    name,
                    ci * STAT_ROWS + ri,
                    &chunk[ri * d..(ri + 1) * d],
                ));
            }
            Ok((s1, s2, mx.iter().fold(0f64, |a, &b| a.max(b))))
        })
        .collect();
    let mut s1 = vec![0f64; d];
    let mut s2 = vec![0f64; d];
    let mut dev = 0f64;
    for p in parts {
        let (a, b, m) = p?;
        s1.iter_mut().zip(&a).for_each(|(x, y)| *x += y);
        s2.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
        dev = dev.max(m);
    }
    let nf = n as f64;
    let mut mean = vec![0f64; d];
    let mut var_sum = 0f64;
    let mut shift_dev = 0f64;
    for j in 0..d {
        let m1 = s1[j] / nf;
        mean[j] = shift[j] + m1;
        var_sum += (s2[j] / nf - m1 * m1).max(0.0);
        shift_dev = shift_dev.max(m1.abs());
    }
    Ok(Stats {
        mean,
        mean_var: var_sum / d as f64,
        max_dev: dev + shift_dev,
    })
}

#[inline(always)]
fn deviation_chunk_impl<T: Real>(
    chunk: &[T],
    d: usize,
    center: &[f64],
    mx: &mut [f64],
) -> Option<usize> {
    for (ri, row) in chunk.chunks_exact(d).enumerate() {
        let mut bad = 0u32;
        for ((&v, &c), m) in row.iter().zip(center).zip(mx.iter_mut()) {
            bad |= (!v.magnitude_ok()) as u32;
            let ay = (v.to_f64() - c).abs();
            *m = if ay > *m { ay } else { *m };
        }
        if bad != 0 {
            return Some(ri);
        }
    }
    None
}

dispatch! {
    fn deviation_chunk<T: Real>(chunk: &[T], d: usize, center: &[f64], mx: &mut [f64]) -> Option<usize> => deviation_chunk_impl
}

/// One parallel pass: the finite check and max |x_ij - center_j| (center = 0 when `None`).
pub fn max_deviation<T: Real>(
    x: &[T],
    d: usize,
    center: Option<&[f64]>,
    name: &'static str,
) -> CoreResult<f64> {
    let zeros = vec![0f64; d];
    let center = center.unwrap_or(&zeros);
    let parts: Vec<CoreResult<f64>> = x
        .par_chunks(STAT_ROWS * d)
        .enumerate()
        .map(|(ci, chunk)| {
            let mut mx = vec![0f64; d];
            if let Some(ri) = deviation_chunk(chunk, d, center, &mut mx) {
                return Err(bad_row(
                    name,
                    ci * STAT_ROWS + ri,
                    &chunk[ri * d..(ri + 1) * d],
                ));
            }
            Ok(mx.iter().fold(0f64, |a, &b| a.max(b)))
        })
        .collect();
    let mut dev = 0f64;
    for p in parts {
        dev = dev.max(p?);
    }
    Ok(dev)
}

/// The power of two that brings `max_dev` into [0.5, 1] (1 when `max_dev` is 0).
pub fn pow2_scale(max_dev: f64) -> f64 {
    if max_dev > 0.0 && max_dev.is_finite() {
        let e = max_dev.log2().ceil() as i32;
        2f64.powi(-e.clamp(-1000, 1000))
    } else {
        1.0
    }
}

/// How rows are transformed before the GEMM (distances are later recomputed exactly on the
/// original data, so the transform only serves the ranking).
#[derive(Debug, Clone)]
pub struct Transform<T: Real> {
    /// Subtracted from every row (squared L2 is translation invariant).
    pub center: Option<Vec<T>>,
    /// Power-of-two factor (exact) applied after centring.
    pub scale: T,
    /// Rows are divided by their norm (cosine; `scale` is then not used, each row is scaled
    /// by its own power of two first); zero rows stay zero.
    pub unit: bool,
}

impl<T: Real> Transform<T> {
    /// No centring, no scaling, no normalisation: rows can be used as they are.
    pub fn is_identity(&self) -> bool {
        self.center.is_none() && self.scale == T::ONE && !self.unit
    }

    /// `dst = transform(src)` row by row; `norms[i]` = squared norm of the transformed row i
    /// (0 or 1 for unit rows).
    pub fn apply(&self, src: &[T], d: usize, dst: &mut [T], norms: &mut [T]) {
        transform_rows(
            src,
            d,
            self.center.as_deref(),
            self.scale,
            self.unit,
            dst,
            norms,
        )
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn transform_rows_impl<T: Real>(
    src: &[T],
    d: usize,
    center: Option<&[T]>,
    scale: T,
    unit: bool,
    dst: &mut [T],
    norms: &mut [T],
) {
    let zeros = vec![T::ZERO; if center.is_none() { d } else { 0 }];
    let c = center.unwrap_or(&zeros);
    if unit {
        unit_rows(src, d, c, dst, norms);
        return;
    }
    for ((s, o), nrm) in src
        .chunks_exact(d)
        .zip(dst.chunks_exact_mut(d))
        .zip(norms.iter_mut())
    {
        // Lane-wise partial sums of squares (vectorised), added in f64 at the end.
        let mut acc = [T::ZERO; LANES];
        let mut oc = o.chunks_exact_mut(LANES);
        let mut sc = s.chunks_exact(LANES);
        let mut cc = c.chunks_exact(LANES);
        for ((ov, sv), cv) in (&mut oc).zip(&mut sc).zip(&mut cc) {
            for t in 0..LANES {
                let y = (sv[t] - cv[t]) * scale;
                ov[t] = y;
                acc[t] = acc[t] + y * y;
            }
        }
        let mut total = 0f64;
        for ((ov, &sv), &cv) in oc
            .into_remainder()
            .iter_mut()
            .zip(sc.remainder())
            .zip(cc.remainder())
        {
            let y = (sv - cv) * scale;
            *ov = y;
            total += y.to_f64() * y.to_f64();
        }
        total += acc.iter().map(|v| v.to_f64()).sum::<f64>();
        *nrm = T::from_f64(total);
    }
}

/// Unit rows: each centred row is scaled by its own power of two (exact, in f64) before its
/// norm is taken, so that a row far smaller than the largest one (which sets the common
/// `scale`) is neither flushed to subnormals nor overflowed by 1/norm; one rounding to T per
/// value. Zero rows stay zero (norm 0).
#[inline(always)]
fn unit_rows<T: Real>(src: &[T], d: usize, c: &[T], dst: &mut [T], norms: &mut [T]) {
    for ((s, o), nrm) in src
        .chunks_exact(d)
        .zip(dst.chunks_exact_mut(d))
        .zip(norms.iter_mut())
    {
        let mut top = 0f64;
        for ((ov, &sv), &cv) in o.iter_mut().zip(s).zip(c) {
            let y = sv - cv;
            *ov = y;
            top = top.max(y.to_f64().abs());
        }
        if top == 0.0 {
            *nrm = T::ZERO;
            continue;
        }
        let sc = pow2_scale(top);
        let total: f64 = o
            .iter()
            .map(|v| {
                let y = v.to_f64() * sc;
                y * y
            })
            .sum();
        let inv = sc / total.sqrt();
        o.iter_mut()
            .for_each(|v| *v = T::from_f64(v.to_f64() * inv));
        *nrm = T::ONE;
    }
}

dispatch! {
    #[allow(clippy::too_many_arguments)]
    fn transform_rows<T: Real>(src: &[T], d: usize, center: Option<&[T]>, scale: T, unit: bool, dst: &mut [T], norms: &mut [T]) => transform_rows_impl
}

/// Squared norms of rows (vectorised lane sums, added in f64).
#[inline(always)]
fn row_norms_impl<T: Real>(src: &[T], d: usize, norms: &mut [T]) {
    for (s, nrm) in src.chunks_exact(d).zip(norms.iter_mut()) {
        let mut acc = [T::ZERO; LANES];
        let mut sc = s.chunks_exact(LANES);
        for sv in &mut sc {
            for t in 0..LANES {
                acc[t] = acc[t] + sv[t] * sv[t];
            }
        }
        let mut total: f64 = sc.remainder().iter().map(|v| v.to_f64() * v.to_f64()).sum();
        total += acc.iter().map(|v| v.to_f64()).sum::<f64>();
        *nrm = T::from_f64(total);
    }
}

dispatch! {
    pub fn row_norms<T: Real>(src: &[T], d: usize, norms: &mut [T]) => row_norms_impl
}

/// Whether data whose largest magnitude is `top` can enter the GEMM unscaled in precision `T`.
pub fn in_safe_range<T: Real>(top: f64) -> bool {
    top == 0.0 || (top >= T::SAFE_RANGE.0 && top <= T::SAFE_RANGE.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_and_finite_check() {
        let x = vec![1e9f32, 1.0, 1e9 + 64.0, 3.0, 1e9 - 64.0, 5.0];
        let s = column_stats(&x, 3, 2, "x").unwrap();
        assert!((s.mean[0] - 1e9).abs() < 1e-6 && (s.mean[1] - 3.0).abs() < 1e-12);
        let var0 = (64.0f64 * 64.0 * 2.0) / 3.0;
        assert!((s.mean_var - (var0 + 8.0 / 3.0) / 2.0).abs() < 1e-9);
        assert!(s.max_dev >= 64.0 && s.max_dev <= 256.0);
        let bad = vec![0f32, 1.0, f32::NAN, 0.0];
        let err = column_stats(&bad, 2, 2, "bank").unwrap_err().to_string();
        assert!(err.starts_with("bank") && err.contains("row 1"), "{err}");
        let huge = vec![0f64, 1.0, 3e200, 0.0];
        let err = column_stats(&huge, 2, 2, "x").unwrap_err().to_string();
        assert!(
            err.contains("magnitude") && err.contains("3e200 in row 1"),
            "{err}"
        );
        let err = max_deviation(&huge, 2, None, "queries")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("queries") && err.contains("magnitude"),
            "{err}"
        );
        assert!(max_deviation(&[3e38f32, -3e38], 1, None, "q").is_ok());
        let err = max_deviation(&[0f64, f64::INFINITY], 1, None, "queries")
            .unwrap_err()
            .to_string();
        assert!(err.contains("row 1"));
    }

    #[test]
    fn transform_centres_scales_and_normalises() {
        let src = [3.0f64, 4.0, 0.0, 0.0, 1.0, 1.0];
        let tf = Transform {
            center: Some(vec![1.0, 0.0]),
            scale: 0.5,
            unit: false,
        };
        let (mut dst, mut norms) = ([0f64; 6], [0f64; 3]);
        tf.apply(&src, 2, &mut dst, &mut norms);
        assert_eq!(dst, [1.0, 2.0, -0.5, 0.0, 0.0, 0.5]);
        assert_eq!(norms, [5.0, 0.25, 0.25]);
        let unit = Transform {
            center: None,
            scale: 1.0f64,
            unit: true,
        };
        assert!(!unit.is_identity());
        unit.apply(&src, 2, &mut dst, &mut norms);
        // x * (1 / |x|): within an ulp of the quotient.
        assert!((dst[0] - 0.6).abs() < 1e-15 && (dst[1] - 0.8).abs() < 1e-15);
        assert_eq!(&dst[2..4], &[0.0, 0.0]);
        assert_eq!(norms, [1.0, 0.0, 1.0]);
        // A row 2^-128 times smaller than the largest, in f32 (the common scale would have
        // made it subnormal and its 1/norm infinite).
        let rows = [3.0e38f32, -0.13, 0.64, 0.3457, 0.822, 0.3303];
        let tf32 = Transform {
            center: None,
            scale: 2f32.powi(-127) / 2.0,
            unit: true,
        };
        let (mut d32, mut n32) = ([0f32; 6], [0f32; 2]);
        tf32.apply(&rows, 3, &mut d32, &mut n32);
        assert!(
            d32.iter().all(|v| v.is_finite()) && n32 == [1.0, 1.0],
            "{d32:?}"
        );
        let q = [0.3457f64, 0.822, 0.3303];
        let qn = q.iter().map(|v| v * v).sum::<f64>().sqrt();
        for (g, w) in d32[3..].iter().zip(q) {
            assert!((*g as f64 - w / qn).abs() < 1e-7);
        }
        let mut rn = [0f64; 3];
        row_norms(&src, 2, &mut rn);
        assert_eq!(rn, [25.0, 0.0, 2.0]);
        assert_eq!(pow2_scale(3.0), 0.25);
        assert_eq!(pow2_scale(0.0), 1.0);
        assert!(
            in_safe_range::<f32>(1.0) && !in_safe_range::<f32>(1e10) && in_safe_range::<f64>(1e10)
        );
    }
}
