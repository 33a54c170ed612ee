//! The order of ranked items (score, then lower id) and the buffer that keeps a query's best.

use std::cmp::Ordering;

use crate::Real;

/// A scored candidate: (score, item id).
pub(crate) type Candidate<T> = (T, i32);

/// Higher score first, then lower id.
#[inline]
pub(crate) fn ranking<T: Real>(a: &Candidate<T>, b: &Candidate<T>) -> Ordering {
    b.0.partial_cmp(&a.0)
        .unwrap_or(Ordering::Equal)
        .then(a.1.cmp(&b.1))
}

/// The best `n` candidates seen so far, kept loosely: the buffer grows to twice `n` and is then
/// cut back to the best `n`, whose worst becomes the bar for later candidates (its score, and
/// its id for ties: items do not arrive in id order).
pub(crate) struct Best<T> {
    n: usize,
    pub(crate) threshold: T,
    threshold_id: i32,
    buffer: Vec<Candidate<T>>,
}

impl<T: Real> Best<T> {
    pub(crate) fn new(n: usize) -> Self {
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
    pub(crate) fn admits(&self, score: T, id: i32) -> bool {
        score > self.threshold || (score == self.threshold && id < self.threshold_id)
    }

    #[inline]
    pub(crate) fn push(&mut self, candidate: Candidate<T>) {
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

    pub(crate) fn finish(mut self) -> Vec<Candidate<T>> {
        self.buffer.sort_unstable_by(ranking);
        self.buffer.truncate(self.n);
        self.buffer
    }
}
