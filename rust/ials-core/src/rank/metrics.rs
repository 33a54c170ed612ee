//! Ranking metrics computed from the exact rank of every held-out item.
//!
//! For each user, every item is scored and the user's training items are removed from the
//! ranking. The rank of each test item (how many eligible items come before it, ordered by score
//! and then by lower id, as `top_k` orders them) gives all the metrics at once: hits and DCG in the
//! top K, average precision, AUC and the percentile ranking of Hu et al. A single pass over the
//! items finds those ranks, as vectorised counts of the items above each test item.
//!
//! The metrics at the cutoff (hits, NDCG, average precision) only need to know which test items
//! are in each user's top K: [`Ranking::TopK`] takes that top K from [`top_k`], which leaves
//! most items unscored, and gives the same values several times faster.

use rayon::prelude::*;

use crate::check::all_finite;
use crate::csr::CsrView;
use crate::error::{Error, Result};
use crate::parallel::Interrupt;
use crate::simd::{dispatch, Arith, Kernel};
use crate::Real;

use super::best::{ranking, Candidate};
use super::layout::{pack_groups, PackedStrips, StripScores, MICRO, STRIP};
use super::strip::{compare_strip, score_one, score_strip};
use super::topk::{top_k, Exclusions};

/// Users per parallel task.
const USER_BLOCK: usize = 21 * MICRO;

/// Metrics of one user, over the test items that are not also training items.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct UserMetrics {
    /// Test items ranked (0 when the user has none: the other fields are then meaningless).
    pub n_test: u32,
    /// Test items in the top K.
    pub hits: u32,
    /// DCG@K / ideal DCG@K, binary gains, ideal over min(K, n_test) positions.
    pub ndcg: f64,
    /// Average precision at K: sum over hits at rank r of (hits up to r) / r, divided by
    /// min(K, n_test).
    pub average_precision: f64,
    /// Fraction of (test item, other eligible item) pairs ranked in the right order (1 when every
    /// eligible item is a test item). NaN with [`Ranking::TopK`].
    pub auc: f64,
    /// Mean over test items, weighted by their test values, of rank / (eligible items - 1)
    /// (Hu et al.'s expected percentile ranking: 0 best, 0.5 random). NaN with
    /// [`Ranking::TopK`].
    pub percentile_rank: f64,
}

impl UserMetrics {
    /// The metrics at `cutoff` of a user with `n_test` held-out items, from the 0-based ranks
    /// of those in the top `cutoff`, in increasing order (AUC and percentile rank left NaN).
    fn at_cutoff(n_test: usize, hit_ranks: impl Iterator<Item = u64>, cutoff: usize) -> Self {
        let (mut hits, mut dcg, mut ap_sum) = (0u32, 0.0, 0.0);
        for rank in hit_ranks {
            hits += 1;
            dcg += 1.0 / ((rank + 2) as f64).log2();
            // This hit and the `hits - 1` before it are the relevant items up to its position.
            ap_sum += f64::from(hits) / (rank + 1) as f64;
        }
        let ideal_hits = cutoff.min(n_test);
        let ideal: f64 = (0..ideal_hits).map(|r| 1.0 / ((r + 2) as f64).log2()).sum();
        Self {
            n_test: n_test as u32,
            hits,
            ndcg: dcg / ideal,
            average_precision: ap_sum / ideal_hits as f64,
            auc: f64::NAN,
            percentile_rank: f64::NAN,
        }
    }
}

/// Which ranks [`ranking_metrics`] finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ranking {
    /// The exact rank of every held-out item: all metrics.
    Full,
    /// Only the top K of each user: the metrics at the cutoff, AUC and percentile rank NaN.
    TopK,
}

/// Metrics at cutoff `cutoff` for every user (row of `train` and `test`, both users x items).
#[allow(clippy::too_many_arguments)]
pub fn ranking_metrics<T: Real>(
    users: &[T],
    items: &[T],
    k: usize,
    train: &CsrView<'_>,
    test: &CsrView<'_>,
    cutoff: usize,
    ranks: Ranking,
    interrupt: &Interrupt,
) -> Result<Vec<UserMetrics>> {
    if cutoff == 0 {
        return Err(Error::InvalidParameter("K must be >= 1, got 0".into()));
    }
    let n_users = train.n_rows();
    let n_items = train.n_cols();
    if users.len() != n_users * k || items.len() != n_items * k {
        return Err(Error::ShapeMismatch(format!(
            "the model has {} users and {} items with {k} factors but the data is {n_users} x {n_items}",
            users.len() / k.max(1),
            items.len() / k.max(1)
        )));
    }
    if test.n_rows() != n_users || test.n_cols() != n_items {
        return Err(Error::ShapeMismatch(format!(
            "test has shape ({}, {}) but train has ({n_users}, {n_items})",
            test.n_rows(),
            test.n_cols()
        )));
    }
    if !train.is_canonical() || !test.is_canonical() {
        return Err(Error::InvalidCsr(
            "train and test must have sorted rows".into(),
        ));
    }
    if !all_finite(users) || !all_finite(items) {
        return Err(Error::NonFinite(
            "the factor matrices hold a non-finite value".into(),
        ));
    }
    let mut out = vec![UserMetrics::default(); n_users];
    if n_users == 0 || k == 0 {
        return Ok(out);
    }
    if ranks == Ranking::TopK {
        let evaluated = Evaluated {
            users,
            items,
            k,
            train,
            test,
            cutoff,
        };
        return top_k_metrics(&evaluated, out, interrupt);
    }
    let all_items: Vec<i32> = (0..n_items as i32).collect();
    let packed = PackedStrips::new(items, k, &all_items);
    out.par_chunks_mut(USER_BLOCK)
        .enumerate()
        .try_for_each(|(block, out)| {
            interrupt.check()?;
            let first = block * USER_BLOCK;
            dispatch(MetricsBlock {
                users: &users[first * k..(first + out.len()) * k],
                first_user: first,
                packed: &packed,
                items,
                n_items,
                k,
                train,
                test,
                cutoff,
                out,
            });
            Ok(())
        })?;
    Ok(out)
}

/// A model and the data it is evaluated on, checked to fit together.
struct Evaluated<'a, T> {
    users: &'a [T],
    items: &'a [T],
    k: usize,
    train: &'a CsrView<'a>,
    test: &'a CsrView<'a>,
    cutoff: usize,
}

/// [`Ranking::TopK`]: each user's best `cutoff` eligible items, and which of them are held out.
fn top_k_metrics<T: Real>(
    evaluated: &Evaluated<'_, T>,
    mut out: Vec<UserMetrics>,
    interrupt: &Interrupt,
) -> Result<Vec<UserMetrics>> {
    let Evaluated {
        users,
        items,
        k,
        train,
        test,
        cutoff,
    } = *evaluated;
    // No rank reaches the number of items, whatever the cutoff.
    let width = cutoff.min(train.n_cols());
    if width == 0 {
        return Ok(out);
    }
    let mut ids = vec![0i32; out.len() * width];
    let mut scores = vec![T::ZERO; out.len() * width];
    let exclusions = Exclusions {
        per_query: Some(*train),
        global: None,
    };
    top_k(
        users,
        items,
        k,
        None,
        &exclusions,
        width,
        &mut ids,
        &mut scores,
        interrupt,
    )?;
    out.par_iter_mut()
        .zip(ids.par_chunks(width))
        .enumerate()
        .for_each(|(user, (out, top))| {
            let trained = train.row(user).0;
            let held_out = test.row(user).0;
            // Test items that are also training items cannot be ranked: they are left out.
            let n_test = held_out
                .iter()
                .filter(|i| trained.binary_search(i).is_err())
                .count();
            if n_test > 0 {
                let hit_ranks = (0..top.len() as u64)
                    .filter(|&r| held_out.binary_search(&top[r as usize]).is_ok());
                *out = UserMetrics::at_cutoff(n_test, hit_ranks, cutoff);
            }
        });
    Ok(out)
}

struct MetricsBlock<'a, T> {
    users: &'a [T],
    first_user: usize,
    packed: &'a PackedStrips<T>,
    items: &'a [T],
    n_items: usize,
    k: usize,
    train: &'a CsrView<'a>,
    test: &'a CsrView<'a>,
    cutoff: usize,
    out: &'a mut [UserMetrics],
}

impl<T: Real> Kernel for MetricsBlock<'_, T> {
    type Output = ();

    /// Strips outside, user groups inside (as in `top_k`), feeding each user's [`RankCounter`].
    #[inline(always)]
    fn run<A: Arith>(self, arith: A) {
        let (k, n_items) = (self.k, self.n_items);
        let n_users = self.out.len();
        let mut counters: Vec<RankCounter<'_, T>> = (0..n_users)
            .map(|m| {
                let user = self.first_user + m;
                let x = &self.users[m * k..(m + 1) * k];
                RankCounter::new(self.train.row(user).0, self.test.row(user), |i| {
                    score_one::<T, A>(x, &self.items[i * k..(i + 1) * k])
                })
            })
            .collect();
        let groups = pack_groups(self.users.chunks_exact(k), k);
        let mut scores = StripScores::default();
        let mut bars = [T::NEG_INFINITY; MICRO];
        for s in 0..n_items.div_ceil(STRIP) {
            let strip = self.packed.strip(s);
            let valid = STRIP.min(n_items - s * STRIP);
            for (g, group) in groups.chunks_exact(MICRO * k).enumerate() {
                let members = MICRO.min(n_users - g * MICRO);
                for (bar, counter) in bars
                    .iter_mut()
                    .zip(&counters[g * MICRO..g * MICRO + members])
                {
                    *bar = counter.bar();
                }
                // A strip with nothing at or above a user's bar changes none of its counts.
                let reached = score_strip(arith, group, strip, k, &bars, &mut scores);
                for m in (0..members).filter(|m| reached & (1 << m) != 0) {
                    counters[g * MICRO + m].observe(arith, &scores.0[m], valid, (s * STRIP) as i32);
                }
            }
        }
        for (out, counter) in self.out.iter_mut().zip(counters) {
            *out = counter.finish(n_items, self.cutoff);
        }
    }
}

/// Counts, for one user, how many eligible items rank above each held-out test item.
///
/// Every scored item is compared with every held-out item (a vectorised count per strip); the
/// training items that rank above are subtracted at the end, from their own scores.
struct RankCounter<'a, T> {
    train: &'a [i32],
    /// Scores of the training items, computed exactly as the strips compute them.
    train_scores: Vec<T>,
    /// Held-out items with their scores and test values, best first.
    held_out: Vec<(Candidate<T>, f64)>,
    /// Items of any kind ranked above each held-out item.
    above: Vec<u32>,
}

/// Items among the first `valid` of `scores` (ids `first_id..`) that rank above `(score, id)`: a
/// higher score, or the same score and a lower id. Counted as bit masks over the strip, so a tie
/// costs no more than any other item.
#[inline(always)]
fn count_above<T: Real, A: Arith>(
    arith: A,
    scores: &[T; STRIP],
    valid: usize,
    first_id: i32,
    (score, id): Candidate<T>,
) -> u32 {
    let (greater, equal) = compare_strip(arith, scores, score);
    let below = |n: usize| (1u32 << n.min(STRIP)) - 1;
    let lower_ids = (id - first_id).max(0) as usize;
    ((greater | (equal & below(lower_ids))) & below(valid)).count_ones()
}

impl<'a, T: Real> RankCounter<'a, T> {
    fn new(train: &'a [i32], test: (&'a [i32], &'a [f32]), score: impl Fn(usize) -> T) -> Self {
        // Test items that are also training items cannot be ranked: they are left out.
        let mut held_out: Vec<(Candidate<T>, f64)> = test
            .0
            .iter()
            .zip(test.1)
            .filter(|(i, _)| train.binary_search(i).is_err())
            .map(|(&i, &w)| ((score(i as usize), i), w as f64))
            .collect();
        held_out.sort_unstable_by(|a, b| ranking(&a.0, &b.0));
        let train_scores = if held_out.is_empty() {
            Vec::new()
        } else {
            train.iter().map(|&j| score(j as usize)).collect()
        };
        let above = vec![0; held_out.len()];
        Self {
            train,
            train_scores,
            held_out,
            above,
        }
    }

    /// The lowest score that can rank above a held-out item (+inf when there is none).
    fn bar(&self) -> T {
        self.held_out
            .last()
            .map_or(-T::NEG_INFINITY, |&((score, _), _)| score)
    }

    /// Items `first_id..first_id + valid` with these scores.
    #[inline(always)]
    fn observe<A: Arith>(&mut self, arith: A, scores: &[T; STRIP], valid: usize, first_id: i32) {
        // From the worst held-out item up: once none of these items ranks above one, none ranks
        // above the better ones either.
        for (above, &(candidate, _)) in self.above.iter_mut().zip(&self.held_out).rev() {
            let count = count_above(arith, scores, valid, first_id, candidate);
            if count == 0 {
                break;
            }
            *above += count;
        }
    }

    fn finish(self, n_items: usize, cutoff: usize) -> UserMetrics {
        let n_test = self.held_out.len();
        if n_test == 0 {
            return UserMetrics::default();
        }
        let n_eligible = n_items - self.train.len();
        let negatives = (n_eligible - n_test) as u64;
        // 0-based positions among the eligible items, best held-out item first.
        let ranks: Vec<u64> = self
            .held_out
            .iter()
            .zip(&self.above)
            .map(|(&(candidate, _), &above)| {
                let train_above = self
                    .train
                    .iter()
                    .zip(&self.train_scores)
                    .filter(|&(&j, &s)| ranking(&(s, j), &candidate).is_lt())
                    .count() as u64;
                above as u64 - train_above
            })
            .collect();
        let hit_ranks = ranks.iter().copied().take_while(|&r| (r as usize) < cutoff);
        let mut m = UserMetrics::at_cutoff(n_test, hit_ranks, cutoff);
        let (mut correct_pairs, mut weighted_rank, mut weight_sum, mut plain_rank) =
            (0.0, 0.0, 0.0, 0.0);
        for (p, (&(_, weight), &rank)) in self.held_out.iter().zip(&ranks).enumerate() {
            // Eligible non-test items ranked above this one: all above it but the p test items.
            correct_pairs += (negatives - (rank - p as u64)) as f64;
            let percentile = if n_eligible > 1 {
                rank as f64 / (n_eligible - 1) as f64
            } else {
                0.0
            };
            let weight = weight.max(0.0);
            weighted_rank += weight * percentile;
            weight_sum += weight;
            plain_rank += percentile;
        }
        m.auc = if negatives == 0 {
            1.0
        } else {
            correct_pairs / (n_test as u64 * negatives) as f64
        };
        // Weighted by the test values (play counts) as in the paper; unweighted if none is positive.
        m.percentile_rank = if weight_sum > 0.0 {
            weighted_rank / weight_sum
        } else {
            plain_rank / n_test as f64
        };
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ranks by full sort, metrics from their definitions.
    fn naive(scores: &[f32], train: &[i32], test: &[i32], cutoff: usize) -> UserMetrics {
        let mut order: Vec<(f32, i32)> = (0..scores.len() as i32)
            .filter(|j| !train.contains(j))
            .map(|j| (scores[j as usize], j))
            .collect();
        order.sort_by(ranking);
        let held: Vec<i32> = test
            .iter()
            .copied()
            .filter(|i| !train.contains(i))
            .collect();
        if held.is_empty() {
            return UserMetrics::default();
        }
        let rank_of = |i: i32| order.iter().position(|&(_, j)| j == i).unwrap();
        let relevant = |j: i32| held.contains(&j);
        let mut m = UserMetrics {
            n_test: held.len() as u32,
            ..UserMetrics::default()
        };
        let (mut dcg, mut hits_so_far, mut ap) = (0.0, 0, 0.0);
        for (r, &(_, j)) in order.iter().enumerate().take(cutoff) {
            if relevant(j) {
                hits_so_far += 1;
                dcg += 1.0 / ((r + 2) as f64).log2();
                ap += hits_so_far as f64 / (r + 1) as f64;
            }
        }
        m.hits = hits_so_far;
        let ideal: f64 = (0..cutoff.min(held.len()))
            .map(|r| 1.0 / ((r + 2) as f64).log2())
            .sum();
        m.ndcg = dcg / ideal;
        m.average_precision = ap / cutoff.min(held.len()) as f64;
        let negatives: Vec<i32> = order
            .iter()
            .map(|&(_, j)| j)
            .filter(|&j| !relevant(j))
            .collect();
        let pairs = held.len() * negatives.len();
        let correct = held
            .iter()
            .map(|&i| {
                negatives
                    .iter()
                    .filter(|&&j| rank_of(j) > rank_of(i))
                    .count()
            })
            .sum::<usize>();
        m.auc = if pairs == 0 {
            1.0
        } else {
            correct as f64 / pairs as f64
        };
        let denominator = (order.len() - 1).max(1) as f64;
        m.percentile_rank = held
            .iter()
            .map(|&i| rank_of(i) as f64 / denominator)
            .sum::<f64>()
            / held.len() as f64;
        m
    }

    fn close(a: &UserMetrics, b: &UserMetrics) -> bool {
        a.n_test == b.n_test
            && a.hits == b.hits
            && [
                (a.ndcg, b.ndcg),
                (a.average_precision, b.average_precision),
                (a.auc, b.auc),
                (a.percentile_rank, b.percentile_rank),
            ]
            .iter()
            .all(|(x, y)| (x - y).abs() < 1e-12 || (x.is_nan() && y.is_nan()))
    }

    #[test]
    fn matches_definitions_with_ties() {
        let (n_users, n_items, k) = (9, 300, 3);
        // Coarse factors: many tied scores.
        let users: Vec<f32> = (0..n_users * k)
            .map(|i| ((i * 7 + 3) % 5) as f32 - 2.0)
            .collect();
        let items: Vec<f32> = (0..n_items * k)
            .map(|i| ((i * 11 + 1) % 4) as f32 - 1.0)
            .collect();
        let (mut tr_ptr, mut tr_idx, mut te_ptr, mut te_idx) =
            (vec![0i64], vec![], vec![0i64], vec![]);
        for u in 0..n_users {
            for j in 0..n_items as i32 {
                match (j as usize * 31 + u * 17) % 23 {
                    0 | 1 => tr_idx.push(j),
                    2 if u != 4 => te_idx.push(j), // user 4 has no test items
                    3 if u % 3 == 0 => {
                        tr_idx.push(j); // a test item that is also a training item
                        te_idx.push(j);
                    }
                    _ => {}
                }
            }
            tr_ptr.push(tr_idx.len() as i64);
            te_ptr.push(te_idx.len() as i64);
        }
        let (tr_val, te_val) = (vec![1.0f32; tr_idx.len()], vec![1.0f32; te_idx.len()]);
        let train = CsrView::new(&tr_ptr, &tr_idx, &tr_val, n_items).unwrap();
        let test = CsrView::new(&te_ptr, &te_idx, &te_val, n_items).unwrap();
        for cutoff in [1, 5, 20, 1000] {
            let got = ranking_metrics(
                &users,
                &items,
                k,
                &train,
                &test,
                cutoff,
                Ranking::Full,
                &Interrupt::new(),
            )
            .unwrap();
            let top = ranking_metrics(
                &users,
                &items,
                k,
                &train,
                &test,
                cutoff,
                Ranking::TopK,
                &Interrupt::new(),
            )
            .unwrap();
            for u in 0..n_users {
                let scores: Vec<f32> = (0..n_items)
                    .map(|j| (0..k).map(|d| users[u * k + d] * items[j * k + d]).sum())
                    .collect();
                let want = naive(&scores, train.row(u).0, test.row(u).0, cutoff);
                assert!(
                    close(&got[u], &want),
                    "user {u} K={cutoff}: {:?} vs {want:?}",
                    got[u]
                );
                let at_cutoff = UserMetrics {
                    auc: want.auc,
                    percentile_rank: want.percentile_rank,
                    ..top[u]
                };
                assert!(
                    close(&at_cutoff, &want) && (want.n_test == 0 || top[u].auc.is_nan()),
                    "top K, user {u} K={cutoff}: {:?} vs {want:?}",
                    top[u]
                );
            }
        }
    }
}
