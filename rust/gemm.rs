//! The one dense product of the engine: A B^T on row-major blocks, through the `gemm` crate
//! (runtime-dispatched AVX-512 / AVX2+FMA kernels), single-threaded so that the callers'
//! parallel split (and so every result) does not depend on the number of threads.

use crate::float::Real;

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

/// `out (d x d) = Z^T Z` for Z (r x d) row-major (the co-moment of r centred rows), by the same
/// single-threaded kernel reading Z through strides (no transposed copy).
pub fn gemm_ata<T: Real>(r: usize, d: usize, z: &[T], out: &mut [T]) {
    assert!(z.len() >= r * d && out.len() >= d * d);
    if r == 0 || d == 0 {
        out[..d * d].iter_mut().for_each(|v| *v = T::ZERO);
        return;
    }
    // SAFETY: lhs = Z^T (d x r: element (i, t) at t * d + i), rhs = Z (r x d: element (t, j) at
    // t * d + j), dst d x d row-major; the assert bounds every access.
    unsafe {
        gemm::gemm(
            d,
            d,
            r,
            out.as_mut_ptr(),
            1,
            d as isize,
            false,
            z.as_ptr(),
            d as isize,
            1,
            z.as_ptr(),
            1,
            d as isize,
            T::ZERO,
            T::ONE,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn gemm_matches_a_naive_product() {
        // Small integers: every product and sum is exact in f32, so any summation order agrees.
        let (m, n, d) = (37, 53, 29);
        let mut rng = Rng::new(11);
        let a: Vec<f32> = (0..m * d).map(|_| rng.below(11) as f32 - 5.0).collect();
        let b: Vec<f32> = (0..n * d).map(|_| rng.below(13) as f32 - 6.0).collect();
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
        let mut ata = vec![0f64; d * d];
        gemm_ata(m, d, &a64, &mut ata);
        for i in 0..d {
            for j in 0..d {
                let naive: f64 = (0..m).map(|t| a64[t * d + i] * a64[t * d + j]).sum();
                assert_eq!(ata[i * d + j], naive);
            }
        }
        assert_eq!(
            out64[5 * n + 7],
            (0..d).map(|t| a64[5 * d + t] * b64[7 * d + t]).sum::<f64>()
        );
    }
}
