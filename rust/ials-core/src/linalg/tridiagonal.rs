//! Householder reduction of a symmetric `k x k` matrix to tridiagonal form, `Q^T G Q = T`, with
//! `Q` orthogonal: the change of basis that lets CG multiply by a Gram matrix in `3k` operations
//! instead of `k^2` (see `als::basis`).
//!
//! The textbook reduction (Golub & Van Loan, 4th ed., algorithm 8.3.1), in f64 and one thread,
//! each step a pass over the trailing block for `p = S v` and one for the rank-2 update; `Q` is
//! then accumulated from the reflectors, last to first. Every inner loop runs along contiguous
//! rows with one FMA chain per output, so the result is the same bits at every level that fuses.

use crate::simd::{dispatch, Arith, Kernel};

/// `Q^T G Q = T` for a symmetric `G`: `basis` is `Q` (row-major; its columns are the new basis
/// vectors, so a row `x` of coordinates becomes `x Q`), `T` is `diagonal` and `off_diagonal`
/// (`T[i][i + 1] = T[i + 1][i] = off_diagonal[i]`).
#[derive(Clone, Debug)]
pub struct Tridiagonal {
    pub basis: Vec<f64>,
    pub diagonal: Vec<f64>,
    pub off_diagonal: Vec<f64>,
}

impl Tridiagonal {
    /// The reduction of the symmetric row-major `k x k` matrix `g` (only its lower triangle's
    /// mirror is assumed: `g` must be symmetric, as a Gram matrix is).
    pub fn of(g: &[f64], k: usize) -> Self {
        assert_eq!(g.len(), k * k, "a k x k matrix");
        dispatch(Reduce { g, k })
    }

    /// `T` as a row-major `k x k` matrix, zero off the three diagonals.
    pub fn matrix(&self) -> Vec<f64> {
        let k = self.diagonal.len();
        let mut t = vec![0.0; k * k];
        for (i, &d) in self.diagonal.iter().enumerate() {
            t[i * k + i] = d;
        }
        for (i, &e) in self.off_diagonal.iter().enumerate() {
            t[i * k + i + 1] = e;
            t[(i + 1) * k + i] = e;
        }
        t
    }
}

struct Reduce<'a> {
    g: &'a [f64],
    k: usize,
}

impl Kernel for Reduce<'_> {
    type Output = Tridiagonal;

    #[inline(always)]
    fn run<A: Arith>(self, _arith: A) -> Tridiagonal {
        let k = self.k;
        let mut a = self.g.to_vec();
        let mut diagonal = vec![0.0; k];
        let mut off_diagonal = vec![0.0; k.saturating_sub(1)];
        // Reflector j, `I - 2 v v^T` on coordinates `j + 1..k`, is kept in row j of `reflectors`
        // from column `j + 1` (all zeros where column j was already reduced).
        let mut reflectors = vec![0.0; k * k];
        let (mut p, mut w) = (vec![0.0; k], vec![0.0; k]);
        for j in 0..k.saturating_sub(2) {
            diagonal[j] = a[j * k + j];
            let below = j + 1..k;
            let v = &mut reflectors[j * k + j + 1..(j + 1) * k];
            v.copy_from_slice(&a[j * k + j + 1..(j + 1) * k]);
            let tail: f64 = v[1..].iter().fold(0.0, |s, &x| A::fma(x, x, s));
            if tail == 0.0 {
                // Column j is reduced already: no reflector.
                off_diagonal[j] = v[0];
                v.fill(0.0);
                continue;
            }
            let norm = A::fma(v[0], v[0], tail).sqrt();
            // The sign that keeps `v[0] = x_0 - alpha` free of cancellation.
            let alpha = if v[0] >= 0.0 { -norm } else { norm };
            off_diagonal[j] = alpha;
            v[0] -= alpha;
            let scale = 1.0 / A::fma(v[0], v[0], tail).sqrt();
            v.iter_mut().for_each(|x| *x *= scale);
            let v = &reflectors[j * k + j + 1..(j + 1) * k];
            let m = v.len();
            // p = S v over the trailing block S (symmetric: the sum of its rows scaled by v).
            let p = &mut p[..m];
            p.fill(0.0);
            for (i, &vi) in below.clone().zip(v) {
                let row = &a[i * k + j + 1..(i + 1) * k];
                for (pc, &s) in p.iter_mut().zip(row) {
                    *pc = A::fma(vi, s, *pc);
                }
            }
            // S <- H S H = S - 2 (v w^T + w v^T) with w = p - (v . p) v.
            let vp = v
                .iter()
                .zip(p.iter())
                .fold(0.0, |s, (&x, &y)| A::fma(x, y, s));
            let w = &mut w[..m];
            for ((wc, &pc), &vc) in w.iter_mut().zip(p.iter()).zip(v) {
                *wc = A::fma(-vp, vc, pc);
            }
            for (r, i) in below.clone().enumerate() {
                let (vi2, wi2) = (-2.0 * v[r], -2.0 * w[r]);
                let row = &mut a[i * k + j + 1..(i + 1) * k];
                for ((s, &wc), &vc) in row.iter_mut().zip(w.iter()).zip(v) {
                    *s = A::fma(wi2, vc, A::fma(vi2, wc, *s));
                }
            }
        }
        match k {
            0 => {}
            1 => diagonal[0] = a[0],
            _ => {
                diagonal[k - 2] = a[(k - 2) * k + k - 2];
                diagonal[k - 1] = a[(k - 1) * k + k - 1];
                off_diagonal[k - 2] = a[(k - 2) * k + k - 1];
            }
        }
        let basis = accumulate::<A>(&reflectors, k, &mut p);
        Tridiagonal {
            basis,
            diagonal,
            off_diagonal,
        }
    }
}

/// `Q = H_0 H_1 ... H_{k-3}` from the reflectors, applied to the identity from the left, last to
/// first: `H_j` touches only rows and columns `j + 1..k`, where the product so far is all that
/// is not the identity. `u` is scratch of at least `k`.
#[inline(always)]
fn accumulate<A: Arith>(reflectors: &[f64], k: usize, u: &mut [f64]) -> Vec<f64> {
    let mut q = vec![0.0; k * k];
    for i in 0..k {
        q[i * k + i] = 1.0;
    }
    for j in (0..k.saturating_sub(2)).rev() {
        let v = &reflectors[j * k + j + 1..(j + 1) * k];
        if v.iter().all(|&x| x == 0.0) {
            continue;
        }
        let u = &mut u[..v.len()];
        u.fill(0.0);
        for (i, &vi) in (j + 1..k).zip(v) {
            let row = &q[i * k + j + 1..(i + 1) * k];
            for (uc, &qc) in u.iter_mut().zip(row) {
                *uc = A::fma(vi, qc, *uc);
            }
        }
        for (i, &vi) in (j + 1..k).zip(v) {
            let vi2 = -2.0 * vi;
            let row = &mut q[i * k + j + 1..(i + 1) * k];
            for (qc, &uc) in row.iter_mut().zip(u.iter()) {
                *qc = A::fma(vi2, uc, *qc);
            }
        }
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    fn symmetric(k: usize, seed: u64) -> Vec<f64> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        // A Gram matrix: Y^T Y of k + 3 random rows.
        let y: Vec<f64> = (0..(k + 3) * k).map(|_| next()).collect();
        let mut g = vec![0.0; k * k];
        for row in y.chunks_exact(k.max(1)) {
            for a in 0..k {
                for b in 0..k {
                    g[a * k + b] += row[a] * row[b];
                }
            }
        }
        g
    }

    fn product(a: &[f64], b: &[f64], k: usize) -> Vec<f64> {
        let mut c = vec![0.0; k * k];
        for i in 0..k {
            for l in 0..k {
                for j in 0..k {
                    c[i * k + j] += a[i * k + l] * b[l * k + j];
                }
            }
        }
        c
    }

    fn transpose(a: &[f64], k: usize) -> Vec<f64> {
        (0..k * k).map(|ij| a[(ij % k) * k + ij / k]).collect()
    }

    fn max_abs(a: &[f64]) -> f64 {
        a.iter().fold(0.0, |m, &x| m.max(x.abs()))
    }

    #[test]
    fn the_basis_is_orthogonal_and_reduces_the_matrix() {
        for k in [0, 1, 2, 3, 5, 17, 64] {
            let g = symmetric(k, k as u64);
            let t = Tridiagonal::of(&g, k);
            let q = &t.basis;
            let qtq = product(&transpose(q, k), q, k);
            let identity: Vec<f64> = (0..k * k)
                .map(|ij| f64::from(u8::from(ij / k == ij % k)))
                .collect();
            let off: Vec<f64> = qtq.iter().zip(&identity).map(|(a, b)| a - b).collect();
            assert!(max_abs(&off) <= 1e-13 * k as f64, "k={k}: Q^T Q = I");
            let reduced = product(&transpose(q, k), &product(&g, q, k), k);
            let error: Vec<f64> = reduced.iter().zip(t.matrix()).map(|(a, b)| a - b).collect();
            let scale = max_abs(&g).max(1.0);
            assert!(
                max_abs(&error) <= 1e-12 * scale * k as f64,
                "k={k}: Q^T G Q = T"
            );
        }
    }

    #[test]
    fn a_tridiagonal_matrix_keeps_its_basis() {
        let k = 6;
        let t = Tridiagonal {
            basis: Vec::new(),
            diagonal: (0..k).map(|i| 2.0 + i as f64).collect(),
            off_diagonal: (0..k - 1).map(|i| 0.5 - i as f64).collect(),
        };
        let reduced = Tridiagonal::of(&t.matrix(), k);
        assert_eq!(reduced.diagonal, t.diagonal);
        assert_eq!(reduced.off_diagonal, t.off_diagonal);
        let identity: Vec<f64> = (0..k * k)
            .map(|ij| f64::from(u8::from(ij / k == ij % k)))
            .collect();
        assert_eq!(reduced.basis, identity);
    }

    #[test]
    fn every_fused_level_gives_the_same_bits() {
        use crate::simd::testing::{
            avx2_or_skip, avx512_or_skip, fused, fused_avx512, generic_fused,
        };
        let k = 40;
        let g = symmetric(k, 7);
        let bits = |t: &Tridiagonal| -> Vec<u64> {
            t.basis
                .iter()
                .chain(&t.diagonal)
                .chain(&t.off_diagonal)
                .map(|x| x.to_bits())
                .collect()
        };
        let want = bits(&Reduce { g: &g, k }.run(generic_fused()));
        if avx2_or_skip("tridiagonal: every_fused_level_gives_the_same_bits (AVX2)").is_some() {
            let got = Reduce { g: &g, k }.run(fused().expect("AVX2"));
            assert_eq!(bits(&got), want);
        }
        if avx512_or_skip("tridiagonal: every_fused_level_gives_the_same_bits (AVX-512)").is_some()
        {
            let got = Reduce { g: &g, k }.run(fused_avx512().expect("AVX-512"));
            assert_eq!(bits(&got), want);
        }
    }
}
