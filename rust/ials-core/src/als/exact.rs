//! Exact row solves: each row's normal equations formed in f64 and factored (Cholesky), and
//! the same equations exposed for explanations and fold-in.

use crate::check::all_finite;
use crate::csr::CsrView;
use crate::error::{Error, Result};
use crate::linalg::axpy;
use crate::linalg::cholesky;
use crate::linalg::vector::LANES;
use crate::simd::{dispatch, prefetch, Arith, Kernel};
use crate::Real;

use super::cg::PREFETCH_AHEAD;
use super::objective::Objective;

/// Consecutive rows of `x` to solve in f64 against the fixed `y`, from `first_row` on.
pub(crate) struct RowChunk<'a, T> {
    pub(crate) rows: &'a CsrView<'a>,
    pub(crate) first_row: usize,
    pub(crate) x: &'a mut [T],
    pub(crate) y: &'a [T],
    pub(crate) k: usize,
    /// `alpha0 Y^T Y`, full `k x k`.
    pub(crate) weighted_gram: &'a [f64],
    pub(crate) objective: &'a Objective,
}

/// Each row of the chunk solved exactly: its normal equations factored (Cholesky).
pub(crate) struct CholeskyRows<'a, T>(pub(crate) RowChunk<'a, T>);

impl<T: Real> Kernel for CholeskyRows<'_, T> {
    type Output = Result<()>;

    #[inline(always)]
    fn run<A: Arith>(self, arith: A) -> Result<()> {
        let chunk = self.0;
        let k = chunk.k;
        let mut a = vec![0.0f64; k * k];
        let mut b = vec![0.0f64; k];
        let (mut gathered, mut weights) = (Vec::new(), Vec::new());
        for (offset, x) in chunk.x.chunks_exact_mut(k).enumerate() {
            let row = chunk.first_row + offset;
            let (cols, vals) = chunk.rows.row(row);
            if cols.is_empty() {
                x.fill(T::ZERO);
                continue;
            }
            row_system::<T, A>(
                cols,
                vals,
                chunk.y,
                k,
                chunk.weighted_gram,
                chunk.objective,
                chunk.rows.n_cols(),
                &mut a,
                &mut b,
                &mut gathered,
                &mut weights,
            );
            if !cholesky::factor(arith, &mut a, k) {
                return Err(Error::Singular { row });
            }
            cholesky::solve::<A>(&a, k, &mut b);
            for (xi, &bi) in x.iter_mut().zip(&b) {
                *xi = T::from_f64(bi);
            }
        }
        Ok(())
    }
}

/// The normal equations `(A_u, b_u)` of one row in f64 (`A_u` full, row-major `k x k`): what the
/// exact solver factors, exposed for explanations (Hu et al. section 5) and other exact uses.
pub fn row_normal_equations<T: Real>(
    cols: &[i32],
    vals: &[f32],
    y: &[T],
    k: usize,
    gram: &[f64],
    objective: &Objective,
) -> Result<(Vec<f64>, Vec<f64>)> {
    objective.validate()?;
    let n_cols = y.len().checked_div(k).unwrap_or(0);
    if y.len() != n_cols * k || gram.len() != k * k {
        return Err(Error::ShapeMismatch(format!(
            "need {k} factors: the fixed factors have {} entries, the Gram matrix {}",
            y.len(),
            gram.len()
        )));
    }
    if cols.len() != vals.len() {
        return Err(Error::ShapeMismatch(
            "the row's indices and values differ in length".into(),
        ));
    }
    if let Some(&bad) = cols.iter().find(|&&c| c < 0 || c as usize >= n_cols) {
        return Err(Error::InvalidCsr(format!(
            "column index {bad} is outside 0..{n_cols}"
        )));
    }
    if !all_finite(vals) || !all_finite(y) {
        return Err(Error::NonFinite(
            "the row or the fixed factors hold a non-finite value".into(),
        ));
    }
    let weighted_gram: Vec<f64> = gram
        .iter()
        .map(|&g| objective.unobserved_weight * g)
        .collect();
    Ok(dispatch(NormalEquations {
        cols,
        vals,
        y,
        k,
        weighted_gram: &weighted_gram,
        objective,
        n_cols,
    }))
}

struct NormalEquations<'a, T> {
    cols: &'a [i32],
    vals: &'a [f32],
    y: &'a [T],
    k: usize,
    weighted_gram: &'a [f64],
    objective: &'a Objective,
    n_cols: usize,
}

impl<T: Real> Kernel for NormalEquations<'_, T> {
    type Output = (Vec<f64>, Vec<f64>);

    #[inline(always)]
    fn run<A: Arith>(self, _: A) -> Self::Output {
        let k = self.k;
        let (mut a, mut b) = (vec![0.0; k * k], vec![0.0; k]);
        let (mut gathered, mut weights) = (Vec::new(), Vec::new());
        row_system::<T, A>(
            self.cols,
            self.vals,
            self.y,
            k,
            self.weighted_gram,
            self.objective,
            self.n_cols,
            &mut a,
            &mut b,
            &mut gathered,
            &mut weights,
        );
        for i in 0..k {
            for j in i + 1..k {
                a[j * k + i] = a[i * k + j];
            }
        }
        (a, b)
    }
}

/// Forms the upper triangle of `A_u` (entries left of the diagonal may be touched too) and all
/// of `b_u` for one row, in f64. The row's item vectors are gathered into `gathered` first, so the
/// sum of their weighted outer products runs register-tiled: 16 entries of each of two rows of
/// `A_u` stay in registers while every item streams past, and are then written once with the Gram
/// entries added (no separate copy of the k x k Gram matrix per row).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn row_system<T: Real, A: Arith>(
    cols: &[i32],
    vals: &[f32],
    y: &[T],
    k: usize,
    weighted_gram: &[f64],
    objective: &Objective,
    n_cols: usize,
    a: &mut [f64],
    b: &mut [f64],
    gathered: &mut Vec<f64>,
    weights: &mut Vec<f64>,
) {
    let w0 = objective.unobserved_weight;
    b.fill(0.0);
    gathered.clear();
    weights.clear();
    for (j, (&c, &v)) in cols.iter().zip(vals).enumerate() {
        if let Some(&ahead) = cols.get(j + PREFETCH_AHEAD) {
            prefetch(&y[ahead as usize * k..(ahead as usize + 1) * k]);
        }
        let (confidence, preference) = objective.cell(v);
        let confidence = confidence as f64;
        let start = gathered.len();
        gathered.extend(
            y[c as usize * k..(c as usize + 1) * k]
                .iter()
                .map(|v| v.to_f64()),
        );
        weights.push(confidence - w0);
        if preference > 0.0 {
            axpy::<f64, A>(confidence, &gathered[start..], b);
        }
    }
    // Rows in pairs: two rows of accumulators (eight registers) hide the FMA latency that one
    // row alone leaves exposed. The pair starts at an even row, so both rows' first block starts
    // at the same column.
    let mut i = 0;
    while i < k {
        let pair = i + 1 < k;
        for start in (i - i % LANES..k).step_by(LANES) {
            let width = LANES.min(k - start);
            let mut write = |row: usize, sums: &[f64]| {
                let at = row * k + start..row * k + start + width;
                for ((entry, &g), sum) in a[at.clone()].iter_mut().zip(&weighted_gram[at]).zip(sums)
                {
                    *entry = g + sum;
                }
            };
            if width == LANES && pair {
                let [first, second] = weighted_outer::<A, 2>(gathered, weights, k, i, start);
                write(i, &first);
                write(i + 1, &second);
            } else if width == LANES {
                let [only] = weighted_outer::<A, 1>(gathered, weights, k, i, start);
                write(i, &only);
            } else {
                for row in i..i + 1 + pair as usize {
                    let mut sums = [0.0; LANES];
                    for (t, sum) in sums[..width].iter_mut().enumerate() {
                        for (z, &w) in gathered.chunks_exact(k).zip(weights.iter()) {
                            *sum = A::fma(w * z[row], z[start + t], *sum);
                        }
                    }
                    write(row, &sums[..width]);
                }
            }
        }
        i += 1 + pair as usize;
    }
    let lambda = objective.row_regularization(cols.len(), n_cols);
    for d in 0..k {
        a[d * k + d] += lambda;
    }
}

/// `sum_z w z[first_row + r] z[start..start + LANES]` over the gathered rows z, for the `R` rows
/// `first_row..first_row + R` of `A_u`: `R x LANES` sums held in registers.
#[inline(always)]
fn weighted_outer<A: Arith, const R: usize>(
    gathered: &[f64],
    weights: &[f64],
    k: usize,
    first_row: usize,
    start: usize,
) -> [[f64; LANES]; R] {
    let mut acc = [[0.0f64; LANES]; R];
    for (z, &w) in gathered.chunks_exact(k).zip(weights) {
        let block = &z[start..start + LANES];
        for (r, acc) in acc.iter_mut().enumerate() {
            let scale = w * z[first_row + r];
            for (a, &b) in acc.iter_mut().zip(block) {
                *a = A::fma(scale, b, *a);
            }
        }
    }
    acc
}
