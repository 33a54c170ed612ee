//! The micro-kernel of the ranking: a group of queries against a packed strip of items, and the
//! comparison of a strip's scores with a bar.

use crate::simd::Arith;
use crate::Real;

use super::layout::{StripScores, MICRO, STRIP};
#[cfg(target_arch = "x86_64")]
use crate::simd::Vectors;

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
    if let (Some(vectors), Some(g), Some(s), Some(b)) = (
        crate::simd::vectors(arith),
        crate::simd::as_f32(group),
        crate::simd::as_f32(strip),
        crate::simd::as_f32(bars),
    ) {
        let out = crate::simd::as_f32_mut(scores.0.as_flattened_mut()).expect("T is f32 here");
        return match vectors {
            Vectors::V4(v) => wide::score_strip(v, g, s, k, b, out),
            Vectors::V3(v) => wide::score_strip(v, g, s, k, b, out),
        };
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
    if let (Some(vectors), Some(s)) = (crate::simd::vectors(arith), crate::simd::as_f32(scores)) {
        let x = crate::simd::as_f32(std::slice::from_ref(&x)).expect("T is f32 here")[0];
        return match vectors {
            Vectors::V4(v) => wide::compare_strip(v, s, x),
            Vectors::V3(v) => wide::compare_strip(v, s, x),
        };
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

/// The bodies for every vector width, one source: each score is the same FMA chain as in the
/// generic body, so every level gives the same bits.
#[cfg(target_arch = "x86_64")]
mod wide {
    use super::{MICRO, STRIP};
    use crate::simd::F32Vectors;

    /// The most vectors one strip row takes (AVX2's 8 lanes).
    const MAX_VECTORS: usize = STRIP / 8;

    /// `MICRO` queries against one strip of `STRIP` items: `STRIP / LANES` accumulators per
    /// query, each strip column loaded once for all the queries, both operands read as
    /// contiguous streams. The scores are compared with the bars while still in registers.
    #[inline(always)]
    pub(super) fn score_strip<S: F32Vectors>(
        s: S,
        group: &[f32],
        strip: &[f32],
        k: usize,
        bars: &[f32],
        out: &mut [f32],
    ) -> u32 {
        let vectors = STRIP / S::LANES;
        // The accumulators, one strip column and a broadcast must fit AVX2's 16 registers.
        const { assert!(STRIP.is_multiple_of(8) && MICRO * MAX_VECTORS + MAX_VECTORS < 16) };
        assert!(STRIP.is_multiple_of(S::LANES) && vectors <= MAX_VECTORS);
        assert!(group.len() >= MICRO * k && strip.len() >= STRIP * k);
        assert!(bars.len() >= MICRO && out.len() >= MICRO * STRIP);
        let (pg, ps, po) = (group.as_ptr(), strip.as_ptr(), out.as_mut_ptr());
        let mut acc = [s.zero(); MICRO * MAX_VECTORS];
        // SAFETY: for d < k the loads read `strip[d * STRIP..][..STRIP]` and
        // `group[d * MICRO + m]` (m < MICRO), inside the asserted `STRIP * k` and `MICRO * k`.
        unsafe {
            for d in 0..k {
                let column = ps.add(d * STRIP);
                let mut items = [s.zero(); MAX_VECTORS];
                for (v, item) in items.iter_mut().enumerate().take(vectors) {
                    *item = s.load(column.add(S::LANES * v));
                }
                for m in 0..MICRO {
                    let q = s.splat(*pg.add(d * MICRO + m));
                    for (v, &item) in items.iter().enumerate().take(vectors) {
                        acc[m * vectors + v] = s.fma(q, item, acc[m * vectors + v]);
                    }
                }
            }
        }
        let mut above = 0;
        for m in 0..MICRO {
            let bar = s.splat(bars[m]);
            let mut over = 0;
            for v in 0..vectors {
                let scores = acc[m * vectors + v];
                // SAFETY: m < MICRO and (v + 1) * LANES <= STRIP: inside the asserted
                // `MICRO * STRIP`.
                unsafe { s.store(po.add(m * STRIP + S::LANES * v), scores) };
                over |= s.ge(scores, bar);
            }
            above |= ((over != 0) as u32) << m;
        }
        above
    }

    /// Bit masks of a strip's scores above and equal to `x`: a compare and a mask per vector.
    #[inline(always)]
    pub(super) fn compare_strip<S: F32Vectors>(s: S, scores: &[f32], x: f32) -> (u32, u32) {
        assert!(scores.len() >= STRIP);
        let x = s.splat(x);
        let (mut greater, mut equal) = (0u32, 0u32);
        for v in 0..STRIP / S::LANES {
            // SAFETY: (v + 1) * LANES <= STRIP, inside the asserted length.
            let values = unsafe { s.load(scores.as_ptr().add(S::LANES * v)) };
            greater |= s.gt(values, x) << (S::LANES * v);
            equal |= s.eq(values, x) << (S::LANES * v);
        }
        (greater, equal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::vector::tests::bits;
    use crate::simd::testing::{avx2_or_skip, avx512_or_skip, generic_fused};
    use crate::simd::Fused;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i + 1) * (seed * 2 + 7919)) % 97) as f32 / 48.0 - 1.0)
            .collect()
    }

    fn check_level<S: crate::simd::F32Vectors>(s: S) {
        for k in [1, 3, 8, 17, 64, 128] {
            let group = values(MICRO * k, k);
            let strip = values(STRIP * k, k + 1);
            let mut generic = StripScores::<f32>::default();
            let bars = [-1.0, 0.0, 0.5, f32::NEG_INFINITY, 2.0, -0.25];
            let generic_mask = score_strip(generic_fused(), &group, &strip, k, &bars, &mut generic);
            let mut special = StripScores::<f32>::default();
            let special_mask =
                wide::score_strip(s, &group, &strip, k, &bars, special.0.as_flattened_mut());
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
                    let special = wide::compare_strip(s, row, x);
                    assert_eq!(special, compare_strip_generic(row, x), "k={k} m={m}");
                }
            }
        }
    }

    #[test]
    fn avx2_strip_kernels_are_their_generic_twins_bit_for_bit() {
        let name = "avx2_strip_kernels_are_their_generic_twins_bit_for_bit";
        if let Some(token) = avx2_or_skip(name) {
            check_level(crate::simd::V3(token));
        }
    }

    #[test]
    fn avx512_strip_kernels_are_their_generic_twins_bit_for_bit() {
        let name = "avx512_strip_kernels_are_their_generic_twins_bit_for_bit";
        if let Some(token) = avx512_or_skip(name) {
            check_level(crate::simd::V4(token));
        }
    }
}
