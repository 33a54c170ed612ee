//! One half-sweep of alternating least squares: every row of `X` solved against a fixed `Y`.
//!
//! Row u minimises `sum_i c_ui (p_ui - x_u . y_i)^2 + lambda_u |x_u|^2` over all columns i, whose
//! normal equations are `A_u x_u = b_u` with
//!
//! ```text
//! A_u = alpha0 Y^T Y + sum_{i in R_u} (c_ui - alpha0) y_i y_i^T + lambda_u I
//! b_u = sum_{i in R_u} c_ui p_ui y_i
//! ```
//!
//! The conjugate-gradient solver never forms `A_u`: it only multiplies by it, so one row costs
//! `O(steps (n_u k + k^2))`. The exact solver forms `A_u` in f64 and factors it.

use rayon::prelude::*;

use crate::cholesky;
use crate::csr::CsrView;
use crate::error::{Error, Result};
use crate::kernels::{axpy, dot, DataTerm, LANES};
use crate::objective::Objective;
use crate::parallel::Interrupt;
use crate::real::all_finite;
use crate::simd::{dispatch, prefetch, Arith, Kernel};
use crate::Real;

/// Rows handed to one Rayon task; small enough to balance rows of very different lengths.
const ROW_CHUNK: usize = 32;

/// How many interactions ahead the item rows are prefetched: far enough to hide a miss to
/// memory behind the work on the rows in between.
const PREFETCH_AHEAD: usize = 4;

/// Rows advanced through CG together once the Gram matrix outgrows L1 (see `CgRows::run`).
const LOCKSTEP: usize = 4;
/// Gram matrices up to this size (bytes) stay in L1 across rows: one row at a time is faster then.
const GRAM_IN_L1: usize = 32 * 1024;

/// CG stops once the squared residual norm falls below this (as implicit does).
const CG_TOLERANCE: f64 = 1e-20;

/// How each row's least-squares problem is solved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Solver {
    /// `steps` iterations of conjugate gradient, warm-started from the current row.
    ConjugateGradient { steps: usize },
    /// Cholesky factorisation of the row's system in f64.
    Cholesky,
}

/// Solves every row of `x` (`rows.n_rows() x k`, row-major) against the fixed `y`
/// (`rows.n_cols() x k`) in parallel on the current Rayon pool. `gram` is `Y^T Y` (k x k, f64), as
/// returned by [`crate::gram()`]; passing it in lets a distributed caller sum it from blocks.
/// A stop requested through `interrupt` ends the call between blocks of rows with
/// [`Error::Interrupted`], the rows solved so far already written.
#[allow(clippy::too_many_arguments)]
pub fn solve_rows<T: Real>(
    rows: &CsrView<'_>,
    x: &mut [T],
    y: &[T],
    k: usize,
    gram: &[f64],
    objective: &Objective,
    solver: Solver,
    interrupt: &Interrupt,
) -> Result<()> {
    objective.validate()?;
    check_factors(rows, x, y, k)?;
    check_penalties::<T>(rows, objective)?;
    if gram.len() != k * k {
        return Err(Error::ShapeMismatch(format!(
            "the Gram matrix has {} entries, expected {k} x {k}",
            gram.len()
        )));
    }
    if !all_finite(gram) {
        return Err(Error::NonFinite(
            "the Gram matrix holds a non-finite value".into(),
        ));
    }
    if k == 0 || rows.n_rows() == 0 {
        return Ok(());
    }
    let w0 = objective.unobserved_weight;
    match solver {
        Solver::ConjugateGradient { steps } => {
            if steps == 0 {
                return Err(Error::InvalidParameter(
                    "cg_steps must be >= 1, got 0".into(),
                ));
            }
            let weighted_gram: Vec<T> = gram.iter().map(|&g| T::from_f64(w0 * g)).collect();
            x.par_chunks_mut(ROW_CHUNK * k)
                .enumerate()
                .try_for_each(|(chunk, x_rows)| {
                    interrupt.check()?;
                    dispatch(CgRows {
                        rows,
                        first_row: chunk * ROW_CHUNK,
                        x: x_rows,
                        y,
                        k,
                        weighted_gram: &weighted_gram,
                        objective,
                        steps,
                    });
                    Ok(())
                })
        }
        Solver::Cholesky => {
            let weighted_gram: Vec<f64> = gram.iter().map(|&g| w0 * g).collect();
            x.par_chunks_mut(ROW_CHUNK * k)
                .enumerate()
                .try_for_each(|(chunk, x_rows)| {
                    interrupt.check()?;
                    dispatch(CholeskyRows {
                        rows,
                        first_row: chunk * ROW_CHUNK,
                        x: x_rows,
                        y,
                        k,
                        weighted_gram: &weighted_gram,
                        objective,
                    })
                })
        }
    }
}

/// Checks that every row's penalty is finite in `T`. It grows with the row's length, so the
/// longest row decides; an infinite one would leave CG stuck at its start and the exact solver
/// with a system it cannot factor, so both refuse it up front.
fn check_penalties<T: Real>(rows: &CsrView<'_>, objective: &Objective) -> Result<()> {
    let longest = rows.row_counts().into_iter().max().unwrap_or(0);
    let lambda = objective.row_regularization(longest, rows.n_cols());
    if lambda.is_finite() && T::from_f64(lambda).is_finite() {
        Ok(())
    } else {
        Err(Error::NonFinite(format!(
            "the penalty of a row with {longest} interactions, regularization * (n + \
             unobserved_weight * {}) ** regularization_exponent, is not finite; lower \
             regularization_exponent or regularization",
            rows.n_cols()
        )))
    }
}

/// Checks that `x` and `y` fit `rows` and `k` and hold only finite values.
pub(crate) fn check_factors<T: Real>(rows: &CsrView<'_>, x: &[T], y: &[T], k: usize) -> Result<()> {
    if x.len() != rows.n_rows() * k {
        return Err(Error::ShapeMismatch(format!(
            "the solved factors have {} entries, expected {} rows x {k} factors",
            x.len(),
            rows.n_rows()
        )));
    }
    if y.len() != rows.n_cols() * k {
        return Err(Error::ShapeMismatch(format!(
            "the fixed factors have {} entries, expected {} rows x {k} factors",
            y.len(),
            rows.n_cols()
        )));
    }
    if !all_finite(x) || !all_finite(y) {
        return Err(Error::NonFinite(
            "the factor matrices hold a non-finite value".into(),
        ));
    }
    Ok(())
}

struct CgRows<'a, T> {
    rows: &'a CsrView<'a>,
    first_row: usize,
    x: &'a mut [T],
    y: &'a [T],
    k: usize,
    weighted_gram: &'a [T],
    objective: &'a Objective,
    steps: usize,
}

impl<T: Real> Kernel for CgRows<'_, T> {
    type Output = ();

    /// Once the Gram matrix no longer fits L1 (at 128 factors it is 64 KB and streams from L2),
    /// rows go through CG `LOCKSTEP` at a time, so each pass over it in the mat-vec serves all of
    /// them. Each row's arithmetic is unchanged: its result does not depend on the rows beside it.
    #[inline(always)]
    fn run<A: Arith>(self) {
        let CgRows {
            rows,
            first_row,
            x,
            y,
            k,
            weighted_gram: gram,
            objective,
            steps,
        } = self;
        let item = |c: i32| &y[c as usize * k..(c as usize + 1) * k];
        let mut scratch = vec![T::ZERO; 3 * LOCKSTEP * k];
        // Per lane, `c_ui - alpha0` of each interaction; and scratch for the data term.
        let mut weights: [Vec<T>; LOCKSTEP] = Default::default();
        let mut dots = Vec::new();
        let (r_all, rest) = scratch.split_at_mut(LOCKSTEP * k);
        let (p_all, ap_all) = rest.split_at_mut(LOCKSTEP * k);
        let w0 = T::from_f64(objective.unobserved_weight);
        let tolerance = T::from_f64(CG_TOLERANCE);
        let together = if std::mem::size_of_val(gram) > GRAM_IN_L1 {
            LOCKSTEP
        } else {
            1
        };
        for (group, xs) in x.chunks_mut(together * k).enumerate() {
            let first = first_row + group * together;
            let lanes = xs.len() / k;
            let (r_all, p_all, ap_all) = (
                &mut r_all[..lanes * k],
                &mut p_all[..lanes * k],
                &mut ap_all[..lanes * k],
            );
            let mut lambda = [T::ZERO; LOCKSTEP];
            let mut rs_old = [T::ZERO; LOCKSTEP];
            let mut active = [false; LOCKSTEP];

            // r = b - A x
            A::symv_rows(gram, k, xs, r_all);
            for lane in 0..lanes {
                let (cols, vals) = rows.row(first + lane);
                let x = &mut xs[lane * k..(lane + 1) * k];
                if cols.is_empty() {
                    x.fill(T::ZERO);
                    continue;
                }
                lambda[lane] = T::from_f64(objective.row_regularization(cols.len(), rows.n_cols()));
                weights[lane].clear();
                weights[lane].extend(vals.iter().map(|&v| T::from_f32(objective.cell(v).0) - w0));
                let r = &mut r_all[lane * k..(lane + 1) * k];
                for (ri, &xi) in r.iter_mut().zip(x.iter()) {
                    *ri = -A::fma(lambda[lane], xi, *ri);
                }
                for (j, (&c, &v)) in cols.iter().zip(vals).enumerate() {
                    if let Some(&ahead) = cols.get(j + PREFETCH_AHEAD) {
                        prefetch(item(ahead));
                    }
                    let (confidence, preference) = objective.cell(v);
                    let confidence = T::from_f32(confidence);
                    let yi = item(c);
                    let coef = confidence * T::from_f32(preference)
                        - (confidence - w0) * dot::<T, A>(yi, x);
                    axpy::<T, A>(coef, yi, r);
                }
                p_all[lane * k..(lane + 1) * k].copy_from_slice(r);
                rs_old[lane] = dot::<T, A>(r, r);
                active[lane] = rs_old[lane] >= tolerance;
            }
            for _ in 0..steps {
                if !active.contains(&true) {
                    break;
                }
                // ap = A p
                A::symv_rows(gram, k, p_all, ap_all);
                for lane in 0..lanes {
                    if !active[lane] {
                        continue;
                    }
                    let cols = rows.row(first + lane).0;
                    let at = lane * k..(lane + 1) * k;
                    let (x, r) = (&mut xs[at.clone()], &mut r_all[at.clone()]);
                    let (p, ap) = (&mut p_all[at.clone()], &mut ap_all[at]);
                    axpy::<T, A>(lambda[lane], p, ap);
                    let term = DataTerm {
                        y,
                        k,
                        cols,
                        weights: &weights[lane],
                    };
                    A::add_data_term(&term, p, ap, &mut dots);
                    let curvature = dot::<T, A>(p, ap);
                    // Only a singular system (no regularization, no data along p) stops here;
                    // going on would divide by zero and fill the row with NaN.
                    if !(curvature > T::ZERO && curvature.is_finite()) {
                        active[lane] = false;
                        continue;
                    }
                    let step = rs_old[lane] / curvature;
                    axpy::<T, A>(step, p, x);
                    axpy::<T, A>(-step, ap, r);
                    let rs_new = dot::<T, A>(r, r);
                    if rs_new < tolerance {
                        active[lane] = false;
                        continue;
                    }
                    let beta = rs_new / rs_old[lane];
                    for (pi, &ri) in p.iter_mut().zip(r.iter()) {
                        *pi = A::fma(beta, *pi, ri);
                    }
                    rs_old[lane] = rs_new;
                }
            }
        }
    }
}

struct CholeskyRows<'a, T> {
    rows: &'a CsrView<'a>,
    first_row: usize,
    x: &'a mut [T],
    y: &'a [T],
    k: usize,
    weighted_gram: &'a [f64],
    objective: &'a Objective,
}

impl<T: Real> Kernel for CholeskyRows<'_, T> {
    type Output = Result<()>;

    #[inline(always)]
    fn run<A: Arith>(self) -> Result<()> {
        let k = self.k;
        let mut a = vec![0.0f64; k * k];
        let mut b = vec![0.0f64; k];
        let (mut gathered, mut weights) = (Vec::new(), Vec::new());
        for (offset, x) in self.x.chunks_exact_mut(k).enumerate() {
            let row = self.first_row + offset;
            let (cols, vals) = self.rows.row(row);
            if cols.is_empty() {
                x.fill(T::ZERO);
                continue;
            }
            row_system::<T, A>(
                cols,
                vals,
                self.y,
                k,
                self.weighted_gram,
                self.objective,
                self.rows.n_cols(),
                &mut a,
                &mut b,
                &mut gathered,
                &mut weights,
            );
            if !cholesky::factor::<A>(&mut a, k) {
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
    fn run<A: Arith>(self) -> Self::Output {
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
    // Rows in pairs: two rows of accumulators (eight registers) hide the FMA latency (15% faster
    // than one row at a time, measured). The pair starts at an even row, so both rows' first
    // block starts at the same column.
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
