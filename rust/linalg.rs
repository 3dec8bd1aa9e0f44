//! Dense helpers shared by k-means and k-NN: the float trait, the blocked GEMM call (the `gemm`
//! crate, runtime-dispatched to AVX-512 / AVX2+FMA kernels), column statistics with the finite
//! check, and the row transform (centre, power-of-two scale, optional unit norm) that keeps the
//! norm trick (|x - y|^2 = |x|^2 + |y|^2 - 2 x.y) accurate and overflow-free.

use crate::error::{CoreError, CoreResult};
use rayon::prelude::*;
use std::fmt::Debug;
use std::ops::{Add, Mul, Neg, Sub};

/// f32 or f64.
pub trait Real:
    Copy
    + Send
    + Sync
    + PartialOrd
    + Default
    + Debug
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Neg<Output = Self>
{
    const ZERO: Self;
    const ONE: Self;
    const INFINITY: Self;
    /// Exponent range (powers of two) inside which the transformed data is kept: values are
    /// scaled so that the largest magnitude is in [0.5, 1].
    const NAME: &'static str;
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
    fn is_finite(self) -> bool;
    /// Finite, and small enough that squares and sums of squares stay finite in f64
    /// (|v| <= 1e150 for f64; any finite f32).
    fn magnitude_ok(self) -> bool;
    fn min(self, other: Self) -> Self;
}

/// The largest magnitude accepted in float64 input.
pub const MAX_MAGNITUDE_F64: f64 = 1e150;

impl Real for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const INFINITY: Self = f32::INFINITY;
    const NAME: &'static str = "float32";
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
    #[inline(always)]
    fn magnitude_ok(self) -> bool {
        f32::is_finite(self)
    }
    #[inline(always)]
    fn min(self, other: Self) -> Self {
        if other < self {
            other
        } else {
            self
        }
    }
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const INFINITY: Self = f64::INFINITY;
    const NAME: &'static str = "float64";
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
    #[inline(always)]
    fn magnitude_ok(self) -> bool {
        self.abs() <= MAX_MAGNITUDE_F64
    }
    #[inline(always)]
    fn min(self, other: Self) -> Self {
        if other < self {
            other
        } else {
            self
        }
    }
}

/// Which SIMD level the hand-vectorised loops were compiled for at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Simd {
    Avx512,
    Avx2,
    Scalar,
}

pub fn simd_level() -> Simd {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static LEVEL: OnceLock<Simd> = OnceLock::new();
        *LEVEL.get_or_init(|| {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("avx512dq")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("fma")
            {
                Simd::Avx512
            } else if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                Simd::Avx2
            } else {
                Simd::Scalar
            }
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Simd::Scalar
    }
}

/// Defines `$name` dispatching at run time to copies of the `#[inline(always)]` function
/// `$body` compiled with AVX-512 or AVX2+FMA enabled (LLVM vectorises the lane loops), or the
/// baseline build.
macro_rules! dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident<$T:ident: Real>($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:ident) => {
        $(#[$meta])*
        $vis fn $name<$T: $crate::linalg::Real>($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma,bmi1,bmi2,popcnt")]
                unsafe fn v4<$T: $crate::linalg::Real>($($arg: $ty),*) $(-> $ret)? { $body::<$T>($($arg),*) }
                #[target_feature(enable = "avx2,fma,bmi1,bmi2,popcnt")]
                unsafe fn v3<$T: $crate::linalg::Real>($($arg: $ty),*) $(-> $ret)? { $body::<$T>($($arg),*) }
                match $crate::linalg::simd_level() {
                    // SAFETY: the CPU supports the features these copies were compiled with.
                    $crate::linalg::Simd::Avx512 => return unsafe { v4::<$T>($($arg),*) },
                    $crate::linalg::Simd::Avx2 => return unsafe { v3::<$T>($($arg),*) },
                    $crate::linalg::Simd::Scalar => {}
                }
            }
            $body::<$T>($($arg),*)
        }
    };
}
pub(crate) use dispatch;

/// Lanes of the hand-unrolled SIMD loops.
pub const LANES: usize = 16;

/// `out[i * ldo + j] = sum_t a[i * d + t] * b[j * d + t]` for i < m, j < n: A (m x d) times the
/// transpose of B (n x d), both row-major, into a row-major tile. Single-threaded (the callers
/// parallelise over tiles, which keeps results independent of the thread count).
pub fn gemm_abt<T: Real>(
    m: usize,
    n: usize,
    d: usize,
    a: &[T],
    b: &[T],
    out: &mut [T],
    ldo: usize,
) {
    assert!(a.len() >= m * d && b.len() >= n * d);
    assert!(m == 0 || out.len() >= (m - 1) * ldo + n);
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the asserts above bound every element gemm reads (A: m x d with row stride d,
    // B^T: d x n with column stride d) and writes (m x n with row stride ldo).
    unsafe {
        gemm::gemm(
            m,
            n,
            d,
            out.as_mut_ptr(),
            1,
            ldo as isize,
            false,
            a.as_ptr(),
            1,
            d as isize,
            b.as_ptr(),
            d as isize,
            1,
            T::ZERO,
            T::ONE,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

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
    /// Rows are divided by their norm (cosine); zero rows stay zero.
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
        if unit {
            if total > 0.0 {
                let inv = T::from_f64(1.0 / total.sqrt());
                o.iter_mut().for_each(|v| *v = *v * inv);
                *nrm = T::ONE;
            } else {
                *nrm = T::ZERO;
            }
        } else {
            *nrm = T::from_f64(total);
        }
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

/// Exact squared Euclidean distance in f64 (lane-wise partial sums; vectorised where inlined
/// into a SIMD-dispatched caller).
#[inline(always)]
pub fn sq_dist_f64<T: Real>(a: &[T], b: &[T]) -> f64 {
    let mut acc = [0f64; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for t in 0..8 {
            let dd = x[t].to_f64() - y[t].to_f64();
            acc[t] += dd * dd;
        }
    }
    let mut s = 0f64;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        let dd = x.to_f64() - y.to_f64();
        s += dd * dd;
    }
    s + acc.iter().sum::<f64>()
}

#[inline(always)]
fn sum_sq_dist_impl<T: Real>(rows: &[T], d: usize, labels: &[u32], centroids: &[T]) -> f64 {
    rows.chunks_exact(d)
        .zip(labels)
        .map(|(row, &l)| sq_dist_f64(row, &centroids[l as usize * d..(l as usize + 1) * d]))
        .sum()
}

dispatch! {
    /// Sum over rows of the exact squared distance to the centroid of the row's label.
    pub fn sum_sq_dist<T: Real>(rows: &[T], d: usize, labels: &[u32], centroids: &[T]) -> f64 => sum_sq_dist_impl
}

/// Exact cosine distance 1 - a.b / (|a| |b|) in f64, clamped to [0, 2]; 1 when a row is zero.
/// Each row is first scaled by a power of two near its largest magnitude (exact), so that
/// neither huge nor tiny rows overflow or underflow the sums of squares.
#[inline]
pub fn cosine_dist_f64<T: Real>(a: &[T], b: &[T]) -> f64 {
    let amax = a.iter().fold(0f64, |m, v| m.max(v.to_f64().abs()));
    let bmax = b.iter().fold(0f64, |m, v| m.max(v.to_f64().abs()));
    if amax == 0.0 || bmax == 0.0 {
        return 1.0;
    }
    let (sa, sb) = (pow2_scale(amax), pow2_scale(bmax));
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (x.to_f64() * sa, y.to_f64() * sb);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    (1.0 - ab / (aa.sqrt() * bb.sqrt())).clamp(0.0, 2.0)
}

#[inline(always)]
fn argmin_row_impl<T: Real>(vals: &[T]) -> (usize, T) {
    // Pass 1: vectorised lane-wise minimum; pass 2: first index that holds it.
    let mut acc = [T::INFINITY; LANES];
    let mut chunks = vals.chunks_exact(LANES);
    for c in &mut chunks {
        for t in 0..LANES {
            acc[t] = acc[t].min(c[t]);
        }
    }
    let mut best = T::INFINITY;
    for &v in acc.iter().chain(chunks.remainder()) {
        best = best.min(v);
    }
    let idx = vals.iter().position(|&v| v == best).unwrap_or(0);
    (idx, best)
}

dispatch! {
    /// (first index of the minimum, minimum) of a non-empty finite row.
    pub fn argmin_row<T: Real>(vals: &[T]) -> (usize, T) => argmin_row_impl
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemm_matches_a_naive_product() {
        let (m, n, d) = (37, 53, 29);
        let a: Vec<f32> = (0..m * d).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let b: Vec<f32> = (0..n * d).map(|i| ((i * 5) % 13) as f32 - 6.0).collect();
        let ldo = n + 3;
        let mut out = vec![0f32; m * ldo];
        gemm_abt(m, n, d, &a, &b, &mut out, ldo);
        for i in 0..m {
            for j in 0..n {
                let naive: f32 = (0..d).map(|t| a[i * d + t] * b[j * d + t]).sum();
                assert_eq!(out[i * ldo + j], naive);
            }
        }
        let a64: Vec<f64> = a.iter().map(|&v| v as f64).collect();
        let b64: Vec<f64> = b.iter().map(|&v| v as f64).collect();
        let mut out64 = vec![0f64; m * n];
        gemm_abt(m, n, d, &a64, &b64, &mut out64, n);
        assert_eq!(
            out64[5 * n + 7],
            (0..d).map(|t| a64[5 * d + t] * b64[7 * d + t]).sum::<f64>()
        );
    }

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
    fn argmin_takes_the_first_minimum() {
        let v: Vec<f32> = (0..100).map(|i| ((i * 37) % 17) as f32).collect();
        assert_eq!(argmin_row(&v), (0, 0.0));
        let mut w = vec![3.0f64; 45];
        w[33] = -1.0;
        w[40] = -1.0;
        assert_eq!(argmin_row(&w), (33, -1.0));
    }

    #[test]
    fn exact_distances() {
        assert_eq!(sq_dist_f64(&[1f32, 2.0, 3.0], &[1.0, 0.0, 0.0]), 13.0);
        assert_eq!(cosine_dist_f64(&[0f32, 0.0], &[1.0, 0.0]), 1.0);
        assert!(
            (cosine_dist_f64(&[1e-300f64, 0.0], &[1e140, 1e140]) - (1.0 - 0.5f64.sqrt())).abs()
                < 1e-15
        );
        assert!(cosine_dist_f64(&[3e38f32, 3e38], &[1e-40, 0.0]).is_finite());
        assert!((cosine_dist_f64(&[1f64, 0.0], &[-2.0, 0.0]) - 2.0).abs() < 1e-15);
        assert_eq!(pow2_scale(3.0), 0.25);
        assert_eq!(pow2_scale(0.0), 1.0);
    }
}
