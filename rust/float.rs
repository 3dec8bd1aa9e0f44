//! The float types the engine computes in (f32, f64): one trait that carries each type's
//! rounding unit and the magnitude range inside which squared norms and products stay finite
//! and normal, so that callers never branch on the type.

use std::cmp::Ordering;
use std::fmt::Debug;
use std::ops::{Add, Div, Mul, Neg, Sub};

/// The largest magnitude accepted in float64 input: squares and sums of squares of such values
/// stay finite in f64 (any finite f32 is accepted).
pub const MAX_MAGNITUDE_F64: f64 = 1e150;

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
    + Div<Output = Self>
    + Neg<Output = Self>
{
    const ZERO: Self;
    const ONE: Self;
    const INFINITY: Self;
    /// Unit roundoff u (half the machine epsilon): 2^-24 for f32, 2^-53 for f64.
    const UNIT_ROUNDOFF: f64;
    /// (lowest, highest) largest-magnitude of the data for which rows can be used as they are:
    /// inside it squared norms and dot products over any realistic d neither overflow nor go
    /// subnormal; outside it rows are rescaled by a power of two (exact).
    const SAFE_RANGE: (f64, f64);
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
    fn is_finite(self) -> bool;
    /// Finite, and small enough that squares and sums of squares stay finite in f64
    /// (|v| <= `MAX_MAGNITUDE_F64` for f64; any finite f32).
    fn magnitude_ok(self) -> bool;
    /// The smaller of the two (`self` on ties; the inputs are never NaN where it is used).
    #[inline(always)]
    fn min(self, other: Self) -> Self {
        if other < self {
            other
        } else {
            self
        }
    }
    /// IEEE 754 total order (`f32::total_cmp` / `f64::total_cmp`).
    fn total_cmp(&self, other: &Self) -> Ordering;
    /// `dst[i] = src[i]` for IEEE half-precision bit patterns (exact: every float16 is an f32).
    fn from_f16_bits(src: &[u16], dst: &mut [Self]);
    /// `dst[i] = src[i]` for float32 values (exact for f64, identity for f32).
    fn from_f32_slice(src: &[f32], dst: &mut [Self]);
    /// `dst[i] = src[i]` for float64 values (rounded to nearest for f32).
    fn from_f64_slice(src: &[f64], dst: &mut [Self]);
}

/// A block of feature rows in the dtype they were stored in: float16 / bfloat16 (as their bit
/// patterns), float32 or float64. The engine upcasts it piece by piece (`fill`) into the
/// precision it computes in, so that a float16 bank is never copied whole as float32.
#[derive(Debug, Clone, Copy)]
pub enum Raw<'a> {
    F16(&'a [u16]),
    Bf16(&'a [u16]),
    F32(&'a [f32]),
    F64(&'a [f64]),
}

impl Raw<'_> {
    /// Number of stored values.
    pub fn len(&self) -> usize {
        match self {
            Raw::F16(s) | Raw::Bf16(s) => s.len(),
            Raw::F32(s) => s.len(),
            Raw::F64(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `out = values [v0, v0 + out.len())` converted to `T` (exact except float64 -> f32).
    pub fn fill<T: Real>(&self, v0: usize, out: &mut [T]) {
        let v1 = v0 + out.len();
        match self {
            Raw::F16(s) => T::from_f16_bits(&s[v0..v1], out),
            Raw::Bf16(s) => {
                // bfloat16 is the top half of a float32: widening is a shift (exact).
                let mut tmp = [0f32; 256];
                for (src, dst) in s[v0..v1].chunks(256).zip(out.chunks_mut(256)) {
                    for (t, &b) in tmp.iter_mut().zip(src) {
                        *t = f32::from_bits((b as u32) << 16);
                    }
                    T::from_f32_slice(&tmp[..src.len()], dst);
                }
            }
            Raw::F32(s) => T::from_f32_slice(&s[v0..v1], out),
            Raw::F64(s) => T::from_f64_slice(&s[v0..v1], out),
        }
    }
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const INFINITY: Self = f32::INFINITY;
    const UNIT_ROUNDOFF: f64 = 1.0 / (1u64 << 24) as f64;
    const SAFE_RANGE: (f64, f64) = (1.0 / (1u64 << 30) as f64, (1u64 << 30) as f64);
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
    fn total_cmp(&self, other: &Self) -> Ordering {
        f32::total_cmp(self, other)
    }
    fn from_f16_bits(src: &[u16], dst: &mut [Self]) {
        use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
        let h: &[half::f16] = src.reinterpret_cast();
        h.convert_to_f32_slice(dst);
    }
    fn from_f32_slice(src: &[f32], dst: &mut [Self]) {
        dst.copy_from_slice(src);
    }
    fn from_f64_slice(src: &[f64], dst: &mut [Self]) {
        dst.iter_mut().zip(src).for_each(|(o, &v)| *o = v as f32);
    }
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const INFINITY: Self = f64::INFINITY;
    const UNIT_ROUNDOFF: f64 = 1.0 / (1u64 << 53) as f64;
    // 2^-250 and 2^250.
    const SAFE_RANGE: (f64, f64) = (5.527147875260445e-76, 1.8092513943330656e75);
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
    fn total_cmp(&self, other: &Self) -> Ordering {
        f64::total_cmp(self, other)
    }
    fn from_f16_bits(src: &[u16], dst: &mut [Self]) {
        use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
        let h: &[half::f16] = src.reinterpret_cast();
        h.convert_to_f64_slice(dst);
    }
    fn from_f32_slice(src: &[f32], dst: &mut [Self]) {
        dst.iter_mut().zip(src).for_each(|(o, &v)| *o = v as f64);
    }
    fn from_f64_slice(src: &[f64], dst: &mut [Self]) {
        dst.copy_from_slice(src);
    }
}

/// (value, index) ascending: the engine's one ranking and tie rule (lower index first).
#[inline(always)]
pub fn by_value_then_index<T: Real, I: Ord>(a: &(T, I), b: &(T, I)) -> Ordering {
    a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_are_the_powers_of_two_they_claim() {
        assert_eq!(f32::UNIT_ROUNDOFF, 2f64.powi(-24));
        assert_eq!(f64::UNIT_ROUNDOFF, 2f64.powi(-53));
        assert_eq!(f32::UNIT_ROUNDOFF, f32::EPSILON as f64 / 2.0);
        assert_eq!(f64::UNIT_ROUNDOFF, f64::EPSILON / 2.0);
        assert_eq!(f32::SAFE_RANGE, (2f64.powi(-30), 2f64.powi(30)));
        assert_eq!(f64::SAFE_RANGE, (2f64.powi(-250), 2f64.powi(250)));
    }

    #[test]
    fn ranking_orders_values_then_indices() {
        let mut v = vec![(1.0f32, 3u64), (0.5, 9), (1.0, 1), (-0.0, 4), (0.0, 2)];
        v.sort_by(by_value_then_index);
        assert_eq!(
            v,
            vec![(-0.0, 4), (0.0, 2), (0.5, 9), (1.0, 1), (1.0, 3)],
            "total order: -0 before +0"
        );
        assert_eq!(Real::min(2.0f64, 1.0), 1.0);
        assert!(1e150f64.magnitude_ok() && !1.1e150f64.magnitude_ok());
        assert!(f32::MAX.magnitude_ok() && !f32::NAN.magnitude_ok());
    }

    #[test]
    fn raw_blocks_upcast_exactly() {
        // 1.5, -2, 65504 (float16 max), the smallest subnormal, +inf, in float16 bits
        let f16 = [0x3e00u16, 0xc000, 0x7bff, 0x0001, 0x7c00];
        let mut out = [0f32; 5];
        Raw::F16(&f16).fill(0, &mut out);
        assert_eq!(out, [1.5, -2.0, 65504.0, 2f32.powi(-24), f32::INFINITY]);
        let mut out64 = [0f64; 2];
        Raw::F16(&f16).fill(2, &mut out64);
        assert_eq!(out64, [65504.0, 2f64.powi(-24)]);
        // bfloat16: the top 16 bits of a float32
        let bf = [0x3fc0u16, 0xc2f7];
        let mut out = [0f32; 2];
        Raw::Bf16(&bf).fill(0, &mut out);
        assert_eq!(out, [1.5, f32::from_bits(0xc2f7_0000)]);
        let mut out = [0f32; 1];
        Raw::F64(&[0.1f64, 0.2]).fill(1, &mut out);
        assert_eq!(out, [0.2f32]);
    }
}
