//! Checks on caller input shared by every domain: finiteness (a kernel, since it runs on every
//! factor matrix of every call) and the shapes of factor matrices.

use rayon::prelude::*;

use crate::csr::CsrView;
use crate::error::{Error, Result};
use crate::simd::{dispatch, Arith, Kernel};
use crate::Real;

/// Values checked by one task: large factor matrices are checked on every thread of the pool.
/// Every half-sweep checks both factor matrices, which on one thread was a serial tenth of a
/// 64-factor fit on gowalla.
const FINITE_CHUNK: usize = 1 << 16;

/// Whether every value is finite. A kernel without an early exit, which lets the `&` reduction
/// vectorise; chunks of a large slice in parallel when called on a Rayon pool's thread. Called
/// from any other thread (a one-row call the bindings make with the GIL held) it stays on that
/// thread: it must not start Rayon's global pool.
pub(crate) fn all_finite<T: Real>(values: &[T]) -> bool {
    if values.len() <= FINITE_CHUNK || rayon::current_thread_index().is_none() {
        return dispatch(AllFinite(values));
    }
    values
        .par_chunks(FINITE_CHUNK)
        .all(|chunk| dispatch(AllFinite(chunk)))
}

struct AllFinite<'a, T>(&'a [T]);

impl<T: Real> Kernel for AllFinite<'_, T> {
    type Output = bool;

    #[inline(always)]
    fn run<A: Arith>(self, _: A) -> bool {
        self.0.iter().fold(true, |finite, v| finite & v.is_finite())
    }
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

/// Checks that `x` and `y` fit `rows` and `k` and hold only finite values.
pub(crate) fn check_factors<T: Real>(rows: &CsrView<'_>, x: &[T], y: &[T], k: usize) -> Result<()> {
    if x.len() != rows.n_rows() * k {
        return Err(Error::ShapeMismatch(format!(
            "the solved factors have {} entries, expected {} rows x {k} factors",
            x.len(),
            rows.n_rows()
        )));
    }
    if y.len() != rows.n_cols() * k {
        return Err(Error::ShapeMismatch(format!(
            "the fixed factors have {} entries, expected {} rows x {k} factors",
            y.len(),
            rows.n_cols()
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
        let n = 3 * FINITE_CHUNK + 17;
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
}
