//! The two factor element types (`f32`, `f64`) behind one small trait, so every kernel is written once.

use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

/// A floating-point type that factor matrices can hold.
pub trait Real:
    Copy
    + Send
    + Sync
    + Debug
    + Default
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + 'static
{
    const ZERO: Self;
    const NEG_INFINITY: Self;
    /// numpy's name of the type (`dtype.name`) and its little-endian `dtype.str`, as model files
    /// record them.
    const NUMPY_NAME: &'static str;
    const DESCR: &'static str;
    /// Half the distance from 1 to the next value: the relative error of one rounding.
    const UNIT_ROUNDOFF: f64;

    fn from_f64(v: f64) -> Self;
    fn from_f32(v: f32) -> Self;
    fn to_f64(self) -> f64;
    /// Fused multiply-add `self * a + b` with a single rounding.
    fn mul_add(self, a: Self, b: Self) -> Self;
    fn is_finite(self) -> bool;
    /// Appends the little-endian bytes.
    fn write_le(self, out: &mut Vec<u8>);
    /// The value of `size_of::<Self>()` little-endian bytes.
    fn from_le_bytes(bytes: &[u8]) -> Self;
}

macro_rules! impl_real {
    ($t:ty, $name:literal, $descr:literal) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const NEG_INFINITY: Self = <$t>::NEG_INFINITY;
            const NUMPY_NAME: &'static str = $name;
            const DESCR: &'static str = $descr;
            const UNIT_ROUNDOFF: f64 = <$t>::EPSILON as f64 / 2.0;

            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn from_f32(v: f32) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn mul_add(self, a: Self, b: Self) -> Self {
                <$t>::mul_add(self, a, b)
            }
            #[inline(always)]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
            #[inline]
            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            #[inline]
            fn from_le_bytes(bytes: &[u8]) -> Self {
                let mut raw = [0u8; std::mem::size_of::<$t>()];
                raw.copy_from_slice(&bytes[..std::mem::size_of::<$t>()]);
                <$t>::from_le_bytes(raw)
            }
        }
    };
}

impl_real!(f32, "float32", "<f4");
impl_real!(f64, "float64", "<f8");
