//! Exact row solves: each row's normal equations formed in f64 and factored (Cholesky), and
//! the same equations exposed for explanations and fold-in.

use crate::check::all_finite;
use crate::csr::CsrView;
use crate::error::{Error, Result};
use crate::linalg::axpy;
use crate::linalg::cholesky;
use crate::linalg::vector::{tile_height, LANES};
use crate::simd::{dispatch, prefetch, Arith, Kernel};
use crate::Real;

use super::low_rank::{RowScratch, RowSolve, SharedFactor};
use super::objective::Objective;

/// How many interactions ahead the item rows are prefetched: far enough to hide a miss to
/// memory behind the work on the rows in between.
const PREFETCH_AHEAD: usize = 4;

/// Consecutive rows of `x` to solve in f64 against the fixed `y`, from `first_row` on.
pub(crate) struct RowChunk<'a, T> {
    pub(crate) rows: &'a CsrView<'a>,
    pub(crate) first_row: usize,
    pub(crate) x: &'a mut [T],
    pub(crate) y: &'a [T],
    pub(crate) k: usize,
    /// `alpha0 Y^T Y`, full `k x k`: row-major for the exact solver, in the block solver's
    /// column panels ([`super::block::gram_panels_by_block`]) for it.
    pub(crate) weighted_gram: &'a [f64],
    pub(crate) objective: &'a Objective,
}

/// Each row of the chunk solved exactly: through the factor all rows share where that pays
/// ([`SharedFactor`]), else its normal equations factored (Cholesky).
pub(crate) struct CholeskyRows<'a, T> {
    pub(crate) chunk: RowChunk<'a, T>,
    pub(crate) shared: Option<&'a SharedFactor>,
}

impl<T: Real> Kernel for CholeskyRows<'_, T> {
    type Output = Result<()>;

    #[inline(always)]
    fn run<A: Arith>(self, arith: A) -> Result<()> {
        let chunk = self.chunk;
        let k = chunk.k;
        // The k x k system only once a row needs it: with the shared factor most chunks have
        // none, and zeroing 8 MB per chunk of rows at 1024 factors took 15% of a fit (perf).
        let mut a = Vec::new();
        let mut b = vec![0.0f64; k];
        let (mut gathered, mut weights) = (Vec::new(), Vec::new());
        let mut scratch = RowScratch::default();
        let mut batched = Vec::new();
        for (offset, x) in chunk.x.chunks_exact_mut(k).enumerate() {
            let row = chunk.first_row + offset;
            let (cols, vals) = chunk.rows.row(row);
            if cols.is_empty() {
                x.fill(T::ZERO);
                continue;
            }
            if let Some(shared) = self.shared {
                match shared.solve_row(arith, cols, vals, chunk.y, chunk.objective, x, &mut scratch)
                {
                    RowSolve::Solved => continue,
                    RowSolve::Batched => {
                        batched.push(offset);
                        continue;
                    }
                    RowSolve::Direct => {}
                }
            }
            a.resize(k * k, 0.0);
            RowItems::new(cols, vals, chunk.y, k).system::<A>(
                arith,
                chunk.weighted_gram,
                chunk.objective,
                chunk.rows.n_cols(),
                &mut a,
                &mut b,
                &mut gathered,
                &mut weights,
            );
            if !cholesky::factor(arith, &mut a, k, &mut b) {
                return Err(Error::Singular { row });
            }
            cholesky::solve_back::<A>(&a, k, &mut b);
            for (xi, &bi) in x.iter_mut().zip(&b) {
                *xi = T::from_f64(bi);
            }
        }
        if let Some(shared) = self.shared {
            shared.solve_batch(arith, &batched, chunk.x, &mut scratch);
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
    fn run<A: Arith>(self, arith: A) -> Self::Output {
        let k = self.k;
        let (mut a, mut b) = (vec![0.0; k * k], vec![0.0; k]);
        let (mut gathered, mut weights) = (Vec::new(), Vec::new());
        RowItems::new(self.cols, self.vals, self.y, k).system::<A>(
            arith,
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

/// The bytes of f64 item rows [`RowItems::system`] gathers at a time. A row's items go in
/// batches of this size, so that a Zipf-popular item's row does not hold a copy of all its users'
/// factors: the synthetic 3M set's top item has 32,689 users, 134 MB per thread at 512 factors,
/// and the exact solve peaked at 485 MiB at 256 factors against CG's 382 (361 MiB in batches).
const GATHER_BYTES: usize = 4 << 20;

/// A row's items (`cols` with values `vals`) and the fixed factors `y` (`k` columns), gathered
/// `per_batch` items at a time.
#[derive(Clone, Copy)]
struct RowItems<'a, T> {
    cols: &'a [i32],
    vals: &'a [f32],
    y: &'a [T],
    k: usize,
    per_batch: usize,
}

impl<'a, T: Real> RowItems<'a, T> {
    /// In batches of [`GATHER_BYTES`].
    fn new(cols: &'a [i32], vals: &'a [f32], y: &'a [T], k: usize) -> Self {
        let per_batch = (GATHER_BYTES / (k.max(1) * std::mem::size_of::<f64>())).max(1);
        Self {
            cols,
            vals,
            y,
            k,
            per_batch,
        }
    }

    /// Forms the upper triangle of `A_u` (entries left of the diagonal may be touched too) and
    /// all of `b_u` for the row, in f64. The row's item vectors are gathered into `gathered`, a
    /// batch at a time, so that the sum of their weighted outer products runs register-tiled: 16
    /// entries of each of two rows of `A_u` (four with AVX-512) stay in registers while the
    /// batch's items stream past, and are then written, with the Gram entries added after the
    /// last batch (no separate copy of the k x k Gram matrix per row). Each entry is one FMA
    /// chain over all the items in order, carried through `a` from batch to batch, whatever the
    /// tile and the batches, so every level with fused arithmetic gives the same bits (tested).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn system<A: Arith>(
        &self,
        arith: A,
        weighted_gram: &[f64],
        objective: &Objective,
        n_cols: usize,
        a: &mut [f64],
        b: &mut [f64],
        gathered: &mut Vec<f64>,
        weights: &mut Vec<f64>,
    ) {
        let RowItems {
            cols,
            vals,
            y,
            k,
            per_batch,
        } = *self;
        b.fill(0.0);
        // One batch even for a row without items: it writes the Gram part.
        let batches = cols.len().div_ceil(per_batch).max(1);
        for batch in 0..batches {
            let items = batch * per_batch..cols.len().min((batch + 1) * per_batch);
            gather::<T, A>(
                &cols[items.clone()],
                &vals[items],
                y,
                k,
                objective,
                b,
                gathered,
                weights,
            );
            let pass = Pass {
                first: batch == 0,
                last: batch + 1 == batches,
            };
            add_outer_products::<A>(arith, gathered, weights, weighted_gram, k, pass, a);
        }
        let lambda = objective.row_regularization(cols.len(), n_cols);
        for d in 0..k {
            a[d * k + d] += lambda;
        }
    }
}

/// Gathers the item rows `cols` (with values `vals`) into `gathered` in f64 and their weights
/// beyond the unobserved one into `weights`, and adds their part of `b_u` to `b`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn gather<T: Real, A: Arith>(
    cols: &[i32],
    vals: &[f32],
    y: &[T],
    k: usize,
    objective: &Objective,
    b: &mut [f64],
    gathered: &mut Vec<f64>,
    weights: &mut Vec<f64>,
) {
    let w0 = objective.unobserved_weight;
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
}

/// Where a batch of items stands among a row's: the first starts every sum from zero, the last
/// adds the Gram entries to it.
#[derive(Clone, Copy)]
struct Pass {
    first: bool,
    last: bool,
}

impl Pass {
    /// A sum's value before the batch: zero, or what the batch before left in `entry`.
    #[inline(always)]
    fn start(self, entry: f64) -> f64 {
        if self.first {
            0.0
        } else {
            entry
        }
    }

    /// What a sum leaves in its entry after the batch.
    #[inline(always)]
    fn finish(self, gram: f64, sum: f64) -> f64 {
        if self.last {
            gram + sum
        } else {
            sum
        }
    }
}

/// Adds the weighted outer products of one batch of gathered items to the upper triangle of `a`,
/// in tiles ([`tile_height`] rows by [`LANES`] columns).
#[inline(always)]
fn add_outer_products<A: Arith>(
    arith: A,
    gathered: &[f64],
    weights: &[f64],
    weighted_gram: &[f64],
    k: usize,
    pass: Pass,
    a: &mut [f64],
) {
    // A tile starts at a multiple of its height, so its rows' first block starts at the same
    // column.
    let height = tile_height(arith);
    let mut i = 0;
    while i < k {
        let rows = height.min(k - i);
        for start in (i - i % LANES..k).step_by(LANES) {
            let width = LANES.min(k - start);
            if width == LANES {
                let tile = Tile {
                    gathered,
                    weights,
                    weighted_gram,
                    k,
                    first_row: i,
                    start,
                    pass,
                };
                match rows {
                    4 => tile.write::<A, 4>(a),
                    3 => tile.write::<A, 3>(a),
                    2 => tile.write::<A, 2>(a),
                    _ => tile.write::<A, 1>(a),
                }
            } else {
                for row in i..i + rows {
                    let at = row * k + start..row * k + start + width;
                    for ((t, entry), &g) in
                        a[at.clone()].iter_mut().enumerate().zip(&weighted_gram[at])
                    {
                        let mut sum = pass.start(*entry);
                        for (z, &w) in gathered.chunks_exact(k).zip(weights) {
                            sum = A::fma(w * z[row], z[start + t], sum);
                        }
                        *entry = pass.finish(g, sum);
                    }
                }
            }
        }
        i += rows;
    }
}

/// One tile of `A_u`'s outer-product sum: the rows `first_row..first_row + R` at the columns
/// `start..start + LANES`, over a batch of gathered item rows `z` with their weights `w`.
struct Tile<'a> {
    gathered: &'a [f64],
    weights: &'a [f64],
    weighted_gram: &'a [f64],
    k: usize,
    first_row: usize,
    start: usize,
    pass: Pass,
}

impl Tile<'_> {
    /// `a[row][col] (+)= sum_z w z[row] z[col]` on the tile's `R x LANES` entries, plus
    /// `gram[row][col]` after the last batch ([`Pass`]): the sums held in registers while the
    /// batch's items stream past, each one FMA chain over them.
    #[inline(always)]
    fn write<A: Arith, const R: usize>(&self, a: &mut [f64]) {
        let (k, first_row, start, pass) = (self.k, self.first_row, self.start, self.pass);
        let at = |r: usize| (first_row + r) * k + start..(first_row + r) * k + start + LANES;
        let mut acc = [[0.0f64; LANES]; R];
        if !pass.first {
            for (r, sums) in acc.iter_mut().enumerate() {
                sums.copy_from_slice(&a[at(r)]);
            }
        }
        let acc = add_weighted_outer::<A, R>(self.gathered, self.weights, k, first_row, start, acc);
        for (r, sums) in acc.iter().enumerate() {
            for ((entry, &g), &sum) in a[at(r)]
                .iter_mut()
                .zip(&self.weighted_gram[at(r)])
                .zip(sums)
            {
                *entry = pass.finish(g, sum);
            }
        }
    }
}

/// `acc[r][t] + sum_z (w z[first_row + r]) z[start + t]` over the gathered item rows `z` (`k`
/// values each) with their weights `w`, for `R` rows and `LANES` columns: the sums held in
/// registers while the items stream past, each one FMA chain over them in order from its value
/// in `acc`.
#[inline(always)]
pub(crate) fn add_weighted_outer<A: Arith, const R: usize>(
    gathered: &[f64],
    weights: &[f64],
    k: usize,
    first_row: usize,
    start: usize,
    mut acc: [[f64; LANES]; R],
) -> [[f64; LANES]; R] {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::testing::{avx512_or_skip, fused, fused_avx512, generic_fused};

    const N_COLS: usize = 12;
    const CONFIDENCE_FACTORS: [f32; 3] = [2.0, -1.0, 0.5];
    const OBJECTIVE: Objective = Objective {
        regularization: 0.25,
        alpha: 3.0,
        regularization_exponent: 0.0,
        unobserved_weight: 0.5,
    };

    /// Item factors, a symmetric Gram matrix, and a row of `n` interactions (one negative in
    /// three) for `k` factors.
    fn inputs(k: usize, n: usize) -> (Vec<f32>, Vec<f64>, Vec<i32>, Vec<f32>) {
        let y = (0..N_COLS * k)
            .map(|i| ((i * 53 % 31) as f32) / 31.0 - 0.5)
            .collect();
        let gram = (0..k * k)
            .map(|ij| (((ij / k) * (ij % k) * 7 + ij / k + ij % k) % 13) as f64 / 13.0)
            .collect();
        let cols = (0..n).map(|i| ((i * 5 + 1) % N_COLS) as i32).collect();
        let vals = (0..n).map(|i| CONFIDENCE_FACTORS[i % 3]).collect();
        (y, gram, cols, vals)
    }

    fn normal_equations<A: Arith>(arith: A, k: usize, n: usize) -> (Vec<f64>, Vec<f64>) {
        let (y, gram, cols, vals) = inputs(k, n);
        NormalEquations {
            cols: &cols,
            vals: &vals,
            y: &y,
            k,
            weighted_gram: &gram,
            objective: &OBJECTIVE,
            n_cols: N_COLS,
        }
        .run(arith)
    }

    /// `A_u` from its definition, in plain f64 sums.
    fn naive(k: usize, n: usize) -> Vec<f64> {
        let (y, mut a, cols, vals) = inputs(k, n);
        for (&c, &v) in cols.iter().zip(&vals) {
            let item = &y[c as usize * k..(c as usize + 1) * k];
            let weight = (OBJECTIVE.alpha * v.abs()) as f64 - OBJECTIVE.unobserved_weight;
            for r in 0..k {
                for col in 0..k {
                    a[r * k + col] += weight * item[r] as f64 * item[col] as f64;
                }
            }
        }
        for d in 0..k {
            a[d * k + d] += OBJECTIVE.regularization;
        }
        a
    }

    /// A row system formed with `per_batch` items gathered at a time.
    fn in_batches<A: Arith>(arith: A, k: usize, n: usize, per_batch: usize) -> Vec<Vec<u64>> {
        let (y, gram, cols, vals) = inputs(k, n);
        let (mut a, mut b) = (vec![0.0; k * k], vec![0.0; k]);
        let row = RowItems {
            per_batch,
            ..RowItems::new(&cols, &vals, &y, k)
        };
        let (mut gathered, mut weights) = (Vec::new(), Vec::new());
        row.system::<A>(
            arith,
            &gram,
            &OBJECTIVE,
            N_COLS,
            &mut a,
            &mut b,
            &mut gathered,
            &mut weights,
        );
        assert!(
            gathered.len() <= per_batch * k,
            "gathered more than a batch"
        );
        [a, b]
            .iter()
            .map(|v| v.iter().map(|x| x.to_bits()).collect())
            .collect()
    }

    #[test]
    fn batches_of_items_change_no_bit() {
        fn check<A: Arith>(arith: A) {
            for k in [3, 16, 21, 64] {
                for n in [0, 1, 7, 30] {
                    let whole = in_batches(arith, k, n, n.max(1));
                    for per_batch in [1, 2, 4, 29] {
                        let got = in_batches(arith, k, n, per_batch);
                        assert_eq!(got, whole, "k={k} n={n} per_batch={per_batch}");
                    }
                }
            }
        }
        check(generic_fused());
        check(crate::simd::Unfused);
        if let Some(avx2) = fused() {
            check(avx2);
        }
        let name = "batches_of_items_change_no_bit (AVX-512)";
        if let Some(avx512) = avx512_or_skip(name).and_then(|_| fused_avx512()) {
            check(avx512);
        }
    }

    #[test]
    fn row_systems_are_the_same_bits_at_every_level_and_match_their_definition() {
        let avx512 = avx512_or_skip(
            "row_systems_are_the_same_bits_at_every_level_and_match_their_definition (AVX-512)",
        )
        .and_then(|_| fused_avx512());
        let bits = |a: &[f64]| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        for k in (1..=21).chain([31, 32, 33, 48, 64, 70]) {
            for n in [0, 1, 2, 5, 9] {
                let (generic, b) = normal_equations(generic_fused(), k, n);
                for (got, want) in generic.iter().zip(naive(k, n)) {
                    assert!(
                        (got - want).abs() < 1e-9 * (1.0 + want.abs()),
                        "k={k} n={n}"
                    );
                }
                for level in [fused(), avx512].into_iter().flatten() {
                    let (special, b_special) = normal_equations(level, k, n);
                    assert_eq!(bits(&special), bits(&generic), "k={k} n={n}");
                    assert_eq!(bits(&b_special), bits(&b), "k={k} n={n}");
                }
            }
        }
    }
}
