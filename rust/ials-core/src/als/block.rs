//! Block coordinate row solves (iALS++: Rendle, Krichene, Zhang & Anil, "iALS++: Speeding up
//! Matrix Factorization with Subspace Optimization", 2021).
//!
//! Each row's problem `A_u x = b_u` is solved one block of `size` coordinates at a time: with the
//! other coordinates fixed, the block's optimum solves the `size x size` system
//! `A_SS d = (b_u - A_u x)_S` and moves `x_S` by `d`. The residual parts are kept up to date
//! instead of recomputed: the row's scores on its items (`s_i = x . y_i`) and the unobserved
//! part `alpha0 Y^T Y x`. One pass costs `O(n_u k size + k^2 + k size^2)` against the exact
//! solve's `O(n_u k^2 + k^3)`; with `size = k` one pass is the exact solve. Each block step
//! minimises the objective over its coordinates, so the loss never increases, and repeated passes
//! converge to the exact solution.

use crate::error::{Error, Result};
use crate::linalg::cholesky;
use crate::linalg::vector::{axpy, dot_generic as dot};
use crate::simd::{Arith, Kernel};
use crate::Real;

use super::exact::RowChunk;

pub(crate) struct BlockRows<'a, T> {
    pub(crate) chunk: RowChunk<'a, T>,
    /// Coordinates per block (the last block of a row may be smaller).
    pub(crate) size: usize,
    /// Passes over the blocks per row.
    pub(crate) sweeps: usize,
}

impl<T: Real> Kernel for BlockRows<'_, T> {
    type Output = Result<()>;

    #[inline(always)]
    fn run<A: Arith>(self, arith: A) -> Result<()> {
        let chunk = self.chunk;
        let (k, size) = (chunk.k, self.size.min(chunk.k));
        let w0 = chunk.objective.unobserved_weight;
        let gram = chunk.weighted_gram;
        let mut x = vec![0.0f64; k];
        let mut unobserved = vec![0.0f64; k];
        let (mut gathered, mut weights, mut targets, mut scores) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut system = vec![0.0f64; size * size];
        let mut step = vec![0.0f64; size];
        for (offset, row_x) in chunk.x.chunks_exact_mut(k).enumerate() {
            let row = chunk.first_row + offset;
            let (cols, vals) = chunk.rows.row(row);
            if cols.is_empty() {
                row_x.fill(T::ZERO);
                continue;
            }
            let lambda = chunk
                .objective
                .row_regularization(cols.len(), chunk.rows.n_cols());
            for (xi, &v) in x.iter_mut().zip(row_x.iter()) {
                *xi = v.to_f64();
            }
            // The row's items in f64, with `c - alpha0` (their weight beyond the unobserved
            // one) and `c p` (their target), and their current scores.
            gathered.clear();
            weights.clear();
            targets.clear();
            scores.clear();
            for (&c, &v) in cols.iter().zip(vals) {
                let item = &chunk.y[c as usize * k..(c as usize + 1) * k];
                let start = gathered.len();
                gathered.extend(item.iter().map(|v| v.to_f64()));
                let (confidence, preference) = chunk.objective.cell(v);
                let (confidence, preference) = (confidence as f64, preference as f64);
                weights.push(confidence - w0);
                targets.push(confidence * preference);
                scores.push(dot::<f64, A>(&gathered[start..], &x));
            }
            // alpha0 Y^T Y x as a sum of the Gram matrix's rows (it is symmetric): independent
            // lanes that vectorise, where k dot products would each wait on their running sum.
            unobserved.fill(0.0);
            for (g, &xj) in gram.chunks_exact(k).zip(&x) {
                axpy::<f64, A>(xj, g, &mut unobserved);
            }
            for _ in 0..self.sweeps {
                for first in (0..k).step_by(size) {
                    let width = size.min(k - first);
                    let block = first..first + width;
                    // A_SS and the residual (b - A x)_S.
                    let system = &mut system[..width * width];
                    let step = &mut step[..width];
                    for (a, s) in block.clone().enumerate() {
                        let gram_row = &gram[s * k..(s + 1) * k];
                        system[a * width..(a + 1) * width]
                            .copy_from_slice(&gram_row[block.clone()]);
                        system[a * width + a] += lambda;
                        step[a] = -unobserved[s] - lambda * x[s];
                    }
                    for (((item, &w), &target), &score) in gathered
                        .chunks_exact(k)
                        .zip(&weights)
                        .zip(&targets)
                        .zip(&scores)
                    {
                        let item = &item[block.clone()];
                        axpy::<f64, A>(target - w * score, item, step);
                        // The upper triangle of the block's weighted outer product.
                        for (a, &ya) in item.iter().enumerate() {
                            let upper = &mut system[a * width + a..(a + 1) * width];
                            axpy::<f64, A>(w * ya, &item[a..], upper);
                        }
                    }
                    if !cholesky::factor(arith, system, width) {
                        return Err(Error::Singular { row });
                    }
                    cholesky::solve::<A>(system, width, step);
                    // Move x_S and keep the scores and the unobserved part up to date.
                    for (a, s) in block.clone().enumerate() {
                        x[s] += step[a];
                    }
                    for (item, score) in gathered.chunks_exact(k).zip(scores.iter_mut()) {
                        *score += dot::<f64, A>(&item[block.clone()], step);
                    }
                    for (s, &d) in block.clone().zip(step.iter()) {
                        axpy::<f64, A>(d, &gram[s * k..(s + 1) * k], &mut unobserved);
                    }
                }
            }
            for (xi, &v) in row_x.iter_mut().zip(&x) {
                *xi = T::from_f64(v);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::als::{gram, loss_terms, solve_rows, Objective, Solver};
    use crate::csr::CsrMatrix;
    use crate::parallel::Interrupt;

    /// A small problem with negative feedback, zeros and frequency-scaled penalties.
    fn problem() -> (CsrMatrix, Vec<f64>, Vec<f64>, Objective) {
        let (n_rows, n_cols, k) = (30, 25, 12);
        let (mut indptr, mut indices, mut data) = (vec![0i64], Vec::new(), Vec::new());
        for r in 0..n_rows {
            for c in 0..n_cols {
                if (r * 7 + c * 3) % 5 == 0 {
                    indices.push(c as i32);
                    data.push(match (r + c) % 4 {
                        0 => -1.0,
                        1 => 0.0,
                        _ => 1.0 + ((r * c) % 3) as f32,
                    });
                }
            }
            indptr.push(indices.len() as i64);
        }
        let rows = CsrMatrix::new(indptr, indices, data, n_cols).unwrap();
        let values = |n: usize, seed: usize| -> Vec<f64> {
            (0..n)
                .map(|i| ((i * 37 + seed * 11) % 23) as f64 / 23.0 - 0.4)
                .collect()
        };
        let objective = Objective {
            regularization: 0.3,
            alpha: 2.0,
            regularization_exponent: 0.5,
            unobserved_weight: 0.4,
        };
        (
            rows,
            values(n_rows * k, 1),
            values(n_cols * k, 2),
            objective,
        )
    }

    const K: usize = 12;

    fn solved(solver: Solver, start: &[f64]) -> Vec<f64> {
        let (rows, _, y, objective) = problem();
        let stop = Interrupt::new();
        let g = gram(&y, K, &stop).unwrap();
        let mut x = start.to_vec();
        solve_rows(&rows.view(), &mut x, &y, K, &g, &objective, solver, &stop).unwrap();
        x
    }

    fn max_difference(a: &[f64], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f64::max)
    }

    #[test]
    fn one_pass_with_the_whole_row_as_a_block_is_the_exact_solve() {
        let (_, x, _, _) = problem();
        let exact = solved(Solver::Cholesky, &x);
        for size in [K, K + 5] {
            let block = solved(Solver::Block { size, sweeps: 1 }, &x);
            assert!(max_difference(&block, &exact) < 1e-10, "size {size}");
        }
    }

    #[test]
    fn passes_never_raise_the_loss_and_converge_to_the_exact_solve() {
        let (rows, x, y, objective) = problem();
        let stop = Interrupt::new();
        let loss = |x: &[f64]| {
            loss_terms(&rows.view(), x, &y, K, &objective, &stop)
                .unwrap()
                .normalised()
        };
        let exact = solved(Solver::Cholesky, &x);
        for size in [1, 3, 5] {
            let mut current = x.clone();
            let mut last = loss(&current);
            for _ in 0..60 {
                current = solved(Solver::Block { size, sweeps: 1 }, &current);
                let now = loss(&current);
                assert!(
                    now <= last + 1e-12 * last.abs(),
                    "size {size}: {now} > {last}"
                );
                last = now;
            }
            assert!(max_difference(&current, &exact) < 1e-6, "size {size}");
            // Several sweeps in one call are as many calls (up to rounding: one call updates the
            // scores as it goes, the next recomputes them).
            let twice = solved(Solver::Block { size, sweeps: 2 }, &x);
            let one_then_one = solved(
                Solver::Block { size, sweeps: 1 },
                &solved(Solver::Block { size, sweeps: 1 }, &x),
            );
            assert!(max_difference(&twice, &one_then_one) < 1e-12, "size {size}");
        }
    }

    #[test]
    fn identical_for_any_thread_count_and_refuses_empty_blocks() {
        let (_, x, _, _) = problem();
        let run = |threads: usize| {
            crate::with_threads(threads, || solved(Solver::Block { size: 4, sweeps: 2 }, &x))
                .unwrap()
        };
        assert_eq!(run(1), run(3));
        let (rows, _, y, objective) = problem();
        let stop = Interrupt::new();
        let g = gram(&y, K, &stop).unwrap();
        let mut out = x.clone();
        for bad in [
            Solver::Block { size: 0, sweeps: 1 },
            Solver::Block { size: 4, sweeps: 0 },
        ] {
            let result = solve_rows(&rows.view(), &mut out, &y, K, &g, &objective, bad, &stop);
            assert!(matches!(result, Err(crate::Error::InvalidParameter(_))));
        }
    }
}
