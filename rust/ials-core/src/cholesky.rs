//! A small dense Cholesky factorisation in f64 for the exact row solve.

use crate::kernels::dot;
use crate::simd::Arith;

/// Factors the symmetric positive-definite row-major `k x k` matrix `a` in place into its lower
/// triangular factor L (`a = L L^T`); only the lower triangle of `a` is read. Returns false when
/// the matrix is not positive definite (a pivot that is not positive and finite).
#[inline(always)]
pub fn factor<A: Arith>(a: &mut [f64], k: usize) -> bool {
    for j in 0..k {
        let (done, rest) = a.split_at_mut(j * k);
        let row_j = &mut rest[..k];
        // Row j of L, left of the diagonal: L[j][c] = (a[j][c] - L[j][..c] . L[c][..c]) / L[c][c]
        for c in 0..j {
            let row_c = &done[c * k..c * k + c + 1];
            let s = row_j[c] - dot::<f64, A>(&row_j[..c], &row_c[..c]);
            row_j[c] = s / row_c[c];
        }
        let pivot = row_j[j] - dot::<f64, A>(&row_j[..j], &row_j[..j]);
        if !(pivot > 0.0 && pivot.is_finite()) {
            return false;
        }
        row_j[j] = pivot.sqrt();
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
            assert!(factor::<Unfused>(&mut l, k));
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
        assert!(!factor::<Unfused>(&mut a, 2));
        let mut zero = vec![0.0; 4];
        assert!(!factor::<Unfused>(&mut zero, 2));
    }
}
