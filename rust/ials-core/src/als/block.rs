//! Block coordinate row solves (iALS++: Rendle, Krichene, Zhang & Anil, "iALS++: Speeding up
//! Matrix Factorization with Subspace Optimization", 2021).
//!
//! Each row's problem `A_u x = b_u` is solved one block of `size` coordinates at a time: with the
//! other coordinates fixed, the block's optimum solves the `size x size` system
//! `A_SS d = (b_u - A_u x)_S` and moves `x_S` by `d`. The row's scores on its items
//! (`s_i = x . y_i`) are kept up to date instead of recomputed; the unobserved part of the
//! residual, `(alpha0 Y^T Y x)_S`, is formed for each block from the current `x` (`k size` FMAs,
//! reading only the block's columns of the Gram matrix: keeping the whole `k`-vector up to date
//! cost twice that and read the whole matrix twice per pass). One pass costs
//! `O(n_u k size + k^2 + k size^2)` against the exact solve's `O(n_u k^2 + k^3)`; with `size = k`
//! one pass is the exact solve. Each block step minimises the objective over its coordinates, so
//! the loss never increases, and repeated passes converge to the exact solution.

use crate::error::{Error, Result};
use crate::linalg::cholesky;
use crate::linalg::vector::{axpy, dot_generic as dot, LANES};
use crate::simd::{Arith, Kernel};
use crate::Real;
use std::ops::Range;

use super::exact::{add_weighted_outer, tile_height, RowChunk};

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
        let height = tile_height(arith);
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
            for _ in 0..self.sweeps {
                for first in (0..k).step_by(size) {
                    let width = size.min(k - first);
                    let block = first..first + width;
                    // A_SS and the residual (b - A x)_S.
                    let system = &mut system[..width * width];
                    let step = &mut step[..width];
                    // (alpha0 Y^T Y x)_S as a sum of the Gram matrix's rows on the block's
                    // columns (it is symmetric): independent lanes that vectorise, where `width`
                    // dot products would each wait on their running sum.
                    unobserved[block.clone()].fill(0.0);
                    add_combination::<A>(&x, gram, &mut unobserved, block.clone());
                    for (a, s) in block.clone().enumerate() {
                        let gram_row = &gram[s * k..(s + 1) * k];
                        system[a * width..(a + 1) * width]
                            .copy_from_slice(&gram_row[block.clone()]);
                        system[a * width + a] += lambda;
                        step[a] = -unobserved[s] - lambda * x[s];
                    }
                    for ((item, &w), (&target, &score)) in gathered
                        .chunks_exact(k)
                        .zip(&weights)
                        .zip(targets.iter().zip(&scores))
                    {
                        axpy::<f64, A>(target - w * score, &item[block.clone()], step);
                    }
                    let items = Items {
                        gathered: &gathered,
                        k,
                        first,
                        weights: &weights,
                    };
                    items.add_outer_products::<A>(height, system, width);
                    if !cholesky::factor(arith, system, width) {
                        return Err(Error::Singular { row });
                    }
                    cholesky::solve::<A>(system, width, step);
                    // Move x_S and keep the scores up to date.
                    for (a, s) in block.clone().enumerate() {
                        x[s] += step[a];
                    }
                    for (item, score) in gathered.chunks_exact(k).zip(scores.iter_mut()) {
                        *score += dot::<f64, A>(&item[block.clone()], step);
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

/// Columns of `out` whose sums stay in registers together in [`add_combination`]: enough
/// independent FMA chains to hide the FMA latency.
const COMBINATION_COLUMNS: usize = 4 * LANES;

/// `out[c] += sum_j coefs[j] rows[j][c]` for the entries `c` in `columns`, over the consecutive
/// rows of `rows` (each `out.len()` long): each entry one FMA chain over the rows in order,
/// starting from its value. The entries go in blocks held in registers while the rows stream
/// past, so `out` is loaded and stored once instead of once per row.
#[inline(always)]
fn add_combination<A: Arith>(coefs: &[f64], rows: &[f64], out: &mut [f64], columns: Range<usize>) {
    let k = out.len();
    let mut start = columns.start;
    start = add_combination_block::<A, COMBINATION_COLUMNS>(coefs, rows, out, start, columns.end);
    start = add_combination_block::<A, LANES>(coefs, rows, out, start, columns.end);
    for c in start..columns.end {
        for (row, &coef) in rows.chunks_exact(k).zip(coefs) {
            out[c] = A::fma(coef, row[c], out[c]);
        }
    }
}

/// [`add_combination`] on the entries from `start` on in blocks of `COLUMNS` while whole blocks
/// fit before `end`; where the next entry starts.
#[inline(always)]
fn add_combination_block<A: Arith, const COLUMNS: usize>(
    coefs: &[f64],
    rows: &[f64],
    out: &mut [f64],
    mut start: usize,
    end: usize,
) -> usize {
    let k = out.len();
    while start + COLUMNS <= end {
        let mut acc = [0.0f64; COLUMNS];
        acc.copy_from_slice(&out[start..start + COLUMNS]);
        for (row, &coef) in rows.chunks_exact(k).zip(coefs) {
            for (a, &m) in acc.iter_mut().zip(&row[start..start + COLUMNS]) {
                *a = A::fma(coef, m, *a);
            }
        }
        out[start..start + COLUMNS].copy_from_slice(&acc);
        start += COLUMNS;
    }
    start
}

/// A row's items gathered in f64 (`k` values each) with their weights beyond the unobserved
/// one, seen through the block of coordinates that starts at `first`.
struct Items<'a> {
    gathered: &'a [f64],
    k: usize,
    first: usize,
    weights: &'a [f64],
}

impl Items<'_> {
    /// Adds the items' weighted outer products on the block to the upper triangle of its
    /// `width x width` system: `system[a][c] += sum_i (w_i y_ia) y_ic` for `c >= a`. Each entry is
    /// one FMA chain over the items in order, starting from its value, whatever the tile: the
    /// bits of adding one item's outer product at a time. The chains run in register tiles of
    /// `height` rows ([`tile_height`]) by `LANES` columns ([`add_weighted_outer`]), and a tile
    /// starts at a multiple of `LANES` at or left of its first row's diagonal (entries below the
    /// diagonal never matter).
    #[inline(always)]
    fn add_outer_products<A: Arith>(&self, height: usize, system: &mut [f64], width: usize) {
        let mut a = 0;
        while a < width {
            let rows = height.min(width - a);
            for start in (a - a % LANES..width).step_by(LANES) {
                if start + LANES <= width {
                    match rows {
                        4 => self.tile::<A, 4>(system, width, a, start),
                        3 => self.tile::<A, 3>(system, width, a, start),
                        2 => self.tile::<A, 2>(system, width, a, start),
                        _ => self.tile::<A, 1>(system, width, a, start),
                    }
                    continue;
                }
                for r in a..a + rows {
                    for c in start.max(r)..width {
                        let mut entry = system[r * width + c];
                        for (z, &w) in self.gathered.chunks_exact(self.k).zip(self.weights) {
                            let z = &z[self.first..];
                            entry = A::fma(w * z[r], z[c], entry);
                        }
                        system[r * width + c] = entry;
                    }
                }
            }
            a += rows;
        }
    }

    /// The rows `a..a + R` of the system at the columns `start..start + LANES`.
    #[inline(always)]
    fn tile<A: Arith, const R: usize>(
        &self,
        system: &mut [f64],
        width: usize,
        a: usize,
        start: usize,
    ) {
        // Plain loops, not `std::array::from_fn`, whose closures may stay out of line, outside
        // the caller's instruction set (as they did in the Cholesky tiles).
        let mut entries = [[0.0; LANES]; R];
        for (r, entries) in entries.iter_mut().enumerate() {
            let at = (a + r) * width + start;
            entries.copy_from_slice(&system[at..at + LANES]);
        }
        let (rows, columns) = (self.first + a, self.first + start);
        let acc =
            add_weighted_outer::<A, R>(self.gathered, self.weights, self.k, rows, columns, entries);
        for (r, acc) in acc.iter().enumerate() {
            let at = (a + r) * width + start;
            system[at..at + LANES].copy_from_slice(acc);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{add_combination, Items};
    use crate::als::{gram, loss_terms, solve_rows, Objective, Solver};
    use crate::csr::CsrMatrix;
    use crate::linalg::vector::axpy;
    use crate::parallel::Interrupt;
    use crate::simd::{Arith, Fused, Unfused};

    fn values(n: usize, seed: usize) -> Vec<f64> {
        (0..n)
            .map(|i| ((i * 37 + seed * 11) % 23) as f64 / 23.0 - 0.4)
            .collect()
    }

    fn bits(a: &[f64]) -> Vec<u64> {
        a.iter().map(|v| v.to_bits()).collect()
    }

    /// The tiles give the bits of adding one item's outer product at a time with `axpy`, on the
    /// upper triangle, for blocks of every shape the tiles split differently.
    #[test]
    fn block_systems_are_the_bits_of_one_outer_product_at_a_time() {
        fn check<A: Arith>() {
            let k = 75;
            for width in (1..=21).chain([31, 32, 33, 48, 64, 70]) {
                for first in [0, 3, k - width] {
                    for n in [0, 1, 2, 5, 9] {
                        let gathered = values(n * k, width + n);
                        let weights = values(n, 7);
                        let start = values(width * width, first);
                        let mut want = start.clone();
                        for (z, &w) in gathered.chunks_exact(k).zip(&weights) {
                            let item = &z[first..first + width];
                            for (a, &ya) in item.iter().enumerate() {
                                let upper = &mut want[a * width + a..(a + 1) * width];
                                axpy::<f64, A>(w * ya, &item[a..], upper);
                            }
                        }
                        for height in [2, 4] {
                            let mut got = start.clone();
                            let items = Items {
                                gathered: &gathered,
                                k,
                                first,
                                weights: &weights,
                            };
                            items.add_outer_products::<A>(height, &mut got, width);
                            for a in 0..width {
                                let upper = a * width + a..(a + 1) * width;
                                assert_eq!(
                                    bits(&got[upper.clone()]),
                                    bits(&want[upper]),
                                    "width={width} first={first} n={n} height={height} row {a}"
                                );
                            }
                        }
                    }
                }
            }
        }
        check::<Fused>();
        check::<Unfused>();
    }

    /// The register blocks give the bits of one `axpy` per row, on any range of columns.
    #[test]
    fn combinations_are_the_bits_of_one_axpy_per_row() {
        fn check<A: Arith>() {
            for k in (1..=20).chain([63, 64, 65, 80, 127, 128, 130]) {
                for rows in [0, 1, 2, 7] {
                    let matrix = values(rows * k, k);
                    let coefs = values(rows, rows + 1);
                    let start = values(k, 3);
                    let mut want = start.clone();
                    for (row, &c) in matrix.chunks_exact(k).zip(&coefs) {
                        axpy::<f64, A>(c, row, &mut want);
                    }
                    // Column by column in ranges of any size.
                    for piece in [k, 3, 17, 64] {
                        let mut got = start.clone();
                        for first in (0..k).step_by(piece) {
                            let end = k.min(first + piece);
                            add_combination::<A>(&coefs, &matrix, &mut got, first..end);
                        }
                        assert_eq!(bits(&got), bits(&want), "k={k} rows={rows} piece={piece}");
                    }
                }
            }
        }
        check::<Fused>();
        check::<Unfused>();
    }

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
