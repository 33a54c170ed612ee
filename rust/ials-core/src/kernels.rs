//! Dense vector kernels on short slices (one factor row, k elements).
//!
//! Written with several independent accumulators so that LLVM vectorises them without being
//! allowed to reassociate floating-point sums; the summation order is fixed, so results do not
//! depend on threads.

use crate::simd::Arith;
use crate::Real;

/// Independent accumulators per kernel: two AVX2 registers of f32.
pub(crate) const LANES: usize = 16;

/// `x . y`
#[inline(always)]
pub fn dot<T: Real, A: Arith>(x: &[T], y: &[T]) -> T {
    debug_assert_eq!(x.len(), y.len());
    let mut acc = [T::ZERO; LANES];
    let xs = x.chunks_exact(LANES);
    let ys = y.chunks_exact(LANES);
    let (xr, yr) = (xs.remainder(), ys.remainder());
    for (xc, yc) in xs.zip(ys) {
        for j in 0..LANES {
            acc[j] = A::fma(xc[j], yc[j], acc[j]);
        }
    }
    for j in 0..xr.len() {
        acc[j] = A::fma(xr[j], yr[j], acc[j]);
    }
    reduce(acc)
}

/// Pairwise sum of the accumulators in a fixed order.
#[inline(always)]
fn reduce<T: Real>(mut acc: [T; LANES]) -> T {
    let mut width = LANES / 2;
    while width > 0 {
        for j in 0..width {
            acc[j] = acc[j] + acc[j + width];
        }
        width /= 2;
    }
    acc[0]
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
    let k = v.len();
    debug_assert_eq!(m.len(), k * k);
    let mut start = 0;
    for block in out.chunks_mut(LANES) {
        let width = block.len();
        let mut acc = [T::ZERO; LANES];
        if width == LANES {
            for (row, &vj) in m.chunks_exact(k).zip(v) {
                let column = &row[start..start + LANES];
                for t in 0..LANES {
                    acc[t] = A::fma(vj, column[t], acc[t]);
                }
            }
        } else {
            for (row, &vj) in m.chunks_exact(k).zip(v) {
                for t in 0..width {
                    acc[t] = A::fma(vj, row[start + t], acc[t]);
                }
            }
        }
        block.copy_from_slice(&acc[..width]);
        start += width;
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
                close(dot::<f32, Fused>(&xf, &yf) as f64, naive, scale * 10.0),
                "n={n}"
            );
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
            let mut m = vec![0.0; k * k];
            for i in 0..k {
                for j in 0..k {
                    m[i * k + j] = b[i * k + j] + b[j * k + i];
                }
            }
            let mut out = vec![f64::NAN; k];
            symv::<f64, Unfused>(&m, &x, &mut out);
            for i in 0..k {
                let naive: f64 = (0..k).map(|j| m[i * k + j] * x[j]).sum();
                assert!(close(out[i], naive, k as f64), "k={k} i={i}");
            }
        }
    }
}
