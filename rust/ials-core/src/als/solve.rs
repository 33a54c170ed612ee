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
//! `O(steps (n_u k + k^2))`. The exact solver forms `A_u` in f64 and factors it, or, for rows with
//! fewer items than factors, solves it through a factorisation of the part all rows share
//! ([`super::low_rank`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::check::{check_factors, check_square};
use crate::csr::CsrView;
use crate::error::{Error, Result};
use crate::parallel::Interrupt;
use crate::simd::dispatch;
use crate::Real;

use super::block::{gram_panels_by_block, BlockRows};
use super::cg::{gram_panels, tridiagonal_parts, CgRows, GramOperator};
use super::exact::{CholeskyRows, RowChunk};
use super::low_rank::SharedFactor;
use super::objective::Objective;

/// Rows handed to one Rayon task; small enough to balance rows of very different lengths.
const ROW_CHUNK: usize = 32;

/// How each row's least-squares problem is solved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Solver {
    /// `steps` iterations of conjugate gradient, warm-started from the current row.
    ConjugateGradient { steps: usize },
    /// The exact solve in f64: a Cholesky factorisation of the row's system, or, for a row with
    /// few items against `k` (and nu = 0), of an `m x m` system through one factorisation that
    /// all rows share (the Woodbury identity, in `als::low_rank`).
    Cholesky,
    /// `sweeps` passes of block coordinate descent over blocks of `size` coordinates (iALS++),
    /// warm-started from the current row, in f64; with `size >= k` one pass is the exact solve.
    Block { size: usize, sweeps: usize },
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
    check_factors((rows.n_rows(), rows.n_cols()), x, y, k)?;
    check_penalties::<T>(rows, objective)?;
    check_square("Gram matrix", gram, k)?;
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
            let tridiagonal = tridiagonal_parts(&weighted_gram, k);
            let panels = match tridiagonal {
                Some(_) => None,
                None => gram_panels(&weighted_gram, k),
            };
            let gram = match &tridiagonal {
                Some((diagonal, off_diagonal)) => GramOperator::Tridiagonal {
                    diagonal,
                    off_diagonal,
                },
                None => GramOperator::Dense {
                    matrix: &weighted_gram,
                    panels: panels.as_ref(),
                },
            };
            in_row_chunks(x, k, interrupt, |first_row, x| {
                dispatch(CgRows {
                    rows,
                    first_row,
                    x,
                    y,
                    k,
                    gram,
                    objective,
                    steps,
                });
                Ok(())
            })
        }
        Solver::Cholesky | Solver::Block { .. } => {
            if let Solver::Block { size, sweeps } = solver {
                if size == 0 || sweeps == 0 {
                    return Err(Error::InvalidParameter(format!(
                        "block_size and block_sweeps must be >= 1, got {size} and {sweeps}"
                    )));
                }
            }
            let mut weighted_gram: Vec<f64> = gram.iter().map(|&g| w0 * g).collect();
            if let Solver::Block { size, .. } = solver {
                weighted_gram = gram_panels_by_block(&weighted_gram, k, size);
            }
            let shared = match solver {
                Solver::Cholesky => SharedFactor::new(rows, y, k, &weighted_gram, objective),
                _ => None,
            };
            in_row_chunks(x, k, interrupt, |first_row, x| {
                let chunk = RowChunk {
                    rows,
                    first_row,
                    x,
                    y,
                    k,
                    weighted_gram: &weighted_gram,
                    objective,
                };
                match solver {
                    Solver::Block { size, sweeps } => dispatch(BlockRows::new(chunk, size, sweeps)),
                    _ => dispatch(CholeskyRows {
                        chunk,
                        shared: shared.as_ref(),
                    }),
                }
            })
        }
    }
}

/// Runs `solve(first_row, rows)` on chunks of `ROW_CHUNK` rows of `x` in parallel, checking for a
/// requested stop before each chunk.
///
/// The chunks are handed out in order, each to the next thread that is free, so that the threads
/// work on neighbouring rows at any moment. Where a data set's ids place related rows together,
/// neighbouring rows share items, and the threads then share the items they read in the cache
/// they have in common; splitting the rows into one range per thread (Rayon's parallel
/// iterators) gave each its own range of items, and two threads 1.7x one's speed on gowalla.
pub(crate) fn in_row_chunks<T: Send>(
    x: &mut [T],
    k: usize,
    interrupt: &Interrupt,
    solve: impl Fn(usize, &mut [T]) -> Result<()> + Sync + Send,
) -> Result<()> {
    let chunks = Mutex::new(x.chunks_mut(ROW_CHUNK * k).enumerate());
    let failure = Mutex::new(None);
    let failed = AtomicBool::new(false);
    let work = || {
        while !failed.load(Ordering::Relaxed) {
            let next = chunks.lock().unwrap_or_else(|p| p.into_inner()).next();
            let Some((chunk, x_rows)) = next else { break };
            let solved = interrupt
                .check()
                .and_then(|_| solve(chunk * ROW_CHUNK, x_rows));
            if let Err(e) = solved {
                failed.store(true, Ordering::Relaxed);
                failure
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(e);
            }
        }
    };
    rayon::scope(|scope| {
        for _ in 1..rayon::current_num_threads() {
            scope.spawn(|_| work());
        }
        work();
    });
    match failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallel::with_threads;

    #[test]
    fn every_chunk_is_solved_once_by_some_thread() {
        let (k, n_rows) = (3, 10 * ROW_CHUNK + 7);
        for threads in [1, 2, 5] {
            let mut x = vec![0u32; n_rows * k];
            let x = with_threads(threads, || {
                in_row_chunks(&mut x, k, &Interrupt::new(), |first_row, rows| {
                    for (offset, row) in rows.chunks_exact_mut(k).enumerate() {
                        row.iter_mut()
                            .for_each(|v| *v += (first_row + offset) as u32 + 1);
                    }
                    Ok(())
                })
                .map(|()| x)
            })
            .unwrap()
            .unwrap();
            for (row, values) in x.chunks_exact(k).enumerate() {
                assert!(
                    values.iter().all(|&v| v == row as u32 + 1),
                    "{threads} threads, row {row}"
                );
            }
        }
    }

    #[test]
    fn a_failing_chunk_fails_the_call_and_a_stop_ends_it() {
        let k = 2;
        let mut x = vec![0.0f64; 40 * ROW_CHUNK * k];
        let failing = with_threads(2, || {
            in_row_chunks(&mut x, k, &Interrupt::new(), |first_row, _| {
                match first_row == 7 * ROW_CHUNK {
                    true => Err(Error::Singular { row: first_row }),
                    false => Ok(()),
                }
            })
        })
        .unwrap();
        assert_eq!(failing, Err(Error::Singular { row: 7 * ROW_CHUNK }));
        let stop = Interrupt::new();
        stop.request();
        let stopped = with_threads(2, || in_row_chunks(&mut x, k, &stop, |_, _| Ok(()))).unwrap();
        assert_eq!(stopped, Err(Error::Interrupted));
    }
}
