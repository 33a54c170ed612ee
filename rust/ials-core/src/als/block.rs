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
//!
//! The unobserved part is the one term that reads `k^2` values per row and pass. Row by row, the
//! Gram matrix streamed from L3 for every row (8 MB at 1024 factors in f64), and two threads
//! shared that bandwidth. Rows therefore go through the blocks in groups ([`group_rows`]): each
//! block's column panel, packed contiguous ([`gram_panels_by_block`]), serves the whole group
//! while it is in L2 (with AVX-512 from registers, four rows per read). Each row's arithmetic is
//! the same as alone, so the grouping changes no bit.

use crate::error::{Error, Result};
use crate::linalg::cholesky;
use crate::linalg::panels::pack_panels;
use crate::linalg::vector::{axpy, dot_generic as dot, tile_height, LANES};
use crate::simd::{Arith, Kernel};
use crate::Real;

use super::exact::{add_weighted_outer, RowChunk};

/// Rows that go through each block together, sharing the reads of the block's Gram panel: four,
/// or sixteen once the f64 Gram matrix passes 16 MiB (past the L3 of a 2-core machine, where
/// every group reads it from memory). Measured on gowalla, two threads: at 2048 factors (32 MiB)
/// groups of 16 were 1.2x-1.4x faster than groups of 4; at 1024 (8 MiB) 1.1x slower.
fn group_rows(k: usize) -> usize {
    if k * k * std::mem::size_of::<f64>() > 16 << 20 {
        16
    } else {
        4
    }
}

/// Rows whose items take more than this in f64 are gathered block by block, only the block's
/// columns, instead of whole for all blocks: a group of four rows gathered whole then takes at
/// most a quarter of a 1 MiB L2, beside the block's Gram panel (from 2048 factors, where groups
/// are 16, this is four items, so almost every row goes block by block); and a Zipf-popular
/// item's row, gathered whole, held 535 MB at 2048 factors. Half-sweeps on two threads, against
/// gathering rows whole up to 4 MB: 1.04x-1.1x at 512-1024 factors (blocks of 32), 1.09x at 2048
/// (blocks of 16), the same at 64 and 128; gathering every row by block was 0.93x at 64 and 128
/// factors with blocks of 16.
const GATHER_BYTES: usize = 64 << 10;

/// `alpha0 Y^T Y` (`k x k`, row-major) repacked as the block solver reads it: for each block of
/// `size` columns from `first`, its `k x width` column panel, row after row, at `first * k`.
pub(crate) fn gram_panels_by_block(weighted_gram: &[f64], k: usize, size: usize) -> Vec<f64> {
    let mut panels = Vec::with_capacity(k * k);
    pack_panels(weighted_gram, k, size.max(1), &mut panels);
    panels
}

pub(crate) struct BlockRows<'a, T> {
    /// Its `weighted_gram` in the layout of [`gram_panels_by_block`] for `size`.
    pub(crate) chunk: RowChunk<'a, T>,
    /// Coordinates per block (the last block of a row may be smaller).
    pub(crate) size: usize,
    /// Passes over the blocks per row.
    pub(crate) sweeps: usize,
    /// Rows whose items would take more than this many bytes gathered in f64 are gathered
    /// block by block ([`BlockRows::new`]: [`GATHER_BYTES`]).
    pub(crate) gather_bytes: usize,
}

impl<'a, T> BlockRows<'a, T> {
    /// Long rows gathered block by block past [`GATHER_BYTES`].
    pub(crate) fn new(chunk: RowChunk<'a, T>, size: usize, sweeps: usize) -> Self {
        Self {
            chunk,
            size,
            sweeps,
            gather_bytes: GATHER_BYTES,
        }
    }
}

impl<T: Real> Kernel for BlockRows<'_, T> {
    type Output = Result<()>;

    #[inline(always)]
    fn run<A: Arith>(self, arith: A) -> Result<()> {
        let chunk = self.chunk;
        let (k, size) = (chunk.k, self.size.min(chunk.k));
        let panels = chunk.weighted_gram;
        let group_size = group_rows(k);
        let mut group: Vec<RowState> = (0..group_size).map(|_| RowState::default()).collect();
        // The group's current rows in f64, one after the other, and their unobserved parts on
        // the current block.
        let mut xs = vec![0.0f64; group_size * k];
        let mut unobserved = vec![0.0f64; group_size * size];
        // The same values factor by factor (`members` per factor), as the tiles of
        // `unobserved_parts` read them; kept up to date block by block.
        let mut by_factor = Vec::with_capacity(group_size * k);
        let mut system = vec![0.0f64; size * size];
        let mut step = vec![0.0f64; size];
        let height = tile_height(arith);
        let n_rows = chunk.x.len() / k;
        let mut next = 0;
        while next < n_rows {
            let mut members = 0;
            while members < group_size && next < n_rows {
                let row_x = &mut chunk.x[next * k..(next + 1) * k];
                let (cols, vals) = chunk.rows.row(chunk.first_row + next);
                if cols.is_empty() {
                    row_x.fill(T::ZERO);
                } else {
                    let x = &mut xs[members * k..(members + 1) * k];
                    for (xi, &v) in x.iter_mut().zip(row_x.iter()) {
                        *xi = v.to_f64();
                    }
                    let by_block = cols.len() * k * std::mem::size_of::<f64>() > self.gather_bytes;
                    group[members].load::<T, A>(&chunk, next, cols, vals, x, by_block);
                    members += 1;
                }
                next += 1;
            }
            by_factor.clear();
            for j in 0..k {
                by_factor.extend((0..members).map(|r| xs[r * k + j]));
            }
            for _ in 0..self.sweeps {
                for first in (0..k).step_by(size) {
                    let width = size.min(k - first);
                    let panel = &panels[first * k..(first + width) * k];
                    let unobserved = &mut unobserved[..members * width];
                    unobserved_parts::<A>(arith, &by_factor, members, panel, width, unobserved);
                    for (r, state) in group[..members].iter_mut().enumerate() {
                        let block = Block {
                            first,
                            width,
                            panel,
                            unobserved: &unobserved[r * width..(r + 1) * width],
                        };
                        let x = &mut xs[r * k..(r + 1) * k];
                        let stepped = state.step::<T, A>(
                            arith,
                            height,
                            &block,
                            &chunk,
                            x,
                            &mut system,
                            &mut step,
                        );
                        if !stepped {
                            return Err(Error::Singular {
                                row: chunk.first_row + state.offset,
                            });
                        }
                        for s in first..first + width {
                            by_factor[s * members + r] = x[s];
                        }
                    }
                }
            }
            for (r, state) in group[..members].iter().enumerate() {
                let row_x = &mut chunk.x[state.offset * k..(state.offset + 1) * k];
                for (xi, &v) in row_x.iter_mut().zip(&xs[r * k..(r + 1) * k]) {
                    *xi = T::from_f64(v);
                }
            }
        }
        Ok(())
    }
}

/// One block of coordinates as a row's step sees it: where it starts, how wide it is, its column
/// panel of `alpha0 Y^T Y`, and the row's `(alpha0 Y^T Y x)` on it.
struct Block<'a> {
    first: usize,
    width: usize,
    panel: &'a [f64],
    unobserved: &'a [f64],
}

/// A row's state while its group goes through the blocks: its items gathered in f64 (`k` values
/// each) with their weights beyond the unobserved one (`c - alpha0`), their targets (`c p`) and
/// their current scores. A long row's items are instead gathered at each block, only its
/// columns ([`GATHER_BYTES`]).
#[derive(Default)]
struct RowState {
    /// The row's place in the chunk.
    offset: usize,
    lambda: f64,
    /// Whether the row's items are gathered block by block ([`GATHER_BYTES`]).
    by_block: bool,
    /// The items in f64: whole rows, or the current block's columns when gathered by block.
    gathered: Vec<f64>,
    weights: Vec<f64>,
    targets: Vec<f64>,
    scores: Vec<f64>,
}

impl RowState {
    /// Takes the chunk's row at `offset` (its items `cols` with values `vals`, currently at `x`).
    #[inline(always)]
    fn load<T: Real, A: Arith>(
        &mut self,
        chunk: &RowChunk<'_, T>,
        offset: usize,
        cols: &[i32],
        vals: &[f32],
        x: &[f64],
        by_block: bool,
    ) {
        let (k, objective) = (chunk.k, chunk.objective);
        let w0 = objective.unobserved_weight;
        self.offset = offset;
        self.lambda = objective.row_regularization(cols.len(), chunk.rows.n_cols());
        self.by_block = by_block;
        self.gathered.clear();
        self.weights.clear();
        self.targets.clear();
        self.scores.clear();
        for (&c, &v) in cols.iter().zip(vals) {
            let item = &chunk.y[c as usize * k..(c as usize + 1) * k];
            if by_block {
                self.gathered.clear();
            }
            let start = self.gathered.len();
            self.gathered.extend(item.iter().map(|v| v.to_f64()));
            let (confidence, preference) = objective.cell(v);
            let (confidence, preference) = (confidence as f64, preference as f64);
            self.weights.push(confidence - w0);
            self.targets.push(confidence * preference);
            self.scores.push(dot::<f64, A>(&self.gathered[start..], x));
        }
    }

    /// Solves the row's problem on `block` with its other coordinates fixed, moves `x` there and
    /// keeps the scores up to date; false if the block's system is not positive definite.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn step<T: Real, A: Arith>(
        &mut self,
        arith: A,
        height: usize,
        block: &Block<'_>,
        chunk: &RowChunk<'_, T>,
        x: &mut [f64],
        system: &mut [f64],
        step: &mut [f64],
    ) -> bool {
        let (k, first, width, lambda) = (x.len(), block.first, block.width, self.lambda);
        // The items' values on the block: `stride` apart, the block's from `offset` on.
        let (stride, offset) = if self.by_block {
            self.gathered.clear();
            let (cols, _) = chunk.rows.row(chunk.first_row + self.offset);
            for &c in cols {
                let item = &chunk.y[c as usize * k + first..c as usize * k + first + width];
                self.gathered.extend(item.iter().map(|v| v.to_f64()));
            }
            (width, 0)
        } else {
            (k, first)
        };
        let columns = offset..offset + width;
        // A_SS and the residual (b - A x)_S.
        let system = &mut system[..width * width];
        let step = &mut step[..width];
        for (a, s) in (first..first + width).enumerate() {
            system[a * width..(a + 1) * width]
                .copy_from_slice(&block.panel[s * width..(s + 1) * width]);
            system[a * width + a] += lambda;
            step[a] = -block.unobserved[a] - lambda * x[s];
        }
        for ((item, &w), (&target, &score)) in self
            .gathered
            .chunks_exact(stride)
            .zip(&self.weights)
            .zip(self.targets.iter().zip(&self.scores))
        {
            axpy::<f64, A>(target - w * score, &item[columns.clone()], step);
        }
        let items = Items {
            gathered: &self.gathered,
            k: stride,
            first: offset,
            weights: &self.weights,
        };
        items.add_outer_products::<A>(height, system, width);
        if !cholesky::factor(arith, system, width, step) {
            return false;
        }
        cholesky::solve_back::<A>(system, width, step);
        // Move x_S and keep the scores up to date.
        for (a, s) in (first..first + width).enumerate() {
            x[s] += step[a];
        }
        for (item, score) in self
            .gathered
            .chunks_exact(stride)
            .zip(self.scores.iter_mut())
        {
            *score += dot::<f64, A>(&item[columns.clone()], step);
        }
        true
    }
}

/// `out_r[c] = sum_j x_r[j] panel[j][c]` for `count` rows `x_r`, given factor by factor in
/// `by_factor` (`x_0[j] .. x_{count-1}[j]` for each `j`), and a `k x width` panel, into the rows of
/// `out` (`width` values each): each entry one FMA chain over `j` in order from 0, as one row
/// alone would compute it. The entries go in register tiles, the panel's rows streaming past once
/// per tile. With AVX-512 a tile is four rows by 16 columns (8 accumulator vectors). AVX2's 16
/// registers hold 8 such vectors only as four rows by 8 columns, which read the panel twice as
/// often per row as one row by 32 columns and were 1.3x slower at 1024 factors; AVX2 and the
/// portable level therefore go row by row, 32 columns at a time.
#[inline(always)]
fn unobserved_parts<A: Arith>(
    arith: A,
    by_factor: &[f64],
    count: usize,
    panel: &[f64],
    width: usize,
    out: &mut [f64],
) {
    let tile_rows = if arith.avx512().is_some() { 4 } else { 1 };
    let rows = Rows { by_factor, count };
    let mut r = 0;
    while r < rows.count {
        let out = &mut out[r * width..];
        r += match (rows.count - r).min(tile_rows) {
            4 => rows.parts::<A, 4, 16>(r, panel, width, out),
            2 | 3 => rows.parts::<A, 2, 16>(r, panel, width, out),
            _ => rows.parts::<A, 1, 32>(r, panel, width, out),
        };
    }
}

/// The rows of [`unobserved_parts`], factor by factor.
struct Rows<'a> {
    by_factor: &'a [f64],
    count: usize,
}

impl Rows<'_> {
    /// [`unobserved_parts`] for the `R` rows from `first`, in tiles of `COLUMNS` columns, then 8,
    /// then 1; returns `R`.
    #[inline(always)]
    fn parts<A: Arith, const R: usize, const COLUMNS: usize>(
        &self,
        first: usize,
        panel: &[f64],
        width: usize,
        out: &mut [f64],
    ) -> usize {
        let mut start = self.tiles::<A, R, COLUMNS>(first, panel, width, out, 0);
        start = self.tiles::<A, R, 8>(first, panel, width, out, start);
        self.tiles::<A, R, 1>(first, panel, width, out, start);
        R
    }

    /// The tiles of `R` rows by `COLUMNS` columns of [`Rows::parts`] from `start` on while whole
    /// tiles fit in `width`; where the next column starts.
    #[inline(always)]
    fn tiles<A: Arith, const R: usize, const COLUMNS: usize>(
        &self,
        first: usize,
        panel: &[f64],
        width: usize,
        out: &mut [f64],
        mut start: usize,
    ) -> usize {
        while start + COLUMNS <= width {
            let mut acc = [[0.0f64; COLUMNS]; R];
            for (row, coefs) in panel.chunks_exact(width).zip(self.coefficients::<R>(first)) {
                let entries = &row[start..start + COLUMNS];
                for r in 0..R {
                    let coef = coefs[r];
                    for c in 0..COLUMNS {
                        acc[r][c] = A::fma(coef, entries[c], acc[r][c]);
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                out[r * width + start..r * width + start + COLUMNS].copy_from_slice(acc);
            }
            start += COLUMNS;
        }
        start
    }

    /// For each factor in order, the `R` rows' values from `first`.
    #[inline(always)]
    fn coefficients<const R: usize>(&self, first: usize) -> impl Iterator<Item = &[f64]> {
        self.by_factor
            .chunks_exact(self.count)
            .map(move |values| &values[first..first + R])
    }
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
    use super::{gram_panels_by_block, unobserved_parts, BlockRows, Items};
    use crate::als::{gram, loss_terms, solve_rows, Objective, Solver};
    use crate::csr::CsrMatrix;
    use crate::linalg::vector::axpy;
    use crate::parallel::Interrupt;
    use crate::simd::testing::{fused_avx512, generic_fused};
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

    /// The unobserved parts, on packed panels of any width and for groups of any size, give the
    /// bits of one `axpy` per Gram row for each row alone, with either tile width.
    #[test]
    fn unobserved_parts_are_the_bits_of_one_axpy_per_gram_row() {
        fn check<A: Arith>(arith: A) {
            for k in [1, 7, 33, 64, 75, 130] {
                let gram = values(k * k, k);
                for size in [1, 5, 8, 16, 32, 50, 64, 200] {
                    let panels = gram_panels_by_block(&gram, k, size);
                    for rows in [1, 2, 3, 4, 7] {
                        let xs = values(rows * k, rows + 2);
                        for first in (0..k).step_by(size) {
                            let width = size.min(k - first);
                            let panel = &panels[first * k..(first + width) * k];
                            let mut got = vec![f64::NAN; rows * width];
                            let by_factor: Vec<f64> = (0..k)
                                .flat_map(|j| (0..rows).map(move |r| (r, j)))
                                .map(|(r, j)| xs[r * k + j])
                                .collect();
                            unobserved_parts::<A>(arith, &by_factor, rows, panel, width, &mut got);
                            for (r, x) in xs.chunks_exact(k).enumerate() {
                                let mut want = vec![0.0; width];
                                for (row, &coef) in gram.chunks_exact(k).zip(x) {
                                    axpy::<f64, A>(coef, &row[first..first + width], &mut want);
                                }
                                assert_eq!(
                                    bits(&got[r * width..(r + 1) * width]),
                                    bits(&want),
                                    "k={k} size={size} rows={rows} first={first} row {r}"
                                );
                            }
                        }
                    }
                }
            }
        }
        check(generic_fused());
        check(Unfused);
        match fused_avx512() {
            Some(arith) => check(arith),
            None => eprintln!("SKIPPED the 32-column tiles: this CPU has no AVX-512"),
        }
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

    /// Every row gathered block by block solves to the same bits as every row gathered whole,
    /// for blocks that divide `K` and one that does not, one pass and two, at every level.
    #[test]
    fn rows_gathered_block_by_block_change_no_bit() {
        use crate::als::exact::RowChunk;
        use crate::simd::dispatch;
        let (rows, start, y, objective) = problem();
        let stop = Interrupt::new();
        let w0 = objective.unobserved_weight;
        let weighted: Vec<f64> = gram(&y, K, &stop).unwrap().iter().map(|g| w0 * g).collect();
        for (size, sweeps) in [(4, 1), (5, 2)] {
            let panels = gram_panels_by_block(&weighted, K, size);
            let solve = |gather_bytes: usize| {
                let mut x = start.clone();
                let chunk = RowChunk {
                    rows: &rows.view(),
                    first_row: 0,
                    x: &mut x,
                    y: &y,
                    k: K,
                    weighted_gram: &panels,
                    objective: &objective,
                };
                dispatch(BlockRows {
                    gather_bytes,
                    ..BlockRows::new(chunk, size, sweeps)
                })
                .unwrap();
                x.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            };
            let whole = solve(usize::MAX);
            assert_eq!(solve(0), whole, "size {size}, {sweeps} passes");
            assert_ne!(whole, start.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        }
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
