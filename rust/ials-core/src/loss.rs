//! The training objective, normalised by the total confidence weight as implicit reports it.

use rayon::prelude::*;

use crate::csr::CsrView;
use crate::error::Result;
use crate::gram::gram;
use crate::kernels::{dot, symv};
use crate::objective::Objective;
use crate::simd::{dispatch, Arith, Kernel};
use crate::solve::check_factors;
use crate::Real;

/// Rows per partial sum; fixed so the result does not depend on the thread count.
const LOSS_ROWS: usize = 1024;

/// `[sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + sum_u lambda_u |x_u|^2 + sum_i lambda_i |y_i|^2] / W`
/// over all cells, stored or not, with `W = sum_stored c_ui + alpha0 (n_rows n_cols - nnz)` the
/// total weight (the unnormalised sum when `W` is 0). Unstored cells are summed in closed form
/// through `x^T (alpha0 Y^T Y) x`, so the cost is `O(nnz k + n k^2)`, never `n_rows x n_cols`.
pub fn loss<T: Real>(
    rows: &CsrView<'_>,
    x: &[T],
    y: &[T],
    k: usize,
    objective: &Objective,
) -> Result<f64> {
    objective.validate()?;
    check_factors(rows, x, y, k)?;
    if k == 0 {
        return Ok(0.0);
    }
    let w0 = objective.unobserved_weight;
    let weighted_gram: Vec<f64> = gram(y, k).iter().map(|g| w0 * g).collect();
    let partials: Vec<(f64, f64)> = x
        .par_chunks(LOSS_ROWS * k)
        .enumerate()
        .map(|(chunk, x_rows)| {
            dispatch(RowLoss {
                rows,
                first_row: chunk * LOSS_ROWS,
                x: x_rows,
                y,
                k,
                weighted_gram: &weighted_gram,
                objective,
            })
        })
        .collect();
    let (mut total, mut confidence) = (0.0, 0.0);
    for (l, c) in partials {
        total += l;
        confidence += c;
    }

    let counts = rows.column_counts();
    let item_penalties: Vec<f64> = y
        .par_chunks(LOSS_ROWS * k)
        .zip(counts.par_chunks(LOSS_ROWS))
        .map(|(y_rows, counts)| {
            y_rows
                .chunks_exact(k)
                .zip(counts)
                .map(|(yi, &n)| objective.row_regularization(n, rows.n_rows()) * squared_norm(yi))
                .sum::<f64>()
        })
        .collect();
    total += item_penalties.iter().sum::<f64>();

    let unstored = (rows.n_rows() * rows.n_cols() - rows.nnz()) as f64;
    let weight = confidence + w0 * unstored;
    Ok(if weight > 0.0 { total / weight } else { total })
}

fn squared_norm<T: Real>(v: &[T]) -> f64 {
    v.iter().map(|&a| a.to_f64() * a.to_f64()).sum()
}

struct RowLoss<'a, T> {
    rows: &'a CsrView<'a>,
    first_row: usize,
    x: &'a [T],
    y: &'a [T],
    k: usize,
    weighted_gram: &'a [f64],
    objective: &'a Objective,
}

impl<T: Real> Kernel for RowLoss<'_, T> {
    /// (loss, confidence of the stored cells) of these rows.
    type Output = (f64, f64);

    #[inline(always)]
    fn run<A: Arith>(self) -> (f64, f64) {
        let k = self.k;
        let w0 = self.objective.unobserved_weight;
        let mut xf = vec![0.0f64; k];
        let mut yf = vec![0.0f64; k];
        let mut gx = vec![0.0f64; k];
        let (mut total, mut confidence_sum) = (0.0, 0.0);
        for (offset, x) in self.x.chunks_exact(k).enumerate() {
            let (cols, vals) = self.rows.row(self.first_row + offset);
            for (dst, &src) in xf.iter_mut().zip(x) {
                *dst = src.to_f64();
            }
            // Every cell as if unstored: alpha0 (x . y_i)^2 summed over all i.
            symv::<f64, A>(self.weighted_gram, &xf, &mut gx);
            total += dot::<f64, A>(&xf, &gx);
            // Stored cells replace that term with their own weight and preference.
            for (&c, &v) in cols.iter().zip(vals) {
                let (confidence, preference) = self.objective.cell(v);
                let (confidence, preference) = (confidence as f64, preference as f64);
                let yi = &self.y[c as usize * k..(c as usize + 1) * k];
                for (dst, &src) in yf.iter_mut().zip(yi) {
                    *dst = src.to_f64();
                }
                let score = dot::<f64, A>(&xf, &yf);
                total += confidence * (preference - score).powi(2) - w0 * score * score;
                confidence_sum += confidence;
            }
            let lambda = self
                .objective
                .row_regularization(cols.len(), self.rows.n_cols());
            total += lambda * dot::<f64, A>(&xf, &xf);
        }
        (total, confidence_sum)
    }
}
