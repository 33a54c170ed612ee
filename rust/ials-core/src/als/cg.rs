//! Conjugate-gradient row solves (Takacs, Pilaszy & Tikk 2011): a few warm-started steps per row,
//! which only ever multiply by `A_u`, never form it.

use crate::csr::CsrView;
use crate::linalg::{axpy, dot, symv_panels, symv_rows, PanelMatrix};
#[cfg(target_arch = "x86_64")]
use crate::simd::Vectors;
use crate::simd::{prefetch, Arith, Kernel};
use crate::Real;

use super::objective::Objective;

/// How many interactions ahead the first pass over a row's items (the initial residual, which
/// brings them into cache for the CG steps) prefetches item rows, counting on into the following
/// rows, so that a row's first items arrive while the row before it is worked on. Measured
/// against 4 ahead within the row: 5-11% faster at 64 and 128 factors (gowalla, 1 and 2
/// threads); 16 to 64 ahead did about the same.
const PREFETCH_AHEAD: usize = 16;

/// Rows advanced through CG together once the Gram matrix outgrows L1, unless it is packed and
/// large enough for the whole chunk to go together (see `CgRows::run`): four, or eight where
/// AVX-512's 32 registers hold their accumulators (the panel product's group sizes).
const LOCKSTEP: usize = 4;
const LOCKSTEP_WIDE: usize = 8;
/// Gram matrices up to this size (bytes) stay in L1 across rows: one row at a time is faster then.
const GRAM_IN_L1: usize = 32 * 1024;

/// Gram matrices from this size (bytes) on are packed in panels: the panel product reads each
/// entry once per group of rows from contiguous memory, where the row-major mat-vec strides `4k`
/// bytes down a column block. Below it the matrix is served from L1 or L2 row by row about as fast
/// (measured with panels in lock-step groups: 0.95x-1.06x at 128 factors, 1.06x-1.10x at 256 with
/// AVX-512 and 1.03x-1.06x with AVX2; the same bits).
const PANELS_FROM: usize = 256 * 1024;
/// Packed Gram matrices larger than this (bytes) have every row of a chunk go through CG together,
/// so that each panel, read from L2 or beyond, serves 32 rows. Below it the lock-step groups keep
/// their item rows in L1 across CG steps, which 32 rows do not (measured: 7-10% slower with the
/// whole chunk at 64 to 256 factors, 22% faster at 512, 3x at 1024).
const WHOLE_CHUNK_FROM: usize = 512 * 1024;

/// `weighted_gram` packed for [`symv_panels`] where that pays: `T` is f32, `k` a multiple of the
/// panel width and the matrix at least [`PANELS_FROM`].
pub(crate) fn gram_panels<T: Real>(weighted_gram: &[T], k: usize) -> Option<PanelMatrix> {
    if std::mem::size_of_val(weighted_gram) < PANELS_FROM {
        return None;
    }
    crate::simd::as_f32(weighted_gram).and_then(|m| PanelMatrix::new(m, k))
}

/// CG stops once the squared residual norm falls below this (as implicit does).
const CG_TOLERANCE: f64 = 1e-20;

/// The data term of `A_u v` in a CG step, `sum_i w_i (y_{c_i} . v) y_{c_i}`: the rows
/// `c_i = cols[i]` of the row-major `y` (`k` columns) with weights `w_i = weights[i]`.
pub struct DataTerm<'a, T> {
    pub y: &'a [T],
    pub k: usize,
    pub cols: &'a [i32],
    pub weights: &'a [T],
}

/// Rows whose dot products are formed together when `k` is a multiple of it (one accumulator
/// vector each, reduced in one transposing pass under AVX2).
const DOT_BLOCK: usize = 8;

/// `out += sum_i w_i (y_{c_i} . v) y_{c_i}` (see [`DataTerm`]): first every dot product, then
/// the weighted rows added in order. `dots` is scratch.
#[inline(always)]
pub fn add_data_term<T: Real, A: Arith>(
    arith: A,
    term: &DataTerm<'_, T>,
    v: &[T],
    out: &mut [T],
    dots: &mut Vec<T>,
) {
    #[cfg(target_arch = "x86_64")]
    if term.k.is_multiple_of(DOT_BLOCK) {
        if let (Some(vectors), Some(y), Some(weights), Some(v), Some(out)) = (
            crate::simd::vectors(arith),
            crate::simd::as_f32(term.y),
            crate::simd::as_f32(term.weights),
            crate::simd::as_f32(v),
            crate::simd::as_f32_mut(out),
        ) {
            let term = DataTerm {
                y,
                k: term.k,
                cols: term.cols,
                weights,
            };
            let mut scratch = std::mem::take(dots);
            scratch.resize(term.cols.len(), T::ZERO);
            let f32_dots = crate::simd::as_f32_mut(&mut scratch).expect("T is f32 here");
            // SAFETY: the strategy holds vectors of AVX2 or wider, so the CPU has AVX2 and FMA;
            // `k` is a multiple of 8 as the body requires.
            unsafe { avx2::dots_f32(&term, v, f32_dots) };
            match vectors {
                Vectors::V4(s) => wide::add_weighted_rows(s, &term, f32_dots, out),
                Vectors::V3(s) => wide::add_weighted_rows(s, &term, f32_dots, out),
            }
            *dots = scratch;
            return;
        }
    }
    // The generic body, in the order of the AVX2 one: when `k` is a multiple of `DOT_BLOCK`, the
    // dot products of whole blocks of rows use one accumulator vector per row summed pairwise;
    // the other rows use `dot`'s order.
    let k = term.k;
    let row = |c: i32| &term.y[c as usize * k..(c as usize + 1) * k];
    let n = term.cols.len();
    let blocked = if k.is_multiple_of(DOT_BLOCK) {
        n - n % DOT_BLOCK
    } else {
        0
    };
    dots.clear();
    for (i, &c) in term.cols.iter().enumerate() {
        dots.push(if i < blocked {
            dot_by_lanes::<T, A>(row(c), v)
        } else {
            crate::linalg::vector::dot_generic::<T, A>(row(c), v)
        });
    }
    for ((&c, &w), &d) in term.cols.iter().zip(term.weights).zip(dots.iter()) {
        axpy::<T, A>(w * d, row(c), out);
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

pub(crate) struct CgRows<'a, T> {
    pub(crate) rows: &'a CsrView<'a>,
    pub(crate) first_row: usize,
    pub(crate) x: &'a mut [T],
    pub(crate) y: &'a [T],
    pub(crate) k: usize,
    pub(crate) weighted_gram: &'a [T],
    /// `weighted_gram` packed for [`symv_panels`] where that pays ([`gram_panels`]).
    pub(crate) panels: Option<&'a PanelMatrix>,
    pub(crate) objective: &'a Objective,
    pub(crate) steps: usize,
}

impl<T: Real> Kernel for CgRows<'_, T> {
    type Output = ();

    /// Once the Gram matrix no longer fits L1 (at 128 factors it is 64 KB and streams from L2),
    /// rows go `LOCKSTEP` at a time (`LOCKSTEP_WIDE` with AVX-512, at every size), so each pass
    /// over it serves all of them; with the matrix packed in panels those are the panel product's
    /// groups (see `linalg::panels`), and past [`WHOLE_CHUNK_FROM`] every row of the chunk goes
    /// through CG together, so that each CG step's products `M p_u` form one small matrix product
    /// over the chunk. Each row's arithmetic is unchanged: its result does not depend on the rows
    /// beside it.
    #[inline(always)]
    fn run<A: Arith>(self, arith: A) {
        let CgRows {
            rows,
            first_row,
            x,
            y,
            k,
            weighted_gram: gram,
            panels,
            objective,
            steps,
        } = self;
        let item = |c: i32| &y[c as usize * k..(c as usize + 1) * k];
        let w0 = T::from_f64(objective.unobserved_weight);
        let tolerance = T::from_f64(CG_TOLERANCE);
        // AVX-512 vectors are too wide for one row alone to keep enough FMA chains in flight
        // below 128 factors; the rows' results are the same bits either way.
        let together = if panels.is_some() && std::mem::size_of_val(gram) > WHOLE_CHUNK_FROM {
            x.len() / k
        } else if arith.avx512().is_some() {
            LOCKSTEP_WIDE
        } else if std::mem::size_of_val(gram) > GRAM_IN_L1 {
            LOCKSTEP
        } else {
            1
        };
        let mut scratch = vec![T::ZERO; 3 * together * k];
        let (r_all, rest) = scratch.split_at_mut(together * k);
        let (p_all, ap_all) = rest.split_at_mut(together * k);
        // Per lane, `c_ui - alpha0` of each interaction; and scratch for the data term.
        let mut weights = vec![Vec::new(); together];
        let (mut dots, mut interleaved) = (Vec::new(), Vec::new());
        let (mut lambda, mut rs_old) = (vec![T::ZERO; together], vec![T::ZERO; together]);
        let mut active = vec![false; together];
        for (group, xs) in x.chunks_mut(together * k).enumerate() {
            let first = first_row + group * together;
            let lanes = xs.len() / k;
            let (r_all, p_all, ap_all) = (
                &mut r_all[..lanes * k],
                &mut p_all[..lanes * k],
                &mut ap_all[..lanes * k],
            );
            active.fill(false);

            // r = b - A x
            gram_times(arith, gram, panels, k, xs, r_all, &mut interleaved);
            for lane in 0..lanes {
                let (cols, vals) = rows.row(first + lane);
                let x = &mut xs[lane * k..(lane + 1) * k];
                if cols.is_empty() {
                    x.fill(T::ZERO);
                    continue;
                }
                lambda[lane] = T::from_f64(objective.row_regularization(cols.len(), rows.n_cols()));
                weights[lane].clear();
                weights[lane].extend(vals.iter().map(|&v| T::from_f32(objective.cell(v).0) - w0));
                let r = &mut r_all[lane * k..(lane + 1) * k];
                for (ri, &xi) in r.iter_mut().zip(x.iter()) {
                    *ri = -A::fma(lambda[lane], xi, *ri);
                }
                let upcoming = rows.columns_from(first + lane);
                for (j, (&c, &v)) in cols.iter().zip(vals).enumerate() {
                    if let Some(&ahead) = upcoming.get(j + PREFETCH_AHEAD) {
                        prefetch(item(ahead));
                    }
                    let (confidence, preference) = objective.cell(v);
                    let confidence = T::from_f32(confidence);
                    let yi = item(c);
                    let coef = confidence * T::from_f32(preference)
                        - (confidence - w0) * dot(arith, yi, x);
                    axpy::<T, A>(coef, yi, r);
                }
                p_all[lane * k..(lane + 1) * k].copy_from_slice(r);
                rs_old[lane] = dot(arith, r, r);
                active[lane] = rs_old[lane] >= tolerance;
            }
            for _ in 0..steps {
                if !active.contains(&true) {
                    break;
                }
                // ap = A p
                gram_times(arith, gram, panels, k, p_all, ap_all, &mut interleaved);
                for lane in 0..lanes {
                    if !active[lane] {
                        continue;
                    }
                    let cols = rows.row(first + lane).0;
                    let at = lane * k..(lane + 1) * k;
                    let (x, r) = (&mut xs[at.clone()], &mut r_all[at.clone()]);
                    let (p, ap) = (&mut p_all[at.clone()], &mut ap_all[at]);
                    axpy::<T, A>(lambda[lane], p, ap);
                    let term = DataTerm {
                        y,
                        k,
                        cols,
                        weights: &weights[lane],
                    };
                    add_data_term(arith, &term, p, ap, &mut dots);
                    let curvature = dot(arith, p, ap);
                    // Only a singular system (no regularization, no data along p) stops here;
                    // going on would divide by zero and fill the row with NaN.
                    if !(curvature > T::ZERO && curvature.is_finite()) {
                        active[lane] = false;
                        continue;
                    }
                    let step = rs_old[lane] / curvature;
                    axpy::<T, A>(step, p, x);
                    axpy::<T, A>(-step, ap, r);
                    let rs_new = dot(arith, r, r);
                    if rs_new < tolerance {
                        active[lane] = false;
                        continue;
                    }
                    let beta = rs_new / rs_old[lane];
                    for (pi, &ri) in p.iter_mut().zip(r.iter()) {
                        *pi = A::fma(beta, *pi, ri);
                    }
                    rs_old[lane] = rs_new;
                }
            }
        }
    }
}

/// `outs_r = M vs_r` for every row of the block `vs`: through the panels where there are any
/// (`T` is f32 then), else row-major. (A function, not a closure: a closure would not be inlined
/// into the caller's instruction set.)
#[inline(always)]
fn gram_times<T: Real, A: Arith>(
    arith: A,
    gram: &[T],
    panels: Option<&PanelMatrix>,
    k: usize,
    vs: &[T],
    outs: &mut [T],
    scratch: &mut Vec<f32>,
) {
    if let Some(panels) = panels {
        let f32s = (
            crate::simd::as_f32(gram),
            crate::simd::as_f32(vs),
            crate::simd::as_f32_mut(outs),
        );
        if let (Some(m), Some(vs), Some(outs)) = f32s {
            return symv_panels(arith, m, panels, vs, outs, scratch);
        }
    }
    symv_rows(arith, gram, k, vs, outs);
}

/// The weighted sum of the data term for every vector width, one source: each output is the
/// same FMA chain over the rows as in the generic body, so every level gives the same bits.
#[cfg(target_arch = "x86_64")]
mod wide {
    use super::DataTerm;
    use crate::simd::F32Vectors;

    /// `out += sum_i (w_i dots_i) y_{c_i}` with blocks of 8 vectors of outputs held in registers
    /// while every row streams past, then blocks of 4, 2 and 1, then one output at a time.
    #[inline(always)]
    pub(super) fn add_weighted_rows<S: F32Vectors>(
        s: S,
        term: &DataTerm<'_, f32>,
        dots: &[f32],
        out: &mut [f32],
    ) {
        let (k, n) = (term.k, term.cols.len());
        assert!(out.len() >= k && dots.len() >= n && term.weights.len() >= n);
        for &c in term.cols {
            assert!(c >= 0 && (c as usize + 1) * k <= term.y.len());
        }
        let mut start = 0;
        start = outputs::<S, 8>(s, term, dots, out, start);
        start = outputs::<S, 4>(s, term, dots, out, start);
        start = outputs::<S, 2>(s, term, dots, out, start);
        start = outputs::<S, 1>(s, term, dots, out, start);
        for (e, o) in out.iter_mut().enumerate().take(k).skip(start) {
            for ((&c, &w), &d) in term.cols.iter().zip(term.weights).zip(dots) {
                *o = (w * d).mul_add(term.y[c as usize * k + e], *o);
            }
        }
    }

    /// Outputs from `start` on in blocks of `VECTORS` vectors while whole blocks fit; where the
    /// next output starts.
    #[inline(always)]
    fn outputs<S: F32Vectors, const VECTORS: usize>(
        s: S,
        term: &DataTerm<'_, f32>,
        dots: &[f32],
        out: &mut [f32],
        mut start: usize,
    ) -> usize {
        let (k, lanes) = (term.k, S::LANES);
        let po = out.as_mut_ptr();
        // SAFETY: every row start `cols[i] * k` has `k` values after it in `y` and `out` holds
        // `k` values (asserted by `add_weighted_rows`); each block lies inside 0..k.
        unsafe {
            let row = |i: usize| term.y.as_ptr().add(term.cols[i] as usize * k);
            while start + VECTORS * lanes <= k {
                let mut acc = [s.zero(); VECTORS];
                for (v, a) in acc.iter_mut().enumerate() {
                    *a = s.load(po.add(start + lanes * v));
                }
                let rows = term.weights.iter().zip(dots).take(term.cols.len());
                for (i, (&weight, &d)) in rows.enumerate() {
                    let w = s.splat(weight * d);
                    let r = row(i).add(start);
                    for (v, a) in acc.iter_mut().enumerate() {
                        *a = s.fma(w, s.load(r.add(lanes * v)), *a);
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

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::DataTerm;
    use crate::linalg::vector::avx2::dot_f32;

    /// `dots[i] = y_{c_i} . v` for `k` a multiple of 8: eight rows at a time with one
    /// accumulator each and a single transposing reduction; the rows left over one by one.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) unsafe fn dots_f32(term: &DataTerm<'_, f32>, v: &[f32], dots: &mut [f32]) {
        let DataTerm { y, k, cols, .. } = *term;
        let n = cols.len();
        assert!(k % 8 == 0 && v.len() >= k && dots.len() >= n);
        for &c in cols {
            assert!(c >= 0 && (c as usize + 1) * k <= y.len());
        }
        // SAFETY: every row start `cols[i] * k` has `k` values after it in `y` (asserted above);
        // loads touch `row(i)[..k]` and `v[..k]` at offsets below `k` in steps of 8 (k % 8 == 0),
        // stores `dots[..n]` in whole blocks of 8 below `n`.
        unsafe {
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

    const SIZES: [usize; 8] = [1, 8, 16, 24, 64, 72, 128, 136];
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
            let term = DataTerm {
                y: &c.y,
                k,
                cols: &c.cols,
                weights: &c.weights,
            };
            let mut out = c.start.clone();
            add_data_term(arith, &term, &c.v, &mut out, &mut Vec::new());
            let scale = 1.0 + naive.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            for (a, b) in out.iter().zip(&naive) {
                assert!((*a as f64 - b).abs() <= 1e-5 * scale, "k={k} n={n}");
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

    fn check_level<S: crate::simd::F32Vectors>(s: S) {
        for k in SIZES.into_iter().filter(|k| k % DOT_BLOCK == 0) {
            for n in ROW_COUNTS {
                let c = case(k, n);
                let term = DataTerm {
                    y: &c.y,
                    k,
                    cols: &c.cols,
                    weights: &c.weights,
                };
                let mut generic = c.start.clone();
                add_data_term(generic_fused(), &term, &c.v, &mut generic, &mut Vec::new());
                let mut special = c.start.clone();
                let mut dots = vec![0.0f32; n];
                // SAFETY: `s` holds a token of AVX2 or wider: the CPU has AVX2 and FMA; k % 8 == 0.
                unsafe { avx2::dots_f32(&term, &c.v, &mut dots) };
                wide::add_weighted_rows(s, &term, &dots, &mut special);
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

    /// A chunk of rows solved with the Gram matrix packed in panels and without (rows four or
    /// eight at a time, row-major): the same bits, at every level the CPU has. Packed, at 64
    /// factors the panel product's groups go through CG in lock step; at 384 (576 KiB, past
    /// `WHOLE_CHUNK_FROM`) the whole chunk does.
    fn panels_change_no_bit<A: Arith>(arith: A) {
        for k in [64, 384] {
            panels_change_no_bit_at(arith, k);
        }
    }

    fn panels_change_no_bit_at<A: Arith>(arith: A, k: usize) {
        use crate::csr::CsrMatrix;
        let (n_rows, n_cols) = (29, 50);
        let (mut indptr, mut indices, mut data) = (vec![0i64], Vec::new(), Vec::new());
        for r in 0..n_rows {
            // Row 3 stays empty; the others have 1 to 16 interactions.
            for c in (0..n_cols).filter(|c| r != 3 && (r * 7 + c * 3) % (2 + r % 15) == 0) {
                indices.push(c as i32);
                data.push(1.0 + ((r * c) % 4) as f32);
            }
            indptr.push(indices.len() as i64);
        }
        let rows = CsrMatrix::new(indptr, indices, data, n_cols).unwrap();
        let values = |n: usize, seed: usize| -> Vec<f32> {
            (0..n)
                .map(|i| ((i * 37 + seed * 11) % 23) as f32 / 23.0 - 0.4)
                .collect()
        };
        let y = values(n_cols * k, 2);
        let gram: Vec<f32> = (0..k * k)
            .map(|ij| {
                let (a, b) = (ij / k, ij % k);
                (0..n_cols)
                    .map(|c| y[c * k + a] * y[c * k + b])
                    .sum::<f32>()
                    * 0.5
            })
            .collect();
        let panels = PanelMatrix::new(&gram, k).unwrap();
        let objective = Objective {
            regularization: 0.1,
            alpha: 2.0,
            regularization_exponent: 1.0,
            unobserved_weight: 0.5,
        };
        let solve = |panels: Option<&PanelMatrix>| {
            let mut x = values(n_rows * k, 1);
            CgRows {
                rows: &rows.view(),
                first_row: 0,
                x: &mut x,
                y: &y,
                k,
                weighted_gram: &gram,
                panels,
                objective: &objective,
                steps: 3,
            }
            .run(arith);
            x
        };
        let (packed, row_major) = (solve(Some(&panels)), solve(None));
        assert!(packed.iter().all(|v| v.is_finite()));
        assert_eq!(bits(&packed), bits(&row_major), "k={k}");
        assert_ne!(
            bits(&packed),
            bits(&values(n_rows * k, 1)),
            "the rows moved"
        );
    }

    #[test]
    fn cg_with_panels_is_cg_without_on_every_level() {
        panels_change_no_bit(generic_fused());
        let name = "cg_with_panels_is_cg_without_on_every_level (AVX2)";
        if avx2_or_skip(name).is_some() {
            panels_change_no_bit(fused().expect("the CPU has AVX2"));
        }
        let name = "cg_with_panels_is_cg_without_on_every_level (AVX-512)";
        if avx512_or_skip(name).is_some() {
            panels_change_no_bit(fused_avx512().expect("the CPU has AVX-512"));
        }
    }

    #[test]
    fn only_large_f32_gram_matrices_are_packed() {
        let zeros = |k: usize| vec![0.0f32; k * k];
        assert!(
            gram_panels(&zeros(224), 224).is_none(),
            "196 KiB stays row-major"
        );
        assert!(gram_panels(&zeros(256), 256).is_some());
        assert!(gram_panels(&zeros(384), 384).is_some());
        assert!(
            gram_panels(&zeros(400), 400).is_none(),
            "not a multiple of the panel"
        );
        assert!(gram_panels(&vec![0.0f64; 384 * 384], 384).is_none(), "f64");
    }
}
