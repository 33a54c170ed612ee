//! f32 vectors of each x86-64 level, behind one trait, so that a kernel body is written once and
//! compiled for AVX2 (8 lanes) and AVX-512 (16 lanes). A vector type holds its level's token,
//! so one exists only where CPU detection found the features its methods use.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

#[cfg(target_arch = "x86_64")]
use super::{Avx2, Avx512};

/// f32 vectors of one instruction set. Kernels generic over it run inside a function compiled
/// with that instruction set (see `simd::dispatch`), where these calls become single
/// instructions.
pub(crate) trait F32Vectors: Copy {
    /// Lanes per vector.
    const LANES: usize;
    type V: Copy;

    fn zero(self) -> Self::V;
    fn splat(self, x: f32) -> Self::V;
    /// `LANES` values from `p`.
    ///
    /// # Safety
    /// `p..p + LANES` must be readable.
    unsafe fn load(self, p: *const f32) -> Self::V;
    /// # Safety
    /// `p..p + LANES` must be writable.
    unsafe fn store(self, p: *mut f32, v: Self::V);
    /// `a * b + c` with one rounding, lane by lane.
    fn fma(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// Bit j set where lane j of `a` is at least `b`'s.
    fn ge(self, a: Self::V, b: Self::V) -> u32;
    /// Bit j set where lane j of `a` is greater than `b`'s.
    fn gt(self, a: Self::V, b: Self::V) -> u32;
    /// Bit j set where lane j of `a` equals `b`'s.
    fn eq(self, a: Self::V, b: Self::V) -> u32;
}

/// AVX2 and FMA: 8 lanes.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(crate) struct V3(#[allow(dead_code)] pub(crate) Avx2);

/// AVX-512 (F, VL, BW, DQ): 16 lanes.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(crate) struct V4(#[allow(dead_code)] pub(crate) Avx512);

#[cfg(target_arch = "x86_64")]
impl F32Vectors for V3 {
    const LANES: usize = 8;
    type V = __m256;

    #[inline(always)]
    fn zero(self) -> __m256 {
        // SAFETY: `self` holds an AVX2 token: the CPU has AVX2 (likewise below).
        unsafe { _mm256_setzero_ps() }
    }

    #[inline(always)]
    fn splat(self, x: f32) -> __m256 {
        // SAFETY: as above.
        unsafe { _mm256_set1_ps(x) }
    }

    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> __m256 {
        // SAFETY: the caller guarantees 8 readable values; the token, AVX2.
        unsafe { _mm256_loadu_ps(p) }
    }

    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: __m256) {
        // SAFETY: the caller guarantees 8 writable values; the token, AVX2.
        unsafe { _mm256_storeu_ps(p, v) }
    }

    #[inline(always)]
    fn fma(self, a: __m256, b: __m256, c: __m256) -> __m256 {
        // SAFETY: the token proves FMA too.
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }

    #[inline(always)]
    fn ge(self, a: __m256, b: __m256) -> u32 {
        // SAFETY: as above.
        unsafe { _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(a, b)) as u32 }
    }

    #[inline(always)]
    fn gt(self, a: __m256, b: __m256) -> u32 {
        // SAFETY: as above.
        unsafe { _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(a, b)) as u32 }
    }

    #[inline(always)]
    fn eq(self, a: __m256, b: __m256) -> u32 {
        // SAFETY: as above.
        unsafe { _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(a, b)) as u32 }
    }
}

#[cfg(target_arch = "x86_64")]
impl F32Vectors for V4 {
    const LANES: usize = 16;
    type V = __m512;

    #[inline(always)]
    fn zero(self) -> __m512 {
        // SAFETY: `self` holds an AVX-512 token: the CPU has AVX-512F (likewise below).
        unsafe { _mm512_setzero_ps() }
    }

    #[inline(always)]
    fn splat(self, x: f32) -> __m512 {
        // SAFETY: as above.
        unsafe { _mm512_set1_ps(x) }
    }

    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> __m512 {
        // SAFETY: the caller guarantees 16 readable values; the token, AVX-512F.
        unsafe { _mm512_loadu_ps(p) }
    }

    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: __m512) {
        // SAFETY: the caller guarantees 16 writable values; the token, AVX-512F.
        unsafe { _mm512_storeu_ps(p, v) }
    }

    #[inline(always)]
    fn fma(self, a: __m512, b: __m512, c: __m512) -> __m512 {
        // SAFETY: as above.
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }

    #[inline(always)]
    fn ge(self, a: __m512, b: __m512) -> u32 {
        // SAFETY: as above.
        unsafe { _mm512_cmp_ps_mask::<_CMP_GE_OQ>(a, b) as u32 }
    }

    #[inline(always)]
    fn gt(self, a: __m512, b: __m512) -> u32 {
        // SAFETY: as above.
        unsafe { _mm512_cmp_ps_mask::<_CMP_GT_OQ>(a, b) as u32 }
    }

    #[inline(always)]
    fn eq(self, a: __m512, b: __m512) -> u32 {
        // SAFETY: as above.
        unsafe { _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(a, b) as u32 }
    }
}
