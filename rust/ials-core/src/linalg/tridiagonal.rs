//! Householder reduction of a symmetric `k x k` matrix to tridiagonal form, `Q^T G Q = T`, with
//! `Q` orthogonal: the change of basis that lets CG multiply by a Gram matrix in `3k` operations
//! instead of `k^2` (see `als::basis`).
//!
//! The textbook reduction (Golub & Van Loan, 4th ed., algorithm 8.3.1) in f64: each step one pass
//! over the trailing block for `p = S v` and one for the rank-2 update, then `Q^T` accumulated
//! from the reflectors, last to first. Every pass works row by row (a dot product per row, an
//! update per row), so large blocks are split across the pool's threads and each row's result
//! is the same whoever computes it; each dot product and update has one fixed order, the same
//! bits at every level that fuses.

use rayon::prelude::*;

use crate::linalg::vector::dot;
use crate::simd::{dispatch, Arith, Kernel};

/// Trailing blocks of at least this many rows are split across the pool's threads (each step
/// waits for its passes, so small blocks stay on the calling thread).
const PARALLEL_FROM: usize = 96;
/// Rows per Rayon task in a split pass.
const ROWS_PER_TASK: usize = 32;

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
    /// The reduction of the symmetric row-major `k x k` matrix `g` (`g` must be symmetric, as a
    /// Gram matrix is), on the current Rayon pool.
    pub fn of(g: &[f64], k: usize) -> Self {
        assert_eq!(g.len(), k * k, "a k x k matrix");
        let mut a = g.to_vec();
        let mut diagonal = vec![0.0; k];
        let mut off_diagonal = vec![0.0; k.saturating_sub(1)];
        let (mut p, mut w) = (vec![0.0; k], vec![0.0; k]);
        for j in 0..k.saturating_sub(2) {
            diagonal[j] = a[j * k + j];
            // Row j right of the diagonal (column j below it, by symmetry) is reduced by the
            // reflector `I - 2 v v^T` on coordinates `j + 1..k`; nothing reads that part of the
            // row again, so `v` is kept there (all zeros where the column was reduced already).
            let (done, trailing) = a.split_at_mut((j + 1) * k);
            let v = &mut done[j * k + j + 1..];
            let Some(alpha) = dispatch(Reflector { x: v }) else {
                off_diagonal[j] = v[0];
                v.fill(0.0);
                continue;
            };
            off_diagonal[j] = alpha;
            let v = &*v;
            let m = v.len();
            // S <- H S H = S - 2 (v w^T + w v^T), with p = S v and w = p - (v . p) v, over the
            // trailing block S (rows and columns j + 1..k).
            by_rows(trailing, k, j + 1, RowPass::Dot { v }, &mut p[..m]);
            dispatch(Coupling {
                v,
                p: &p[..m],
                w: &mut w[..m],
            });
            by_rows(
                trailing,
                k,
                j + 1,
                RowPass::Rank2 { v, w: &w[..m] },
                &mut p[..m],
            );
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
        Self {
            basis: accumulate(&a, k, &mut p),
            diagonal,
            off_diagonal,
        }
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

/// `Q = H_0 H_1 ... H_{k-3}` from the reflectors, reflector `j` in row `j` of `reflectors` right of
/// the diagonal. `Q^T = H_{k-3} ... H_0` is built from the identity by `Z <- Z H_j`, last reflector
/// to first: `H_j` changes only columns `j + 1..k`, where only rows `j + 1..k` of the product so
/// far are not zero; then transposed in place. `scratch` holds at least `k` values.
fn accumulate(reflectors: &[f64], k: usize, scratch: &mut [f64]) -> Vec<f64> {
    let mut z = identity(k);
    for j in (0..k.saturating_sub(2)).rev() {
        let v = &reflectors[j * k + j + 1..(j + 1) * k];
        if v.iter().all(|&x| x == 0.0) {
            continue;
        }
        let rows = &mut z[(j + 1) * k..];
        by_rows(
            rows,
            k,
            j + 1,
            RowPass::Reflect { v },
            &mut scratch[..v.len()],
        );
    }
    for i in 0..k {
        for j in 0..i {
            z.swap(i * k + j, j * k + i);
        }
    }
    z
}

/// The `k x k` identity, row-major.
pub(crate) fn identity(k: usize) -> Vec<f64> {
    let mut m = vec![0.0; k * k];
    for i in 0..k {
        m[i * k + i] = 1.0;
    }
    m
}

/// One pass over the rows of `rows` (whole rows of `k`), on their columns from `first`: row `r`
/// gets `pass` with its own output `out[r]`; split across the pool's threads from
/// [`PARALLEL_FROM`] rows.
fn by_rows(rows: &mut [f64], k: usize, first: usize, pass: RowPass<'_>, out: &mut [f64]) {
    let n = rows.len() / k;
    assert_eq!(out.len(), n, "one output per row");
    if n < PARALLEL_FROM {
        return dispatch(Rows {
            rows,
            k,
            first,
            pass,
            out,
            offset: 0,
        });
    }
    rows.par_chunks_mut(ROWS_PER_TASK * k)
        .zip(out.par_chunks_mut(ROWS_PER_TASK))
        .enumerate()
        .for_each(|(task, (rows, out))| {
            dispatch(Rows {
                rows,
                k,
                first,
                pass,
                out,
                offset: task * ROWS_PER_TASK,
            })
        });
}

/// What a pass does to each row `s` (its columns from `first`), `r` being its index in the pass.
#[derive(Clone, Copy)]
enum RowPass<'a> {
    /// `out[r] = s . v`
    Dot { v: &'a [f64] },
    /// `s <- s - 2 (v[r] w + w[r] v)`
    Rank2 { v: &'a [f64], w: &'a [f64] },
    /// `s <- s - 2 (s . v) v`, keeping `s . v` in `out[r]`
    Reflect { v: &'a [f64] },
}

struct Rows<'a> {
    rows: &'a mut [f64],
    k: usize,
    first: usize,
    pass: RowPass<'a>,
    out: &'a mut [f64],
    /// The index in the pass of the first of `rows`.
    offset: usize,
}

impl Kernel for Rows<'_> {
    type Output = ();

    #[inline(always)]
    fn run<A: Arith>(self, arith: A) {
        let Rows {
            rows,
            k,
            first,
            pass,
            out,
            offset,
        } = self;
        for (local, (row, o)) in rows.chunks_exact_mut(k).zip(out.iter_mut()).enumerate() {
            let s = &mut row[first..];
            match pass {
                RowPass::Dot { v } => *o = dot::<f64, A>(arith, s, v),
                RowPass::Rank2 { v, w } => {
                    let r = offset + local;
                    let (vr, wr) = (-2.0 * v[r], -2.0 * w[r]);
                    for ((sc, &wc), &vc) in s.iter_mut().zip(w).zip(v) {
                        *sc = A::fma(wr, vc, A::fma(vr, wc, *sc));
                    }
                }
                RowPass::Reflect { v } => {
                    *o = dot::<f64, A>(arith, s, v);
                    let scale = -2.0 * *o;
                    for (sc, &vc) in s.iter_mut().zip(v) {
                        *sc = A::fma(scale, vc, *sc);
                    }
                }
            }
        }
    }
}

/// Turns `x` into the unit `v` with `(I - 2 v v^T) x = alpha e_0`; returns `alpha`, or `None`
/// (leaving `x`) where `x` is a multiple of `e_0` already.
struct Reflector<'a> {
    x: &'a mut [f64],
}

impl Kernel for Reflector<'_> {
    type Output = Option<f64>;

    #[inline(always)]
    fn run<A: Arith>(self, _arith: A) -> Option<f64> {
        let x = self.x;
        let tail: f64 = x[1..].iter().fold(0.0, |s, &e| A::fma(e, e, s));
        if tail == 0.0 {
            return None;
        }
        let norm = A::fma(x[0], x[0], tail).sqrt();
        // The sign that keeps `x_0 - alpha` free of cancellation.
        let alpha = if x[0] >= 0.0 { -norm } else { norm };
        x[0] -= alpha;
        let scale = 1.0 / A::fma(x[0], x[0], tail).sqrt();
        x.iter_mut().for_each(|e| *e *= scale);
        Some(alpha)
    }
}

/// `w = p - (v . p) v`.
struct Coupling<'a> {
    v: &'a [f64],
    p: &'a [f64],
    w: &'a mut [f64],
}

impl Kernel for Coupling<'_> {
    type Output = ();

    #[inline(always)]
    fn run<A: Arith>(self, arith: A) {
        let vp = dot::<f64, A>(arith, self.v, self.p);
        for ((wc, &pc), &vc) in self.w.iter_mut().zip(self.p).zip(self.v) {
            *wc = A::fma(-vp, vc, pc);
        }
    }
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
            let off: Vec<f64> = qtq.iter().zip(&identity(k)).map(|(a, b)| a - b).collect();
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
        assert_eq!(reduced.basis, identity(k));
    }

    #[test]
    fn any_thread_count_gives_the_same_bits() {
        // 200 rows: the first passes are split across the threads, the last ones are not.
        let k = 200;
        let g = symmetric(k, 7);
        let bits = |t: &Tridiagonal| -> Vec<u64> {
            t.basis
                .iter()
                .chain(&t.diagonal)
                .chain(&t.off_diagonal)
                .map(|x| x.to_bits())
                .collect()
        };
        let one = crate::parallel::with_threads(1, || Tridiagonal::of(&g, k)).unwrap();
        let three = crate::parallel::with_threads(3, || Tridiagonal::of(&g, k)).unwrap();
        assert_eq!(bits(&one), bits(&three));
    }

    /// Every piece of the reduction's arithmetic, run at each level the CPU has: the same bits
    /// as the generic body with fused multiply-adds.
    #[test]
    fn every_fused_level_gives_the_same_bits() {
        use crate::simd::testing::{
            avx2_or_skip, avx512_or_skip, fused, fused_avx512, generic_fused,
        };
        fn pieces<A: Arith>(arith: A) -> Vec<u64> {
            let k = 37;
            let g = symmetric(k, 3);
            let (v, w) = (&g[..k - 5], &g[k..2 * k - 5]);
            let mut bits = Vec::new();
            let passes = [
                RowPass::Dot { v },
                RowPass::Rank2 { v, w },
                RowPass::Reflect { v },
            ];
            for pass in passes {
                let (mut rows, mut out) = (g[..(k - 5) * k].to_vec(), vec![0.0; k - 5]);
                Rows {
                    rows: &mut rows,
                    k,
                    first: 5,
                    pass,
                    out: &mut out,
                    offset: 0,
                }
                .run(arith);
                bits.extend(rows.iter().chain(&out).map(|x| x.to_bits()));
            }
            let mut x = g[2 * k..3 * k].to_vec();
            let alpha = Reflector { x: &mut x }.run(arith).expect("not reduced");
            let mut coupled = vec![0.0; k];
            Coupling {
                v: &x,
                p: &g[3 * k..4 * k],
                w: &mut coupled,
            }
            .run(arith);
            bits.extend(
                x.iter()
                    .chain(&coupled)
                    .chain([&alpha])
                    .map(|e| e.to_bits()),
            );
            bits
        }
        let want = pieces(generic_fused());
        if avx2_or_skip("tridiagonal: every_fused_level_gives_the_same_bits (AVX2)").is_some() {
            assert_eq!(pieces(fused().expect("AVX2")), want);
        }
        if avx512_or_skip("tridiagonal: every_fused_level_gives_the_same_bits (AVX-512)").is_some()
        {
            assert_eq!(pieces(fused_avx512().expect("AVX-512")), want);
        }
    }
}
