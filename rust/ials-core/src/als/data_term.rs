//! The data term of a row's system in CG, `sum_i w_i (y_i . v) y_i` over the row's items, and
//! the data part of the residual CG starts from: per item a dot product, a coefficient and a
//! scaled row, in an order every instruction-set level keeps, so the factors' bits do not depend
//! on the level.

use crate::csr::CsrView;
use crate::linalg::axpy;
use crate::simd::Arith;
#[cfg(target_arch = "x86_64")]
use crate::simd::Vectors;
use crate::Real;

/// The interaction part of a row's system `A_u`, `sum_i w_i y_{c_i} y_{c_i}^T`: the rows
/// `c_i = cols[i]` of the row-major `y` (`k` columns) with weights `w_i = weights[i]`. Every
/// column indexes a whole row of `y` and every column has a weight: checked once when built, so
/// the kernels below, called once per CG step, index without checks.
#[derive(Clone, Copy)]
pub(crate) struct DataTerm<'a, T> {
    y: &'a [T],
    k: usize,
    cols: &'a [i32],
    weights: &'a [T],
}

impl<'a, T: 'static> DataTerm<'a, T> {
    /// Row `row` of `rows`, whose columns index the rows of `y`. A view's columns all lie below
    /// its `n_cols` (checked when the view was built), so only `y`'s length is checked here.
    pub(crate) fn of_row(
        rows: &CsrView<'a>,
        row: usize,
        y: &'a [T],
        k: usize,
        weights: &'a [T],
    ) -> Self {
        let cols = rows.row(row).0;
        assert!(rows
            .n_cols()
            .checked_mul(k)
            .is_some_and(|len| len <= y.len()));
        assert!(weights.len() >= cols.len());
        Self {
            y,
            k,
            cols,
            weights,
        }
    }

    /// Any columns, each checked.
    #[cfg(test)]
    pub(crate) fn new(y: &'a [T], k: usize, cols: &'a [i32], weights: &'a [T]) -> Self {
        for &c in cols {
            assert!(c >= 0 && (c as usize + 1) * k <= y.len());
        }
        assert!(weights.len() >= cols.len());
        Self {
            y,
            k,
            cols,
            weights,
        }
    }

    /// The same term with `T` seen as f32, where it is f32.
    fn as_f32(&self) -> Option<DataTerm<'a, f32>> {
        Some(DataTerm {
            y: crate::simd::as_f32(self.y)?,
            k: self.k,
            cols: self.cols,
            weights: crate::simd::as_f32(self.weights)?,
        })
    }
}

/// Rows whose dot products are formed together when `k` is a multiple of it (one accumulator
/// vector each, reduced in one transposing pass under AVX2).
const DOT_BLOCK: usize = 8;

/// `out += sum_i w_i (y_{c_i} . v) y_{c_i}` (see [`DataTerm`]), the data term of `A_u v` in a
/// CG step: the dot products of rows in whole blocks of [`DOT_BLOCK`] in the order of
/// [`dot_by_lanes`], the others in `dot`'s. `scratch` is scratch.
#[inline(always)]
pub(crate) fn add_data_term<T: Real, A: Arith>(
    arith: A,
    term: &DataTerm<'_, T>,
    v: &[T],
    out: &mut [T],
    scratch: &mut Vec<T>,
) {
    let n = term.cols.len();
    let by_lanes = if term.k.is_multiple_of(DOT_BLOCK) {
        n - n % DOT_BLOCK
    } else {
        0
    };
    add_rows_by_dots(arith, term, &[], v, by_lanes, out, scratch);
}

/// `out += sum_i (t_i - w_i (y_{c_i} . v)) y_{c_i}` with `t_i = targets[i]`: the data part of
/// the residual `b - A_u v` CG starts from, every dot product in `dot`'s order.
#[inline(always)]
pub(crate) fn add_residual_term<T: Real, A: Arith>(
    arith: A,
    term: &DataTerm<'_, T>,
    targets: &[T],
    v: &[T],
    out: &mut [T],
    scratch: &mut Vec<T>,
) {
    add_rows_by_dots(arith, term, targets, v, 0, out, scratch);
}

/// `out += sum_i coef_i y_{c_i}` where `d_i = y_{c_i} . v` and `coef_i = w_i d_i`, or
/// `t_i - w_i d_i` where `targets` holds the `t_i`; the rows before `by_lanes` (a multiple of
/// [`DOT_BLOCK`]) dot in the order of [`dot_by_lanes`], the others in `dot`'s. Where the level's
/// vectors hold all `k` outputs, one pass over the rows does it all: each row read once into
/// L1 for its dot product and its share of the sum, the sum kept in registers; else the dot
/// products first, then [`add_scaled_rows`]. The same bits either way.
#[inline(always)]
fn add_rows_by_dots<T: Real, A: Arith>(
    arith: A,
    term: &DataTerm<'_, T>,
    targets: &[T],
    v: &[T],
    by_lanes: usize,
    out: &mut [T],
    scratch: &mut Vec<T>,
) {
    let n = term.cols.len();
    assert!(targets.is_empty() || targets.len() >= n);
    assert!(by_lanes.is_multiple_of(DOT_BLOCK) && by_lanes <= n);
    #[cfg(target_arch = "x86_64")]
    if let Some(vectors) = crate::simd::vectors(arith) {
        let f32s = (
            term.as_f32(),
            crate::simd::as_f32(targets),
            crate::simd::as_f32(v),
            crate::simd::as_f32_mut(out),
        );
        if let (Some(term), Some(targets), Some(v), Some(out)) = f32s {
            let rows = wide::DotRows {
                term,
                targets,
                v,
                by_lanes,
            };
            let done = match vectors {
                Vectors::V4(s) => rows.add_to(s, out),
                Vectors::V3(s) => rows.add_to(s, out),
            };
            if done {
                return;
            }
        }
    }
    scratch.clear();
    scratch.resize(n, T::ZERO);
    row_dots(arith, term, v, by_lanes, scratch);
    for (i, d) in scratch.iter_mut().enumerate() {
        *d = coefficient(term.weights[i], *d, targets.get(i).copied());
    }
    add_scaled_rows(arith, term, scratch, out);
}

/// A row's coefficient in the sum from its weight `w` and dot product `d`: `w d` in a CG step,
/// `t - w d` in the residual with target `t` (two roundings, no fused multiply-subtract: what
/// `coefs8_f32` computes lane by lane).
#[inline(always)]
fn coefficient<T: Real>(w: T, d: T, target: Option<T>) -> T {
    match target {
        Some(t) => t - w * d,
        None => w * d,
    }
}

/// `dots[i] = y_{c_i} . v`, the rows before `by_lanes` in the order of [`dot_by_lanes`] (the
/// AVX2 body's eight accumulators and transposing reduction), the others in `dot`'s.
#[inline(always)]
fn row_dots<T: Real, A: Arith>(
    arith: A,
    term: &DataTerm<'_, T>,
    v: &[T],
    by_lanes: usize,
    dots: &mut [T],
) {
    let k = term.k;
    #[cfg(target_arch = "x86_64")]
    if k.is_multiple_of(DOT_BLOCK) && crate::simd::vectors(arith).is_some() {
        let f32s = (
            term.as_f32(),
            crate::simd::as_f32(v),
            crate::simd::as_f32_mut(dots),
        );
        if let (Some(term), Some(v), Some(dots)) = f32s {
            // SAFETY: the strategy holds vectors of AVX2 or wider, so the CPU has AVX2 and FMA;
            // `k` is a multiple of 8 as the body requires.
            return unsafe { avx2::dots_f32(&term, v, by_lanes, dots) };
        }
    }
    let row = |c: i32| &term.y[c as usize * k..(c as usize + 1) * k];
    for (i, (&c, d)) in term.cols.iter().zip(dots.iter_mut()).enumerate() {
        *d = if i < by_lanes {
            dot_by_lanes::<T, A>(row(c), v)
        } else {
            crate::linalg::vector::dot_generic::<T, A>(row(c), v)
        };
    }
}

/// `out += sum_i coefs_i y_{c_i}` over the term's rows (its weights unused): each output one
/// FMA chain over the rows in order, as repeated `axpy`s give, so every level gives the same
/// bits. With vectors, blocks of outputs stay in registers while the rows stream past, instead
/// of `out` being loaded and stored once per row.
#[inline(always)]
fn add_scaled_rows<T: Real, A: Arith>(
    arith: A,
    term: &DataTerm<'_, T>,
    coefs: &[T],
    out: &mut [T],
) {
    #[cfg(target_arch = "x86_64")]
    if let Some(vectors) = crate::simd::vectors(arith) {
        let f32s = (
            term.as_f32(),
            crate::simd::as_f32(coefs),
            crate::simd::as_f32_mut(out),
        );
        if let (Some(term), Some(coefs), Some(out)) = f32s {
            let rows = wide::ScaledRows { term, coefs };
            return match vectors {
                Vectors::V4(s) => rows.add_to(s, out),
                Vectors::V3(s) => rows.add_to(s, out),
            };
        }
    }
    let k = term.k;
    for (&c, &coef) in term.cols.iter().zip(coefs) {
        axpy::<T, A>(coef, &term.y[c as usize * k..(c as usize + 1) * k], out);
    }
}

/// `x . y` for a length that is a multiple of [`DOT_BLOCK`]: one chain per lane, the lanes
/// added in pairs, pairs of pairs, then the two halves.
#[inline(always)]
fn dot_by_lanes<T: Real, A: Arith>(x: &[T], y: &[T]) -> T {
    let mut acc = [T::ZERO; DOT_BLOCK];
    for (xc, yc) in x.chunks_exact(DOT_BLOCK).zip(y.chunks_exact(DOT_BLOCK)) {
        for lane in 0..DOT_BLOCK {
            acc[lane] = A::fma(xc[lane], yc[lane], acc[lane]);
        }
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
}

/// [`add_rows_by_dots`] and [`add_scaled_rows`] for every vector width, one source: each output
/// is the same FMA chain over the rows as in the generic body, so every level gives the same bits.
#[cfg(target_arch = "x86_64")]
mod wide {
    use super::{avx2, DataTerm};
    use crate::simd::F32Vectors;

    /// See [`super::add_rows_by_dots`].
    pub(super) struct DotRows<'a> {
        pub(super) term: DataTerm<'a, f32>,
        pub(super) targets: &'a [f32],
        pub(super) v: &'a [f32],
        pub(super) by_lanes: usize,
    }

    impl DotRows<'_> {
        /// Adds the rows to `out` in one pass where `k` is a multiple of 8 and of the vector
        /// width, at most eight vectors with AVX2 (64 factors) and sixteen with AVX-512 (256),
        /// whose 32 registers hold them beside the dot products' (measured against the two
        /// passes at 192 and 256 factors: 1.16x and 1.10x faster half-sweeps); else does
        /// nothing and says so.
        #[inline(always)]
        pub(super) fn add_to<S: F32Vectors>(&self, s: S, out: &mut [f32]) -> bool {
            let k = self.term.k;
            if !(k.is_multiple_of(8) && k.is_multiple_of(S::LANES)) {
                return false;
            }
            match k / S::LANES {
                1 => self.one_pass::<S, 1>(s, out),
                2 => self.one_pass::<S, 2>(s, out),
                3 => self.one_pass::<S, 3>(s, out),
                4 => self.one_pass::<S, 4>(s, out),
                5 => self.one_pass::<S, 5>(s, out),
                6 => self.one_pass::<S, 6>(s, out),
                7 => self.one_pass::<S, 7>(s, out),
                8 => self.one_pass::<S, 8>(s, out),
                // Up to sixteen with AVX-512's 32 registers (256 factors).
                9 if S::LANES == 16 => self.one_pass::<S, 9>(s, out),
                10 if S::LANES == 16 => self.one_pass::<S, 10>(s, out),
                11 if S::LANES == 16 => self.one_pass::<S, 11>(s, out),
                12 if S::LANES == 16 => self.one_pass::<S, 12>(s, out),
                13 if S::LANES == 16 => self.one_pass::<S, 13>(s, out),
                14 if S::LANES == 16 => self.one_pass::<S, 14>(s, out),
                15 if S::LANES == 16 => self.one_pass::<S, 15>(s, out),
                16 if S::LANES == 16 => self.one_pass::<S, 16>(s, out),
                _ => return false,
            }
            true
        }

        /// The rows before `by_lanes` eight at a time: their dot products together (one
        /// accumulator each, one transposing reduction), their coefficients, then each row times
        /// its coefficient added to the `VECTORS` vectors of outputs held in registers. The rows
        /// after it one at a time, their dot products in `dot`'s order.
        #[inline(always)]
        fn one_pass<S: F32Vectors, const VECTORS: usize>(&self, s: S, out: &mut [f32]) {
            let DataTerm {
                y,
                k,
                cols,
                weights,
            } = self.term;
            let (lanes, n) = (S::LANES, cols.len());
            assert!(VECTORS * lanes == k && out.len() >= k && self.v.len() >= k);
            assert!(self.by_lanes <= n && (self.targets.is_empty() || self.targets.len() >= n));
            let (y, cols, v) = (y.as_ptr(), cols.as_ptr(), self.v.as_ptr());
            let po = out.as_mut_ptr();
            // SAFETY: every row start `cols[i] * k` has `k` values after it in `y` and every
            // column a weight (`DataTerm`'s invariant); `v` and `out` hold `k` values, any
            // `targets` `n` (asserted above); `k` is a multiple of 8 (checked by `add_to`), and
            // `s` proves AVX2 and FMA for the dots.
            unsafe {
                let mut acc = [s.zero(); VECTORS];
                for (j, a) in acc.iter_mut().enumerate() {
                    *a = s.load(po.add(lanes * j));
                }
                let mut i = 0;
                while i + 8 <= self.by_lanes {
                    let rows: [*const f32; 8] =
                        std::array::from_fn(|b| y.add(*cols.add(i + b) as usize * k));
                    let coefs = avx2::coefs8_f32(
                        avx2::dots8_f32(&rows, v, k),
                        weights.as_ptr().add(i),
                        (!self.targets.is_empty()).then(|| self.targets.as_ptr().add(i)),
                    );
                    for (&row, &coef) in rows.iter().zip(&coefs) {
                        let coef = s.splat(coef);
                        for (j, a) in acc.iter_mut().enumerate() {
                            *a = s.fma(coef, s.load(row.add(lanes * j)), *a);
                        }
                    }
                    i += 8;
                }
                for i in i..n {
                    let row = y.add(*cols.add(i) as usize * k);
                    let d = avx2::dot_f32(std::slice::from_raw_parts(row, k), self.v);
                    let w = *weights.get_unchecked(i);
                    let coef = s.splat(super::coefficient(w, d, self.targets.get(i).copied()));
                    for (j, a) in acc.iter_mut().enumerate() {
                        *a = s.fma(coef, s.load(row.add(lanes * j)), *a);
                    }
                }
                for (j, a) in acc.iter().enumerate() {
                    s.store(po.add(lanes * j), *a);
                }
            }
        }
    }

    /// See [`super::add_scaled_rows`].
    pub(super) struct ScaledRows<'a> {
        pub(super) term: DataTerm<'a, f32>,
        pub(super) coefs: &'a [f32],
    }

    impl ScaledRows<'_> {
        /// `out += sum_i coefs_i y_{c_i}` with blocks of 8 vectors of outputs held in registers
        /// while every row streams past, then blocks of 4, 2 and 1, then one output at a time.
        #[inline(always)]
        pub(super) fn add_to<S: F32Vectors>(&self, s: S, out: &mut [f32]) {
            let DataTerm { y, k, cols, .. } = self.term;
            assert!(out.len() >= k && self.coefs.len() >= cols.len());
            let mut start = 0;
            start = self.outputs::<S, 8>(s, out, start);
            start = self.outputs::<S, 4>(s, out, start);
            start = self.outputs::<S, 2>(s, out, start);
            start = self.outputs::<S, 1>(s, out, start);
            for (e, o) in out.iter_mut().enumerate().take(k).skip(start) {
                for (&c, &coef) in cols.iter().zip(self.coefs) {
                    *o = coef.mul_add(y[c as usize * k + e], *o);
                }
            }
        }

        /// Outputs from `start` on in blocks of `VECTORS` vectors while whole blocks fit; where
        /// the next output starts. Raw pointers and a counted loop: with the iterator chain the
        /// loop kept its state on the stack (about 25 instructions per row for 4 FMAs at 64
        /// factors; 6% of a CG half-sweep there).
        #[inline(always)]
        fn outputs<S: F32Vectors, const VECTORS: usize>(
            &self,
            s: S,
            out: &mut [f32],
            mut start: usize,
        ) -> usize {
            let DataTerm { y, k, cols, .. } = self.term;
            let (lanes, n) = (S::LANES, cols.len());
            let (y, cols, coefs) = (y.as_ptr(), cols.as_ptr(), self.coefs.as_ptr());
            let po = out.as_mut_ptr();
            // SAFETY: every row start `cols[i] * k` has `k` values after it in `y`
            // (`DataTerm`'s invariant), `out` holds `k` values and `coefs` `n` (asserted by
            // `add_to`); each block lies inside 0..k.
            unsafe {
                while start + VECTORS * lanes <= k {
                    let mut acc = [s.zero(); VECTORS];
                    for (v, a) in acc.iter_mut().enumerate() {
                        *a = s.load(po.add(start + lanes * v));
                    }
                    for i in 0..n {
                        let coef = s.splat(*coefs.add(i));
                        let row = y.add(*cols.add(i) as usize * k + start);
                        for (v, a) in acc.iter_mut().enumerate() {
                            *a = s.fma(coef, s.load(row.add(lanes * v)), *a);
                        }
                    }
                    for (v, a) in acc.iter().enumerate() {
                        s.store(po.add(start + lanes * v), *a);
                    }
                    start += VECTORS * lanes;
                }
            }
            start
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::DataTerm;
    pub(super) use crate::linalg::vector::avx2::dot_f32;

    /// The dot products of eight rows with `v` over `k` values (a multiple of 8): one
    /// accumulator each, reduced in one transposing pass, lane `b` of the result row `b`'s.
    ///
    /// # Safety
    /// `rows[b]..rows[b] + k` and `v..v + k` must be readable; `k` a multiple of 8.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) unsafe fn dots8_f32(rows: &[*const f32; 8], v: *const f32, k: usize) -> __m256 {
        let mut acc = [_mm256_setzero_ps(); 8];
        // SAFETY: the caller guarantees `k` readable values at each row and at `v`.
        unsafe {
            for chunk in (0..k).step_by(8) {
                let vc = _mm256_loadu_ps(v.add(chunk));
                for (a, row) in acc.iter_mut().zip(rows) {
                    *a = _mm256_fmadd_ps(_mm256_loadu_ps(row.add(chunk)), vc, *a);
                }
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
        _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(low, high),
            _mm256_permute2f128_ps::<0x31>(low, high),
        )
    }

    /// Eight coefficients `w_b d_b`, or `t_b - w_b d_b` where `targets` is given, from eight
    /// dot products: the scalar expression lane by lane (no fused multiply-subtract), so the
    /// same bits.
    ///
    /// # Safety
    /// `weights..weights + 8` and any `targets..targets + 8` must be readable.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) unsafe fn coefs8_f32(
        dots: __m256,
        weights: *const f32,
        targets: Option<*const f32>,
    ) -> [f32; 8] {
        // SAFETY: the caller guarantees eight readable values at each pointer.
        unsafe {
            let mut coefs = _mm256_mul_ps(_mm256_loadu_ps(weights), dots);
            if let Some(targets) = targets {
                coefs = _mm256_sub_ps(_mm256_loadu_ps(targets), coefs);
            }
            std::mem::transmute::<__m256, [f32; 8]>(coefs)
        }
    }

    /// `dots[i] = y_{c_i} . v` for `k` a multiple of 8: the rows before `by_lanes` eight at a
    /// time with one accumulator each and a single transposing reduction, the others as `dot`.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) unsafe fn dots_f32(
        term: &DataTerm<'_, f32>,
        v: &[f32],
        by_lanes: usize,
        dots: &mut [f32],
    ) {
        let DataTerm { y, k, cols, .. } = *term;
        let n = cols.len();
        assert!(k.is_multiple_of(8) && v.len() >= k && dots.len() >= n && by_lanes <= n);
        // SAFETY: every row start `cols[i] * k` has `k` values after it in `y` (`DataTerm`'s
        // invariant); loads touch `row(i)[..k]` and `v[..k]` at offsets below `k` in steps of 8
        // (k % 8 == 0), stores `dots[..n]` in whole blocks of 8 below `n`.
        unsafe {
            let row = |i: usize| y.as_ptr().add(cols[i] as usize * k);
            let pv = v.as_ptr();
            let mut i = 0;
            while i + 8 <= by_lanes {
                let rows = std::array::from_fn(|b| row(i + b));
                _mm256_storeu_ps(dots.as_mut_ptr().add(i), dots8_f32(&rows, pv, k));
                i += 8;
            }
            for (j, d) in dots.iter_mut().enumerate().take(n).skip(i) {
                *d = dot_f32(std::slice::from_raw_parts(row(j), k), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::vector::tests::bits;
    use crate::simd::testing::{avx2_or_skip, avx512_or_skip, fused, fused_avx512, generic_fused};
    use crate::simd::Unfused;

    struct Case {
        y: Vec<f32>,
        cols: Vec<i32>,
        weights: Vec<f32>,
        v: Vec<f32>,
        start: Vec<f32>,
    }

    fn case(k: usize, n: usize) -> Case {
        let n_rows = 40;
        Case {
            y: (0..n_rows * k)
                .map(|i| ((i * 53 % 29) as f32) / 29.0 - 0.5)
                .collect(),
            cols: (0..n).map(|i| ((i * 7 + 3) % n_rows) as i32).collect(),
            weights: (0..n).map(|i| 0.5 + (i % 5) as f32).collect(),
            v: (0..k).map(|i| (i % 9) as f32 / 9.0 - 0.4).collect(),
            start: (0..k).map(|i| (i % 4) as f32).collect(),
        }
    }

    const SIZES: [usize; 10] = [1, 8, 16, 24, 64, 72, 128, 136, 144, 256];
    const ROW_COUNTS: [usize; 7] = [0, 1, 7, 8, 9, 17, 33];

    #[test]
    fn data_term_matches_naive_on_every_path() {
        fn check<A: Arith>(arith: A, k: usize, n: usize) {
            let c = case(k, n);
            let mut naive: Vec<f64> = c.start.iter().map(|&o| o as f64).collect();
            for (&col, &w) in c.cols.iter().zip(&c.weights) {
                let row = &c.y[col as usize * k..(col as usize + 1) * k];
                let d: f64 = row
                    .iter()
                    .zip(&c.v)
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum();
                for (o, &r) in naive.iter_mut().zip(row) {
                    *o += w as f64 * d * r as f64;
                }
            }
            let term = DataTerm::new(&c.y, k, &c.cols, &c.weights);
            let mut out = c.start.clone();
            add_data_term(arith, &term, &c.v, &mut out, &mut Vec::new());
            let scale = 1.0 + naive.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            for (a, b) in out.iter().zip(&naive) {
                assert!((*a as f64 - b).abs() <= 1e-5 * scale, "k={k} n={n}");
            }
            // The residual's part, `sum_i (t_i - w_i d_i) y_i`: the targets' rows added to the
            // start, less the data term's share.
            let targets: Vec<f32> = (0..n).map(|i| 1.5 - (i % 3) as f32).collect();
            let mut expected: Vec<f64> = c.start.iter().map(|&o| o as f64).collect();
            for (e, o) in expected.iter_mut().enumerate() {
                let data = naive[e] - c.start[e] as f64;
                let rows: f64 = c
                    .cols
                    .iter()
                    .zip(&targets)
                    .map(|(&col, &t)| t as f64 * c.y[col as usize * k + e] as f64)
                    .sum();
                *o += rows - data;
            }
            let mut out = c.start.clone();
            add_residual_term(arith, &term, &targets, &c.v, &mut out, &mut Vec::new());
            for (a, b) in out.iter().zip(&expected) {
                assert!(
                    (*a as f64 - b).abs() <= 1e-5 * scale * 2.0,
                    "residual k={k} n={n}"
                );
            }
        }
        for k in SIZES {
            for n in ROW_COUNTS {
                check(Unfused, k, n);
                for fused in [fused(), fused_avx512()].into_iter().flatten() {
                    check(fused, k, n);
                }
            }
        }
    }

    /// The kernels index `y` unchecked on the strength of `DataTerm`'s invariant: a term whose
    /// `y` has fewer rows than the view has columns is refused when built.
    #[test]
    #[should_panic]
    fn a_term_whose_y_has_fewer_rows_than_the_view_has_columns_is_refused() {
        let rows = crate::csr::CsrMatrix::new(vec![0, 1], vec![1], vec![1.0], 3).unwrap();
        let (y, weights) = (vec![0.0f32; 2 * 4], vec![1.0f32]);
        DataTerm::of_row(&rows.view(), 0, &y, 4, &weights);
    }

    #[test]
    #[should_panic]
    fn a_term_with_a_column_past_y_is_refused() {
        let (y, weights) = (vec![0.0f32; 2 * 4], vec![1.0f32]);
        DataTerm::new(&y, 4, &[2], &weights);
    }

    /// Every kernel of the data term at level `s` against the generic body, bit for bit: the
    /// one-pass kernel with and without targets and rows in lane order, the dot products of
    /// whole blocks, and the weighted sum alone.
    fn check_level<S: crate::simd::F32Vectors>(s: S) {
        let most = if S::LANES == 16 { 16 } else { 8 };
        for k in SIZES {
            for n in ROW_COUNTS {
                let c = case(k, n);
                let term = DataTerm::new(&c.y, k, &c.cols, &c.weights);
                let targets: Vec<f32> = (0..n).map(|i| 1.5 - (i % 3) as f32).collect();
                let blocks = if k % DOT_BLOCK == 0 {
                    n - n % DOT_BLOCK
                } else {
                    0
                };
                for (by_lanes, targets) in
                    [(blocks, &[][..]), (0, &targets[..]), (blocks, &targets[..])]
                {
                    let mut generic = c.start.clone();
                    let mut scratch = Vec::new();
                    add_rows_by_dots(
                        generic_fused(),
                        &term,
                        targets,
                        &c.v,
                        by_lanes,
                        &mut generic,
                        &mut scratch,
                    );
                    let rows = wide::DotRows {
                        term,
                        targets,
                        v: &c.v,
                        by_lanes,
                    };
                    let mut special = c.start.clone();
                    if rows.add_to(s, &mut special) {
                        assert_eq!(
                            bits(&special),
                            bits(&generic),
                            "k={k} n={n} by_lanes={by_lanes}"
                        );
                    } else {
                        assert!(
                            k % DOT_BLOCK != 0 || k % S::LANES != 0 || k > most * S::LANES,
                            "k={k}"
                        );
                    }
                }
                let mut dots = vec![0.0f32; n];
                row_dots(generic_fused(), &term, &c.v, blocks, &mut dots);
                if k % DOT_BLOCK == 0 {
                    let mut special = vec![0.0f32; n];
                    // SAFETY: `s` holds a token of AVX2 or wider: the CPU has AVX2 and FMA; k % 8 == 0.
                    unsafe { avx2::dots_f32(&term, &c.v, blocks, &mut special) };
                    assert_eq!(bits(&special), bits(&dots), "k={k} n={n}");
                }
                let mut generic = c.start.clone();
                add_scaled_rows(generic_fused(), &term, &dots, &mut generic);
                let mut special = c.start.clone();
                let rows = wide::ScaledRows { term, coefs: &dots };
                rows.add_to(s, &mut special);
                assert_eq!(bits(&special), bits(&generic), "k={k} n={n}");
            }
        }
    }

    #[test]
    fn avx2_data_term_is_its_generic_twin_bit_for_bit() {
        if let Some(token) = avx2_or_skip("avx2_data_term_is_its_generic_twin_bit_for_bit") {
            check_level(crate::simd::V3(token));
        }
    }

    #[test]
    fn avx512_data_term_is_its_generic_twin_bit_for_bit() {
        if let Some(token) = avx512_or_skip("avx512_data_term_is_its_generic_twin_bit_for_bit") {
            check_level(crate::simd::V4(token));
        }
    }
}
