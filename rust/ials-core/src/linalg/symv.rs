//! The symmetric `k x k` matrix-vector product of a CG step: `out = M v`, one vector or several
//! with one pass over `M`.

use crate::simd::Arith;
use crate::Real;

use super::vector::LANES;

/// `out = M v` for a symmetric row-major `k x k` matrix `M`.
///
/// Each block of `LANES` outputs stays in registers while the rows of `M` stream past
/// (`out[b] = sum_j v[j] M[j][b]`, using the symmetry), so `M` is read once and `out` written once.
#[inline(always)]
pub fn symv<T: Real, A: Arith>(arith: A, m: &[T], v: &[T], out: &mut [T]) {
    #[cfg(target_arch = "x86_64")]
    if let (Some(_), Some(m), Some(v), Some(out)) = (
        arith.avx2(),
        crate::simd::as_f32(m),
        crate::simd::as_f32(v),
        crate::simd::as_f32_mut(out),
    ) {
        // SAFETY: the strategy holds an AVX2 token, which exists only on CPUs with AVX2 and FMA.
        return unsafe { avx2::symv_f32(m, v, out) };
    }
    let _ = arith;
    // The generic body: per output, one FMA chain over the rows of `M` in order.
    let k = v.len();
    debug_assert_eq!(m.len(), k * k);
    let full = k - k % LANES;
    for start in (0..full).step_by(LANES) {
        let mut acc = [T::ZERO; LANES];
        for (row, &vj) in m.chunks_exact(k).zip(v) {
            let column = &row[start..start + LANES];
            for t in 0..LANES {
                acc[t] = A::fma(vj, column[t], acc[t]);
            }
        }
        out[start..start + LANES].copy_from_slice(&acc);
    }
    for (i, o) in out.iter_mut().enumerate().skip(full) {
        let mut sum = T::ZERO;
        for (row, &vj) in m.chunks_exact(k).zip(v) {
            sum = A::fma(vj, row[i], sum);
        }
        *o = sum;
    }
}

/// `out_r = M v_r` for each `k`-long row `v_r` of `vs`, with exactly the arithmetic of [`symv`]
/// row by row. Four rows at once share one pass over `M` under AVX2, which matters once `M` no
/// longer fits L1.
#[inline(always)]
pub fn symv_rows<T: Real, A: Arith>(arith: A, m: &[T], k: usize, vs: &[T], outs: &mut [T]) {
    #[cfg(target_arch = "x86_64")]
    if vs.len() == 4 * k {
        if let (Some(_), Some(m), Some(vs), Some(outs)) = (
            arith.avx2(),
            crate::simd::as_f32(m),
            crate::simd::as_f32(vs),
            crate::simd::as_f32_mut(outs),
        ) {
            // SAFETY: the strategy holds an AVX2 token: the CPU has AVX2 and FMA.
            return unsafe { avx2::symv4_f32(m, k, vs, outs) };
        }
    }
    for (v, out) in vs.chunks_exact(k).zip(outs.chunks_exact_mut(k)) {
        symv(arith, m, v, out);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

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
        // SAFETY: every load reads `m[j * k + start..][..8 * lanes]` with j < k and start + 8 * lanes <= k, inside the asserted `k * k`; every store writes `out[start..][..8 * lanes]`, inside the asserted `k`.
        unsafe {
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
        }
        for b in start..k {
            let mut sum = 0.0f32;
            for (j, &vj) in v.iter().enumerate() {
                sum = vj.mul_add(m[j * k + b], sum);
            }
            out[b] = sum;
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
        // SAFETY: loads read `m[j * k + start..][..16]` (j < k, start + 16 <= k: inside the asserted `k * k`) and `v[r * k + j]` (r < 4, j < k: inside `4 * k`); stores write `out[r * k + start..][..16]`, inside `4 * k`.
        unsafe {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::vector::tests::{bits, close, vector};
    use crate::simd::testing::{avx2_or_skip, fused, generic_fused};
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

    #[test]
    fn avx2_symv_bodies_are_their_generic_twins_bit_for_bit() {
        let Some(_) = avx2_or_skip("avx2_symv_bodies_are_their_generic_twins_bit_for_bit") else {
            return;
        };
        for k in SIZES {
            let m = test_matrix(k);
            let vs: Vec<f32> = (0..4 * k).map(|i| (i % 11) as f32 / 11.0 - 0.3).collect();
            let mut generic = vec![f32::NAN; 4 * k];
            for (v, out) in vs.chunks_exact(k).zip(generic.chunks_exact_mut(k)) {
                symv(generic_fused(), &m, v, out);
            }
            let mut one = vec![f32::NAN; k];
            // SAFETY: the token above proves the CPU has AVX2 and FMA.
            unsafe { avx2::symv_f32(&m, &vs[..k], &mut one) };
            assert_eq!(bits(&one), bits(&generic[..k]), "symv k={k}");
            let mut four = vec![f32::NAN; 4 * k];
            // SAFETY: as above.
            unsafe { avx2::symv4_f32(&m, k, &vs, &mut four) };
            assert_eq!(bits(&four), bits(&generic), "symv4 k={k}");
        }
    }

    #[test]
    fn symv_rows_is_symv_row_by_row_bit_for_bit() {
        fn check<A: Arith>(arith: A, k: usize, rows: usize) {
            let m = test_matrix(k);
            let vs: Vec<f32> = (0..rows * k)
                .map(|i| (i % 11) as f32 / 11.0 - 0.3)
                .collect();
            let mut together = vec![f32::NAN; rows * k];
            symv_rows(arith, &m, k, &vs, &mut together);
            for (v, out) in vs.chunks_exact(k).zip(together.chunks_exact(k)) {
                let mut alone = vec![f32::NAN; k];
                symv(arith, &m, v, &mut alone);
                assert_eq!(bits(&alone), bits(out), "k={k} rows={rows}");
            }
        }
        for k in SIZES {
            for rows in 1..=5 {
                check(Unfused, k, rows);
                if let Some(fused) = fused() {
                    check(fused, k, rows);
                }
            }
        }
    }
}
