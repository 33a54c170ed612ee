//! Dense vector kernels on short slices (one factor row, k elements).
//!
//! Written with several independent accumulators so that LLVM vectorises them without being
//! allowed to reassociate floating-point sums; the summation order is fixed, so results do not
//! depend on threads.

use crate::simd::Arith;
use crate::Real;

/// Independent accumulators per kernel: two AVX2 registers of f32.
pub(crate) const LANES: usize = 16;
const HALF: usize = LANES / 2;

/// `x . y`
///
/// The accumulator array is only ever indexed by constants, so it lives in registers; the tail
/// (lengths not divisible by `LANES`) goes to a separate scalar sum for the same reason.
#[inline(always)]
pub fn dot<T: Real, A: Arith>(x: &[T], y: &[T]) -> T {
    A::dot(x, y)
}

/// The portable `x . y` behind [`dot`].
#[inline(always)]
pub(crate) fn dot_generic<T: Real, A: Arith>(x: &[T], y: &[T]) -> T {
    debug_assert_eq!(x.len(), y.len());
    // Two independent vectors of accumulators (two FMA chains in flight).
    let mut lo = [T::ZERO; HALF];
    let mut hi = [T::ZERO; HALF];
    let xs = x.chunks_exact(LANES);
    let ys = y.chunks_exact(LANES);
    let (xr, yr) = (xs.remainder(), ys.remainder());
    for (xc, yc) in xs.zip(ys) {
        for j in 0..HALF {
            lo[j] = A::fma(xc[j], yc[j], lo[j]);
        }
        for j in 0..HALF {
            hi[j] = A::fma(xc[HALF + j], yc[HALF + j], hi[j]);
        }
    }
    let mut tail = T::ZERO;
    for (&a, &b) in xr.iter().zip(yr) {
        tail = A::fma(a, b, tail);
    }
    for j in 0..HALF {
        lo[j] += hi[j];
    }
    horizontal_sum(lo) + tail
}

/// Sum of one vector's lanes, halving the width each step (a fixed order).
#[inline(always)]
fn horizontal_sum<T: Real>(v: [T; HALF]) -> T {
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

/// `out = M v` for a symmetric row-major `k x k` matrix `M`.
///
/// Each block of `LANES` outputs stays in registers while the rows of `M` stream past
/// (`out[b] = sum_j v[j] M[j][b]`, using the symmetry), so `M` is read once and `out` written once.
#[inline(always)]
pub fn symv<T: Real, A: Arith>(m: &[T], v: &[T], out: &mut [T]) {
    A::symv(m, v, out)
}

/// `out_r = M v_r` for each `k`-long row `v_r` of `vs`, one [`symv`] per row: the portable
/// `Arith::symv_rows`. An instruction set may serve several vectors with one pass over `M` (which
/// matters once `M` no longer fits L1), with exactly this arithmetic row by row.
#[inline(always)]
pub(crate) fn symv_rows_generic<T: Real, A: Arith>(m: &[T], k: usize, vs: &[T], outs: &mut [T]) {
    for (v, out) in vs.chunks_exact(k).zip(outs.chunks_exact_mut(k)) {
        symv::<T, A>(m, v, out);
    }
}

/// The data term of `A_u v` in a CG step, `sum_i w_i (y_{c_i} . v) y_{c_i}`: the rows
/// `c_i = cols[i]` of the row-major `y` (`k` columns) with weights `w_i = weights[i]`.
pub struct DataTerm<'a, T> {
    pub y: &'a [T],
    pub k: usize,
    pub cols: &'a [i32],
    pub weights: &'a [T],
}

/// `out += sum_i w_i (y_{c_i} . v) y_{c_i}` (see [`DataTerm`]), one dot product and one `axpy`
/// per row: the portable `Arith::add_data_term`. An instruction set may compute all the dot
/// products first and then keep `out` in registers across the rows.
#[inline(always)]
pub(crate) fn add_data_term_generic<T: Real, A: Arith>(
    term: &DataTerm<'_, T>,
    v: &[T],
    out: &mut [T],
) {
    let k = term.k;
    for (&c, &w) in term.cols.iter().zip(term.weights) {
        let row = &term.y[c as usize * k..(c as usize + 1) * k];
        axpy::<T, A>(w * dot::<T, A>(row, v), row, out);
    }
}

/// The portable `M v` behind [`symv`].
#[inline(always)]
pub(crate) fn symv_generic<T: Real, A: Arith>(m: &[T], v: &[T], out: &mut [T]) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::{Fused, Unfused};

    fn vector(n: usize, seed: u64) -> Vec<f64> {
        (0..n)
            .map(|i| (((i as u64 + 1) * (seed * 2 + 7919)) % 1000) as f64 / 500.0 - 1.0)
            .collect()
    }

    /// `B + B^T` for a `k x k` row-major `B`: a symmetric test matrix.
    fn symmetrised<T: crate::Real>(b: &[T], k: usize) -> Vec<T> {
        (0..k * k)
            .map(|ij| b[ij] + b[(ij % k) * k + ij / k])
            .collect()
    }

    fn close(a: f64, b: f64, scale: f64) -> bool {
        (a - b).abs() <= 1e-5 * scale.max(1.0)
    }

    #[test]
    fn dot_matches_naive_for_many_lengths() {
        for n in [0, 1, 3, 15, 16, 17, 31, 64, 100, 257] {
            let x = vector(n, 1);
            let y = vector(n, 2);
            let naive: f64 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
            let scale: f64 = x.iter().zip(&y).map(|(a, b)| (a * b).abs()).sum();
            assert!(close(dot::<f64, Fused>(&x, &y), naive, scale), "n={n}");
            assert!(close(dot::<f64, Unfused>(&x, &y), naive, scale), "n={n}");
            let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let yf: Vec<f32> = y.iter().map(|&v| v as f32).collect();
            assert!(
                close(dot::<f32, Unfused>(&xf, &yf) as f64, naive, scale * 10.0),
                "n={n}"
            );
            // The AVX2 kernel behind `Fused` may only run where the CPU has it.
            if crate::simd::simd_level() == crate::simd::SimdLevel::Avx2Fma {
                assert!(
                    close(dot::<f32, Fused>(&xf, &yf) as f64, naive, scale * 10.0),
                    "n={n}"
                );
            }
        }
    }

    #[test]
    fn f32_symv_matches_naive_on_every_path() {
        for k in [1, 5, 8, 16, 33, 64, 100, 128, 136] {
            let b: Vec<f32> = (0..k * k)
                .map(|i| ((i * 31 % 17) as f32) / 17.0 - 0.4)
                .collect();
            let m = symmetrised(&b, k);
            let v: Vec<f32> = (0..k).map(|i| (i % 7) as f32 / 7.0 - 0.3).collect();
            let naive: Vec<f64> = (0..k)
                .map(|i| (0..k).map(|j| m[i * k + j] as f64 * v[j] as f64).sum())
                .collect();
            let mut out = vec![f32::NAN; k];
            symv::<f32, Unfused>(&m, &v, &mut out);
            assert!(
                out.iter()
                    .zip(&naive)
                    .all(|(a, b)| close(*a as f64, *b, k as f64)),
                "k={k}"
            );
            if crate::simd::simd_level() == crate::simd::SimdLevel::Avx2Fma {
                let mut fused = vec![f32::NAN; k];
                symv::<f32, Fused>(&m, &v, &mut fused);
                assert!(
                    fused
                        .iter()
                        .zip(&naive)
                        .all(|(a, b)| close(*a as f64, *b, k as f64)),
                    "k={k}"
                );
            }
        }
    }

    #[test]
    fn axpy_and_symv_match_naive() {
        for k in [1, 5, 16, 33, 64] {
            let x = vector(k, 3);
            let mut y = vector(k, 4);
            let expected: Vec<f64> = y.iter().zip(&x).map(|(yi, xi)| yi + 0.5 * xi).collect();
            axpy::<f64, Fused>(0.5, &x, &mut y);
            assert!(y.iter().zip(&expected).all(|(a, b)| close(*a, *b, 1.0)));

            let b = vector(k * k, 5);
            let m = symmetrised(&b, k);
            let mut out = vec![f64::NAN; k];
            symv::<f64, Unfused>(&m, &x, &mut out);
            for i in 0..k {
                let naive: f64 = (0..k).map(|j| m[i * k + j] * x[j]).sum();
                assert!(close(out[i], naive, k as f64), "k={k} i={i}");
            }
        }
    }

    #[test]
    fn symv_rows_is_symv_row_by_row_bit_for_bit() {
        fn check<A: Arith>(k: usize, rows: usize) {
            let b: Vec<f32> = (0..k * k)
                .map(|i| ((i * 37 % 23) as f32) / 23.0 - 0.45)
                .collect();
            let m = symmetrised(&b, k);
            let vs: Vec<f32> = (0..rows * k)
                .map(|i| (i % 11) as f32 / 11.0 - 0.3)
                .collect();
            let mut together = vec![f32::NAN; rows * k];
            A::symv_rows(&m, k, &vs, &mut together);
            for (v, out) in vs.chunks_exact(k).zip(together.chunks_exact(k)) {
                let mut alone = vec![f32::NAN; k];
                symv::<f32, A>(&m, v, &mut alone);
                assert_eq!(
                    alone.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    out.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    "k={k} rows={rows}"
                );
            }
        }
        for k in [1, 7, 8, 16, 24, 64, 100, 128, 136] {
            for rows in 1..=5 {
                check::<Unfused>(k, rows);
                if crate::simd::simd_level() == crate::simd::SimdLevel::Avx2Fma {
                    check::<Fused>(k, rows);
                }
            }
        }
    }

    #[test]
    fn data_term_matches_naive_on_every_path() {
        fn check<A: Arith>(k: usize, n: usize) {
            let n_rows = 40;
            let y: Vec<f32> = (0..n_rows * k)
                .map(|i| ((i * 53 % 29) as f32) / 29.0 - 0.5)
                .collect();
            let cols: Vec<i32> = (0..n).map(|i| ((i * 7 + 3) % n_rows) as i32).collect();
            let weights: Vec<f32> = (0..n).map(|i| 0.5 + (i % 5) as f32).collect();
            let v: Vec<f32> = (0..k).map(|i| (i % 9) as f32 / 9.0 - 0.4).collect();
            let start: Vec<f32> = (0..k).map(|i| (i % 4) as f32).collect();
            let mut naive: Vec<f64> = start.iter().map(|&o| o as f64).collect();
            for (&c, &w) in cols.iter().zip(&weights) {
                let row = &y[c as usize * k..(c as usize + 1) * k];
                let d: f64 = row.iter().zip(&v).map(|(a, b)| *a as f64 * *b as f64).sum();
                for (o, &r) in naive.iter_mut().zip(row) {
                    *o += w as f64 * d * r as f64;
                }
            }
            let mut out = start.clone();
            let term = DataTerm {
                y: &y,
                k,
                cols: &cols,
                weights: &weights,
            };
            A::add_data_term(&term, &v, &mut out, &mut Vec::new());
            let scale = 1.0 + naive.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            for (a, b) in out.iter().zip(&naive) {
                assert!((*a as f64 - b).abs() <= 1e-5 * scale, "k={k} n={n}");
            }
        }
        for k in [1, 8, 16, 24, 64, 72, 128, 136] {
            for n in [0, 1, 7, 8, 9, 17, 33] {
                check::<Unfused>(k, n);
                if crate::simd::simd_level() == crate::simd::SimdLevel::Avx2Fma {
                    check::<Fused>(k, n);
                }
            }
        }
    }
}
