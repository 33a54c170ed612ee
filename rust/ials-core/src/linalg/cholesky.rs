//! A small dense Cholesky factorisation in f64 for the exact row solve.

use super::vector::{axpy, dot_generic as dot};
use crate::simd::Arith;

/// Rows factored together: the trailing update subtracts their rank-`PANEL` contribution in
/// one pass over each trailing row, so every load and store of `a` feeds `PANEL` FMAs.
const PANEL: usize = 8;

/// Factors the symmetric positive-definite row-major `k x k` matrix `a` in place into the upper
/// triangular U with `a = U^T U` (U is L^T, so every row of U is contiguous); only the upper
/// triangle of `a` is read. Returns false when the matrix is not positive definite (a pivot that
/// is not positive and finite).
///
/// Blocked right-looking: a panel of `PANEL` rows is factored on its own with contiguous `axpy`s,
/// and then subtracted from each trailing row in one fused pass.
#[inline(always)]
pub fn factor<A: Arith>(a: &mut [f64], k: usize) -> bool {
    let mut j = 0;
    while j < k {
        let end = (j + PANEL).min(k);
        for c in j..end {
            let pivot = a[c * k + c];
            if !(pivot > 0.0 && pivot.is_finite()) {
                return false;
            }
            let diagonal = pivot.sqrt();
            let inverse = 1.0 / diagonal;
            a[c * k + c] = diagonal;
            for v in &mut a[c * k + c + 1..(c + 1) * k] {
                *v *= inverse;
            }
            let (done, below) = a.split_at_mut((c + 1) * k);
            let u = &done[c * k..];
            for r in c + 1..end {
                let row = &mut below[(r - c - 1) * k + r..(r - c) * k];
                axpy::<f64, A>(-u[r], &u[r..], row);
            }
        }
        let (panel, trailing) = a.split_at_mut(end * k);
        let panel = &panel[j * k..];
        for r in end..k {
            let row = &mut trailing[(r - end) * k + r..(r - end + 1) * k];
            if end - j == PANEL {
                let u: [&[f64]; PANEL] = std::array::from_fn(|t| &panel[t * k + r..(t + 1) * k]);
                let coefficients: [f64; PANEL] = std::array::from_fn(|t| -panel[t * k + r]);
                for (offset, entry) in row.iter_mut().enumerate() {
                    let mut e = *entry;
                    for (ut, &ct) in u.iter().zip(&coefficients) {
                        e = A::fma(ct, ut[offset], e);
                    }
                    *entry = e;
                }
            } else {
                for t in 0..end - j {
                    axpy::<f64, A>(-panel[t * k + r], &panel[t * k + r..(t + 1) * k], row);
                }
            }
        }
        j = end;
    }
    true
}

/// Solves `U^T U x = b` in place (`b` becomes `x`) with the factor from [`factor`].
#[inline(always)]
pub fn solve<A: Arith>(u: &[f64], k: usize, b: &mut [f64]) {
    for i in 0..k {
        let yi = b[i] / u[i * k + i];
        b[i] = yi;
        axpy::<f64, A>(-yi, &u[i * k + i + 1..(i + 1) * k], &mut b[i + 1..]);
    }
    for i in (0..k).rev() {
        let s = b[i] - dot::<f64, A>(&u[i * k + i + 1..(i + 1) * k], &b[i + 1..]);
        b[i] = s / u[i * k + i];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::Unfused;

    #[test]
    fn solves_by_residual() {
        for k in [1, 2, 7, 8, 9, 16, 33, 64, 70] {
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
            let mut u = a.clone();
            assert!(factor::<Unfused>(&mut u, k));
            let mut x = rhs.clone();
            solve::<Unfused>(&u, k, &mut x);
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
