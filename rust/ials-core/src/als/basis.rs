//! The change of basis that makes CG's Gram products cheap: the model `X Y^T` and its objective
//! are unchanged when both factor matrices are multiplied by one orthogonal `Q` (`|x Q| = |x|`,
//! `(x Q) . (y Q) = x . y`), and conjugate gradient commutes with it: CG on `Q^T A Q` from
//! `Q^T x_0` steps through `Q^T x_j`. With `Q` the basis that reduces `Y^T Y` to tridiagonal
//! form ([`crate::linalg::Tridiagonal`]), each CG step's `k^2` Gram product becomes `3k` work;
//! turning both factor matrices costs `(n_x + n_y) k^2` once per half-sweep against the
//! `(steps + 1) n_x k^2` it saves. The caller keeps the product of the bases to turn the factors
//! back at the end of a fit.

use rayon::prelude::*;

use crate::check::check_square;
use crate::error::{Error, Result};
use crate::linalg::tridiagonal::identity;
use crate::linalg::{symv_panels, symv_rows, PanelMatrix, Tridiagonal};
use crate::simd::{dispatch, Arith, Kernel};
use crate::Real;

use super::solve::Solver;

/// Rows turned by one Rayon task, each task copying its rows once (32 and 256 timed alike at 64
/// factors).
const TURN_CHUNK: usize = 256;

/// Replaces every `k`-long row `x_r` of `x` by `x_r Q`, for the row-major `k x k` `basis` `Q`, in
/// parallel on the current Rayon pool. Each output is one FMA chain over `x_r` in order (the
/// arithmetic of the Gram products), so a row's result depends on nothing but the row: the same
/// bits for any thread count and for any split of `x` into blocks. Not stoppable: a matrix turned
/// in part would be in neither basis.
pub fn rotate_rows<T: Real>(x: &mut [T], k: usize, basis: &[T]) -> Result<()> {
    check_square("basis", basis, k)?;
    if k == 0 {
        return Ok(());
    }
    if !x.len().is_multiple_of(k) {
        return Err(Error::ShapeMismatch(format!(
            "{} values are not whole rows of {k}",
            x.len()
        )));
    }
    // Packed at every size it can be (f32, k a multiple of the panel), unlike CG's Gram matrix:
    // a block of TURN_CHUNK rows is a real matrix product (gowalla, 128 factors, 2 threads: both
    // sides turned in 14 ms packed, 25 ms row-major).
    let panels = crate::simd::as_f32(basis).and_then(|m| PanelMatrix::new(m, k));
    x.par_chunks_mut(TURN_CHUNK * k).for_each(|rows| {
        dispatch(Rotate {
            rows,
            basis,
            panels: panels.as_ref(),
            k,
        })
    });
    Ok(())
}

/// Below this many factors a turn costs more than the products it saves: turning a row streams
/// it from memory and back for `k^2` work, where CG's products run from L1 near the FMA peak
/// (gowalla, 2 threads: 0.90x the time of plain CG at 64 factors; 1.05x faster at 128, 1.24x at
/// 256 to 1024).
const TURN_FROM_FACTORS: usize = 128;

/// What the reduction and the turn of the running product cost, in Gram products of one row per
/// factor (`k^3` work in `k` dependent steps against the `k^2` products of independent rows): 24
/// at 128 and 256 factors, 18 at 512, 14 at 1024 (gowalla, 2 threads).
const REDUCTION_ROWS_PER_FACTOR: usize = 24;

/// Whether turning pays for a half-sweep of `solver` over `n_rows` rows against `n_fixed` fixed
/// ones: CG only (the exact solve gains nothing, block coordinate descent depends on the basis),
/// from `TURN_FROM_FACTORS` (128), where the `(steps + 1) n_rows` Gram products saved outnumber the
/// `n_rows + n_fixed` rows turned and the reduction.
pub fn turning_pays(solver: Solver, n_rows: usize, n_fixed: usize, k: usize) -> bool {
    let Solver::ConjugateGradient { steps } = solver else {
        return false;
    };
    // In u128: no count a caller passes can overflow.
    let saved = (steps as u128 + 1) * n_rows as u128;
    let spent = n_rows as u128 + n_fixed as u128 + REDUCTION_ROWS_PER_FACTOR as u128 * k as u128;
    k >= TURN_FROM_FACTORS && saved > spent
}

/// The product of the bases a fit has turned its factors to, so that they can go back to the
/// caller's basis when it ends (none yet: the caller's).
#[derive(Debug, Default)]
pub struct TurnedBasis {
    total: Option<Vec<f64>>,
}

impl TurnedBasis {
    /// Turns `x` and `y` (rows of `k`) to the basis in which `gram`, the Gram matrix of `y`, is
    /// tridiagonal, and returns that tridiagonal matrix (row-major `k x k`), the Gram matrix to
    /// solve with. Checks `gram` (square, finite, symmetric) before anything is turned; once it
    /// starts, turns all three (`x`, `y`, the running product) or fails on a shape first.
    pub fn reduce<T: Real>(
        &mut self,
        gram: &[f64],
        x: &mut [T],
        y: &mut [T],
        k: usize,
    ) -> Result<Vec<f64>> {
        check_square("Gram matrix", gram, k)?;
        if !(0..k).all(|i| (0..i).all(|j| gram[i * k + j] == gram[j * k + i])) {
            return Err(Error::InvalidParameter(
                "the Gram matrix is not symmetric".into(),
            ));
        }
        self.check(x.len(), y.len(), k)?;
        let reduced = Tridiagonal::of(gram, k);
        let rounded: Vec<T> = reduced.basis.iter().map(|&v| T::from_f64(v)).collect();
        rotate_rows(x, k, &rounded)?;
        rotate_rows(y, k, &rounded)?;
        let total = self.total.get_or_insert_with(|| identity(k));
        rotate_rows(total, k, &reduced.basis)?;
        Ok(reduced.matrix())
    }

    /// Turns `x` and `y` back to the caller's basis (nothing to do before the first `reduce`).
    pub fn restore<T: Real>(&mut self, x: &mut [T], y: &mut [T], k: usize) -> Result<()> {
        self.check(x.len(), y.len(), k)?;
        let Some(total) = self.total.take() else {
            return Ok(());
        };
        let back: Vec<T> = (0..k * k)
            .map(|ij| T::from_f64(total[(ij % k) * k + ij / k]))
            .collect();
        rotate_rows(x, k, &back)?;
        rotate_rows(y, k, &back)
    }

    /// Checked before anything turns, so that a call turns all it turns or nothing: whole rows
    /// of `k`, and the `k` of the bases turned so far.
    fn check(&self, x_len: usize, y_len: usize, k: usize) -> Result<()> {
        let whole = |len: usize| k > 0 && len.is_multiple_of(k) || len == 0;
        if !(whole(x_len) && whole(y_len)) {
            return Err(Error::ShapeMismatch(format!(
                "{x_len} and {y_len} values are not whole rows of {k}"
            )));
        }
        match &self.total {
            Some(total) if total.len() != k * k => Err(Error::ShapeMismatch(format!(
                "the factors were turned with {} columns, not {k}",
                total.len().isqrt()
            ))),
            _ => Ok(()),
        }
    }
}

struct Rotate<'a, T> {
    rows: &'a mut [T],
    basis: &'a [T],
    panels: Option<&'a PanelMatrix>,
    k: usize,
}

impl<T: Real> Kernel for Rotate<'_, T> {
    type Output = ();

    #[inline(always)]
    fn run<A: Arith>(self, arith: A) {
        let Rotate {
            rows,
            basis,
            panels,
            k,
        } = self;
        let before = rows.to_vec();
        if let Some(panels) = panels {
            let f32s = (
                crate::simd::as_f32(basis),
                crate::simd::as_f32(&before),
                crate::simd::as_f32_mut(rows),
            );
            if let (Some(m), Some(vs), Some(outs)) = f32s {
                return symv_panels(arith, m, panels, vs, outs, &mut Vec::new());
            }
        }
        // Both products compute `out_b = sum_j v_j M[j][b]`, `v M`, for any square `M`, not only
        // the symmetric ones they were written for (tested below against that sum).
        symv_rows(arith, basis, k, &before, rows);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: usize) -> Vec<f64> {
        (0..n)
            .map(|i| ((i * 31 + seed * 17) % 29) as f64 / 29.0 - 0.4)
            .collect()
    }

    fn gram(y: &[f64], k: usize) -> Vec<f64> {
        let mut g = vec![0.0; k * k];
        for row in y.chunks_exact(k) {
            for a in 0..k {
                for b in 0..k {
                    g[a * k + b] += row[a] * row[b];
                }
            }
        }
        g
    }

    #[test]
    fn rotated_rows_keep_their_dot_products_and_reduce_the_gram_matrix() {
        for (k, rows) in [(1, 3), (5, 7), (64, 100), (256, 40)] {
            let y = values(rows * k, k);
            let reduced = Tridiagonal::of(&gram(&y, k), k);
            let mut rotated = y.clone();
            rotate_rows(&mut rotated, k, &reduced.basis).unwrap();
            let scale = gram(&y, k).iter().fold(1.0f64, |m, v| m.max(v.abs()));
            for (g, t) in gram(&rotated, k).iter().zip(reduced.matrix()) {
                assert!(
                    (g - t).abs() <= 1e-12 * scale * k as f64,
                    "k={k}: {g} vs {t}"
                );
            }
            let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
            for (a, b) in [(0, rows - 1), (1, 1)] {
                let (ya, yb) = (&y[a * k..(a + 1) * k], &y[b * k..(b + 1) * k]);
                let (ra, rb) = (&rotated[a * k..(a + 1) * k], &rotated[b * k..(b + 1) * k]);
                assert!((dot(ya, yb) - dot(ra, rb)).abs() <= 1e-12 * k as f64);
            }
        }
    }

    #[test]
    fn a_row_turns_alike_in_any_block_and_with_panels() {
        // f32 with k a multiple of the panel: the basis is packed; 300 rows span two tasks.
        let k = 64;
        let basis: Vec<f32> = values(k * k, 3).iter().map(|&v| v as f32).collect();
        assert!(
            PanelMatrix::new(&basis, k).is_some(),
            "this test covers the panels"
        );
        let x: Vec<f32> = values(300 * k, 5).iter().map(|&v| v as f32).collect();
        let mut all = x.clone();
        rotate_rows(&mut all, k, &basis).unwrap();
        let row = 290;
        let mut one = x[row * k..(row + 1) * k].to_vec();
        rotate_rows(&mut one, k, &basis).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&one), bits(&all[row * k..(row + 1) * k]));
        // The level's multiply-add: fused, but for the portable level's (IALS_SIMD=portable).
        let fused = crate::simd::simd_level() != crate::simd::SimdLevel::Portable;
        let madd = |a: f32, b: f32, c: f32| if fused { a.mul_add(b, c) } else { a * b + c };
        let want: Vec<f32> = (0..k)
            .map(|b| (0..k).fold(0.0f32, |s, j| madd(x[row * k + j], basis[j * k + b], s)))
            .collect();
        assert_eq!(bits(&one), bits(&want), "one multiply-add chain per output");
    }

    /// Two turned half-sweeps then the turn back: plain CG's factors (f64, to rounding), for the
    /// half-sweep the rule turns and the one it does not.
    #[test]
    fn a_turned_fit_returns_plain_cgs_factors() {
        use crate::csr::{CsrMatrix, CsrView};
        use crate::parallel::Interrupt;
        use crate::{gram, solve_rows, Objective};
        let (n_users, n_items, k) = (1500, 60, 128);
        let (mut indptr, mut indices, mut data) = (vec![0i64], Vec::new(), Vec::new());
        for u in 0..n_users {
            for i in (0..n_items).filter(|i| (u * 7 + i * 13) % 9 == 0) {
                indices.push(i as i32);
                data.push(1.0 + ((u + i) % 3) as f32);
            }
            indptr.push(indices.len() as i64);
        }
        let users = CsrMatrix::new(indptr, indices, data, n_items).unwrap();
        let items = users.view().transpose();
        let (users, items) = (users.view(), items.view());
        let solver = Solver::ConjugateGradient { steps: 3 };
        assert!(
            turning_pays(solver, n_users, n_items, k) && !turning_pays(solver, n_items, n_users, k)
        );
        let objective = Objective {
            regularization: 0.1,
            alpha: 2.0,
            regularization_exponent: 0.0,
            unobserved_weight: 1.0,
        };
        let stop = Interrupt::new();
        let fit = |turn: bool| {
            let (mut x, mut y) = (values(n_users * k, 1), values(n_items * k, 2));
            let mut basis = TurnedBasis::default();
            let mut half_sweep = |rows: &CsrView<'_>, x: &mut Vec<f64>, y: &mut Vec<f64>| {
                let mut g = gram(y, k, &stop).unwrap();
                if turn && turning_pays(solver, rows.n_rows(), rows.n_cols(), k) {
                    g = basis.reduce(&g, x, y, k).unwrap();
                }
                solve_rows(rows, x, y, k, &g, &objective, solver, &stop).unwrap();
            };
            for _ in 0..2 {
                half_sweep(&users, &mut x, &mut y);
                half_sweep(&items, &mut y, &mut x);
            }
            basis.restore(&mut x, &mut y, k).unwrap();
            (x, y)
        };
        let (turned, plain) = (fit(true), fit(false));
        let distance = |a: &[f64], b: &[f64]| {
            let d: f64 = a.iter().zip(b).map(|(p, q)| (p - q) * (p - q)).sum();
            let n: f64 = b.iter().map(|q| q * q).sum();
            (d / n).sqrt()
        };
        assert!(distance(&turned.0, &plain.0) < 1e-9, "users");
        assert!(distance(&turned.1, &plain.1) < 1e-9, "items");
        assert!(
            distance(&turned.0, &values(n_users * k, 1)) > 1e-3,
            "the fit moved"
        );
    }

    #[test]
    fn a_turn_with_bad_shapes_turns_nothing() {
        let k = 4;
        let y = values(9 * k, 3);
        let g: Vec<f64> = (0..k * k)
            .map(|ij| {
                let (a, b) = (ij / k, ij % k);
                (0..9).map(|r| y[r * k + a] * y[r * k + b]).sum()
            })
            .collect();
        let mut basis = TurnedBasis::default();
        let (mut x, mut short_y) = (values(5 * k, 1), y[..9 * k - 1].to_vec());
        let before = x.clone();
        assert!(basis.reduce(&g, &mut x, &mut short_y, k).is_err());
        assert_eq!(x, before, "x untouched when y is not whole rows");
        let mut y = y.clone();
        basis.reduce(&g, &mut x, &mut y, k).unwrap();
        let turned = x.clone();
        let (mut x5, mut y5) = (values(5 * 5, 1), values(9 * 5, 3));
        assert!(
            basis.restore(&mut x5, &mut y5, 5).is_err(),
            "turned with 4 columns"
        );
        assert!(basis.reduce(&g, &mut x5, &mut y5, 5).is_err());
        assert_eq!(x, turned);
        basis.restore(&mut x, &mut y, k).unwrap();
        assert!(x.iter().zip(&before).all(|(a, b)| (a - b).abs() < 1e-12));
    }

    #[test]
    fn bad_shapes_and_values_are_refused() {
        let mut x = vec![0.0f64; 6];
        assert!(rotate_rows(&mut x, 2, &[1.0; 3]).is_err());
        assert!(rotate_rows(&mut x, 4, &[1.0; 16]).is_err());
        assert!(rotate_rows(&mut x, 2, &[1.0, f64::NAN, 0.0, 1.0]).is_err());
        assert!(rotate_rows(&mut x, 3, &[0.0; 9]).is_ok());
    }
}
