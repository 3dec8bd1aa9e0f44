//! Exact distances in f64 from the original rows: what k-NN ranks by and k-means reports as
//! inertia. Summation orders are fixed (lane-wise partial sums, then in order), so a distance
//! is the same number wherever it is computed.

use crate::float::Real;
use crate::simd::dispatch;
use crate::transform::pow2_scale;

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

#[cfg(test)]
mod tests {
    use super::*;

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
        let rows = [0f64, 0.0, 3.0, 4.0, 1.0, 1.0];
        let centroids = [0f64, 0.0, 1.0, 0.0];
        assert_eq!(
            sum_sq_dist(&rows, 2, &[0, 0, 1], &centroids),
            0.0 + 25.0 + 1.0
        );
    }
}
