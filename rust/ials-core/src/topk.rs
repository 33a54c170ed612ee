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

use std::cmp::Ordering;

use rayon::prelude::*;

use crate::csr::CsrView;
use crate::error::{Error, Result};
use crate::simd::{dispatch, Arith, Kernel};
use crate::Real;

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
) -> Result<()> {
    if k == 0 && (!queries.is_empty() || !items.is_empty()) {
        return Err(Error::ShapeMismatch(
            "factors must have at least one column".into(),
        ));
    }
    let n_queries = queries.len().checked_div(k).unwrap_or(0);
    let n_items = items.len().checked_div(k).unwrap_or(0);
    if queries.len() != n_queries * k || items.len() != n_items * k {
        return Err(Error::ShapeMismatch(format!(
            "factor arrays are not multiples of {k} columns"
        )));
    }
    if n == 0 {
        return Err(Error::InvalidParameter("N must be >= 1, got 0".into()));
    }
    if ids.len() != n_queries * n || scores.len() != n_queries * n {
        return Err(Error::ShapeMismatch(format!(
            "the outputs must hold {n_queries} x {n} entries"
        )));
    }
    if queries.iter().chain(items).any(|v| !v.is_finite()) {
        return Err(Error::NonFinite(
            "the factor matrices hold a non-finite value".into(),
        ));
    }
    check_exclusions(exclusions, n_queries, n_items)?;
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
    let packed = PackedStrips::new(items, k, &candidate_ids);
    let n_strips = candidate_ids.len().div_ceil(STRIP);
    let n_blocks = n_queries.div_ceil(QUERY_BLOCK);
    // Enough work units for every thread even when there are few queries.
    let wanted = 4 * rayon::current_num_threads();
    let ranges = if n_blocks >= wanted {
        1
    } else {
        wanted.div_ceil(n_blocks).clamp(1, n_strips.max(1))
    };
    let strips_per_range = n_strips.div_ceil(ranges).max(1);

    let partial: Vec<Vec<Vec<Candidate<T>>>> = (0..n_blocks * ranges)
        .into_par_iter()
        .map(|unit| {
            let (block, range) = (unit / ranges, unit % ranges);
            let first_query = block * QUERY_BLOCK;
            let last_query = (first_query + QUERY_BLOCK).min(n_queries);
            let first_strip = (range * strips_per_range).min(n_strips);
            let last_strip = ((range + 1) * strips_per_range).min(n_strips);
            dispatch(ScoreBlock {
                queries: &queries[first_query * k..last_query * k],
                first_query,
                packed: &packed,
                candidate_ids: &candidate_ids,
                strips: first_strip..last_strip,
                k,
                n,
                exclusions,
            })
        })
        .collect();

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

/// The query rows in groups of `MICRO`, factor-major (`group[d * MICRO + m]`), the last group
/// zero-padded.
pub(crate) fn pack_groups<T: Real>(queries: &[T], k: usize) -> Vec<T> {
    let n = queries.len().checked_div(k).unwrap_or(0);
    let mut groups = vec![T::ZERO; n.div_ceil(MICRO) * MICRO * k];
    for (q, row) in queries.chunks_exact(k.max(1)).enumerate() {
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
    strips: std::ops::Range<usize>,
    k: usize,
    n: usize,
    exclusions: &'a Exclusions<'a>,
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
        let groups = pack_groups(self.queries, k);
        let mut scores = StripScores::default();
        let mut bars = [T::NEG_INFINITY; MICRO];
        for s in self.strips.clone() {
            let strip = self.packed.strip(s);
            let ids = &self.candidate_ids[s * STRIP..self.candidate_ids.len().min((s + 1) * STRIP)];
            for (g, group) in groups.chunks_exact(MICRO * k).enumerate() {
                let members = MICRO.min(n_queries - g * MICRO);
                for (bar, buffer) in bars.iter_mut().zip(&best[g * MICRO..g * MICRO + members]) {
                    *bar = buffer.threshold;
                }
                // Most strips hold nothing above any bar: the kernel's mask skips them.
                let above = A::score_strip(group, strip, k, &bars, &mut scores);
                for m in (0..members).filter(|m| above & (1 << m) != 0) {
                    let buffer = &mut best[g * MICRO + m];
                    let row = &scores.0[m][..ids.len()];
                    let query = self.first_query + g * MICRO + m;
                    for (&score, &id) in row.iter().zip(ids) {
                        if score > buffer.threshold && !self.exclusions.excludes(query, id) {
                            buffer.push((score, id));
                        }
                    }
                }
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
/// cut back to the best `n`, whose worst score becomes the bar for later candidates. Items arrive
/// in increasing id order, so a later item that only ties the bar ranks below it and is skipped.
struct Best<T> {
    n: usize,
    threshold: T,
    buffer: Vec<Candidate<T>>,
}

impl<T: Real> Best<T> {
    fn new(n: usize) -> Self {
        let capacity = (2 * n).max(n + 32);
        Self {
            n,
            threshold: T::NEG_INFINITY,
            buffer: Vec::with_capacity(capacity),
        }
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
        self.threshold = self.buffer[n - 1].0;
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
        assert!(top_k(&[1.0], &items, 1, None, &none, 0, &mut ids, &mut scores).is_err());
        assert!(top_k(
            &[1.0],
            &items,
            1,
            Some(&[2]),
            &none,
            1,
            &mut ids,
            &mut scores
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
            &mut scores
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
            &mut scores
        )
        .is_err());
        let mask = [true];
        let wrong = Exclusions {
            global: Some(&mask),
            ..Exclusions::default()
        };
        assert!(top_k(&[1.0], &items, 1, None, &wrong, 1, &mut ids, &mut scores).is_err());
    }
}
