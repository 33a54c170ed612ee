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
//! scanning (benches/RESULTS.md records how few items that leaves on real factors). The bound
//! allows for the rounding of the scores, so results are exactly those of scoring every item.
//! Ordering the items (norms, a sort, a permuted packing) costs about as much as scoring a few
//! hundred queries against every item, so calls with fewer queries than [`NORM_ORDER_FROM`] scan
//! the items in id order and score them all, unless the items were prepared once for many calls
//! ([`ItemIndex`]). Below
//! [`PACK_FROM`] queries even packing the strips costs more than it saves: the scores are then
//! taken from the item rows where they lie, with the same arithmetic.

use rayon::prelude::*;

use crate::check::{all_finite, factor_rows};
use crate::csr::CsrView;
use crate::error::{Error, Result};
use crate::parallel::Interrupt;
use crate::simd::{dispatch, Arith, Kernel};
use crate::Real;

use super::best::{ranking, Best, Candidate};
use super::bounds::{by_decreasing_norm, NormBounds};
use super::layout::{pack_groups, PackedStrips, StripScores, MICRO, ROWS, STRIP};
use super::rows::{score_rows, MAX_QUERIES};
use super::strip::{score_one, score_strip};

/// Calls with at least this many queries order the items by norm and stop early: about where
/// the ordering pays for itself (the measurement is in benches/RESULTS.md).
const NORM_ORDER_FROM: usize = 256;
/// Calls with at least this many queries pack the items into strips; fewer read the item rows in
/// place ([`ScoreRows`], each block of rows transposed once for all the queries). Packing is a
/// copy of every item, which costs more than it saves below this (see benches/RESULTS.md).
pub(crate) const PACK_FROM: usize = MAX_QUERIES;
/// Queries per parallel task (126: a whole number of groups, so only the last block pads one).
const QUERY_BLOCK: usize = 21 * MICRO;
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
    let n_items = factor_rows(items, k)?;
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
        let n_items = factor_rows(items, k)?;
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
    let n_queries = factor_rows(queries, k)?;
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
    let bounded = matches!(
        layout,
        Layout::Packed {
            bounds: Some(_),
            ..
        }
    );
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
    fn run<A: Arith>(self, arith: A) -> Self::Output {
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
                let above = score_strip(arith, group, strip, k, &bars, &mut scores);
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
    fn run<A: Arith>(self, arith: A) -> Self::Output {
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
            score_rows(arith, self.queries, &rows, &mut scores);
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
