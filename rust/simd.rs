//! Run-time SIMD dispatch: the hand-unrolled lane loops of the engine are written once as
//! `#[inline(always)]` functions and compiled three times (AVX-512, AVX2+FMA, baseline) by the
//! `dispatch!` macro; the CPU's level is detected once.

/// Lanes of the hand-unrolled SIMD loops.
pub const LANES: usize = 16;

/// Which SIMD level the hand-vectorised loops were compiled for at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Simd {
    Avx512,
    Avx2,
    Scalar,
}

impl Simd {
    /// "avx512", "avx2" or "scalar".
    pub fn name(self) -> &'static str {
        match self {
            Simd::Avx512 => "avx512",
            Simd::Avx2 => "avx2",
            Simd::Scalar => "scalar",
        }
    }
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
        $vis fn $name<$T: $crate::float::Real>($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma,bmi1,bmi2,popcnt")]
                unsafe fn v4<$T: $crate::float::Real>($($arg: $ty),*) $(-> $ret)? { $body::<$T>($($arg),*) }
                #[target_feature(enable = "avx2,fma,bmi1,bmi2,popcnt")]
                unsafe fn v3<$T: $crate::float::Real>($($arg: $ty),*) $(-> $ret)? { $body::<$T>($($arg),*) }
                match $crate::simd::simd_level() {
                    // SAFETY: the CPU supports the features these copies were compiled with.
                    $crate::simd::Simd::Avx512 => return unsafe { v4::<$T>($($arg),*) },
                    $crate::simd::Simd::Avx2 => return unsafe { v3::<$T>($($arg),*) },
                    $crate::simd::Simd::Scalar => {}
                }
            }
            $body::<$T>($($arg),*)
        }
    };
}
pub(crate) use dispatch;
