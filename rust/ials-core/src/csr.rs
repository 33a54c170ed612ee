//! Compressed-sparse-row matrices: a borrowed, validated view, and an owned matrix for callers
//! that build one (the transpose of training data, a Rust program's own interactions).

use crate::check::{all_below, all_finite};
use crate::error::{Error, Result};

/// Rows of a sparse interaction matrix: `indptr` (n_rows + 1 offsets), column `indices` and `data`.
///
/// Constructing one checks every invariant once, so the kernels can index without checks failing.
#[derive(Clone, Copy, Debug)]
pub struct CsrView<'a> {
    indptr: &'a [i64],
    indices: &'a [i32],
    data: &'a [f32],
    n_cols: usize,
}

impl<'a> CsrView<'a> {
    pub fn new(
        indptr: &'a [i64],
        indices: &'a [i32],
        data: &'a [f32],
        n_cols: usize,
    ) -> Result<Self> {
        let Some((&first, _)) = indptr.split_first() else {
            return Err(Error::InvalidCsr(
                "indptr is empty; it needs n_rows + 1 entries".into(),
            ));
        };
        if first != 0 {
            return Err(Error::InvalidCsr(format!(
                "indptr[0] is {first}, expected 0"
            )));
        }
        if indices.len() != data.len() {
            return Err(Error::InvalidCsr(format!(
                "indices has {} entries but data has {}",
                indices.len(),
                data.len()
            )));
        }
        let last = *indptr.last().unwrap_or(&0);
        if last < 0 || last as usize != indices.len() {
            return Err(Error::InvalidCsr(format!(
                "indptr ends at {last} but there are {} stored entries",
                indices.len()
            )));
        }
        // Each check reads its whole array without stopping early (so that it vectorises, and
        // on a pool thread runs in parallel); only a failed one looks for what to name.
        let ascending = indptr
            .iter()
            .zip(&indptr[1..])
            .fold(true, |ok, (a, b)| ok & (a <= b));
        if !ascending {
            if let Some(row) = indptr.windows(2).position(|w| w[1] < w[0]) {
                return Err(Error::InvalidCsr(format!("indptr decreases at row {row}")));
            }
        }
        if n_cols > i32::MAX as usize + 1 {
            return Err(Error::InvalidCsr(format!(
                "{n_cols} columns do not fit 32-bit indices"
            )));
        }
        if !all_below(indices, n_cols) {
            if let Some(&bad) = indices.iter().find(|&&c| c < 0 || c as usize >= n_cols) {
                return Err(Error::InvalidCsr(format!(
                    "column index {bad} is outside 0..{n_cols}"
                )));
            }
        }
        if !all_finite(data) {
            if let Some(&bad) = data.iter().find(|v| !v.is_finite()) {
                return Err(Error::NonFinite(format!(
                    "the interaction matrix holds a non-finite value ({bad})"
                )));
            }
        }
        Ok(Self {
            indptr,
            indices,
            data,
            n_cols,
        })
    }

    #[inline]
    pub fn n_rows(&self) -> usize {
        self.indptr.len() - 1
    }

    #[inline]
    pub fn n_cols(&self) -> usize {
        self.n_cols
    }

    #[inline]
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// Column indices and values of one row.
    #[inline(always)]
    pub fn row(&self, row: usize) -> (&'a [i32], &'a [f32]) {
        let start = self.indptr[row] as usize;
        let end = self.indptr[row + 1] as usize;
        (&self.indices[start..end], &self.data[start..end])
    }

    /// The column indices of `row` and of every row after it, in order: what a loop over
    /// consecutive rows reads next, for prefetching across row ends.
    #[inline(always)]
    pub(crate) fn columns_from(&self, row: usize) -> &'a [i32] {
        &self.indices[self.indptr[row] as usize..]
    }

    /// Whether the column indices of every row are strictly increasing (sorted, no duplicates).
    pub fn is_canonical(&self) -> bool {
        (0..self.n_rows()).all(|r| self.row(r).0.windows(2).all(|w| w[0] < w[1]))
    }

    /// Number of stored entries in each row.
    pub fn row_counts(&self) -> Vec<usize> {
        self.indptr
            .windows(2)
            .map(|w| (w[1] - w[0]) as usize)
            .collect()
    }

    /// Number of stored entries in each column.
    pub fn column_counts(&self) -> Vec<usize> {
        let mut counts = vec![0usize; self.n_cols];
        for &c in self.indices {
            counts[c as usize] += 1;
        }
        counts
    }
}

/// An owned CSR matrix, validated when built.
#[derive(Clone, Debug, PartialEq)]
pub struct CsrMatrix {
    indptr: Vec<i64>,
    indices: Vec<i32>,
    data: Vec<f32>,
    n_cols: usize,
}

impl CsrMatrix {
    /// A matrix of `indptr.len() - 1` rows and `n_cols` columns; the checks of [`CsrView::new`].
    pub fn new(indptr: Vec<i64>, indices: Vec<i32>, data: Vec<f32>, n_cols: usize) -> Result<Self> {
        CsrView::new(&indptr, &indices, &data, n_cols)?;
        Ok(Self {
            indptr,
            indices,
            data,
            n_cols,
        })
    }

    pub fn view(&self) -> CsrView<'_> {
        CsrView {
            indptr: &self.indptr,
            indices: &self.indices,
            data: &self.data,
            n_cols: self.n_cols,
        }
    }
}

impl CsrView<'_> {
    /// The transposed matrix (columns become rows), each row's indices increasing.
    pub fn transpose(&self) -> CsrMatrix {
        let counts = self.column_counts();
        let mut indptr = Vec::with_capacity(self.n_cols + 1);
        indptr.push(0i64);
        for &c in &counts {
            indptr.push(indptr[indptr.len() - 1] + c as i64);
        }
        let mut next: Vec<usize> = indptr[..self.n_cols].iter().map(|&p| p as usize).collect();
        let (mut indices, mut data) = (vec![0i32; self.nnz()], vec![0f32; self.nnz()]);
        for row in 0..self.n_rows() {
            let (cols, vals) = self.row(row);
            for (&c, &v) in cols.iter().zip(vals) {
                let at = &mut next[c as usize];
                indices[*at] = row as i32;
                data[*at] = v;
                *at += 1;
            }
        }
        CsrMatrix {
            indptr,
            indices,
            data,
            n_cols: self.n_rows(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_valid_matrix() {
        let m = CsrView::new(&[0, 2, 2, 3], &[0, 2, 1], &[1.0, 2.0, 3.0], 3).unwrap();
        assert_eq!(m.n_rows(), 3);
        assert_eq!(m.nnz(), 3);
        assert_eq!(m.row(0), (&[0, 2][..], &[1.0, 2.0][..]));
        assert_eq!(m.row(1).0.len(), 0);
        assert_eq!(m.column_counts(), vec![1, 1, 1]);
        assert!(m.is_canonical());
        let unsorted = CsrView::new(&[0, 2], &[2, 0], &[1.0, 1.0], 3).unwrap();
        assert!(!unsorted.is_canonical());
    }

    #[test]
    fn rejects_broken_matrices() {
        type Parts<'a> = (&'a [i64], &'a [i32], &'a [f32], usize);
        let bad: [Parts; 7] = [
            (&[], &[], &[], 1),
            (&[1, 1], &[0], &[1.0], 1),
            (&[0, 2], &[0], &[1.0], 1),
            (&[0, 1], &[0], &[1.0, 2.0], 1),
            (&[0, 2, 1, 2], &[0, 0], &[1.0, 1.0], 1),
            (&[0, 1], &[3], &[1.0], 3),
            (&[0, 1], &[-1], &[1.0], 3),
        ];
        for (indptr, indices, data, n_cols) in bad {
            assert!(
                CsrView::new(indptr, indices, data, n_cols).is_err(),
                "{indptr:?} {indices:?}"
            );
        }
    }

    #[test]
    fn names_the_offender_in_a_large_matrix_checked_in_parallel() {
        let n = 200_000;
        let indptr: Vec<i64> = (0..=n as i64).collect();
        let mut indices: Vec<i32> = (0..n).map(|i| (i % 7) as i32).collect();
        let mut data = vec![1.0f32; n];
        let check = |indices: &[i32], data: &[f32]| {
            crate::with_threads(2, || {
                CsrView::new(&indptr, indices, data, 7)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
            .unwrap()
        };
        assert_eq!(check(&indices, &data), Ok(()));
        indices[n - 3] = 9;
        let err = check(&indices, &data).unwrap_err();
        assert!(err.contains("column index 9 is outside 0..7"), "{err}");
        indices[n - 3] = 0;
        data[n / 2] = f32::NEG_INFINITY;
        let err = check(&indices, &data).unwrap_err();
        assert!(err.contains("non-finite value (-inf)"), "{err}");
    }

    #[test]
    fn rejects_non_finite_values() {
        let err = CsrView::new(&[0, 1], &[0], &[f32::NAN], 1).unwrap_err();
        assert!(matches!(err, Error::NonFinite(_)));
        assert!(CsrView::new(&[0, 1], &[0], &[f32::INFINITY], 1).is_err());
    }

    #[test]
    fn transpose_swaps_rows_and_columns() {
        // [[1, 0, 2], [0, 0, 3]]
        let m = CsrMatrix::new(vec![0, 2, 3], vec![0, 2, 2], vec![1.0, 2.0, 3.0], 3).unwrap();
        let t = m.view().transpose();
        assert_eq!(
            t,
            CsrMatrix::new(vec![0, 1, 1, 3], vec![0, 0, 1], vec![1.0, 2.0, 3.0], 2).unwrap()
        );
        assert_eq!(t.view().transpose(), m);
        assert!(CsrMatrix::new(vec![0, 1], vec![5], vec![1.0], 3).is_err());
    }
}
