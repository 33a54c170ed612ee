//! Top-K scoring: the best `n` items for each query vector by inner product.
//!
//! The items are packed in strips of [`STRIP`] items, factor-major, and the queries in groups of
//! [`MICRO`], factor-major too, so the micro-kernel reads both as contiguous streams. A strip
//! (`k x 16` values: 4 KB at 64 factors) stays in L1 while every group of a query block is scored
//! against it; the query block streams from L2, at a quarter of the bytes per FMA that streaming
//! the items would cost. The full query x item score matrix never exists. Each query keeps its
//! best candidates in a buffer that is compacted with `select_nth_unstable_by` whenever it
//! fills, so most items cost one comparison with a threshold. Order is by score, then by lower
//! item id, which makes results deterministic and equal to a stable descending argsort. Few
//! queries and many items: the items are split across threads too, and the per-range winners
//! merged.
//!
//! Most items need no score at all. The strips hold the items by decreasing norm, and no score
//! can exceed `|q| |y|` (Cauchy-Schwarz), so a query is done once that bound for the next strip
//! falls below its bar: later strips have smaller norms and the bar only rises. Done queries
//! leave the block's groups (which are repacked), so the kernel only runs for queries still
//! scanning. On gowalla's ALS factors a query with N = 10 is done after 6% (64 factors) to 14%
//! (128 factors) of the items. The bound allows for the rounding of the scores, so results are
//! exactly those of scoring every item. Ordering the items (norms, a sort, a permuted packing)
//! costs about as much as scoring a few hundred queries against every item, so calls with fewer
//! queries than [`NORM_ORDER_FROM`] scan the items in id order and score them all. Below
//! [`PACK_FROM`] queries even packing the strips costs more than it saves: the scores are then
//! taken from the item rows where they lie, with the same arithmetic.

use std::cmp::Ordering;

use rayon::prelude::*;

use crate::csr::CsrView;
use crate::error::{Error, Result};
use crate::parallel::Interrupt;
use crate::real::all_finite;
use crate::simd::{dispatch, Arith, Kernel};
use crate::Real;

/// Calls with at least this many queries order the items by norm and stop early (measured on
/// gowalla at 64 factors: about break-even at 256 queries, 1.4x faster at 512, 2x slower at 1).
const NORM_ORDER_FROM: usize = 256;
/// Calls with at least this many queries pack the items into strips; fewer read the item rows in
/// place ([`ScoreRows`], each block of rows transposed once for all the queries). Packing is a
/// copy of every item: on gowalla at 64 factors (fastest of 200 calls, 2 threads) 8 queries in
/// place took 1.1 ms, 15 in place 2.5 ms, 16 packed 2.9 ms.
pub(crate) const PACK_FROM: usize = 16;
/// Item rows scored together by [`ScoreRows`]: sixteen FMA chains, two vectors of eight lanes.
pub(crate) const ROWS: usize = 16;
/// Queries per parallel task (126: a whole number of groups, so only the last block pads one).
const QUERY_BLOCK: usize = 21 * MICRO;
/// Queries scored together against one strip (6 x 2 accumulator registers of 8 lanes: enough
/// independent FMA chains to cover the FMA latency at full throughput).
pub(crate) const MICRO: usize = 6;
/// Items per packed strip: the width of one micro-kernel pass.
pub(crate) const STRIP: usize = 16;
/// Scores of one group against one strip (`scores.0[m][j]`: query m, item j), aligned so that
/// the kernel's vector stores never straddle cache lines.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct StripScores<T>(pub(crate) [[T; STRIP]; MICRO]);

impl<T: Real> Default for StripScores<T> {
    fn default() -> Self {
        Self([[T::ZERO; STRIP]; MICRO])
    }
}

/// Items a query must never get back.
#[derive(Clone, Copy, Default)]
pub struct Exclusions<'a> {
    /// Row q lists the items query q already has (sorted column indices).
    pub per_query: Option<CsrView<'a>>,
    /// Items excluded for every query, as a mask over all items.
    pub global: Option<&'a [bool]>,
}

impl Exclusions<'_> {
    /// Whether `query` must not get `item` back.
    #[inline]
    fn excludes(&self, query: usize, item: i32) -> bool {
        self.global.is_some_and(|mask| mask[item as usize])
            || self
                .per_query
                .is_some_and(|liked| liked.row(query).0.binary_search(&item).is_ok())
    }
}

/// A scored candidate: (score, item id).
pub(crate) type Candidate<T> = (T, i32);

/// Higher score first, then lower id.
#[inline]
pub(crate) fn ranking<T: Real>(a: &Candidate<T>, b: &Candidate<T>) -> Ordering {
    b.0.partial_cmp(&a.0)
        .unwrap_or(Ordering::Equal)
        .then(a.1.cmp(&b.1))
}

/// Fills `ids` and `scores` (`n_queries x n`, row-major) with each query's best `n` items among
/// `candidates` (ascending item ids; all items when `None`), skipping `exclusions`. Rows with fewer
/// than `n` eligible items are padded with id -1 and score -inf.
#[allow(clippy::too_many_arguments)]
pub fn top_k<T: Real>(
    queries: &[T],
    items: &[T],
    k: usize,
    candidates: Option<&[i32]>,
    exclusions: &Exclusions<'_>,
    n: usize,
    ids: &mut [i32],
    scores: &mut [T],
    interrupt: &Interrupt,
) -> Result<()> {
    let n_items = check_factor_rows(items, k)?;
    if !all_finite(items) {
        return Err(Error::NonFinite(
            "the factor matrices hold a non-finite value".into(),
        ));
    }
    let n_queries = check_call(queries, k, n_items, exclusions, n, ids, scores)?;
    let candidate_ids: Vec<i32> = match candidates {
        Some(list) => {
            if let Some(&bad) = list.iter().find(|&&i| i < 0 || i as usize >= n_items) {
                return Err(Error::InvalidParameter(format!(
                    "item id {bad} is outside 0..{n_items}"
                )));
            }
            if list.windows(2).any(|w| w[0] >= w[1]) {
                return Err(Error::InvalidParameter(
                    "candidate item ids must be strictly increasing".into(),
                ));
            }
            list.to_vec()
        }
        None => (0..n_items as i32).collect(),
    };
    if n_queries == 0 {
        return Ok(());
    }
    if n_queries >= NORM_ORDER_FROM {
        let index = ItemIndex::from_ids(items, k, &candidate_ids);
        let bounds = NormBounds::new::<T>(queries, k, &index.norms);
        let layout = Layout::Packed {
            packed: &index.packed,
            bounds: Some(&bounds),
        };
        return rank(
            queries,
            k,
            &index.ordered_ids,
            layout,
            exclusions,
            n,
            ids,
            scores,
            interrupt,
        );
    }
    let packed;
    let layout = if n_queries >= PACK_FROM {
        packed = PackedStrips::new(items, k, &candidate_ids);
        Layout::Packed {
            packed: &packed,
            bounds: None,
        }
    } else {
        Layout::InPlace { items }
    };
    rank(
        queries,
        k,
        &candidate_ids,
        layout,
        exclusions,
        n,
        ids,
        scores,
        interrupt,
    )
}

/// The item factors prepared once for many calls: checked, ordered by decreasing norm and packed
/// in strips. Each call then costs only the scoring, and stops early by the norm bound whatever
/// the number of queries. It holds a copy of the factors: rebuild it when they change.
pub struct ItemIndex<T> {
    k: usize,
    n_items: usize,
    ordered_ids: Vec<i32>,
    norms: Vec<f64>,
    packed: PackedStrips<T>,
}

impl<T: Real> ItemIndex<T> {
    /// The index of `items` (`n_items x k`, row-major), which must be finite.
    pub fn new(items: &[T], k: usize) -> Result<Self> {
        let n_items = check_factor_rows(items, k)?;
        if !all_finite(items) {
            return Err(Error::NonFinite(
                "the item factors hold a non-finite value".into(),
            ));
        }
        let all: Vec<i32> = (0..n_items as i32).collect();
        Ok(Self::from_ids(items, k, &all))
    }

    fn from_ids(items: &[T], k: usize, ids: &[i32]) -> Self {
        let (ordered_ids, norms) = by_decreasing_norm(items, k, ids);
        let packed = PackedStrips::new(items, k, &ordered_ids);
        Self {
            k,
            n_items: items.len().checked_div(k).unwrap_or(0),
            ordered_ids,
            norms,
            packed,
        }
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn n_items(&self) -> usize {
        self.n_items
    }

    /// As [`top_k`] over every item of the index: the same ids and scores, bit for bit.
    #[allow(clippy::too_many_arguments)]
    pub fn top_k(
        &self,
        queries: &[T],
        exclusions: &Exclusions<'_>,
        n: usize,
        ids: &mut [i32],
        scores: &mut [T],
        interrupt: &Interrupt,
    ) -> Result<()> {
        let n_queries = check_call(queries, self.k, self.n_items, exclusions, n, ids, scores)?;
        if n_queries == 0 {
            return Ok(());
        }
        let bounds = NormBounds::new::<T>(queries, self.k, &self.norms);
        let layout = Layout::Packed {
            packed: &self.packed,
            bounds: Some(&bounds),
        };
        rank(
            queries,
            self.k,
            &self.ordered_ids,
            layout,
            exclusions,
            n,
            ids,
            scores,
            interrupt,
        )
    }
}

/// The number of `k`-long rows in `factors`.
fn check_factor_rows<T>(factors: &[T], k: usize) -> Result<usize> {
    if k == 0 && !factors.is_empty() {
        return Err(Error::ShapeMismatch(
            "factors must have at least one column".into(),
        ));
    }
    let rows = factors.len().checked_div(k).unwrap_or(0);
    if factors.len() != rows * k {
        return Err(Error::ShapeMismatch(format!(
            "factor arrays are not multiples of {k} columns"
        )));
    }
    Ok(rows)
}

/// Checks one call's queries, exclusions and outputs against `n_items` items of `k` factors;
/// the number of queries.
fn check_call<T: Real>(
    queries: &[T],
    k: usize,
    n_items: usize,
    exclusions: &Exclusions<'_>,
    n: usize,
    ids: &[i32],
    scores: &[T],
) -> Result<usize> {
    let n_queries = check_factor_rows(queries, k)?;
    if n == 0 {
        return Err(Error::InvalidParameter("N must be >= 1, got 0".into()));
    }
    if ids.len() != n_queries * n || scores.len() != n_queries * n {
        return Err(Error::ShapeMismatch(format!(
            "the outputs must hold {n_queries} x {n} entries"
        )));
    }
    if !all_finite(queries) {
        return Err(Error::NonFinite(
            "the factor matrices hold a non-finite value".into(),
        ));
    }
    check_exclusions(exclusions, n_queries, n_items)?;
    Ok(n_queries)
}

/// Where the scored items are read from.
#[derive(Clone, Copy)]
enum Layout<'a, T> {
    /// Rows of the item matrix where they lie, in the order of the ids ranked.
    InPlace { items: &'a [T] },
    /// Packed strips of the ids ranked, in that order; with norm bounds when the order is by
    /// decreasing norm.
    Packed {
        packed: &'a PackedStrips<T>,
        bounds: Option<&'a NormBounds>,
    },
}

/// The best `n` of `candidate_ids` per query, into `ids` and `scores` (checked by the caller).
#[allow(clippy::too_many_arguments)]
fn rank<T: Real>(
    queries: &[T],
    k: usize,
    candidate_ids: &[i32],
    layout: Layout<'_, T>,
    exclusions: &Exclusions<'_>,
    n: usize,
    ids: &mut [i32],
    scores: &mut [T],
    interrupt: &Interrupt,
) -> Result<()> {
    let n_queries = queries.len() / k;
    let n_strips = candidate_ids.len().div_ceil(STRIP);
    let n_blocks = n_queries.div_ceil(QUERY_BLOCK);
    // Enough work units for every thread even when there are few queries; but a range of strips
    // scanned apart from the others starts with no bar, so where the norm bound stops a scan
    // early, one scan in norm order does far less work than several in parallel.
    let wanted = 4 * rayon::current_num_threads();
    let bounded = matches!(layout, Layout::Packed { bounds: Some(_), .. });
    let ranges = if n_blocks >= wanted || bounded {
        1
    } else {
        wanted.div_ceil(n_blocks).clamp(1, n_strips.max(1))
    };
    let strips_per_range = n_strips.div_ceil(ranges).max(1);

    let partial: Vec<Vec<Vec<Candidate<T>>>> = (0..n_blocks * ranges)
        .into_par_iter()
        .map(|unit| {
            if interrupt.is_requested() {
                return Vec::new();
            }
            let (block, range) = (unit / ranges, unit % ranges);
            let first_query = block * QUERY_BLOCK;
            let last_query = (first_query + QUERY_BLOCK).min(n_queries);
            let first_strip = (range * strips_per_range).min(n_strips);
            let last_strip = ((range + 1) * strips_per_range).min(n_strips);
            let queries = &queries[first_query * k..last_query * k];
            let strips = first_strip..last_strip;
            match layout {
                Layout::Packed { packed, bounds } => dispatch(ScoreBlock {
                    queries,
                    first_query,
                    packed,
                    candidate_ids,
                    bounds,
                    strips,
                    k,
                    n,
                    exclusions,
                }),
                Layout::InPlace { items } => dispatch(ScoreRows {
                    queries,
                    first_query,
                    items,
                    candidate_ids: &candidate_ids[(strips.start * STRIP).min(candidate_ids.len())
                        ..(strips.end * STRIP).min(candidate_ids.len())],
                    k,
                    n,
                    exclusions,
                }),
            }
        })
        .collect();
    interrupt.check()?;

    ids.par_chunks_mut(QUERY_BLOCK * n)
        .zip(scores.par_chunks_mut(QUERY_BLOCK * n))
        .enumerate()
        .for_each(|(block, (ids, scores))| {
            let units = &partial[block * ranges..(block + 1) * ranges];
            for (q, (ids, scores)) in ids.chunks_mut(n).zip(scores.chunks_mut(n)).enumerate() {
                let mut best: Vec<Candidate<T>> = units
                    .iter()
                    .flat_map(|unit| unit[q].iter().copied())
                    .collect();
                best.sort_unstable_by(ranking);
                best.truncate(n);
                for (slot, (id, score)) in ids.iter_mut().zip(scores.iter_mut()).enumerate() {
                    (*id, *score) = best
                        .get(slot)
                        .map_or((-1, T::NEG_INFINITY), |&(s, i)| (i, s));
                }
            }
        });
    Ok(())
}

fn check_exclusions(exclusions: &Exclusions<'_>, n_queries: usize, n_items: usize) -> Result<()> {
    if let Some(liked) = &exclusions.per_query {
        if liked.n_rows() != n_queries || liked.n_cols() != n_items {
            return Err(Error::ShapeMismatch(format!(
                "the items to exclude have shape ({}, {}), expected ({n_queries}, {n_items})",
                liked.n_rows(),
                liked.n_cols()
            )));
        }
        if !liked.is_canonical() {
            return Err(Error::InvalidCsr(
                "the items to exclude must be sorted per row".into(),
            ));
        }
    }
    if let Some(mask) = exclusions.global {
        if mask.len() != n_items {
            return Err(Error::ShapeMismatch(format!(
                "the item filter has {} entries, expected {n_items}",
                mask.len()
            )));
        }
    }
    Ok(())
}

/// Euclidean norm of a factor row, in `f64`.
fn norm<T: Real>(row: &[T]) -> f64 {
    // Eight partial sums: independent chains that vectorise (a single running sum would wait on
    // the add latency at every element, which made this cost more than one query's scores).
    let mut lanes = [0.0f64; 8];
    for chunk in row.chunks(lanes.len()) {
        for (lane, v) in lanes.iter_mut().zip(chunk) {
            *lane += v.to_f64() * v.to_f64();
        }
    }
    lanes.iter().sum::<f64>().sqrt()
}

/// `candidate_ids` by decreasing norm (ties by id), and their norms in that order.
fn by_decreasing_norm<T: Real>(
    items: &[T],
    k: usize,
    candidate_ids: &[i32],
) -> (Vec<i32>, Vec<f64>) {
    let mut ordered: Vec<(f64, i32)> = candidate_ids
        .par_iter()
        .map(|&id| (norm(&items[id as usize * k..(id as usize + 1) * k]), id))
        .collect();
    ordered.par_sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    ordered.into_iter().map(|(norm, id)| (id, norm)).unzip()
}

/// Upper bounds on the scores of a query against the strips from some strip on: `|q|` times
/// the strip's largest item norm, widened by the most that rounding can add to a computed
/// score (k FMAs: relative error below `k u` of `sum |q_d y_d| <= |q| |y|`, plus the rounding of
/// the norms themselves and of any underflow).
struct NormBounds {
    queries: Vec<f64>,
    strips: Vec<f64>,
    relative: f64,
    absolute: f64,
}

impl NormBounds {
    /// `item_norms` in packing order (decreasing), so each strip's first norm is its largest.
    fn new<T: Real>(queries: &[T], k: usize, item_norms: &[f64]) -> Self {
        let terms = (k + 4) as f64;
        Self {
            queries: queries.par_chunks(k).map(norm).collect(),
            strips: item_norms.iter().step_by(STRIP).copied().collect(),
            relative: 2.0 * terms * (T::UNIT_ROUNDOFF + f64::EPSILON),
            absolute: terms * f64::from(f32::MIN_POSITIVE),
        }
    }

    /// Whether no item of strip `strip` or later can reach `bar` for query `query`. A NaN bound
    /// (a zero norm times an infinite one) never ends a scan.
    #[inline]
    fn exhausted<T: Real>(&self, query: usize, strip: usize, bar: T) -> bool {
        let bound = self.queries[query] * self.strips[strip];
        bound * (1.0 + self.relative) + self.absolute < bar.to_f64()
    }
}

/// One factor of a strip's items, aligned to 32 bytes so that no 32-byte load of the
/// micro-kernel straddles two cache lines.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct Column<T>([T; STRIP]);

/// Candidate item rows packed strip by strip, factor-major: strip s holds `k x STRIP` values
/// with item `candidate_ids[s * STRIP + j]` in column j (zero beyond the last candidate).
pub(crate) struct PackedStrips<T> {
    columns: Vec<Column<T>>,
    k: usize,
}

impl<T: Real> PackedStrips<T> {
    pub(crate) fn new(items: &[T], k: usize, candidate_ids: &[i32]) -> Self {
        // STRIP values of 4 or 8 bytes fill whole 32-byte blocks: the columns are contiguous.
        assert_eq!(
            std::mem::size_of::<Column<T>>(),
            STRIP * std::mem::size_of::<T>()
        );
        let n_strips = candidate_ids.len().div_ceil(STRIP);
        let mut columns = vec![Column([T::ZERO; STRIP]); n_strips * k];
        columns
            .par_chunks_mut(k.max(1))
            .zip(candidate_ids.par_chunks(STRIP))
            .for_each(|(strip, ids)| {
                for (j, &id) in ids.iter().enumerate() {
                    let row = &items[id as usize * k..(id as usize + 1) * k];
                    for (column, &v) in strip.iter_mut().zip(row) {
                        column.0[j] = v;
                    }
                }
            });
        Self { columns, k }
    }

    /// Strip `s`: `k x STRIP` values, factor-major.
    pub(crate) fn strip(&self, s: usize) -> &[T] {
        let columns = &self.columns[s * self.k..(s + 1) * self.k];
        // SAFETY: `Column<T>` is `repr(C)` around `[T; STRIP]` with no padding (asserted in
        // `new`), so `columns` is `columns.len() * STRIP` initialised values of `T`.
        unsafe { std::slice::from_raw_parts(columns.as_ptr().cast::<T>(), columns.len() * STRIP) }
    }
}

/// The query rows (each `k` long) in groups of `MICRO`, factor-major (`group[d * MICRO + m]`),
/// the last group zero-padded.
pub(crate) fn pack_groups<'a, T: Real>(
    rows: impl ExactSizeIterator<Item = &'a [T]>,
    k: usize,
) -> Vec<T> {
    let mut groups = vec![T::ZERO; rows.len().div_ceil(MICRO) * MICRO * k];
    for (q, row) in rows.enumerate() {
        let group = &mut groups[(q / MICRO) * MICRO * k..];
        for (d, &v) in row.iter().enumerate() {
            group[d * MICRO + q % MICRO] = v;
        }
    }
    groups
}

struct ScoreBlock<'a, T> {
    queries: &'a [T],
    first_query: usize,
    packed: &'a PackedStrips<T>,
    candidate_ids: &'a [i32],
    /// Present when the strips hold the items by decreasing norm.
    bounds: Option<&'a NormBounds>,
    strips: std::ops::Range<usize>,
    k: usize,
    n: usize,
    exclusions: &'a Exclusions<'a>,
}

impl<T: Real> ScoreBlock<'_, T> {
    /// The block's queries `members` (indices into the block), packed for the kernel.
    fn pack(&self, members: &[usize]) -> Vec<T> {
        let k = self.k;
        pack_groups(
            members.iter().map(|&q| &self.queries[q * k..(q + 1) * k]),
            k,
        )
    }
}

impl<T: Real> Kernel for ScoreBlock<'_, T> {
    /// Per query of the block: its best `n` candidates in these strips, best first.
    type Output = Vec<Vec<Candidate<T>>>;

    /// Strips outside, query groups inside (see the module documentation).
    #[inline(always)]
    fn run<A: Arith>(self) -> Self::Output {
        let k = self.k;
        let n_queries = self.queries.len() / k;
        let mut best: Vec<Best<T>> = (0..n_queries).map(|_| Best::new(self.n)).collect();
        // The queries still scanning, in kernel order.
        let mut live: Vec<usize> = (0..n_queries).collect();
        let mut groups = self.pack(&live);
        let mut scores = StripScores::default();
        let mut bars = [T::NEG_INFINITY; MICRO];
        for s in self.strips.clone() {
            if let Some(bounds) = self.bounds {
                let done =
                    |&q: &usize| bounds.exhausted(self.first_query + q, s, best[q].threshold);
                let n_done = live.iter().filter(|q| done(q)).count();
                if n_done == live.len() {
                    break;
                }
                // Repacking costs about one query's scores against one strip: worth it once a
                // whole group's worth of queries is done.
                if n_done >= MICRO {
                    live.retain(|q| !done(q));
                    groups = self.pack(&live);
                }
            }
            let strip = self.packed.strip(s);
            let ids = &self.candidate_ids[s * STRIP..self.candidate_ids.len().min((s + 1) * STRIP)];
            for (group, members) in groups.chunks_exact(MICRO * k).zip(live.chunks(MICRO)) {
                for (bar, &q) in bars.iter_mut().zip(members) {
                    *bar = best[q].threshold;
                }
                // Most strips hold nothing above any bar: the kernel's mask skips them.
                let above = A::score_strip(group, strip, k, &bars, &mut scores);
                for (m, &q) in members.iter().enumerate() {
                    if above & (1 << m) == 0 {
                        continue;
                    }
                    let buffer = &mut best[q];
                    let query = self.first_query + q;
                    for (&score, &id) in scores.0[m].iter().zip(ids) {
                        if buffer.admits(score, id) && !self.exclusions.excludes(query, id) {
                            buffer.push((score, id));
                        }
                    }
                }
            }
        }
        best.into_iter().map(Best::finish).collect()
    }
}

/// A few queries against the candidate item rows where they lie, no packing.
struct ScoreRows<'a, T> {
    queries: &'a [T],
    first_query: usize,
    items: &'a [T],
    candidate_ids: &'a [i32],
    k: usize,
    n: usize,
    exclusions: &'a Exclusions<'a>,
}

impl<T: Real> Kernel for ScoreRows<'_, T> {
    /// Per query: its best `n` among these candidates, best first.
    type Output = Vec<Vec<Candidate<T>>>;

    #[inline(always)]
    fn run<A: Arith>(self) -> Self::Output {
        let k = self.k;
        let n_queries = self.queries.len() / k;
        let row = |id: i32| &self.items[id as usize * k..(id as usize + 1) * k];
        let mut best: Vec<Best<T>> = (0..n_queries).map(|_| Best::new(self.n)).collect();
        let mut admit = |q: usize, score: T, id: i32| {
            let buffer = &mut best[q];
            if buffer.admits(score, id) && !self.exclusions.excludes(self.first_query + q, id) {
                buffer.push((score, id));
            }
        };
        let mut scores = vec![[T::ZERO; ROWS]; n_queries];
        let mut chunks = self.candidate_ids.chunks_exact(ROWS);
        for ids in &mut chunks {
            let rows: [&[T]; ROWS] = std::array::from_fn(|j| row(ids[j]));
            A::score_rows(self.queries, &rows, &mut scores);
            for (q, scores) in scores.iter().enumerate() {
                for (&score, &id) in scores.iter().zip(ids) {
                    admit(q, score, id);
                }
            }
        }
        for &id in chunks.remainder() {
            for (q, query) in self.queries.chunks_exact(k).enumerate() {
                admit(q, score_one::<T, A>(query, row(id)), id);
            }
        }
        best.into_iter().map(Best::finish).collect()
    }
}

/// `q . y` with exactly the arithmetic of [`score_strip_generic`] (one FMA per factor, in order), so a
/// score computed alone equals the same score computed in a strip, bit for bit.
#[inline(always)]
pub(crate) fn score_one<T: Real, A: Arith>(q: &[T], y: &[T]) -> T {
    q.iter()
        .zip(y)
        .fold(T::ZERO, |acc, (&a, &b)| A::fma(a, b, acc))
}

/// `query . row` for each query (`k` long each, one per entry of `scores`) and each row, one
/// FMA per factor in order (the arithmetic of [`score_one`]): the portable `Arith::score_rows`.
#[inline(always)]
pub(crate) fn score_rows_generic<T: Real, A: Arith>(
    queries: &[T],
    rows: &[&[T]; ROWS],
    scores: &mut [[T; ROWS]],
) {
    let k = queries.len() / scores.len().max(1);
    for (query, scores) in queries.chunks_exact(k.max(1)).zip(scores.iter_mut()) {
        *scores = [T::ZERO; ROWS];
        for (d, &q) in query.iter().enumerate() {
            for (score, row) in scores.iter_mut().zip(rows) {
                *score = A::fma(q, row[d], *score);
            }
        }
    }
}

/// `scores.0[m][j] = query m of group . item j of strip`, with one FMA per factor in order (the
/// arithmetic of [`score_one`]): the portable `Arith::score_strip`. Returns a mask with bit m set
/// when some score of query m (padding included) is at or above `bars[m]`.
#[inline(always)]
pub(crate) fn score_strip_generic<T: Real, A: Arith>(
    group: &[T],
    strip: &[T],
    k: usize,
    bars: &[T; MICRO],
    scores: &mut StripScores<T>,
) -> u32 {
    let mut acc = [[T::ZERO; STRIP]; MICRO];
    for (column, q) in strip
        .chunks_exact(STRIP)
        .zip(group.chunks_exact(MICRO))
        .take(k)
    {
        for (acc, &q) in acc.iter_mut().zip(q) {
            for (a, &y) in acc.iter_mut().zip(column) {
                *a = A::fma(q, y, *a);
            }
        }
    }
    let mut above = 0;
    for (m, acc) in acc.iter().enumerate() {
        above |= (acc.iter().any(|&s| s >= bars[m]) as u32) << m;
    }
    scores.0 = acc;
    above
}

/// Bit masks over a strip of the scores above `x` and equal to `x` (bit j: item j).
#[inline(always)]
pub(crate) fn compare_strip_generic<T: Real>(scores: &[T; STRIP], x: T) -> (u32, u32) {
    let (mut greater, mut equal) = (0u32, 0u32);
    for (j, &s) in scores.iter().enumerate() {
        greater |= ((s > x) as u32) << j;
        equal |= ((s == x) as u32) << j;
    }
    (greater, equal)
}

/// The best `n` candidates seen so far, kept loosely: the buffer grows to twice `n` and is then
/// cut back to the best `n`, whose worst becomes the bar for later candidates (its score, and
/// its id for ties: items do not arrive in id order).
struct Best<T> {
    n: usize,
    threshold: T,
    threshold_id: i32,
    buffer: Vec<Candidate<T>>,
}

impl<T: Real> Best<T> {
    fn new(n: usize) -> Self {
        let capacity = (2 * n).max(n + 32);
        Self {
            n,
            threshold: T::NEG_INFINITY,
            threshold_id: i32::MAX,
            buffer: Vec::with_capacity(capacity),
        }
    }

    /// Whether `(score, id)` ranks before the bar.
    #[inline]
    fn admits(&self, score: T, id: i32) -> bool {
        score > self.threshold || (score == self.threshold && id < self.threshold_id)
    }

    #[inline]
    fn push(&mut self, candidate: Candidate<T>) {
        self.buffer.push(candidate);
        if self.buffer.len() == self.buffer.capacity() {
            self.compact();
        }
    }

    fn compact(&mut self) {
        let n = self.n;
        self.buffer.select_nth_unstable_by(n - 1, ranking);
        self.buffer.truncate(n);
        (self.threshold, self.threshold_id) = self.buffer[n - 1];
    }

    fn finish(mut self) -> Vec<Candidate<T>> {
        self.buffer.sort_unstable_by(ranking);
        self.buffer.truncate(self.n);
        self.buffer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        // Coarse values so that ties really happen.
        (0..n)
            .map(|i| (((i + 1) * (seed * 2 + 7919)) % 7) as f32 - 3.0)
            .collect()
    }

    /// Full sort of every eligible item, the obvious way.
    fn naive(
        q: &[f32],
        items: &[f32],
        k: usize,
        eligible: impl Fn(i32) -> bool,
        n: usize,
    ) -> Vec<(f32, i32)> {
        let mut all: Vec<(f32, i32)> = items
            .chunks_exact(k)
            .enumerate()
            .filter(|&(i, _)| eligible(i as i32))
            .map(|(i, y)| (q.iter().zip(y).map(|(a, b)| a * b).sum(), i as i32))
            .collect();
        all.sort_by(ranking);
        all.truncate(n);
        all
    }

    #[test]
    fn matches_a_full_sort_with_ties_and_exclusions() {
        let k = 5;
        for (n_queries, n_items, n) in [
            (1, 1, 1),
            (3, 300, 10),
            (70, 1000, 7),
            (9, 40, 50),
            (130, 257, 1),
        ] {
            let queries = values(n_queries * k, 1);
            let items = values(n_items * k, 2);
            // Query q already has items q, q+3, q+6 (where they exist); every 5th item is filtered.
            let mut indptr = vec![0i64];
            let mut liked = Vec::new();
            for q in 0..n_queries {
                liked.extend(
                    (0..3)
                        .map(|j| (q + 3 * j) as i32)
                        .filter(|&i| (i as usize) < n_items),
                );
                indptr.push(liked.len() as i64);
            }
            let data = vec![1.0f32; liked.len()];
            let per_query = CsrView::new(&indptr, &liked, &data, n_items).unwrap();
            let mask: Vec<bool> = (0..n_items).map(|i| i % 5 == 0).collect();
            let exclusions = Exclusions {
                per_query: Some(per_query),
                global: Some(&mask),
            };
            let mut ids = vec![0; n_queries * n];
            let mut scores = vec![0.0; n_queries * n];
            top_k(
                &queries,
                &items,
                k,
                None,
                &exclusions,
                n,
                &mut ids,
                &mut scores,
                &Interrupt::new(),
            )
            .unwrap();
            for q in 0..n_queries {
                let expected = naive(
                    &queries[q * k..(q + 1) * k],
                    &items,
                    k,
                    |i| {
                        i % 5 != 0
                            && !liked[indptr[q] as usize..indptr[q + 1] as usize].contains(&i)
                    },
                    n,
                );
                for slot in 0..n {
                    let got = (scores[q * n + slot], ids[q * n + slot]);
                    let want = expected
                        .get(slot)
                        .copied()
                        .unwrap_or((f32::NEG_INFINITY, -1));
                    assert_eq!(
                        got, want,
                        "query {q} slot {slot} ({n_queries} x {n_items}, n={n})"
                    );
                }
            }
        }
    }

    /// Integer factors (exact scores in any order, so ties are real) whose norms span a factor of
    /// ten, more queries than one block: queries stop at different strips and are repacked.
    #[test]
    fn stopping_early_by_norm_matches_a_full_sort() {
        let k = 7;
        let (n_queries, n_items) = (NORM_ORDER_FROM + 50, 3000);
        let queries = values(n_queries * k, 8);
        let items: Vec<f32> = values(n_items * k, 9)
            .chunks_exact(k)
            .enumerate()
            .flat_map(|(i, row)| {
                let scale = (1 + (i * 7) % 10) as f32;
                row.iter().map(move |v| v * scale)
            })
            .collect();
        for n in [1, 10, 40] {
            let mut ids = vec![0; n_queries * n];
            let mut scores = vec![0.0; n_queries * n];
            let none = Exclusions::default();
            top_k(
                &queries,
                &items,
                k,
                None,
                &none,
                n,
                &mut ids,
                &mut scores,
                &Interrupt::new(),
            )
            .unwrap();
            for q in 0..n_queries {
                let expected = naive(&queries[q * k..(q + 1) * k], &items, k, |_| true, n);
                let got: Vec<(f32, i32)> = (0..n)
                    .map(|s| (scores[q * n + s], ids[q * n + s]))
                    .collect();
                assert_eq!(got, expected, "query {q}, n={n}");
            }
        }
    }

    /// The best item ties the others' score but has the lowest id and the smallest norm, so it
    /// comes in the last strip, whose bound equals the bar: that must not end the scan, and the
    /// tie with the bar must let the item in.
    #[test]
    fn a_tie_with_the_bar_arriving_late_wins_by_lower_id() {
        let k = 2;
        // Items 0..16 are (1, 0): score 1, norm 1, the last strip. Items 16..2016 are (1, i):
        // score 1 too, larger norms, so they come first and set the bar to 1 (in each of the
        // item ranges that threads split the queries' work into).
        let items: Vec<f32> = (0..2016)
            .flat_map(|i| [1.0, if i < STRIP { 0.0 } else { i as f32 }])
            .collect();
        // Enough copies of the query (1, 0) for the items to be ordered by norm.
        let n_queries = NORM_ORDER_FROM;
        let queries: Vec<f32> = (0..n_queries).flat_map(|_| [1.0, 0.0]).collect();
        let mut ids = vec![0; n_queries];
        let mut scores = vec![0.0f32; n_queries];
        let none = Exclusions::default();
        top_k(
            &queries,
            &items,
            k,
            None,
            &none,
            1,
            &mut ids,
            &mut scores,
            &Interrupt::new(),
        )
        .unwrap();
        assert!(ids
            .iter()
            .zip(&scores)
            .all(|(&id, &score)| (id, score) == (0, 1.0)));
    }

    /// A query alone, or a few together (item rows read in place), get bit for bit the scores
    /// and ranking they get in a batch (items packed in strips), with factor counts around the
    /// kernels' block of 8.
    #[test]
    fn a_query_alone_ranks_as_in_a_batch() {
        let noise = |i: usize| ((i * 2654435761) % 10007) as f32 / 1000.0 - 5.0;
        for k in [3, 8, 13, 64] {
            let n_queries = PACK_FROM + 2;
            let queries: Vec<f32> = (0..n_queries * k).map(|i| noise(i + 7)).collect();
            let items: Vec<f32> = (0..777 * k).map(noise).collect();
            let none = Exclusions::default();
            let n = 20;
            let mut ids = vec![0; n_queries * n];
            let mut scores = vec![0.0f32; n_queries * n];
            top_k(
                &queries,
                &items,
                k,
                None,
                &none,
                n,
                &mut ids,
                &mut scores,
                &Interrupt::new(),
            )
            .unwrap();
            // Each query alone, and the first PACK_FROM - 1 together: rows read in place.
            let bits = |v: &[f32]| v.iter().map(|s| s.to_bits()).collect::<Vec<_>>();
            for (first, count) in (0..n_queries).map(|q| (q, 1)).chain([(0, PACK_FROM - 1)]) {
                let mut few_ids = vec![0; count * n];
                let mut few_scores = vec![0.0f32; count * n];
                let few = &queries[first * k..(first + count) * k];
                top_k(
                    few,
                    &items,
                    k,
                    None,
                    &none,
                    n,
                    &mut few_ids,
                    &mut few_scores,
                    &Interrupt::new(),
                )
                .unwrap();
                let batch = first * n..(first + count) * n;
                assert_eq!(few_ids, ids[batch.clone()], "k={k} queries {first}+{count}");
                assert_eq!(bits(&few_scores), bits(&scores[batch]));
            }
        }
    }

    #[test]
    fn candidates_restrict_the_ranking() {
        let k = 3;
        let queries = values(2 * k, 3);
        let items = values(50 * k, 4);
        let candidates = [1, 4, 9, 30, 49];
        let mut ids = vec![0; 2 * 4];
        let mut scores = vec![0.0; 2 * 4];
        top_k(
            &queries,
            &items,
            k,
            Some(&candidates),
            &Exclusions::default(),
            4,
            &mut ids,
            &mut scores,
            &Interrupt::new(),
        )
        .unwrap();
        for q in 0..2 {
            let expected = naive(
                &queries[q * k..(q + 1) * k],
                &items,
                k,
                |i| candidates.contains(&i),
                4,
            );
            let got: Vec<(f32, i32)> = (0..4)
                .map(|s| (scores[q * 4 + s], ids[q * 4 + s]))
                .collect();
            assert_eq!(got, expected);
        }
    }

    #[test]
    fn same_result_for_any_thread_count() {
        let k = 8;
        let queries = values(3 * k, 5);
        let items = values(5000 * k, 6);
        let run = |threads| {
            let mut ids = vec![0; 3 * 20];
            let mut scores = vec![0.0f32; 3 * 20];
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    top_k(
                        &queries,
                        &items,
                        k,
                        None,
                        &Exclusions::default(),
                        20,
                        &mut ids,
                        &mut scores,
                        &Interrupt::new(),
                    )
                    .unwrap()
                });
            (ids, scores)
        };
        assert_eq!(run(1), run(4));
    }

    #[test]
    fn rejects_bad_arguments() {
        let items = [1.0f32, 2.0];
        let mut ids = [0; 1];
        let mut scores = [0.0f32; 1];
        let none = Exclusions::default();
        assert!(top_k(
            &[1.0],
            &items,
            1,
            None,
            &none,
            0,
            &mut ids,
            &mut scores,
            &Interrupt::new()
        )
        .is_err());
        assert!(top_k(
            &[1.0],
            &items,
            1,
            Some(&[2]),
            &none,
            1,
            &mut ids,
            &mut scores,
            &Interrupt::new()
        )
        .is_err());
        assert!(top_k(
            &[1.0],
            &items,
            1,
            Some(&[1, 0]),
            &none,
            1,
            &mut ids,
            &mut scores,
            &Interrupt::new()
        )
        .is_err());
        assert!(top_k(
            &[f32::NAN],
            &items,
            1,
            None,
            &none,
            1,
            &mut ids,
            &mut scores,
            &Interrupt::new()
        )
        .is_err());
        let mask = [true];
        let wrong = Exclusions {
            global: Some(&mask),
            ..Exclusions::default()
        };
        assert!(top_k(
            &[1.0],
            &items,
            1,
            None,
            &wrong,
            1,
            &mut ids,
            &mut scores,
            &Interrupt::new()
        )
        .is_err());
    }

    #[test]
    fn prepared_index_ranks_as_a_call_that_scores_every_item() {
        let (k, n_items, n) = (12, 700, 9);
        let items = values(n_items * k, 3);
        let index = ItemIndex::new(&items, k).unwrap();
        assert_eq!((index.k(), index.n_items()), (k, n_items));
        let stop = Interrupt::new();
        // Below and above both the packing and the norm-order thresholds.
        for n_queries in [1, 5, PACK_FROM + 3, NORM_ORDER_FROM + 40] {
            let queries = values(n_queries * k, n_queries);
            let indptr: Vec<i64> = (0..=n_queries as i64).map(|q| 2 * q).collect();
            let liked_ids: Vec<i32> = (0..n_queries as i32)
                .flat_map(|q| [q % 50, 100 + q % 50])
                .collect();
            let ones = vec![1.0f32; liked_ids.len()];
            let liked = CsrView::new(&indptr, &liked_ids, &ones, n_items).unwrap();
            let mask: Vec<bool> = (0..n_items).map(|i| i % 13 == 0).collect();
            let exclusions = Exclusions {
                per_query: Some(liked),
                global: Some(&mask),
            };
            let mut expected = (vec![0i32; n_queries * n], vec![0f32; n_queries * n]);
            top_k(
                &queries,
                &items,
                k,
                None,
                &exclusions,
                n,
                &mut expected.0,
                &mut expected.1,
                &stop,
            )
            .unwrap();
            let mut got = (vec![0i32; n_queries * n], vec![0f32; n_queries * n]);
            index
                .top_k(&queries, &exclusions, n, &mut got.0, &mut got.1, &stop)
                .unwrap();
            assert_eq!(got, expected, "{n_queries} queries");
            let first = naive(&queries[..k], &items, k, |i| !exclusions.excludes(0, i), n);
            let ids: Vec<i32> = first.iter().map(|c| c.1).collect();
            assert_eq!(&got.0[..n], &ids[..]);
        }
    }

    #[test]
    fn prepared_index_refuses_non_finite_factors() {
        let mut items = values(40, 1);
        items[17] = f32::NAN;
        assert!(matches!(
            ItemIndex::new(&items, 4),
            Err(Error::NonFinite(_))
        ));
    }
}
