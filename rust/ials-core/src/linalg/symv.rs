//! The symmetric `k x k` matrix-vector product of a CG step: `out = M v`, one vector or several
//! with one pass over `M`.

use crate::simd::Arith;
use crate::Real;

use super::vector::{tile_height, LANES};
#[cfg(target_arch = "x86_64")]
use crate::simd::Vectors;

/// `out = M v` for a symmetric row-major `k x k` matrix `M`.
///
/// Each block of `LANES` outputs stays in registers while the rows of `M` stream past
/// (`out[b] = sum_j v[j] M[j][b]`, using the symmetry), so `M` is read once and `out` written once.
#[inline(always)]
pub fn symv<T: Real, A: Arith>(arith: A, m: &[T], v: &[T], out: &mut [T]) {
    #[cfg(target_arch = "x86_64")]
    if let (Some(vectors), Some(m), Some(v), Some(out)) = (
        crate::simd::vectors(arith),
        crate::simd::as_f32(m),
        crate::simd::as_f32(v),
        crate::simd::as_f32_mut(out),
    ) {
        return match vectors {
            Vectors::V4(s) => wide::symv(s, m, v, out),
            Vectors::V3(s) => wide::symv(s, m, v, out),
        };
    }
    let _ = arith;
    let k = v.len();
    symv_generic::<T, A>(1, m, k, v, &mut out[..k]);
}

/// The generic body for the rows `v_r` of `vs`, `height` at a time: per output, one FMA chain
/// over the rows of `M` in order (`out_r[b] = sum_j v_r[j] M[j][b]`), however the rows are
/// grouped. Blocks of `LANES` columns are the outer loop and every group of rows passes over a
/// block before the next, each group's sums in registers.
#[inline(always)]
fn symv_generic<T: Real, A: Arith>(height: usize, m: &[T], k: usize, vs: &[T], outs: &mut [T]) {
    assert!(m.len() >= k * k && vs.len() == outs.len() && height > 0);
    if k == 0 {
        return;
    }
    assert!(vs.len().is_multiple_of(k), "whole rows of k values");
    for start in (0..k).step_by(LANES) {
        let width = LANES.min(k - start);
        let block = Block {
            m: &m[..k * k],
            stride: k,
            offset: start,
        };
        columns::<T, A>(height, block, start, width, k, vs, outs);
    }
}

/// A block of columns of `M`: row `j`'s values of it begin at `m[j * stride + offset]`.
#[derive(Clone, Copy)]
pub(super) struct Block<'a, T> {
    pub(super) m: &'a [T],
    pub(super) stride: usize,
    pub(super) offset: usize,
}

/// Outputs `start..start + width` of every row from `block` (those columns of `M`): a whole block
/// of `LANES` in register tiles of `height` rows, a narrower one output at a time.
#[inline(always)]
pub(super) fn columns<T: Real, A: Arith>(
    height: usize,
    block: Block<'_, T>,
    start: usize,
    width: usize,
    k: usize,
    vs: &[T],
    outs: &mut [T],
) {
    let Block { m, stride, offset } = block;
    if width == LANES {
        for (vs, outs) in vs.chunks(height * k).zip(outs.chunks_mut(height * k)) {
            match vs.len() / k {
                4 => column_block::<T, A, 4>(block, start, k, vs, outs),
                3 => column_block::<T, A, 3>(block, start, k, vs, outs),
                2 => column_block::<T, A, 2>(block, start, k, vs, outs),
                _ => column_block::<T, A, 1>(block, start, k, vs, outs),
            }
        }
        return;
    }
    for (v, out) in vs.chunks_exact(k).zip(outs.chunks_exact_mut(k)) {
        for t in 0..width {
            let mut sum = T::ZERO;
            for (j, &vj) in v.iter().enumerate() {
                sum = A::fma(vj, m[j * stride + offset + t], sum);
            }
            out[start + t] = sum;
        }
    }
}

/// Outputs `start..start + LANES` of `out_r = M v_r` for `R` rows at once from `block` (those
/// columns of `M`): each row of the block is loaded once for all of them.
#[inline(always)]
fn column_block<T: Real, A: Arith, const R: usize>(
    block: Block<'_, T>,
    start: usize,
    k: usize,
    vs: &[T],
    outs: &mut [T],
) {
    debug_assert!(vs.len() == R * k && outs.len() == R * k);
    let Block { m, stride, offset } = block;
    let mut acc = [[T::ZERO; LANES]; R];
    for j in 0..k {
        let column = &m[j * stride + offset..j * stride + offset + LANES];
        for (r, acc) in acc.iter_mut().enumerate() {
            let vj = vs[r * k + j];
            for t in 0..LANES {
                acc[t] = A::fma(vj, column[t], acc[t]);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        outs[r * k + start..r * k + start + LANES].copy_from_slice(acc);
    }
}

/// `out_r = M v_r` for each `k`-long row `v_r` of `vs`, with exactly the arithmetic of [`symv`]
/// row by row. Several rows share one pass over `M`, which matters once `M` no longer fits L1:
/// four or eight f32 rows at the vector levels (others one at a time), two or four rows of f64,
/// or of f32 at the portable level ([`tile_height`]).
#[inline(always)]
pub fn symv_rows<T: Real, A: Arith>(arith: A, m: &[T], k: usize, vs: &[T], outs: &mut [T]) {
    assert_eq!(vs.len(), outs.len(), "one output row per input row");
    if k == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if let (Some(vectors), Some(m), Some(vs), Some(outs)) = (
        crate::simd::vectors(arith),
        crate::simd::as_f32(m),
        crate::simd::as_f32(vs),
        crate::simd::as_f32_mut(outs),
    ) {
        let rows = vs.len().checked_div(k).unwrap_or(0);
        match (vectors, rows) {
            (Vectors::V4(s), 8) => return wide::symv_many::<_, 8>(s, m, k, vs, outs),
            (Vectors::V4(s), 4) => return wide::symv_many::<_, 4>(s, m, k, vs, outs),
            (Vectors::V3(s), 4) => return wide::symv_many::<_, 4>(s, m, k, vs, outs),
            _ => {
                for (v, out) in vs.chunks_exact(k).zip(outs.chunks_exact_mut(k)) {
                    symv(arith, m, v, out);
                }
                return;
            }
        }
    }
    // The generic body (f64, or no vector level) in groups of rows ([`tile_height`]).
    symv_generic::<T, A>(tile_height(arith), m, k, vs, outs);
}

/// The bodies for every vector width, one source: each output is the same FMA chain over the
/// rows of `M` as in the generic body, so every level gives the same bits.
#[cfg(target_arch = "x86_64")]
mod wide {
    use crate::simd::F32Vectors;

    /// `out = M v` for a symmetric row-major `k x k` matrix: `out[b] = sum_j v[j] M[j][b]`. Blocks
    /// of 8 vectors of outputs (64 with AVX2, 128 with AVX-512) keep eight FMA chains in flight;
    /// the remainder goes in blocks of 4, 2 and 1 vectors, then one output at a time.
    #[inline(always)]
    pub(super) fn symv<S: F32Vectors>(s: S, m: &[f32], v: &[f32], out: &mut [f32]) {
        let k = v.len();
        assert!(m.len() >= k * k && out.len() >= k);
        let mut start = 0;
        start = outputs::<S, 8>(s, m, v, out, start);
        start = outputs::<S, 4>(s, m, v, out, start);
        start = outputs::<S, 2>(s, m, v, out, start);
        start = outputs::<S, 1>(s, m, v, out, start);
        for b in start..k {
            let mut sum = 0.0f32;
            for (j, &vj) in v.iter().enumerate() {
                sum = vj.mul_add(m[j * k + b], sum);
            }
            out[b] = sum;
        }
    }

    /// Outputs from `start` on in blocks of `VECTORS` vectors while whole blocks fit; where the
    /// next output starts.
    #[inline(always)]
    fn outputs<S: F32Vectors, const VECTORS: usize>(
        s: S,
        m: &[f32],
        v: &[f32],
        out: &mut [f32],
        mut start: usize,
    ) -> usize {
        let (k, lanes) = (v.len(), S::LANES);
        let (pm, po) = (m.as_ptr(), out.as_mut_ptr());
        // SAFETY: every load reads `m[j * k + start..][..VECTORS * lanes]` with j < k and the
        // block inside 0..k, so inside `k * k` (asserted by `symv`); stores write the block of
        // `out[..k]`.
        unsafe {
            while start + VECTORS * lanes <= k {
                let mut acc = [s.zero(); VECTORS];
                for (j, &vj) in v.iter().enumerate() {
                    let b = s.splat(vj);
                    let row = pm.add(j * k + start);
                    for (lane, a) in acc.iter_mut().enumerate() {
                        *a = s.fma(b, s.load(row.add(lanes * lane)), *a);
                    }
                }
                for (lane, a) in acc.iter().enumerate() {
                    s.store(po.add(start + lanes * lane), *a);
                }
                start += VECTORS * lanes;
            }
        }
        start
    }

    /// `out_r = M v_r` for `R` vectors at once (4, or 8 with AVX-512's 32 registers): each block
    /// of `M`'s rows is loaded once for all of them, and every output is the FMA chain of
    /// [`symv`].
    #[inline(always)]
    pub(super) fn symv_many<S: F32Vectors, const R: usize>(
        s: S,
        m: &[f32],
        k: usize,
        v: &[f32],
        out: &mut [f32],
    ) {
        const { assert!(R <= 8) };
        let lanes = S::LANES;
        assert!(m.len() >= k * k && v.len() >= R * k && out.len() >= R * k);
        let (pm, pv, po) = (m.as_ptr(), v.as_ptr(), out.as_mut_ptr());
        let mut start = 0;
        // SAFETY: loads read `m[j * k + start..][..2 * lanes]` (j < k, the block inside 0..k:
        // inside the asserted `k * k`) and `v[r * k + j]` (inside `R * k`); stores write
        // `out[r * k + start..][..2 * lanes]` (r < R: inside `R * k`). Unchecked reads of `v`:
        // its bounds checks were a compare and a branch beside each broadcast.
        unsafe {
            while start + 2 * lanes <= k {
                let mut acc = [s.zero(); 16];
                for j in 0..k {
                    let row = pm.add(j * k + start);
                    let (lo, hi) = (s.load(row), s.load(row.add(lanes)));
                    for r in 0..R {
                        let q = s.splat(*pv.add(r * k + j));
                        acc[2 * r] = s.fma(q, lo, acc[2 * r]);
                        acc[2 * r + 1] = s.fma(q, hi, acc[2 * r + 1]);
                    }
                }
                for r in 0..R {
                    s.store(po.add(r * k + start), acc[2 * r]);
                    s.store(po.add(r * k + start + lanes), acc[2 * r + 1]);
                }
                start += 2 * lanes;
            }
            while start + lanes <= k {
                let mut acc = [s.zero(); 8];
                for j in 0..k {
                    let column = s.load(pm.add(j * k + start));
                    for (r, a) in acc.iter_mut().enumerate().take(R) {
                        *a = s.fma(s.splat(*pv.add(r * k + j)), column, *a);
                    }
                }
                for (r, a) in acc.iter().enumerate().take(R) {
                    s.store(po.add(r * k + start), *a);
                }
                start += lanes;
            }
        }
        for r in 0..R {
            for b in start..k {
                let mut sum = 0.0f32;
                for j in 0..k {
                    sum = v[r * k + j].mul_add(m[j * k + b], sum);
                }
                out[r * k + b] = sum;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::vector::tests::{bits, close, vector};
    use crate::simd::testing::{avx2_or_skip, avx512_or_skip, fused, fused_avx512, generic_fused};
    use crate::simd::Unfused;

    /// `B + B^T` for a `k x k` row-major `B`: a symmetric test matrix.
    fn symmetrised<T: Real>(b: &[T], k: usize) -> Vec<T> {
        (0..k * k)
            .map(|ij| b[ij] + b[(ij % k) * k + ij / k])
            .collect()
    }

    fn test_matrix(k: usize) -> Vec<f32> {
        let b: Vec<f32> = (0..k * k)
            .map(|i| ((i * 31 % 17) as f32) / 17.0 - 0.4)
            .collect();
        symmetrised(&b, k)
    }

    const SIZES: [usize; 10] = [1, 5, 7, 8, 16, 24, 33, 64, 100, 136];

    #[test]
    fn symv_matches_naive_on_every_path() {
        for k in SIZES {
            let m = test_matrix(k);
            let v: Vec<f32> = (0..k).map(|i| (i % 7) as f32 / 7.0 - 0.3).collect();
            let naive: Vec<f64> = (0..k)
                .map(|i| (0..k).map(|j| m[i * k + j] as f64 * v[j] as f64).sum())
                .collect();
            let mut out = vec![f32::NAN; k];
            symv(Unfused, &m, &v, &mut out);
            assert!(out
                .iter()
                .zip(&naive)
                .all(|(a, b)| close(*a as f64, *b, k as f64)));
            if let Some(fused) = fused() {
                symv(fused, &m, &v, &mut out);
                assert!(out
                    .iter()
                    .zip(&naive)
                    .all(|(a, b)| close(*a as f64, *b, k as f64)));
            }
            let m64 = symmetrised(&vector(k * k, 5), k);
            let x = vector(k, 3);
            let mut out = vec![f64::NAN; k];
            symv(Unfused, &m64, &x, &mut out);
            for i in 0..k {
                let naive: f64 = (0..k).map(|j| m64[i * k + j] * x[j]).sum();
                assert!(close(out[i], naive, k as f64), "k={k} i={i}");
            }
        }
    }

    fn check_level<S: crate::simd::F32Vectors>(s: S) {
        for k in SIZES {
            let m = test_matrix(k);
            let vs: Vec<f32> = (0..8 * k).map(|i| (i % 11) as f32 / 11.0 - 0.3).collect();
            let mut generic = vec![f32::NAN; 8 * k];
            for (v, out) in vs.chunks_exact(k).zip(generic.chunks_exact_mut(k)) {
                symv(generic_fused(), &m, v, out);
            }
            let mut one = vec![f32::NAN; k];
            wide::symv(s, &m, &vs[..k], &mut one);
            assert_eq!(bits(&one), bits(&generic[..k]), "symv k={k}");
            let mut four = vec![f32::NAN; 4 * k];
            wide::symv_many::<S, 4>(s, &m, k, &vs[..4 * k], &mut four);
            assert_eq!(bits(&four), bits(&generic[..4 * k]), "symv4 k={k}");
            let mut eight = vec![f32::NAN; 8 * k];
            wide::symv_many::<S, 8>(s, &m, k, &vs, &mut eight);
            assert_eq!(bits(&eight), bits(&generic), "symv8 k={k}");
        }
    }

    #[test]
    fn avx2_symv_bodies_are_their_generic_twins_bit_for_bit() {
        if let Some(token) = avx2_or_skip("avx2_symv_bodies_are_their_generic_twins_bit_for_bit") {
            check_level(crate::simd::V3(token));
        }
    }

    #[test]
    fn avx512_symv_bodies_are_their_generic_twins_bit_for_bit() {
        let name = "avx512_symv_bodies_are_their_generic_twins_bit_for_bit";
        if let Some(token) = avx512_or_skip(name) {
            check_level(crate::simd::V4(token));
        }
    }

    #[test]
    fn symv_rows_is_symv_row_by_row_bit_for_bit() {
        fn check<T: Real, A: Arith>(arith: A, m: &[T], k: usize, rows: usize) {
            let vs: Vec<T> = (0..rows * k)
                .map(|i| T::from_f64((i % 11) as f64 / 11.0 - 0.3))
                .collect();
            let bits = |v: &[T]| v.iter().map(|x| x.to_f64().to_bits()).collect::<Vec<_>>();
            let mut together = vec![T::from_f64(f64::NAN); rows * k];
            symv_rows(arith, m, k, &vs, &mut together);
            for (v, out) in vs.chunks_exact(k).zip(together.chunks_exact(k)) {
                let mut alone = vec![T::from_f64(f64::NAN); k];
                symv(arith, m, v, &mut alone);
                assert_eq!(bits(&alone), bits(out), "k={k} rows={rows}");
            }
        }
        for k in SIZES {
            let (m, m64) = (test_matrix(k), symmetrised(&vector(k * k, 5), k));
            for rows in 1..=9 {
                check(Unfused, &m, k, rows);
                check(Unfused, &m64, k, rows);
                for fused in [fused(), fused_avx512()].into_iter().flatten() {
                    check(fused, &m, k, rows);
                    check(fused, &m64, k, rows);
                }
                check(generic_fused(), &m64, k, rows);
            }
        }
    }

    /// The f64 products of several rows are the same at every level (each output one FMA chain
    /// in the same order), so exact solves that use them give the same bits everywhere.
    #[test]
    fn f64_symv_rows_give_the_same_bits_at_every_level() {
        fn product<A: Arith>(arith: A, m: &[f64], k: usize, vs: &[f64]) -> Vec<u64> {
            let mut out = vec![f64::NAN; vs.len()];
            symv_rows(arith, m, k, vs, &mut out);
            out.iter().map(|x| x.to_bits()).collect()
        }
        let name = "f64_symv_rows_give_the_same_bits_at_every_level (AVX-512)";
        let avx512 = avx512_or_skip(name).and_then(|_| fused_avx512());
        for k in SIZES {
            let (m, vs) = (symmetrised(&vector(k * k, 7), k), vector(9 * k, 2));
            let generic = product(generic_fused(), &m, k, &vs);
            for level in [fused(), avx512].into_iter().flatten() {
                assert_eq!(product(level, &m, k, &vs), generic, "k={k}");
            }
        }
    }
}
