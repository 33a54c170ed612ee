//! Run-time choice of instruction set.
//!
//! Kernels are written once, generic over an [`Arith`] strategy, and marked `#[inline(always)]`.
//! [`dispatch`] calls them through a function compiled with AVX2+FMA enabled when the CPU has
//! them, so LLVM vectorises the inlined body for that target, while the same wheel still runs on
//! any x86-64. Dispatch happens once per block of rows, never per element. Rayon closures do not
//! inherit target features, which is why each parallel task calls `dispatch` itself.

use std::sync::OnceLock;

use crate::kernels::DataTerm;
use crate::topk::{StripScores, MICRO, ROWS, STRIP};

/// How `a * b + c` is evaluated. Under FMA dispatch it is one fused instruction; elsewhere
/// `mul_add` would be a slow software call, so the portable path multiplies and adds.
pub trait Arith: Copy {
    fn fma<T: crate::Real>(a: T, b: T, c: T) -> T;

    /// `x . y`; an instruction set may replace the generic kernel with its own.
    #[inline(always)]
    fn dot<T: crate::Real>(x: &[T], y: &[T]) -> T {
        crate::kernels::dot_generic::<T, Self>(x, y)
    }

    /// `out = M v` for symmetric `M`; an instruction set may replace the generic kernel.
    #[inline(always)]
    fn symv<T: crate::Real>(m: &[T], v: &[T], out: &mut [T]) {
        crate::kernels::symv_generic::<T, Self>(m, v, out)
    }

    /// `M v_r` for each `k`-long row of `vs` (see `kernels::symv_rows_generic`).
    #[inline(always)]
    fn symv_rows<T: crate::Real>(m: &[T], k: usize, vs: &[T], outs: &mut [T]) {
        crate::kernels::symv_rows_generic::<T, Self>(m, k, vs, outs)
    }

    /// `out += ` the data term of a CG step against `v` (see `kernels::DataTerm`); `dots` is
    /// scratch.
    #[inline(always)]
    fn add_data_term<T: crate::Real>(
        term: &DataTerm<'_, T>,
        v: &[T],
        out: &mut [T],
        _dots: &mut Vec<T>,
    ) {
        crate::kernels::add_data_term_generic::<T, Self>(term, v, out)
    }

    /// Scores of a group of queries against a packed item strip (see `topk::score_strip_generic`).
    #[inline(always)]
    fn score_strip<T: crate::Real>(
        group: &[T],
        strip: &[T],
        k: usize,
        bars: &[T; MICRO],
        scores: &mut StripScores<T>,
    ) -> u32 {
        crate::topk::score_strip_generic::<T, Self>(group, strip, k, bars, scores)
    }

    /// Bit masks of the scores of a strip above and equal to `x` (see `topk::compare_strip`).
    #[inline(always)]
    fn compare_strip<T: crate::Real>(scores: &[T; STRIP], x: T) -> (u32, u32) {
        crate::topk::compare_strip_generic(scores, x)
    }

    /// Scores of a few queries (`k` long each, `scores.len()` of them) against item rows where
    /// they lie (see `topk::score_rows_generic`).
    #[inline(always)]
    fn score_rows<T: crate::Real>(queries: &[T], rows: &[&[T]; ROWS], scores: &mut [[T; ROWS]]) {
        crate::topk::score_rows_generic::<T, Self>(queries, rows, scores)
    }
}

#[derive(Clone, Copy)]
pub struct Fused;

#[derive(Clone, Copy)]
pub struct Unfused;

impl Arith for Fused {
    #[inline(always)]
    fn fma<T: crate::Real>(a: T, b: T, c: T) -> T {
        a.mul_add(b, c)
    }

    /// On x86-64 `Fused` only runs inside [`run_avx2_fma`], so an f32 dot product can use AVX2
    /// directly: LLVM does not reliably vectorise the reduction of the generic one.
    #[inline(always)]
    fn dot<T: crate::Real>(x: &[T], y: &[T]) -> T {
        #[cfg(target_arch = "x86_64")]
        {
            if let (Some(x), Some(y)) = (as_f32(x), as_f32(y)) {
                // SAFETY: `Fused` is dispatched on x86-64 only after AVX2 and FMA were detected.
                return T::from_f32(unsafe { avx2::dot_f32(x, y) });
            }
        }
        crate::kernels::dot_generic::<T, Self>(x, y)
    }

    #[inline(always)]
    fn symv<T: crate::Real>(m: &[T], v: &[T], out: &mut [T]) {
        #[cfg(target_arch = "x86_64")]
        {
            if let (Some(m), Some(v), Some(out)) = (as_f32(m), as_f32(v), as_f32_mut(out)) {
                // SAFETY: as for `dot`.
                return unsafe { avx2::symv_f32(m, v, out) };
            }
        }
        crate::kernels::symv_generic::<T, Self>(m, v, out)
    }

    #[inline(always)]
    fn symv_rows<T: crate::Real>(m: &[T], k: usize, vs: &[T], outs: &mut [T]) {
        #[cfg(target_arch = "x86_64")]
        {
            if vs.len() == 4 * k {
                if let (Some(m), Some(vs), Some(outs)) = (as_f32(m), as_f32(vs), as_f32_mut(outs)) {
                    // SAFETY: as for `dot`.
                    return unsafe { avx2::symv4_f32(m, k, vs, outs) };
                }
            }
        }
        crate::kernels::symv_rows_generic::<T, Self>(m, k, vs, outs)
    }

    #[inline(always)]
    fn add_data_term<T: crate::Real>(
        term: &DataTerm<'_, T>,
        v: &[T],
        out: &mut [T],
        dots: &mut Vec<T>,
    ) {
        #[cfg(target_arch = "x86_64")]
        {
            if term.k % 8 == 0 {
                if let (Some(y), Some(weights), Some(v), Some(out)) = (
                    as_f32(term.y),
                    as_f32(term.weights),
                    as_f32(v),
                    as_f32_mut(out),
                ) {
                    dots.resize(term.cols.len(), T::ZERO);
                    let dots = as_f32_mut(dots).expect("T is f32 here");
                    let term = DataTerm {
                        y,
                        k: term.k,
                        cols: term.cols,
                        weights,
                    };
                    // SAFETY: as for `dot`.
                    return unsafe { avx2::add_data_term_f32(&term, v, out, dots) };
                }
            }
        }
        crate::kernels::add_data_term_generic::<T, Self>(term, v, out)
    }

    #[inline(always)]
    fn score_strip<T: crate::Real>(
        group: &[T],
        strip: &[T],
        k: usize,
        bars: &[T; MICRO],
        scores: &mut StripScores<T>,
    ) -> u32 {
        #[cfg(target_arch = "x86_64")]
        {
            if let (Some(group), Some(strip), Some(bars), Some(out)) = (
                as_f32(group),
                as_f32(strip),
                as_f32(bars),
                as_f32_mut(scores.0.as_flattened_mut()),
            ) {
                // SAFETY: as for `dot`.
                return unsafe { avx2::score_strip_f32(group, strip, k, bars, out) };
            }
        }
        crate::topk::score_strip_generic::<T, Self>(group, strip, k, bars, scores)
    }

    #[inline(always)]
    fn compare_strip<T: crate::Real>(scores: &[T; STRIP], x: T) -> (u32, u32) {
        #[cfg(target_arch = "x86_64")]
        {
            if let (Some(scores), Some(x)) = (as_f32(scores), as_f32(std::slice::from_ref(&x))) {
                // SAFETY: as for `dot`.
                return unsafe { avx2::compare_strip_f32(scores, x[0]) };
            }
        }
        crate::topk::compare_strip_generic(scores, x)
    }

    #[inline(always)]
    fn score_rows<T: crate::Real>(queries: &[T], rows: &[&[T]; ROWS], scores: &mut [[T; ROWS]]) {
        #[cfg(target_arch = "x86_64")]
        {
            if let (Some(queries), Some(out)) =
                (as_f32(queries), as_f32_mut(scores.as_flattened_mut()))
            {
                let rows: [&[f32]; ROWS] =
                    std::array::from_fn(|j| as_f32(rows[j]).expect("T is f32 here"));
                // SAFETY: as for `dot`.
                return unsafe { avx2::score_rows_f32(queries, &rows, out) };
            }
        }
        crate::topk::score_rows_generic::<T, Self>(queries, rows, scores)
    }
}

/// `values` as `&mut [f32]` when `T` is `f32`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn as_f32_mut<T: 'static>(values: &mut [T]) -> Option<&mut [f32]> {
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() {
        // SAFETY: T is f32, so the slice is reinterpreted as itself.
        Some(unsafe {
            std::slice::from_raw_parts_mut(values.as_mut_ptr().cast::<f32>(), values.len())
        })
    } else {
        None
    }
}

/// `values` as `&[f32]` when `T` is `f32`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn as_f32<T: 'static>(values: &[T]) -> Option<&[f32]> {
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() {
        // SAFETY: T is f32, so the slice is reinterpreted as itself.
        Some(unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<f32>(), values.len()) })
    } else {
        None
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use crate::kernels::DataTerm;

    /// `x . y` with two 8-lane FMA accumulators and a fixed-order horizontal sum.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) unsafe fn dot_f32(x: &[f32], y: &[f32]) -> f32 {
        let n = x.len().min(y.len());
        let (px, py) = (x.as_ptr(), y.as_ptr());
        let mut lo = _mm256_setzero_ps();
        let mut hi = _mm256_setzero_ps();
        let mut i = 0;
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
        let sum = _mm256_add_ps(lo, hi);
        let quad = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps::<1>(sum));
        let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
        let mut total = _mm_cvtss_f32(_mm_add_ss(pair, _mm_movehdup_ps(pair)));
        while i < n {
            total = x[i].mul_add(y[i], total);
            i += 1;
        }
        total
    }

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
        use crate::topk::{MICRO, STRIP};
        const VECTORS: usize = STRIP / 8;
        // The accumulators, one strip column and a broadcast must fit the 16 registers.
        const { assert!(STRIP % 8 == 0 && MICRO * VECTORS + VECTORS < 16) };
        assert!(group.len() >= MICRO * k && strip.len() >= STRIP * k);
        assert!(bars.len() >= MICRO && out.len() >= MICRO * STRIP);
        let (pg, ps) = (group.as_ptr(), strip.as_ptr());
        let mut acc = [_mm256_setzero_ps(); MICRO * VECTORS];
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
        let po = out.as_mut_ptr();
        let mut above = 0;
        for (m, vectors) in acc.chunks_exact(VECTORS).enumerate() {
            let bar = _mm256_set1_ps(bars[m]);
            let mut over = _mm256_setzero_ps();
            for (v, &scores) in vectors.iter().enumerate() {
                _mm256_storeu_ps(po.add(m * STRIP + 8 * v), scores);
                over = _mm256_or_ps(over, _mm256_cmp_ps::<_CMP_GE_OQ>(scores, bar));
            }
            above |= ((_mm256_movemask_ps(over) != 0) as u32) << m;
        }
        above
    }

    /// The factors `d..d + 8` of eight rows, transposed: vector `dd` holds factor `d + dd` of
    /// the eight rows (lane j: row j).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn transpose8(rows: &[&[f32]], d: usize) -> [__m256; 8] {
        let r: [__m256; 8] = std::array::from_fn(|j| _mm256_loadu_ps(rows[j].as_ptr().add(d)));
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
    pub(super) unsafe fn score_rows_f32(
        queries: &[f32],
        rows: &[&[f32]; crate::topk::ROWS],
        out: &mut [f32],
    ) {
        use crate::topk::{PACK_FROM, ROWS};
        const { assert!(ROWS == 16) };
        let n_queries = out.len() / ROWS;
        assert!(n_queries < PACK_FROM && out.len() == n_queries * ROWS);
        let k = queries.len() / n_queries.max(1);
        assert!(queries.len() == n_queries * k && rows.iter().all(|row| row.len() >= k));
        let pq = queries.as_ptr();
        let (low, high) = rows.split_at(8);
        let mut acc = [_mm256_setzero_ps(); 2 * PACK_FROM];
        let mut d = 0;
        while d + 8 <= k {
            let (columns_low, columns_high) = (transpose8(low, d), transpose8(high, d));
            for m in 0..n_queries {
                let (mut acc_low, mut acc_high) = (acc[2 * m], acc[2 * m + 1]);
                for dd in 0..8 {
                    let q = _mm256_broadcast_ss(&*pq.add(m * k + d + dd));
                    acc_low = _mm256_fmadd_ps(q, columns_low[dd], acc_low);
                    acc_high = _mm256_fmadd_ps(q, columns_high[dd], acc_high);
                }
                (acc[2 * m], acc[2 * m + 1]) = (acc_low, acc_high);
            }
            d += 8;
        }
        for (m, scores) in out.chunks_exact_mut(ROWS).enumerate() {
            _mm256_storeu_ps(scores.as_mut_ptr(), acc[2 * m]);
            _mm256_storeu_ps(scores.as_mut_ptr().add(8), acc[2 * m + 1]);
            let query = &queries[m * k..(m + 1) * k];
            for (score, row) in scores.iter_mut().zip(rows) {
                for dd in d..k {
                    *score = query[dd].mul_add(row[dd], *score);
                }
            }
        }
    }

    /// Bit masks of a strip's scores above and equal to `x`: a compare and a move-mask per
    /// eight scores.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) unsafe fn compare_strip_f32(scores: &[f32], x: f32) -> (u32, u32) {
        use crate::topk::STRIP;
        assert!(scores.len() >= STRIP);
        let x = _mm256_set1_ps(x);
        let (mut greater, mut equal) = (0u32, 0u32);
        for v in 0..STRIP / 8 {
            let eight = _mm256_loadu_ps(scores.as_ptr().add(8 * v));
            greater |=
                (_mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(eight, x)) as u32) << (8 * v);
            equal |= (_mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(eight, x)) as u32) << (8 * v);
        }
        (greater, equal)
    }

    /// `out += sum_i w_i (y_{c_i} . v) y_{c_i}` for `k` a multiple of 8: first the dot products,
    /// eight rows at a time with one accumulator each and a single transposing reduction, then
    /// the weighted sum with 64 outputs held in registers while every row streams past.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) unsafe fn add_data_term_f32(
        term: &DataTerm<'_, f32>,
        v: &[f32],
        out: &mut [f32],
        dots: &mut [f32],
    ) {
        let DataTerm {
            y,
            k,
            cols,
            weights,
        } = *term;
        let n = cols.len();
        assert!(k % 8 == 0 && v.len() >= k && out.len() >= k && dots.len() >= n);
        assert!(weights.len() >= n);
        for &c in cols {
            assert!(c >= 0 && (c as usize + 1) * k <= y.len());
        }
        let row = |i: usize| y.as_ptr().add(cols[i] as usize * k);
        let pv = v.as_ptr();
        let mut i = 0;
        while i + 8 <= n {
            let mut acc = [_mm256_setzero_ps(); 8];
            for chunk in (0..k).step_by(8) {
                let vc = _mm256_loadu_ps(pv.add(chunk));
                for (b, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(_mm256_loadu_ps(row(i + b).add(chunk)), vc, *a);
                }
            }
            let pairs = [
                _mm256_hadd_ps(acc[0], acc[1]),
                _mm256_hadd_ps(acc[2], acc[3]),
                _mm256_hadd_ps(acc[4], acc[5]),
                _mm256_hadd_ps(acc[6], acc[7]),
            ];
            let low = _mm256_hadd_ps(pairs[0], pairs[1]);
            let high = _mm256_hadd_ps(pairs[2], pairs[3]);
            let sums = _mm256_add_ps(
                _mm256_permute2f128_ps::<0x20>(low, high),
                _mm256_permute2f128_ps::<0x31>(low, high),
            );
            _mm256_storeu_ps(dots.as_mut_ptr().add(i), sums);
            i += 8;
        }
        for (j, d) in dots.iter_mut().enumerate().take(n).skip(i) {
            *d = dot_f32(std::slice::from_raw_parts(row(j), k), v);
        }
        let coefficient = |i: usize| _mm256_set1_ps(weights[i] * dots[i]);
        let po = out.as_mut_ptr();
        let mut start = 0;
        while start + 64 <= k {
            let mut acc = [_mm256_setzero_ps(); 8];
            for (lane, a) in acc.iter_mut().enumerate() {
                *a = _mm256_loadu_ps(po.add(start + 8 * lane));
            }
            for i in 0..n {
                let w = coefficient(i);
                let r = row(i).add(start);
                for (lane, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(w, _mm256_loadu_ps(r.add(8 * lane)), *a);
                }
            }
            for (lane, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(po.add(start + 8 * lane), *a);
            }
            start += 64;
        }
        while start < k {
            let mut a = _mm256_loadu_ps(po.add(start));
            for i in 0..n {
                a = _mm256_fmadd_ps(coefficient(i), _mm256_loadu_ps(row(i).add(start)), a);
            }
            _mm256_storeu_ps(po.add(start), a);
            start += 8;
        }
    }

    /// `out_r = M v_r` for four vectors at once: each 16-wide block of `M`'s rows is loaded once
    /// for all four. Every output is the same sequence of FMAs over j as in `symv_f32`, so the
    /// results are bitwise those of four separate calls.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) unsafe fn symv4_f32(m: &[f32], k: usize, v: &[f32], out: &mut [f32]) {
        assert!(m.len() >= k * k && v.len() >= 4 * k && out.len() >= 4 * k);
        let (pm, pv, po) = (m.as_ptr(), v.as_ptr(), out.as_mut_ptr());
        let mut start = 0;
        while start + 16 <= k {
            let mut acc = [_mm256_setzero_ps(); 8];
            for j in 0..k {
                let row = pm.add(j * k + start);
                let (lo, hi) = (_mm256_loadu_ps(row), _mm256_loadu_ps(row.add(8)));
                for r in 0..4 {
                    let q = _mm256_broadcast_ss(&*pv.add(r * k + j));
                    acc[2 * r] = _mm256_fmadd_ps(q, lo, acc[2 * r]);
                    acc[2 * r + 1] = _mm256_fmadd_ps(q, hi, acc[2 * r + 1]);
                }
            }
            for r in 0..4 {
                _mm256_storeu_ps(po.add(r * k + start), acc[2 * r]);
                _mm256_storeu_ps(po.add(r * k + start + 8), acc[2 * r + 1]);
            }
            start += 16;
        }
        while start + 8 <= k {
            let mut acc = [_mm256_setzero_ps(); 4];
            for j in 0..k {
                let column = _mm256_loadu_ps(pm.add(j * k + start));
                for (r, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(_mm256_broadcast_ss(&*pv.add(r * k + j)), column, *a);
                }
            }
            for (r, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(po.add(r * k + start), *a);
            }
            start += 8;
        }
        for r in 0..4 {
            for b in start..k {
                let mut sum = 0.0f32;
                for j in 0..k {
                    sum = v[r * k + j].mul_add(m[j * k + b], sum);
                }
                out[r * k + b] = sum;
            }
        }
    }

    /// `out = M v` for a symmetric row-major `k x k` matrix: `out[b] = sum_j v[j] M[j][b]`, with
    /// eight accumulator registers (64 outputs) in flight so the FMA latency is hidden; narrower
    /// passes finish the remainder.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) unsafe fn symv_f32(m: &[f32], v: &[f32], out: &mut [f32]) {
        let k = v.len();
        assert!(m.len() >= k * k && out.len() >= k);
        let (pm, po) = (m.as_ptr(), out.as_mut_ptr());
        let mut start = 0;
        while start + 64 <= k {
            let mut acc = [_mm256_setzero_ps(); 8];
            for (j, &vj) in v.iter().enumerate() {
                let b = _mm256_set1_ps(vj);
                let row = pm.add(j * k + start);
                for (lane, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(b, _mm256_loadu_ps(row.add(8 * lane)), *a);
                }
            }
            for (lane, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(po.add(start + 8 * lane), *a);
            }
            start += 64;
        }
        while start + 8 <= k {
            let mut acc = _mm256_setzero_ps();
            for (j, &vj) in v.iter().enumerate() {
                acc = _mm256_fmadd_ps(
                    _mm256_set1_ps(vj),
                    _mm256_loadu_ps(pm.add(j * k + start)),
                    acc,
                );
            }
            _mm256_storeu_ps(po.add(start), acc);
            start += 8;
        }
        for b in start..k {
            let mut sum = 0.0f32;
            for (j, &vj) in v.iter().enumerate() {
                sum = vj.mul_add(m[j * k + b], sum);
            }
            out[b] = sum;
        }
    }
}

impl Arith for Unfused {
    #[inline(always)]
    fn fma<T: crate::Real>(a: T, b: T, c: T) -> T {
        a * b + c
    }
}

/// A piece of work that can be compiled for several instruction sets.
pub trait Kernel {
    type Output;
    fn run<A: Arith>(self) -> Self::Output;
}

/// The instruction sets with a dedicated code path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimdLevel {
    Portable,
    Avx2Fma,
}

impl SimdLevel {
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Portable => "portable",
            SimdLevel::Avx2Fma => "avx2+fma",
        }
    }
}

fn detected() -> SimdLevel {
    #[cfg(target_arch = "x86_64")]
    {
        // Every CPU with AVX2 has POPCNT; it is checked and enabled too, for the bit counts of
        // the ranking metrics.
        if std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("popcnt")
        {
            return SimdLevel::Avx2Fma;
        }
    }
    SimdLevel::Portable
}

/// The level in use: the best the CPU offers, or `portable` when the environment variable
/// `IALS_SIMD=portable` asks for it (so tests can compare the paths on one machine).
pub fn simd_level() -> SimdLevel {
    static LEVEL: OnceLock<SimdLevel> = OnceLock::new();
    *LEVEL.get_or_init(|| match std::env::var("IALS_SIMD").as_deref() {
        Ok("portable") => SimdLevel::Portable,
        _ => detected(),
    })
}

/// Runs `kernel` with the best instruction set available.
#[inline]
pub fn dispatch<K: Kernel>(kernel: K) -> K::Output {
    #[cfg(target_arch = "x86_64")]
    {
        if simd_level() == SimdLevel::Avx2Fma {
            // SAFETY: the CPU was checked for AVX2, FMA and POPCNT above.
            return unsafe { run_avx2_fma(kernel) };
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        // NEON with fused multiply-add is part of the aarch64 baseline.
        return kernel.run::<Fused>();
    }
    #[allow(unreachable_code)]
    kernel.run::<Unfused>()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,popcnt")]
unsafe fn run_avx2_fma<K: Kernel>(kernel: K) -> K::Output {
    kernel.run::<Fused>()
}

/// Asks the CPU to start loading `values` into cache (a hint; a no-op off x86-64).
#[inline(always)]
pub fn prefetch<T>(values: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        const LINE: usize = 64;
        let start = values.as_ptr() as *const i8;
        let bytes = std::mem::size_of_val(values);
        let mut offset = 0;
        while offset < bytes {
            // SAFETY: prefetching never faults, and the address lies inside `values`.
            #[allow(unused_unsafe)]
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(start.add(offset))
            };
            offset += LINE;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = values;
}
