//! Exact solves of short rows through one factorisation that all rows share (the Woodbury
//! identity).
//!
//! With the same penalty for every row (nu = 0), row u's system is `A_u = B + Y_u^T D_u Y_u`, with
//! `B = alpha0 Y^T Y + lambda I` the same for all rows and `D_u = diag(c_ui - alpha0)` over the
//! row's items. Factor `B = U^T U` once and transform each item once, `v_i = U^{-T} y_i` (the rows of
//! `V = Y U^{-1}`); then `A_u = U^T (I + V_u^T D_u V_u) U` and, by the Woodbury identity,
//!
//! ```text
//! U x_u = g - V_m^T (D_m^{-1} + V_m V_m^T)^{-1} V_m g,     g = V_u^T (c_u p_u)
//! ```
//!
//! where `m` counts the row's items with `c_ui > alpha0` (the others add nothing to `A_u`), and
//! `g = U^{-T} b_u` comes from `b_u` by one forward substitution. The row factors an `m x m` matrix
//! instead of a `k x k` one: about `m^2 k / 2 + m^3 / 6 + k^2` FMAs against `n k^2 / 2 + k^3 / 6`
//! for forming and factoring `A_u`: 3x fewer for a row of 25 items at 64 factors, over 100x fewer
//! at 1024. Where every stored value has confidence `alpha0` (binary data with
//! `alpha = unobserved_weight`), `m = 0` and `x_u = B^{-1} b_u`: `B^{-1}` is formed once (`k`
//! pairs of triangular solves) and such rows are multiplied by it a few at a time, at the FMA rate
//! of a matrix product, where each row's own two triangular solves waited on themselves `k` times
//! and read `U` from L2 per row (2.4x faster at 256 factors on gowalla). The solution is the same
//! up to rounding (a different order of operations, in f64). Only the weighted items are
//! transformed: `V` costs `8 k` bytes per such item while a half-sweep runs (mapped pages, returned
//! when it ends: see `pages`), and `B^{-1}` `8 k^2` bytes.
//!
//! Whether a row takes this path depends only on the row, `k` and the objective, never on which
//! other rows are solved in the same call, so a fit split into blocks of rows (the distributed
//! mode) gives the bits of one call, for any thread count. A row keeps the direct solve when it has
//! an item weighted below the unobserved weight (`D_u` not positive definite), when its items are
//! too many for the identity to pay, or when the penalty depends on the row's length (nu > 0,
//! so `B` differs from row to row). Only where the system refuses the memory for `V` or `B^{-1}`
//! does a whole call take the direct solve instead of aborting; its factors then differ in the
//! last bits.

use rayon::prelude::*;

use crate::csr::CsrView;
use crate::linalg::cholesky;
use crate::linalg::panels::symv_packed;
use crate::linalg::vector::{axpy, dot_generic as dot, horizontal_sum, HALF as DOT_LANES, LANES};
use crate::pages::ZeroedF64;
use crate::simd::{dispatch, prefetch, Arith, Kernel};
use crate::Real;

use super::objective::Objective;

/// Marks an item no short row uses, so it has no transformed row.
const ABSENT: u32 = u32::MAX;

/// How many items ahead a row's fixed and transformed rows are prefetched (as in the direct
/// solve's gather).
const PREFETCH_AHEAD: usize = 4;

/// Items transformed per Rayon task.
const ITEMS_PER_TASK: usize = 256;

/// FMAs of the direct solve of a row with `n` items: the upper triangle of its outer products,
/// `b_u`, and the factorisation of the `k x k` system.
fn direct_cost(n: usize, k: usize) -> f64 {
    let (n, k) = (n as f64, k as f64);
    n * k * k / 2.0 + n * k + k * k * k / 6.0
}

/// FMAs of the solve through the shared factor of a row with `m` weighted items among `n`: `b_u`
/// and `g`, the `m x m` system and its factorisation, `V_m^T t`, and the back substitution.
fn shortcut_cost(m: usize, n: usize, k: usize) -> f64 {
    let (m, n, k) = (m as f64, n as f64, k as f64);
    m * m * k / 2.0 + m * m * m / 6.0 + 2.0 * m * k + n * k + k * k
}

/// How many times fewer FMAs the identity must cost than the direct solve: the direct solve's
/// register tiles run nearer the FMA peak than the identity's dot products and small
/// factorisations, and it reads float64 rows (at 64 factors, rows of 20 and 30 items took 0.48x
/// and 0.85x the direct solve's time where the FMA counts are 0.26x and 0.40x; at 128 factors,
/// 60 items 0.71x for 0.36x). 2.5 takes the rows it makes at least about 20% faster.
const MARGIN: f64 = 2.5;

/// The number of the row's items weighted above the unobserved weight, when the row is solved
/// through the shared factor: none is weighted below it, and the identity costs [`MARGIN`] times
/// fewer FMAs than the direct solve.
fn weighted_items(vals: &[f32], objective: &Objective, k: usize) -> Option<usize> {
    let mut m = 0;
    for &v in vals {
        let weight = weight_beyond_unobserved(objective.cell(v).0, objective);
        if weight < 0.0 {
            return None;
        }
        m += usize::from(weight > 0.0);
    }
    (MARGIN * shortcut_cost(m, vals.len(), k) <= direct_cost(vals.len(), k)).then_some(m)
}

/// `c_ui - alpha0` for a stored value's confidence: positive puts its item in the row's `m x m`
/// system, zero leaves it out, negative sends the row to the direct solve.
#[inline(always)]
fn weight_beyond_unobserved(confidence: f32, objective: &Objective) -> f64 {
    confidence as f64 - objective.unobserved_weight
}

/// `B`'s factor and the transformed items that the rows taking the shortcut weigh.
pub(crate) struct SharedFactor {
    k: usize,
    /// Upper triangular, row-major `k x k`, `B = U^T U`.
    u: Vec<f64>,
    /// `1 / U_dd`.
    inverse: Vec<f64>,
    /// Row `slot[i]` of `v` is `U^{-T} y_i`; [`ABSENT`] for items that no short row weighs.
    slot: Vec<u32>,
    v: ZeroedF64,
    /// `B^{-1}` in column panels for [`symv_packed`] (column `c` computed as `B^{-1} e_c`), when
    /// some row has no weighted item: such rows are solved a batch at a time
    /// ([`SharedFactor::solve_batch`]).
    b_inverse: Option<ZeroedF64>,
}

/// How [`SharedFactor::solve_row`] dealt with a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RowSolve {
    /// Solved into its row of `x`.
    Solved,
    /// No weighted item: its right-hand side waits in the scratch's batch for
    /// [`SharedFactor::solve_batch`].
    Batched,
    /// For the direct solve; `x` untouched.
    Direct,
}

impl SharedFactor {
    /// The factor for the rows of `rows` that take the shortcut, or None when none does (nu > 0,
    /// no short rows), `B` (`weighted_gram` plus the penalty) is not positive definite, or the
    /// memory for the transformed items or `B^{-1}` is refused (the direct solve needs neither).
    pub(crate) fn new<T: Real>(
        rows: &CsrView<'_>,
        y: &[T],
        k: usize,
        weighted_gram: &[f64],
        objective: &Objective,
    ) -> Option<Self> {
        if objective.regularization_exponent != 0.0 {
            return None;
        }
        let mut slot = vec![ABSENT; rows.n_cols()];
        let mut items = Vec::new();
        let (mut any, mut any_unweighted) = (false, false);
        for row in 0..rows.n_rows() {
            let (cols, vals) = rows.row(row);
            let m = match weighted_items(vals, objective, k) {
                Some(m) if !cols.is_empty() => m,
                _ => continue,
            };
            any = true;
            any_unweighted |= m == 0;
            for (&c, &v) in cols.iter().zip(vals) {
                let s = &mut slot[c as usize];
                if *s == ABSENT && weight_beyond_unobserved(objective.cell(v).0, objective) > 0.0 {
                    *s = items.len() as u32;
                    items.push(c as usize);
                }
            }
        }
        if !any {
            return None;
        }
        let mut u = weighted_gram.to_vec();
        for d in 0..k {
            u[d * k + d] += objective.regularization;
        }
        if !dispatch(Factor { u: &mut u, k }) {
            return None;
        }
        let inverse: Vec<f64> = (0..k).map(|d| 1.0 / u[d * k + d]).collect();
        let mut v = ZeroedF64::try_new(items.len() * k)?;
        v.par_chunks_mut(ITEMS_PER_TASK * k)
            .zip(items.par_chunks(ITEMS_PER_TASK))
            .for_each(|(v, items)| {
                dispatch(Transform {
                    items,
                    y,
                    u: &u,
                    inverse: &inverse,
                    k,
                    v,
                })
            });
        let b_inverse = if any_unweighted {
            Some(inverse_panels(&u, &inverse, k)?)
        } else {
            None
        };
        Some(Self {
            k,
            u,
            inverse,
            slot,
            v,
            b_inverse,
        })
    }

    /// Item `c`'s transformed row.
    #[inline(always)]
    fn item(&self, c: i32) -> &[f64] {
        let s = self.slot[c as usize] as usize;
        &self.v[s * self.k..(s + 1) * self.k]
    }

    /// Solves the row with items `cols` (values `vals`; `y` the fixed factors `B` and the
    /// transformed rows came from) into `x`; or, when no item is weighted, adds `b_u` to the
    /// scratch's batch for [`SharedFactor::solve_batch`]; or leaves `x` untouched when the row is
    /// for the direct solve, or its `m x m` system does not factor.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(crate) fn solve_row<T: Real, A: Arith>(
        &self,
        arith: A,
        cols: &[i32],
        vals: &[f32],
        y: &[T],
        objective: &Objective,
        x: &mut [T],
        scratch: &mut RowScratch,
    ) -> RowSolve {
        let k = self.k;
        let Some(m) = weighted_items(vals, objective, k) else {
            return RowSolve::Direct;
        };
        let RowScratch {
            weighted,
            system,
            t,
            z,
            plain,
            batch,
            ..
        } = scratch;
        if m == 0 && self.b_inverse.is_some() {
            let start = batch.len();
            batch.resize(start + k, 0.0);
            for (&c, &v) in cols.iter().zip(vals) {
                let (confidence, preference) = objective.cell(v);
                if preference > 0.0 {
                    let item = &y[c as usize * k..(c as usize + 1) * k];
                    add_scaled::<T, A>(confidence as f64, item, &mut batch[start..]);
                }
            }
            return RowSolve::Batched;
        }
        weighted.clear();
        z.clear();
        z.resize(k, 0.0);
        plain.clear();
        // g = U^{-T} b_u: a weighted item's part from its transformed row, the others' (confidence
        // alpha0) summed from their factors and transformed once, so that a row reads each
        // item's factors or its transformed row, not both.
        for (j, (&c, &v)) in cols.iter().zip(vals).enumerate() {
            if let Some(&ahead) = cols.get(j + PREFETCH_AHEAD) {
                match self.slot[ahead as usize] {
                    ABSENT => prefetch(&y[ahead as usize * k..(ahead as usize + 1) * k]),
                    _ => prefetch(self.item(ahead)),
                }
            }
            let (confidence, preference) = objective.cell(v);
            let weight = weight_beyond_unobserved(confidence, objective);
            let confidence = confidence as f64;
            if weight > 0.0 {
                weighted.push((c, 1.0 / weight));
                if preference > 0.0 {
                    axpy::<f64, A>(confidence, self.item(c), z);
                }
            } else if preference > 0.0 {
                if plain.is_empty() {
                    plain.resize(k, 0.0);
                }
                let item = &y[c as usize * k..(c as usize + 1) * k];
                add_scaled::<T, A>(confidence, item, plain);
            }
        }
        debug_assert_eq!(weighted.len(), m);
        if !plain.is_empty() {
            cholesky::solve_forward::<A>(&self.u, k, &self.inverse, plain);
            for (zi, &pi) in z.iter_mut().zip(plain.iter()) {
                *zi += pi;
            }
        }
        // D_m^{-1} + V_m V_m^T (upper triangle) and V_m g.
        system.clear();
        system.resize(m * m, 0.0);
        t.clear();
        for (i, &(a, inverse_weight)) in weighted.iter().enumerate() {
            let va = self.item(a);
            t.push(dot::<f64, A>(va, z));
            let row = &mut system[i * m..(i + 1) * m];
            let mut j = i;
            while j + 4 <= m {
                let others = [0, 1, 2, 3].map(|o| self.item(weighted[j + o].0));
                let sums = dots4::<A>(va, others);
                for ((entry, sum), other) in row[j..j + 4].iter_mut().zip(sums).zip(others) {
                    *entry = finish_dot::<A>(sum, va, other);
                }
                j += 4;
            }
            for j in j..m {
                row[j] = dot::<f64, A>(va, self.item(weighted[j].0));
            }
            row[i] += inverse_weight;
        }
        if !cholesky::factor(arith, system, m, t) {
            return RowSolve::Direct;
        }
        cholesky::solve_back::<A>(system, m, t);
        for (&(a, _), &ti) in weighted.iter().zip(t.iter()) {
            axpy::<f64, A>(-ti, self.item(a), z);
        }
        cholesky::solve_back::<A>(&self.u, k, z);
        for (xi, &zi) in x.iter_mut().zip(z.iter()) {
            *xi = T::from_f64(zi);
        }
        RowSolve::Solved
    }

    /// Solves the rows [`SharedFactor::solve_row`] batched, in order, into the rows `rows` of
    /// `x` (offsets in rows), and empties the batch: `x_u[c] = (B^{-1} e_c) . b_u`, several rows
    /// per pass over `B^{-1}` ([`symv_packed`]), whereas the two triangular solves of one row
    /// wait on each other k times and read `U` per row. Each row's sums are one FMA chain in
    /// the same order whichever rows share its batch.
    #[inline(always)]
    pub(crate) fn solve_batch<T: Real, A: Arith>(
        &self,
        arith: A,
        rows: &[usize],
        x: &mut [T],
        scratch: &mut RowScratch,
    ) {
        let (Some(b_inverse), k) = (&self.b_inverse, self.k) else {
            return;
        };
        let RowScratch { batch, solved, .. } = scratch;
        debug_assert_eq!(batch.len(), rows.len() * k);
        solved.clear();
        solved.resize(batch.len(), 0.0);
        symv_packed(arith, b_inverse, k, batch, solved);
        for (&row, solution) in rows.iter().zip(solved.chunks_exact(k)) {
            for (xi, &si) in x[row * k..(row + 1) * k].iter_mut().zip(solution) {
                *xi = T::from_f64(si);
            }
        }
        batch.clear();
    }
}

/// `sum += scale * item`, in f64.
#[inline(always)]
fn add_scaled<T: Real, A: Arith>(scale: f64, item: &[T], sum: &mut [f64]) {
    for (si, yi) in sum.iter_mut().zip(item) {
        *si = A::fma(scale, yi.to_f64(), *si);
    }
}

/// `B^{-1}` from its factor, packed for [`symv_packed`]: the panel of columns `c..c + LANES`
/// holds entry `j` of each `B^{-1} e_c` (the forward and back substitutions of `e_c`) for every
/// `j` in turn, one panel per Rayon task; None when the memory is refused.
fn inverse_panels(u: &[f64], inverse: &[f64], k: usize) -> Option<ZeroedF64> {
    let mut packed = ZeroedF64::try_new(k * k)?;
    packed
        .par_chunks_mut(LANES * k)
        .enumerate()
        .for_each(|(panel, block)| {
            dispatch(InverseColumns {
                u,
                inverse,
                k,
                first: panel * LANES,
                block,
            })
        });
    Some(packed)
}

/// The lane sums of `a . b_o` for four vectors `b_o` as long as `a`, over its whole blocks of
/// [`DOT_LANES`] ([`finish_dot`] completes each): one FMA chain per lane. One load of `a` feeds
/// four FMAs and four chains run at once, where four separate dot products each wait on their own
/// chain.
#[inline(always)]
fn dots4<A: Arith>(a: &[f64], b: [&[f64]; 4]) -> [[f64; DOT_LANES]; 4] {
    let [b0, b1, b2, b3] = b;
    let (mut s0, mut s1, mut s2, mut s3) = (
        [0.0f64; DOT_LANES],
        [0.0; DOT_LANES],
        [0.0; DOT_LANES],
        [0.0; DOT_LANES],
    );
    let blocks = a.len() / DOT_LANES * DOT_LANES;
    let (a, b0, b1, b2, b3) = (
        &a[..blocks],
        &b0[..blocks],
        &b1[..blocks],
        &b2[..blocks],
        &b3[..blocks],
    );
    let mut i = 0;
    // One loop per sum over constant indices, the shape LLVM turns into one vector FMA each.
    while i < blocks {
        let x = &a[i..i + DOT_LANES];
        let (y0, y1, y2, y3) = (
            &b0[i..i + DOT_LANES],
            &b1[i..i + DOT_LANES],
            &b2[i..i + DOT_LANES],
            &b3[i..i + DOT_LANES],
        );
        for j in 0..DOT_LANES {
            s0[j] = A::fma(x[j], y0[j], s0[j]);
        }
        for j in 0..DOT_LANES {
            s1[j] = A::fma(x[j], y1[j], s1[j]);
        }
        for j in 0..DOT_LANES {
            s2[j] = A::fma(x[j], y2[j], s2[j]);
        }
        for j in 0..DOT_LANES {
            s3[j] = A::fma(x[j], y3[j], s3[j]);
        }
        i += DOT_LANES;
    }
    [s0, s1, s2, s3]
}

/// A [`dots4`] sum's lanes added in `dot`'s fixed order, then the last elements of `a . b`
/// (those past the whole blocks) one by one.
#[inline(always)]
fn finish_dot<A: Arith>(l: [f64; DOT_LANES], a: &[f64], b: &[f64]) -> f64 {
    let mut total = horizontal_sum(l);
    let tail = a.len() / DOT_LANES * DOT_LANES;
    for (&x, &y) in a[tail..].iter().zip(&b[tail..]) {
        total = A::fma(x, y, total);
    }
    total
}

/// Buffers [`SharedFactor::solve_row`] reuses from row to row.
#[derive(Default)]
pub(crate) struct RowScratch {
    /// The weighted items and their `1 / (c_ui - alpha0)`.
    weighted: Vec<(i32, f64)>,
    system: Vec<f64>,
    t: Vec<f64>,
    z: Vec<f64>,
    /// The part of `b_u` from items weighted as the unobserved cells.
    plain: Vec<f64>,
    /// `b_u` of each batched row, in order, and their solutions.
    batch: Vec<f64>,
    solved: Vec<f64>,
}

/// Factors `u` in place; false when it is not positive definite.
struct Factor<'a> {
    u: &'a mut [f64],
    k: usize,
}

impl Kernel for Factor<'_> {
    type Output = bool;

    #[inline(always)]
    fn run<A: Arith>(self, arith: A) -> bool {
        let mut unused = vec![0.0; self.k];
        cholesky::factor(arith, self.u, self.k, &mut unused)
    }
}

/// The panel of `B^{-1}`'s columns from `first` on (see [`inverse_panels`]).
struct InverseColumns<'a> {
    u: &'a [f64],
    inverse: &'a [f64],
    k: usize,
    first: usize,
    block: &'a mut [f64],
}

impl Kernel for InverseColumns<'_> {
    type Output = ();

    #[inline(always)]
    fn run<A: Arith>(self, _arith: A) {
        let k = self.k;
        let width = self.block.len() / k;
        let mut column = vec![0.0; k];
        for t in 0..width {
            column.fill(0.0);
            column[self.first + t] = 1.0;
            cholesky::solve_forward::<A>(self.u, k, self.inverse, &mut column);
            cholesky::solve_back::<A>(self.u, k, &mut column);
            for (j, &value) in column.iter().enumerate() {
                self.block[j * width + t] = value;
            }
        }
    }
}

/// `v_i = U^{-T} y_i` for a run of items, into consecutive rows of `v`.
struct Transform<'a, T> {
    items: &'a [usize],
    y: &'a [T],
    u: &'a [f64],
    inverse: &'a [f64],
    k: usize,
    v: &'a mut [f64],
}

impl<T: Real> Kernel for Transform<'_, T> {
    type Output = ();

    #[inline(always)]
    fn run<A: Arith>(self, _arith: A) {
        let k = self.k;
        for (&item, v) in self.items.iter().zip(self.v.chunks_exact_mut(k)) {
            for (vi, yi) in v.iter_mut().zip(&self.y[item * k..(item + 1) * k]) {
                *vi = yi.to_f64();
            }
            cholesky::solve_forward::<A>(self.u, k, self.inverse, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::als::exact::{CholeskyRows, RowChunk};
    use crate::als::{solve_rows, Solver};
    use crate::parallel::Interrupt;
    use crate::simd::testing::{avx512_or_skip, fused, fused_avx512, generic_fused};

    const N_ROWS: usize = 24;
    const N_COLS: usize = 50;

    /// Rows of 0 to 40 distinct items with values cycling through `values`, item factors, and
    /// their Gram matrix.
    struct Problem {
        indptr: Vec<i64>,
        indices: Vec<i32>,
        data: Vec<f32>,
        y: Vec<f64>,
        gram: Vec<f64>,
        k: usize,
    }

    impl Problem {
        fn new(k: usize, values: &[f32]) -> Self {
            let (mut indptr, mut indices, mut data) = (vec![0i64], Vec::new(), Vec::new());
            for r in 0..N_ROWS {
                let n = r * 13 % 41;
                for j in 0..n {
                    // 7 is prime to N_COLS, so a row's items are distinct.
                    indices.push(((r * 3 + j * 7) % N_COLS) as i32);
                    data.push(values[(r + j) % values.len()]);
                }
                indptr.push(indices.len() as i64);
            }
            let y: Vec<f64> = (0..N_COLS * k)
                .map(|i| ((i * 53 % 97) as f64) / 97.0 - 0.5)
                .collect();
            let mut gram = vec![0.0; k * k];
            for item in y.chunks_exact(k) {
                for r in 0..k {
                    for c in 0..k {
                        gram[r * k + c] += item[r] * item[c];
                    }
                }
            }
            Self {
                indptr,
                indices,
                data,
                y,
                gram,
                k,
            }
        }

        fn rows(&self) -> CsrView<'_> {
            CsrView::new(&self.indptr, &self.indices, &self.data, N_COLS).unwrap()
        }

        fn weighted_gram(&self, objective: &Objective) -> Vec<f64> {
            let w0 = objective.unobserved_weight;
            self.gram.iter().map(|&g| w0 * g).collect()
        }

        /// Every row solved by the exact kernel under `arith`, through `shared` where it takes
        /// the row, and which rows it took.
        fn solve<A: Arith>(
            &self,
            arith: A,
            objective: &Objective,
            shared: Option<&SharedFactor>,
        ) -> (Vec<f64>, Vec<bool>) {
            let (rows, k) = (self.rows(), self.k);
            let weighted_gram = self.weighted_gram(objective);
            let mut x = vec![0.0; N_ROWS * k];
            CholeskyRows {
                chunk: RowChunk {
                    rows: &rows,
                    first_row: 0,
                    x: &mut x,
                    y: &self.y,
                    k,
                    weighted_gram: &weighted_gram,
                    objective,
                },
                shared,
            }
            .run(arith)
            .unwrap();
            let took = (0..N_ROWS)
                .map(|r| {
                    let (cols, vals) = rows.row(r);
                    let mut scratch = RowScratch::default();
                    let mut out = vec![0.0; k];
                    !cols.is_empty()
                        && shared.is_some_and(|s| {
                            s.solve_row(
                                arith,
                                cols,
                                vals,
                                &self.y,
                                objective,
                                &mut out,
                                &mut scratch,
                            ) != RowSolve::Direct
                        })
                })
                .collect();
            (x, took)
        }

        fn shared(&self, objective: &Objective) -> Option<SharedFactor> {
            let weighted_gram = self.weighted_gram(objective);
            SharedFactor::new(&self.rows(), &self.y, self.k, &weighted_gram, objective)
        }
    }

    /// Values for [`Problem::new`] that, with `alpha` and the unobserved weight 1, give rows of
    /// every kind in turn: none weighted (batched), one weighted item, and one item weighted
    /// below the unobserved weight (direct), as rows 1, 2, 3, 4, 5, 6, ... .
    fn mixed_rows() -> Vec<f32> {
        (0..41)
            .map(|i| match i {
                20 => 2.0,
                40 => 0.5,
                _ => 1.0,
            })
            .collect()
    }

    fn objective(alpha: f32, unobserved_weight: f64) -> Objective {
        Objective {
            regularization: 0.05,
            alpha,
            regularization_exponent: 0.0,
            unobserved_weight,
        }
    }

    /// Whether the identity must take each row of [`Problem`] (at 33 to 70 factors), where that
    /// does not hang on the cost model's exact threshold: never an empty row or one with an item
    /// weighted below the unobserved weight; always a row whose items all have confidence
    /// `alpha0` (one product with `B^{-1}`) or one of at most 4 weighted items; never a row of 35 or
    /// more items all weighted (its `m x m` system costs more than its own `k x k` one).
    fn expected_rows(problem: &Problem, objective: &Objective) -> Vec<Option<bool>> {
        let rows = problem.rows();
        let w0 = objective.unobserved_weight;
        (0..N_ROWS)
            .map(|r| {
                let (_, vals) = rows.row(r);
                let confidences: Vec<f64> = vals
                    .iter()
                    .map(|v| (objective.alpha * v.abs()) as f64)
                    .collect();
                let n = confidences.len();
                if n == 0 || confidences.iter().any(|&c| c < w0) {
                    Some(false)
                } else if confidences.iter().all(|&c| c == w0) || n <= 4 {
                    Some(true)
                } else if n >= 35 && confidences.iter().all(|&c| c > w0) {
                    Some(false)
                } else {
                    None
                }
            })
            .collect()
    }

    #[test]
    fn short_rows_get_the_direct_solution() {
        // (values, alpha, unobserved weight): every item weighted; binary data with confidence
        // equal to the unobserved weight (m = 0); weights zero and positive mixed; and rows
        // with items weighted below the unobserved weight, which keep the direct solve.
        let mixed = mixed_rows();
        let cases: [(&[f32], f32, f64); 5] = [
            (&[1.0, 2.0, -1.0], 3.0, 0.5),
            (&[1.0], 1.0, 1.0),
            (&[1.0, 2.0], 1.0, 1.0),
            (&[1.0, 3.0], 1.0, 2.0),
            (&mixed, 1.0, 1.0),
        ];
        for k in [33, 64, 70] {
            for (values, alpha, w0) in cases {
                let problem = Problem::new(k, values);
                let objective = objective(alpha, w0);
                let shared = problem.shared(&objective).expect("short rows at this size");
                let (direct, none) = problem.solve(generic_fused(), &objective, None);
                assert!(none.iter().all(|&took| !took));
                let (short, took) = problem.solve(generic_fused(), &objective, Some(&shared));
                for (r, want) in expected_rows(&problem, &objective).into_iter().enumerate() {
                    if let Some(want) = want {
                        assert_eq!(took[r], want, "k={k} values={values:?} row {r}");
                    }
                }
                assert!(took.iter().any(|&t| t), "k={k}: no row took the identity");
                let scale = direct.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                for (r, (d, s)) in direct.chunks(k).zip(short.chunks(k)).enumerate() {
                    for (d, s) in d.iter().zip(s) {
                        assert!(
                            (d - s).abs() <= 1e-10 * scale,
                            "k={k} values={values:?} row {r}: {d} against {s}"
                        );
                    }
                    if !took[r] {
                        assert_eq!(d, s, "row {r} kept the direct solve");
                    }
                }
            }
        }
    }

    #[test]
    fn rows_weighted_below_the_unobserved_weight_or_too_long_keep_the_direct_solve() {
        let problem = Problem::new(64, &[1.0, 3.0]);
        let rows = problem.rows();
        // Confidence 1 against an unobserved weight of 2.
        let o = objective(1.0, 2.0);
        let negative = (0..N_ROWS).filter(|&r| rows.row(r).1.contains(&1.0));
        for r in negative {
            assert_eq!(weighted_items(rows.row(r).1, &o, 64), None, "row {r}");
        }
        // 40 items at 64 factors cost more through the identity than directly.
        assert_eq!(weighted_items(&[3.0; 40], &o, 64), None);
        assert_eq!(weighted_items(&[3.0; 4], &o, 64), Some(4));
        assert_eq!(weighted_items(&[2.0; 4], &o, 64), Some(0));
        // A penalty that grows with the row's length has no shared factor.
        let scaled = Objective {
            regularization_exponent: 0.5,
            ..o
        };
        assert!(problem.shared(&scaled).is_none());
    }

    #[test]
    fn the_identity_gives_the_same_bits_at_every_level() {
        let avx512 = avx512_or_skip("the_identity_gives_the_same_bits_at_every_level (AVX-512)")
            .and_then(|_| fused_avx512());
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        // Every item weighted; none (the batched products with B^-1); and rows of each kind side
        // by side.
        let mixed = mixed_rows();
        let cases: [(&[f32], f32, f64); 3] = [
            (&[1.0, 2.0, -1.0], 3.0, 0.5),
            (&[1.0], 1.0, 1.0),
            (&mixed, 1.0, 1.0),
        ];
        for k in [33, 64, 70] {
            for (values, alpha, w0) in cases {
                let problem = Problem::new(k, values);
                let objective = objective(alpha, w0);
                let shared = problem.shared(&objective).unwrap();
                let (generic, _) = problem.solve(generic_fused(), &objective, Some(&shared));
                for level in [fused(), avx512].into_iter().flatten() {
                    let (special, _) = problem.solve(level, &objective, Some(&shared));
                    assert_eq!(bits(&special), bits(&generic), "k={k} values={values:?}");
                }
            }
        }
    }

    #[test]
    fn rows_solved_in_blocks_give_the_bits_of_one_call() {
        // Every item weighted; and rows without weighted items (batched) beside rows with.
        for (values, alpha) in [(&[1.0f32, 2.0, 4.0][..], 2.0), (&mixed_rows()[..], 1.0)] {
            rows_in_blocks_are_one_call(values, objective(alpha, 1.0));
        }
    }

    fn rows_in_blocks_are_one_call(values: &[f32], objective: Objective) {
        let k = 64;
        let problem = Problem::new(k, values);
        let solve = |first: usize, end: usize| {
            let indptr: Vec<i64> = problem.indptr[first..=end]
                .iter()
                .map(|&p| p - problem.indptr[first])
                .collect();
            let (from, to) = (problem.indptr[first] as usize, problem.indptr[end] as usize);
            let rows = CsrView::new(
                &indptr,
                &problem.indices[from..to],
                &problem.data[from..to],
                N_COLS,
            )
            .unwrap();
            let mut x = vec![0.0; (end - first) * k];
            solve_rows(
                &rows,
                &mut x,
                &problem.y,
                k,
                &problem.gram,
                &objective,
                Solver::Cholesky,
                &Interrupt::new(),
            )
            .unwrap();
            x
        };
        let whole = solve(0, N_ROWS);
        for split in [1, 5, 12, 23] {
            let mut parts = solve(0, split);
            parts.extend(solve(split, N_ROWS));
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&parts), bits(&whole), "{values:?} split at {split}");
        }
    }
}
