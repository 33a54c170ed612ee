//! A small dense Cholesky factorisation in f64 for the exact row solve.

use crate::kernels::{axpy, dot};
use crate::simd::Arith;

/// Factors the symmetric positive-definite row-major `k x k` matrix `a` in place into its lower
/// triangular factor L (`a = L L^T`); only the lower triangle of `a` is read. Returns false when
/// the matrix is not positive definite (a pivot that is not positive and finite).
///
/// Right-looking: once column j of L is known, it updates the trailing lower triangle row by row
/// with contiguous `axpy`s, so the k^3/6 multiply-adds vectorise with no horizontal sums and only
/// k divisions. `column` is scratch of length k.
#[inline(always)]
pub fn factor<A: Arith>(a: &mut [f64], k: usize, column: &mut [f64]) -> bool {
    for j in 0..k {
        let pivot = a[j * k + j];
        if !(pivot > 0.0 && pivot.is_finite()) {
            return false;
        }
        let diagonal = pivot.sqrt();
        let inverse = 1.0 / diagonal;
        a[j * k + j] = diagonal;
        for i in j + 1..k {
            a[i * k + j] *= inverse;
            column[i] = a[i * k + j];
        }
        // a[i][j+1..=i] -= L[i][j] * L[j+1..=i][j]
        for i in j + 1..k {
            let lij = a[i * k + j];
            axpy::<f64, A>(-lij, &column[j + 1..=i], &mut a[i * k + j + 1..=i * k + i]);
        }
    }
    true
}

/// Solves `L L^T x = b` in place (`b` becomes `x`) with the factor from [`factor`].
#[inline(always)]
pub fn solve<A: Arith>(l: &[f64], k: usize, b: &mut [f64]) {
    for i in 0..k {
        let s = b[i] - dot::<f64, A>(&l[i * k..i * k + i], &b[..i]);
        b[i] = s / l[i * k + i];
    }
    for i in (0..k).rev() {
        let mut s = b[i];
        for j in i + 1..k {
            s -= l[j * k + i] * b[j];
        }
        b[i] = s / l[i * k + i];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::Unfused;

    #[test]
    fn solves_by_residual() {
        for k in [1, 2, 7, 16, 33] {
            // A = B B^T + I is symmetric positive definite.
            let b: Vec<f64> = (0..k * k)
                .map(|i| ((i * 31 % 17) as f64) / 17.0 - 0.4)
                .collect();
            let mut a = vec![0.0; k * k];
            for i in 0..k {
                for j in 0..k {
                    a[i * k + j] = (0..k).map(|t| b[i * k + t] * b[j * k + t]).sum::<f64>()
                        + if i == j { 1.0 } else { 0.0 };
                }
            }
            let rhs: Vec<f64> = (0..k).map(|i| i as f64 - 1.5).collect();
            let mut l = a.clone();
            let mut column = vec![0.0; k];
            assert!(factor::<Unfused>(&mut l, k, &mut column));
            let mut x = rhs.clone();
            solve::<Unfused>(&l, k, &mut x);
            for i in 0..k {
                let ax: f64 = (0..k).map(|j| a[i * k + j] * x[j]).sum();
                assert!((ax - rhs[i]).abs() < 1e-9, "k={k} i={i}");
            }
        }
    }

    #[test]
    fn reports_indefinite_matrices() {
        let mut a = vec![1.0, 2.0, 2.0, 1.0];
        assert!(!factor::<Unfused>(&mut a, 2, &mut [0.0; 2]));
        let mut zero = vec![0.0; 4];
        assert!(!factor::<Unfused>(&mut zero, 2, &mut [0.0; 2]));
    }
}
