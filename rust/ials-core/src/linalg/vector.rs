//! Vector kernels on short slices (one factor row, k elements): dot product and axpy.
//!
//! Written with several independent accumulators so that LLVM vectorises them without being
//! allowed to reassociate floating-point sums; the summation order is fixed, so results do not
//! depend on threads. The AVX2 dot product follows exactly the order of the generic one, so the
//! two agree bit for bit (tested).

use crate::simd::Arith;
use crate::Real;

/// Independent accumulators per kernel: two AVX2 registers of f32.
pub(crate) const LANES: usize = 16;
pub(crate) const HALF: usize = LANES / 2;

/// Rows of f64 sums held in registers together, `LANES` columns each (an outer-product sum's
/// tile, or several matrix-vector products): four with AVX-512's 32 registers, two otherwise, so
/// that the FMA latency is hidden and each block of the shared operand loaded feeds several rows.
#[inline(always)]
pub(crate) fn tile_height<A: Arith>(arith: A) -> usize {
    if arith.avx512().is_some() {
        4
    } else {
        2
    }
}

/// `x . y`
#[inline(always)]
pub fn dot<T: Real, A: Arith>(arith: A, x: &[T], y: &[T]) -> T {
    #[cfg(target_arch = "x86_64")]
    if let (Some(_), Some(x), Some(y)) =
        (arith.avx2(), crate::simd::as_f32(x), crate::simd::as_f32(y))
    {
        // SAFETY: the strategy holds an AVX2 token, which exists only on CPUs with AVX2 and FMA.
        return T::from_f32(unsafe { avx2::dot_f32(x, y) });
    }
    let _ = arith;
    dot_generic::<T, A>(x, y)
}

/// The portable `x . y` behind [`dot`]: blocks of `LANES` into two accumulator vectors, one more
/// half block into the first, the vectors added and halved to one sum, then the last elements
/// one by one (the order of the AVX2 body). The accumulator arrays are only indexed by
/// constants, so they live in registers.
#[inline(always)]
pub(crate) fn dot_generic<T: Real, A: Arith>(x: &[T], y: &[T]) -> T {
    debug_assert_eq!(x.len(), y.len());
    let mut lo = [T::ZERO; HALF];
    let mut hi = [T::ZERO; HALF];
    let xs = x.chunks_exact(LANES);
    let ys = y.chunks_exact(LANES);
    let (mut xr, mut yr) = (xs.remainder(), ys.remainder());
    for (xc, yc) in xs.zip(ys) {
        for j in 0..HALF {
            lo[j] = A::fma(xc[j], yc[j], lo[j]);
        }
        for j in 0..HALF {
            hi[j] = A::fma(xc[HALF + j], yc[HALF + j], hi[j]);
        }
    }
    if xr.len() >= HALF && yr.len() >= HALF {
        for j in 0..HALF {
            lo[j] = A::fma(xr[j], yr[j], lo[j]);
        }
        (xr, yr) = (&xr[HALF..], &yr[HALF..]);
    }
    for j in 0..HALF {
        lo[j] += hi[j];
    }
    let mut total = horizontal_sum(lo);
    for (&a, &b) in xr.iter().zip(yr) {
        total = A::fma(a, b, total);
    }
    total
}

/// Sum of one vector's lanes, halving the width each step (a fixed order).
#[inline(always)]
pub(crate) fn horizontal_sum<T: Real>(v: [T; HALF]) -> T {
    let quarter = [v[0] + v[4], v[1] + v[5], v[2] + v[6], v[3] + v[7]];
    let pair = [quarter[0] + quarter[2], quarter[1] + quarter[3]];
    pair[0] + pair[1]
}

/// `y += a * x`
#[inline(always)]
pub fn axpy<T: Real, A: Arith>(a: T, x: &[T], y: &mut [T]) {
    debug_assert_eq!(x.len(), y.len());
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi = A::fma(a, xi, *yi);
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    /// `x . y` with two 8-lane FMA accumulators, a fixed-order horizontal sum, then the last
    /// elements one by one: the order of `dot_generic`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(crate) unsafe fn dot_f32(x: &[f32], y: &[f32]) -> f32 {
        let n = x.len().min(y.len());
        let (px, py) = (x.as_ptr(), y.as_ptr());
        let mut lo = _mm256_setzero_ps();
        let mut hi = _mm256_setzero_ps();
        let mut i = 0;
        // SAFETY: each load reads 8 values at `i` or `i + 8` with the end at most `n`, the
        // length of both slices' common part.
        unsafe {
            while i + 16 <= n {
                lo = _mm256_fmadd_ps(_mm256_loadu_ps(px.add(i)), _mm256_loadu_ps(py.add(i)), lo);
                hi = _mm256_fmadd_ps(
                    _mm256_loadu_ps(px.add(i + 8)),
                    _mm256_loadu_ps(py.add(i + 8)),
                    hi,
                );
                i += 16;
            }
            if i + 8 <= n {
                lo = _mm256_fmadd_ps(_mm256_loadu_ps(px.add(i)), _mm256_loadu_ps(py.add(i)), lo);
                i += 8;
            }
        }
        let sum = _mm256_add_ps(lo, hi);
        let quad = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps::<1>(sum));
        let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
        let mut total = _mm_cvtss_f32(_mm_add_ss(pair, _mm_movehdup_ps(pair)));
        for (&a, &b) in x[i..n].iter().zip(&y[i..n]) {
            total = a.mul_add(b, total);
        }
        total
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::simd::testing::{avx2_or_skip, fused};
    use crate::simd::{Fused, Unfused};

    pub(crate) fn vector(n: usize, seed: u64) -> Vec<f64> {
        (0..n)
            .map(|i| (((i as u64 + 1) * (seed * 2 + 7919)) % 1000) as f64 / 500.0 - 1.0)
            .collect()
    }

    pub(crate) fn close(a: f64, b: f64, scale: f64) -> bool {
        (a - b).abs() <= 1e-5 * scale.max(1.0)
    }

    pub(crate) fn bits(values: &[f32]) -> Vec<u32> {
        values.iter().map(|v| v.to_bits()).collect()
    }

    const LENGTHS: [usize; 13] = [0, 1, 3, 7, 8, 9, 15, 16, 17, 24, 31, 64, 257];

    #[test]
    fn dot_matches_naive_for_many_lengths() {
        for n in LENGTHS {
            let x = vector(n, 1);
            let y = vector(n, 2);
            let naive: f64 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
            let scale: f64 = x.iter().zip(&y).map(|(a, b)| (a * b).abs()).sum();
            assert!(close(dot(Unfused, &x, &y), naive, scale), "n={n}");
            let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let yf: Vec<f32> = y.iter().map(|&v| v as f32).collect();
            assert!(close(dot(Unfused, &xf, &yf) as f64, naive, scale * 10.0));
            if let Some(fused) = fused() {
                assert!(close(dot(fused, &x, &y), naive, scale), "n={n}");
                assert!(close(dot(fused, &xf, &yf) as f64, naive, scale * 10.0));
            }
        }
    }

    #[test]
    fn avx2_dot_is_its_generic_twin_bit_for_bit() {
        let Some(_) = avx2_or_skip("avx2_dot_is_its_generic_twin_bit_for_bit") else {
            return;
        };
        for n in LENGTHS {
            let x: Vec<f32> = vector(n, 3).iter().map(|&v| v as f32).collect();
            let y: Vec<f32> = vector(n, 4).iter().map(|&v| v as f32).collect();
            // SAFETY: the token above proves the CPU has AVX2 and FMA.
            let special = unsafe { avx2::dot_f32(&x, &y) };
            let generic = dot_generic::<f32, Fused>(&x, &y);
            assert_eq!(special.to_bits(), generic.to_bits(), "n={n}");
        }
    }

    #[test]
    fn axpy_matches_naive() {
        for n in LENGTHS {
            let x = vector(n, 5);
            let start = vector(n, 6);
            let mut y = start.clone();
            axpy::<f64, Unfused>(0.75, &x, &mut y);
            for i in 0..n {
                assert!(close(y[i], start[i] + 0.75 * x[i], 1.0), "n={n}");
            }
        }
    }
}
