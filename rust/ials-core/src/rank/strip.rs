//! The micro-kernel of the ranking: a group of queries against a packed strip of items, and the
//! comparison of a strip's scores with a bar.

use crate::simd::Arith;
use crate::Real;

use super::layout::{StripScores, MICRO, STRIP};

/// `q . y` with exactly the arithmetic of [`score_strip`] (one FMA per factor, in order), so a
/// score computed alone equals the same score computed in a strip, bit for bit.
#[inline(always)]
pub(crate) fn score_one<T: Real, A: Arith>(q: &[T], y: &[T]) -> T {
    q.iter()
        .zip(y)
        .fold(T::ZERO, |acc, (&a, &b)| A::fma(a, b, acc))
}

/// `scores.0[m][j] = query m of group . item j of strip`; a mask with bit m set when some score
/// of query m (padding included) is at or above `bars[m]`.
#[inline(always)]
pub(crate) fn score_strip<T: Real, A: Arith>(
    arith: A,
    group: &[T],
    strip: &[T],
    k: usize,
    bars: &[T; MICRO],
    scores: &mut StripScores<T>,
) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if let (Some(_), Some(g), Some(s), Some(b)) = (
        arith.avx2(),
        crate::simd::as_f32(group),
        crate::simd::as_f32(strip),
        crate::simd::as_f32(bars),
    ) {
        let out = crate::simd::as_f32_mut(scores.0.as_flattened_mut()).expect("T is f32 here");
        // SAFETY: the strategy holds an AVX2 token, which exists only on CPUs with AVX2 and FMA.
        return unsafe { avx2::score_strip_f32(g, s, k, b, out) };
    }
    let _ = arith;
    // The generic body: each score one FMA per factor in order (the arithmetic of `score_one`).
    let mut acc = [[T::ZERO; STRIP]; MICRO];
    for (column, q) in strip
        .chunks_exact(STRIP)
        .zip(group.chunks_exact(MICRO))
        .take(k)
    {
        for (acc, &q) in acc.iter_mut().zip(q) {
            for (a, &y) in acc.iter_mut().zip(column) {
                *a = A::fma(q, y, *a);
            }
        }
    }
    let mut above = 0;
    for (m, acc) in acc.iter().enumerate() {
        above |= (acc.iter().any(|&s| s >= bars[m]) as u32) << m;
    }
    scores.0 = acc;
    above
}

/// Bit masks of the scores of a strip above and equal to `x` (bit j: item j).
#[inline(always)]
pub(crate) fn compare_strip<T: Real, A: Arith>(arith: A, scores: &[T; STRIP], x: T) -> (u32, u32) {
    #[cfg(target_arch = "x86_64")]
    if let (Some(_), Some(s)) = (arith.avx2(), crate::simd::as_f32(scores)) {
        let x = crate::simd::as_f32(std::slice::from_ref(&x)).expect("T is f32 here")[0];
        // SAFETY: the strategy holds an AVX2 token, which exists only on CPUs with AVX2.
        return unsafe { avx2::compare_strip_f32(s, x) };
    }
    let _ = arith;
    compare_strip_generic(scores, x)
}

/// Bit masks over a strip of the scores above `x` and equal to `x` (bit j: item j).
#[inline(always)]
pub(crate) fn compare_strip_generic<T: Real>(scores: &[T; STRIP], x: T) -> (u32, u32) {
    let (mut greater, mut equal) = (0u32, 0u32);
    for (j, &s) in scores.iter().enumerate() {
        greater |= ((s > x) as u32) << j;
        equal |= ((s == x) as u32) << j;
    }
    (greater, equal)
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{MICRO, STRIP};

    /// `MICRO` queries against one strip of `STRIP` items: `STRIP / 8` accumulator registers per
    /// query, each strip column loaded once for all the queries, both operands read as contiguous
    /// streams (the same arithmetic as the portable kernel: one FMA per factor, in order, so
    /// scores agree bit for bit with `score_one`). The scores are compared with the bars while
    /// still in registers.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) unsafe fn score_strip_f32(
        group: &[f32],
        strip: &[f32],
        k: usize,
        bars: &[f32],
        out: &mut [f32],
    ) -> u32 {
        const VECTORS: usize = STRIP / 8;
        // The accumulators, one strip column and a broadcast must fit the 16 registers.
        const { assert!(STRIP % 8 == 0 && MICRO * VECTORS + VECTORS < 16) };
        assert!(group.len() >= MICRO * k && strip.len() >= STRIP * k);
        assert!(bars.len() >= MICRO && out.len() >= MICRO * STRIP);
        let (pg, ps) = (group.as_ptr(), strip.as_ptr());
        let mut acc = [_mm256_setzero_ps(); MICRO * VECTORS];
        // SAFETY: for d < k the loads read `strip[d * STRIP..][..STRIP]` and `group[d * MICRO + m]` (m < MICRO), inside the asserted `STRIP * k` and `MICRO * k`.
        unsafe {
            for d in 0..k {
                let column = ps.add(d * STRIP);
                let mut items = [_mm256_setzero_ps(); VECTORS];
                for (v, item) in items.iter_mut().enumerate() {
                    *item = _mm256_loadu_ps(column.add(8 * v));
                }
                for m in 0..MICRO {
                    let q = _mm256_broadcast_ss(&*pg.add(d * MICRO + m));
                    for (v, &item) in items.iter().enumerate() {
                        acc[m * VECTORS + v] = _mm256_fmadd_ps(q, item, acc[m * VECTORS + v]);
                    }
                }
            }
        }
        let po = out.as_mut_ptr();
        let mut above = 0;
        for (m, vectors) in acc.chunks_exact(VECTORS).enumerate() {
            let bar = _mm256_set1_ps(bars[m]);
            let mut over = _mm256_setzero_ps();
            // SAFETY: m < MICRO and 8 * v < STRIP, so the store writes inside the asserted `MICRO * STRIP`.
            unsafe {
                for (v, &scores) in vectors.iter().enumerate() {
                    _mm256_storeu_ps(po.add(m * STRIP + 8 * v), scores);
                    over = _mm256_or_ps(over, _mm256_cmp_ps::<_CMP_GE_OQ>(scores, bar));
                }
            }
            above |= ((_mm256_movemask_ps(over) != 0) as u32) << m;
        }
        above
    }

    /// Bit masks of a strip's scores above and equal to `x`: a compare and a move-mask per
    /// eight scores.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) unsafe fn compare_strip_f32(scores: &[f32], x: f32) -> (u32, u32) {
        assert!(scores.len() >= STRIP);
        let x = _mm256_set1_ps(x);
        let (mut greater, mut equal) = (0u32, 0u32);
        for v in 0..STRIP / 8 {
            // SAFETY: 8 * v + 8 <= STRIP, inside the asserted length.
            let eight = unsafe { _mm256_loadu_ps(scores.as_ptr().add(8 * v)) };
            greater |=
                (_mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(eight, x)) as u32) << (8 * v);
            equal |= (_mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(eight, x)) as u32) << (8 * v);
        }
        (greater, equal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::vector::tests::bits;
    use crate::simd::testing::{avx2_or_skip, generic_fused};
    use crate::simd::Fused;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i + 1) * (seed * 2 + 7919)) % 97) as f32 / 48.0 - 1.0)
            .collect()
    }

    #[test]
    fn avx2_strip_kernels_are_their_generic_twins_bit_for_bit() {
        let Some(_) = avx2_or_skip("avx2_strip_kernels_are_their_generic_twins_bit_for_bit") else {
            return;
        };
        for k in [1, 3, 8, 17, 64, 128] {
            let group = values(MICRO * k, k);
            let strip = values(STRIP * k, k + 1);
            let mut generic = StripScores::<f32>::default();
            let bars = [-1.0, 0.0, 0.5, f32::NEG_INFINITY, 2.0, -0.25];
            let generic_mask = score_strip(generic_fused(), &group, &strip, k, &bars, &mut generic);
            let mut special = StripScores::<f32>::default();
            // SAFETY: the token above proves the CPU has AVX2 and FMA.
            let special_mask = unsafe {
                avx2::score_strip_f32(&group, &strip, k, &bars, special.0.as_flattened_mut())
            };
            assert_eq!(special_mask, generic_mask, "k={k}");
            assert_eq!(
                bits(generic.0.as_flattened()),
                bits(special.0.as_flattened()),
                "k={k}"
            );
            for (m, row) in generic.0.iter().enumerate() {
                let query: Vec<f32> = (0..k).map(|d| group[d * MICRO + m]).collect();
                let item: Vec<f32> = (0..k).map(|d| strip[d * STRIP + 3]).collect();
                assert_eq!(
                    score_one::<f32, Fused>(&query, &item).to_bits(),
                    row[3].to_bits()
                );
                for x in [row[0], row[7], 0.0, f32::NEG_INFINITY] {
                    // SAFETY: as above.
                    let special = unsafe { avx2::compare_strip_f32(row, x) };
                    assert_eq!(special, compare_strip_generic(row, x), "k={k} m={m}");
                }
            }
        }
    }
}
