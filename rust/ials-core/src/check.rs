//! Checks on caller input shared by every domain: finiteness (a kernel, since it runs on every
//! factor matrix of every call) and the shapes of factor matrices.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::simd::{dispatch, Arith, Kernel};
use crate::Real;

/// Values checked by one task: large inputs are checked on every thread of the pool. Every
/// half-sweep checks both factor matrices, which on one thread was a serial tenth of a 64-factor
/// fit on gowalla, and its interactions, 400 MB to read at 50M of them.
const CHECK_CHUNK: usize = 1 << 16;

/// Whether `holds` is true of every chunk of `values`: chunks of a large slice in parallel when
/// called on a Rayon pool's thread. Called from any other thread (a one-row call the bindings
/// make with the GIL held) it stays on that thread: it must not start Rayon's global pool.
fn every_chunk<T: Sync>(values: &[T], holds: impl Fn(&[T]) -> bool + Sync + Send) -> bool {
    if values.len() <= CHECK_CHUNK || rayon::current_thread_index().is_none() {
        return holds(values);
    }
    values.par_chunks(CHECK_CHUNK).all(holds)
}

/// Whether every value is finite. A kernel without an early exit, which lets the `&` reduction
/// vectorise.
pub(crate) fn all_finite<T: Real>(values: &[T]) -> bool {
    every_chunk(values, |chunk| dispatch(AllFinite(chunk)))
}

/// Whether every column index lies in `0..n_cols`, for `n_cols <= 2^31` (a negative index read as
/// unsigned is at least 2^31): a kernel without an early exit, as [`all_finite`].
pub(crate) fn all_below(indices: &[i32], n_cols: usize) -> bool {
    every_chunk(indices, |chunk| {
        dispatch(AllBelow {
            indices: chunk,
            n_cols,
        })
    })
}

struct AllFinite<'a, T>(&'a [T]);

impl<T: Real> Kernel for AllFinite<'_, T> {
    type Output = bool;

    #[inline(always)]
    fn run<A: Arith>(self, _: A) -> bool {
        self.0.iter().fold(true, |finite, v| finite & v.is_finite())
    }
}

struct AllBelow<'a> {
    indices: &'a [i32],
    n_cols: usize,
}

impl Kernel for AllBelow<'_> {
    type Output = bool;

    #[inline(always)]
    fn run<A: Arith>(self, _: A) -> bool {
        let n_cols = self.n_cols;
        self.indices
            .iter()
            .fold(true, |below, &c| below & ((c as u32 as usize) < n_cols))
    }
}

/// Checks that `matrix`, named `what` in the errors, is a `k x k` matrix of finite values.
pub(crate) fn check_square<T: Real>(what: &str, matrix: &[T], k: usize) -> Result<()> {
    if matrix.len() != k * k {
        return Err(Error::ShapeMismatch(format!(
            "the {what} has {} entries, expected {k} x {k}",
            matrix.len()
        )));
    }
    if !all_finite(matrix) {
        return Err(Error::NonFinite(format!(
            "the {what} holds a non-finite value"
        )));
    }
    Ok(())
}

/// The number of `k`-long rows in `factors`.
pub(crate) fn factor_rows<T>(factors: &[T], k: usize) -> Result<usize> {
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

/// Checks that `x` and `y` fit an `n_rows x n_cols` interaction matrix and `k`, and hold only
/// finite values.
pub(crate) fn check_factors<T: Real>(
    (n_rows, n_cols): (usize, usize),
    x: &[T],
    y: &[T],
    k: usize,
) -> Result<()> {
    if x.len() != n_rows * k {
        return Err(Error::ShapeMismatch(format!(
            "the solved factors have {} entries, expected {} rows x {k} factors",
            x.len(),
            n_rows
        )));
    }
    if y.len() != n_cols * k {
        return Err(Error::ShapeMismatch(format!(
            "the fixed factors have {} entries, expected {} rows x {k} factors",
            y.len(),
            n_cols
        )));
    }
    if !all_finite(x) || !all_finite(y) {
        return Err(Error::NonFinite(
            "the factor matrices hold a non-finite value".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_non_finite_value_anywhere_in_a_large_slice() {
        // On the calling thread, and in chunks on a pool's threads.
        finds_a_non_finite_value_anywhere();
        crate::with_threads(2, finds_a_non_finite_value_anywhere).unwrap();
    }

    fn finds_a_non_finite_value_anywhere() {
        let n = 3 * CHECK_CHUNK + 17;
        let mut values = vec![1.5f32; n];
        assert!(all_finite(&values));
        for (at, bad) in [
            (0, f32::NAN),
            (n / 2, f32::INFINITY),
            (n - 1, f32::NEG_INFINITY),
        ] {
            values[at] = bad;
            assert!(!all_finite(&values), "{bad} at {at}");
            assert!(
                !all_finite(&values[..=at]),
                "{bad} at the end of a short slice"
            );
            values[at] = 1.5;
        }
        assert!(all_finite(&values[..10]) && all_finite::<f64>(&[]));
    }

    #[test]
    fn finds_an_index_out_of_range_anywhere_in_a_large_slice() {
        finds_an_index_out_of_range_anywhere();
        crate::with_threads(2, finds_an_index_out_of_range_anywhere).unwrap();
    }

    fn finds_an_index_out_of_range_anywhere() {
        let n_cols = 1000;
        let n = 3 * CHECK_CHUNK + 17;
        let mut indices: Vec<i32> = (0..n).map(|i| (i % n_cols) as i32).collect();
        assert!(all_below(&indices, n_cols));
        for (at, bad) in [
            (0, -1),
            (n / 2, n_cols as i32),
            (n - 1, i32::MIN),
            (7, i32::MAX),
        ] {
            let good = indices[at];
            indices[at] = bad;
            assert!(!all_below(&indices, n_cols), "{bad} at {at}");
            indices[at] = good;
        }
        // The largest column count the views allow, 2^31: every non-negative i32 is below it.
        assert!(all_below(&[0, i32::MAX], i32::MAX as usize + 1));
        assert!(!all_below(&[-1], i32::MAX as usize + 1));
        assert!(all_below(&[], 0) && !all_below(&[0], 0));
    }
}
