//! The training objective, normalised by the total confidence weight as implicit reports it.

use rayon::prelude::*;

use super::gram::gram;
use super::objective::Objective;
use crate::check::check_factors;
use crate::csr::CsrView;
use crate::error::{Error, Result};
use crate::linalg::dot;
use crate::parallel::Interrupt;
use crate::simd::{dispatch, Arith, Kernel};
use crate::Real;

/// Rows per partial sum; fixed so the result does not depend on the thread count.
const LOSS_ROWS: usize = 1024;

/// The parts of the training objective over a block of rows. Each part is a plain sum, so the
/// parts of row blocks add up to those of the whole (a distributed caller adds them).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossTerms {
    /// `sum_{u,i} c_ui (p_ui - x_u . y_i)^2` over every cell of the rows, stored or not.
    pub error: f64,
    /// `sum_stored c_ui + alpha0 (cells not stored)`: the total confidence weight.
    pub weight: f64,
    /// `sum_u lambda_u |x_u|^2` over the rows.
    pub row_penalty: f64,
    /// `sum_i lambda_i |y_i|^2` over the columns, with `lambda_i` from the columns' counts in
    /// these rows (the whole matrix's when these are all the rows).
    pub column_penalty: f64,
}

impl LossTerms {
    /// The objective normalised by the total weight, as implicit reports it (the plain sum when
    /// the weight is 0; infinite when a term overflows).
    pub fn normalised(&self) -> f64 {
        let total = self.error + self.row_penalty + self.column_penalty;
        // Every term is >= 0 and the factors are finite, so NaN means a term overflowed and was
        // computed as inf - inf: the objective itself is beyond f64, inf.
        if total.is_nan() {
            return f64::INFINITY;
        }
        if self.weight > 0.0 {
            total / self.weight
        } else {
            total
        }
    }
}

/// The parts of the objective ([`LossTerms::normalised`] is the loss implicit reports).
/// Every cell is first counted as unstored, in closed form: `alpha0 sum_u x_u^T (Y^T Y) x_u =
/// alpha0 <X^T X, Y^T Y>`, two Gram matrices on the Gram kernel; the stored cells then replace
/// their term. The cost is `O(nnz k + (n_rows + n_cols) k^2)`, never `n_rows x n_cols`. (A
/// `k x k` mat-vec per row instead streamed the f64 matrix, 8 MB at 1024 factors, from memory
/// for every row: 3.5-9.5 s for gowalla's loss there, longer than a CG iteration.)
pub fn loss_terms<T: Real>(
    rows: &CsrView<'_>,
    x: &[T],
    y: &[T],
    k: usize,
    objective: &Objective,
    interrupt: &Interrupt,
) -> Result<LossTerms> {
    objective.validate()?;
    check_factors((rows.n_rows(), rows.n_cols()), x, y, k)?;
    if k == 0 {
        return Ok(LossTerms::default());
    }
    let w0 = objective.unobserved_weight;
    let (gram_x, gram_y) = (gram(x, k, interrupt)?, gram(y, k, interrupt)?);
    let unobserved = w0 * gram_x.iter().zip(&gram_y).map(|(a, b)| a * b).sum::<f64>();
    let partials: Vec<(f64, f64)> = x
        .par_chunks(LOSS_ROWS * k)
        .enumerate()
        .map(|(chunk, x_rows)| {
            interrupt.check()?;
            Ok(dispatch(RowLoss {
                rows,
                first_row: chunk * LOSS_ROWS,
                x: x_rows,
                y,
                k,
                objective,
            }))
        })
        .collect::<Result<_>>()?;
    let (mut error, mut confidence) = (unobserved, 0.0);
    for (l, c) in partials {
        error += l;
        confidence += c;
    }
    let unstored = (rows.n_rows() * rows.n_cols() - rows.nnz()) as f64;
    Ok(LossTerms {
        error,
        weight: confidence + w0 * unstored,
        row_penalty: penalty_of(x, k, &rows.row_counts(), rows.n_cols(), objective),
        column_penalty: penalty_of(y, k, &rows.column_counts(), rows.n_rows(), objective),
    })
}

/// `sum_u lambda_u |x_u|^2` over the rows of `x`, `lambda_u` by the length of row u of `rows`:
/// the penalty part of [`LossTerms`] for one side.
pub fn penalty<T: Real>(
    rows: &CsrView<'_>,
    x: &[T],
    k: usize,
    objective: &Objective,
) -> Result<f64> {
    objective.validate()?;
    if x.len() != rows.n_rows() * k {
        return Err(Error::ShapeMismatch(format!(
            "the factors have {} entries, expected {} rows x {k} factors",
            x.len(),
            rows.n_rows()
        )));
    }
    if k == 0 {
        return Ok(0.0);
    }
    Ok(penalty_of(
        x,
        k,
        &rows.row_counts(),
        rows.n_cols(),
        objective,
    ))
}

/// `sum_r lambda(counts[r], n_other) |x_r|^2`, in fixed chunks so any thread count gives the
/// same bits.
fn penalty_of<T: Real>(
    x: &[T],
    k: usize,
    counts: &[usize],
    n_other: usize,
    objective: &Objective,
) -> f64 {
    let partials: Vec<f64> = x
        .par_chunks(LOSS_ROWS * k)
        .zip(counts.par_chunks(LOSS_ROWS))
        .map(|(rows, counts)| {
            rows.chunks_exact(k)
                .zip(counts)
                .map(|(xr, &n)| objective.row_regularization(n, n_other) * squared_norm(xr))
                .sum::<f64>()
        })
        .collect();
    partials.iter().sum()
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
    objective: &'a Objective,
}

impl<T: Real> Kernel for RowLoss<'_, T> {
    /// (error, confidence of the stored cells) of these rows.
    type Output = (f64, f64);

    #[inline(always)]
    fn run<A: Arith>(self, arith: A) -> (f64, f64) {
        let k = self.k;
        let w0 = self.objective.unobserved_weight;
        let mut xf = vec![0.0f64; k];
        let mut yf = vec![0.0f64; k];
        let (mut total, mut confidence_sum) = (0.0, 0.0);
        for (offset, x) in self.x.chunks_exact(k).enumerate() {
            let (cols, vals) = self.rows.row(self.first_row + offset);
            for (dst, &src) in xf.iter_mut().zip(x) {
                *dst = src.to_f64();
            }
            // Stored cells replace their unstored term with their own weight and preference.
            for (&c, &v) in cols.iter().zip(vals) {
                let (confidence, preference) = self.objective.cell(v);
                let (confidence, preference) = (confidence as f64, preference as f64);
                let yi = &self.y[c as usize * k..(c as usize + 1) * k];
                for (dst, &src) in yf.iter_mut().zip(yi) {
                    *dst = src.to_f64();
                }
                let score = dot(arith, &xf, &yf);
                total += confidence * (preference - score).powi(2) - w0 * score * score;
                confidence_sum += confidence;
            }
        }
        (total, confidence_sum)
    }
}

#[cfg(test)]
mod tests {
    use super::LossTerms;

    #[test]
    fn an_overflowing_term_makes_the_loss_infinite_not_nan() {
        let overflowed = LossTerms {
            error: f64::INFINITY - f64::INFINITY,
            weight: 2.0,
            row_penalty: 1.0,
            column_penalty: 1.0,
        };
        assert_eq!(overflowed.normalised(), f64::INFINITY);
        let plain = LossTerms {
            error: 6.0,
            weight: 4.0,
            row_penalty: 1.0,
            column_penalty: 1.0,
        };
        assert_eq!(plain.normalised(), 2.0);
    }
}
