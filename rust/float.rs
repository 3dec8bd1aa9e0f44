//! The float types the engine computes in (f32, f64): one trait that carries each type's
//! rounding unit and the magnitude range inside which squared norms and products stay finite
//! and normal, so that callers never branch on the type.

use std::cmp::Ordering;
use std::fmt::Debug;
use std::ops::{Add, Mul, Neg, Sub};

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
}
