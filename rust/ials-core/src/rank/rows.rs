//! A few queries against item rows where they lie, for calls too small to pay for packing: the
//! arithmetic of the strip kernel, so a query alone ranks bit for bit as in a batch.

use crate::simd::Arith;
use crate::Real;

use super::layout::ROWS;

/// The most queries one call of [`score_rows`] takes.
pub(crate) const MAX_QUERIES: usize = 16;

/// `query . row` for each query (`k` long each, one per entry of `scores`) and each of `ROWS`
/// rows.
#[inline(always)]
pub(crate) fn score_rows<T: Real, A: Arith>(
    arith: A,
    queries: &[T],
    rows: &[&[T]; ROWS],
    scores: &mut [[T; ROWS]],
) {
    #[cfg(target_arch = "x86_64")]
    if let (Some(_), Some(q)) = (arith.avx2(), crate::simd::as_f32(queries)) {
        let rows: [&[f32]; ROWS] =
            std::array::from_fn(|j| crate::simd::as_f32(rows[j]).expect("T is f32 here"));
        let out = crate::simd::as_f32_mut(scores.as_flattened_mut()).expect("T is f32 here");
        // SAFETY: the strategy holds an AVX2 token, which exists only on CPUs with AVX2 and FMA.
        return unsafe { avx2::score_rows_f32(q, &rows, out) };
    }
    let _ = arith;
    // The generic body: each score one FMA per factor in order (the arithmetic of `score_one`).
    let k = queries.len() / scores.len().max(1);
    for (query, scores) in queries.chunks_exact(k.max(1)).zip(scores.iter_mut()) {
        *scores = [T::ZERO; ROWS];
        for (d, &q) in query.iter().enumerate() {
            for (score, row) in scores.iter_mut().zip(rows) {
                *score = A::fma(q, row[d], *score);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{MAX_QUERIES, ROWS};

    /// The factors `d..d + 8` of eight rows, transposed: vector `dd` holds factor `d + dd` of
    /// the eight rows (lane j: row j).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn transpose8(rows: &[&[f32]], d: usize) -> [__m256; 8] {
        let r: [__m256; 8] = std::array::from_fn(|j| {
            let eight = &rows[j][d..d + 8];
            // SAFETY: `eight` holds the 8 values loaded.
            unsafe { _mm256_loadu_ps(eight.as_ptr()) }
        });
        // Pairs of rows interleaved, then quadruples, then the 128-bit halves swapped into place.
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        [
            _mm256_permute2f128_ps::<0x20>(s0, s4),
            _mm256_permute2f128_ps::<0x20>(s1, s5),
            _mm256_permute2f128_ps::<0x20>(s2, s6),
            _mm256_permute2f128_ps::<0x20>(s3, s7),
            _mm256_permute2f128_ps::<0x31>(s0, s4),
            _mm256_permute2f128_ps::<0x31>(s1, s5),
            _mm256_permute2f128_ps::<0x31>(s2, s6),
            _mm256_permute2f128_ps::<0x31>(s3, s7),
        ]
    }

    /// A few queries against `ROWS` item rows where they lie: blocks of 8 x 8 transposed in
    /// registers once for all the queries, so that each lane accumulates one row, two halves of
    /// eight rows interleaved to cover the FMA latency. Each score is one FMA per factor in
    /// order (the arithmetic of `score_one`), so it equals the strip kernel's bit for bit.
    /// `out` holds `ROWS` scores per query.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) unsafe fn score_rows_f32(queries: &[f32], rows: &[&[f32]; ROWS], out: &mut [f32]) {
        const { assert!(ROWS == 16) };
        let n_queries = out.len() / ROWS;
        assert!(n_queries < MAX_QUERIES && out.len() == n_queries * ROWS);
        let k = queries.len() / n_queries.max(1);
        assert!(queries.len() == n_queries * k && rows.iter().all(|row| row.len() >= k));
        let pq = queries.as_ptr();
        let (low, high) = rows.split_at(8);
        let mut acc = [_mm256_setzero_ps(); 2 * MAX_QUERIES];
        let mut d = 0;
        while d + 8 <= k {
            let (columns_low, columns_high) = (transpose8(low, d), transpose8(high, d));
            // SAFETY: m < n_queries and d + dd < k, so `m * k + d + dd` lies inside the asserted `n_queries * k`.
            unsafe {
                for m in 0..n_queries {
                    let (mut acc_low, mut acc_high) = (acc[2 * m], acc[2 * m + 1]);
                    for dd in 0..8 {
                        let q = _mm256_broadcast_ss(&*pq.add(m * k + d + dd));
                        acc_low = _mm256_fmadd_ps(q, columns_low[dd], acc_low);
                        acc_high = _mm256_fmadd_ps(q, columns_high[dd], acc_high);
                    }
                    (acc[2 * m], acc[2 * m + 1]) = (acc_low, acc_high);
                }
            }
            d += 8;
        }
        for (m, scores) in out.chunks_exact_mut(ROWS).enumerate() {
            // SAFETY: `scores` is one chunk of `ROWS` = 16 values: two stores of 8.
            unsafe {
                _mm256_storeu_ps(scores.as_mut_ptr(), acc[2 * m]);
                _mm256_storeu_ps(scores.as_mut_ptr().add(8), acc[2 * m + 1]);
            }
            let query = &queries[m * k..(m + 1) * k];
            for (score, row) in scores.iter_mut().zip(rows) {
                for dd in d..k {
                    *score = query[dd].mul_add(row[dd], *score);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::vector::tests::bits;
    use crate::rank::strip::score_one;
    use crate::simd::testing::{avx2_or_skip, generic_fused};
    use crate::simd::Fused;

    #[test]
    fn avx2_rows_kernel_is_its_generic_twin_bit_for_bit() {
        let Some(_) = avx2_or_skip("avx2_rows_kernel_is_its_generic_twin_bit_for_bit") else {
            return;
        };
        for k in [1, 7, 8, 9, 64, 70] {
            let items: Vec<f32> = (0..ROWS * k)
                .map(|i| ((i * 37 % 101) as f32) / 50.0 - 1.0)
                .collect();
            let rows: [&[f32]; ROWS] = std::array::from_fn(|j| &items[j * k..(j + 1) * k]);
            for n_queries in [1, 2, 5, MAX_QUERIES - 1] {
                let queries: Vec<f32> = (0..n_queries * k)
                    .map(|i| ((i * 13 % 29) as f32) / 14.0 - 1.0)
                    .collect();
                let mut generic = vec![[0.0f32; ROWS]; n_queries];
                score_rows(generic_fused(), &queries, &rows, &mut generic);
                let mut special = vec![[0.0f32; ROWS]; n_queries];
                // SAFETY: the token above proves the CPU has AVX2 and FMA.
                unsafe { avx2::score_rows_f32(&queries, &rows, special.as_flattened_mut()) };
                assert_eq!(
                    bits(generic.as_flattened()),
                    bits(special.as_flattened()),
                    "k={k}"
                );
                let alone = score_one::<f32, Fused>(&queries[..k], rows[5]);
                assert_eq!(alone.to_bits(), generic[0][5].to_bits(), "k={k}");
            }
        }
    }
}
