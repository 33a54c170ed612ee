//! The norm bound of the ranking: no score exceeds `|q| |y|` (Cauchy-Schwarz), so items in
//! decreasing norm let a query stop once the bound falls below its bar.

use rayon::prelude::*;

use crate::Real;

use super::layout::STRIP;

/// Euclidean norm of a factor row, in `f64`.
pub(crate) fn norm<T: Real>(row: &[T]) -> f64 {
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
pub(crate) fn by_decreasing_norm<T: Real>(
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
pub(crate) struct NormBounds {
    queries: Vec<f64>,
    strips: Vec<f64>,
    relative: f64,
    absolute: f64,
}

impl NormBounds {
    /// `item_norms` in packing order (decreasing), so each strip's first norm is its largest.
    pub(crate) fn new<T: Real>(queries: &[T], k: usize, item_norms: &[f64]) -> Self {
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
    pub(crate) fn exhausted<T: Real>(&self, query: usize, strip: usize, bar: T) -> bool {
        let bound = self.queries[query] * self.strips[strip];
        bound * (1.0 + self.relative) + self.absolute < bar.to_f64()
    }
}
