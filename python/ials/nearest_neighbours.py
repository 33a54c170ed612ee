"""Weighting schemes implicit users apply before fitting, where implicit has them.

``bm25_weight(X, K1=100, B=0.8)`` and ``tfidf_weight(X)`` take implicit 0.7.3's parameters and
defaults and return what ``implicit.nearest_neighbours`` returns for the same input: a
``scipy.sparse.coo_matrix`` of X's shape with one float64 weight per stored entry of X (in X's
order; stored zeros and duplicates are kept, as there). Rows are documents and columns terms,
as in implicit: with a users x items matrix, an item's idf falls with the number of users who
have it, and each user's row is normalised by its total. implicit's item-item recommenders are
not part of ials.

With ``n`` rows and ``n_j`` stored entries in column j, ``idf_j = log(n) - log(1 + n_j)``:
a column stored in ``n - 1`` rows weighs 0 (the cell then leaves the ALS objective) and one
stored in every row weighs less than 0 (which ALS reads as negative feedback), in both libraries.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._validation import check_float, check_sparse

__all__ = ["bm25_weight", "tfidf_weight"]


def _entries(X: Any) -> sp.coo_matrix:
    """``X`` (any scipy.sparse matrix or array, or a dense 2-D array) as a COO copy holding
    non-negative real values (booleans become 1.0)."""
    if sp.issparse(X):
        check_sparse("X", X)
    else:
        array = np.asarray(X)
        if array.ndim != 2 or array.dtype.kind not in "biuf":
            raise ValueError(
                f"X must be a 2-D sparse matrix or array of real numbers, got {type(X).__name__} "
                f"of dtype {array.dtype} and shape {array.shape}"
            )
    coo = sp.coo_matrix(X, copy=True)
    if coo.dtype == bool:
        coo = coo.astype(np.float32)
    if coo.nnz and not (np.isfinite(coo.data).all() and coo.data.min() >= 0):
        bad = coo.data[~(np.isfinite(coo.data) & (coo.data >= 0))][0]
        raise ValueError(f"X must hold finite values >= 0 (counts or weights), got {bad}")
    return coo


def _idf(coo: sp.coo_matrix) -> np.ndarray:
    return np.log(float(coo.shape[0])) - np.log1p(np.bincount(coo.col))


def _finite(coo: sp.coo_matrix, scheme: str) -> sp.coo_matrix:
    if not np.isfinite(coo.data).all():
        raise ValueError(
            f"{scheme} of X is not finite for {int((~np.isfinite(coo.data)).sum())} stored "
            "entries: a stored 0 where K1 times the row's length norm is 0 (drop stored zeros "
            "with X.eliminate_zeros(), or use K1 > 0 and B < 1), or every value of X is 0"
        )
    return coo


def tfidf_weight(X: Any) -> sp.coo_matrix:
    """TF-IDF: each stored value v of column j becomes ``sqrt(v) * idf_j`` (see the module
    docstring), as ``implicit.nearest_neighbours.tfidf_weight``."""
    coo = _entries(X)
    if coo.nnz:
        coo.data = np.sqrt(coo.data) * _idf(coo)[coo.col]
    return coo.astype(np.float64)


def bm25_weight(X: Any, K1: float = 100, B: float = 0.8) -> sp.coo_matrix:
    """Okapi BM25: a stored value v in row u and column j becomes
    ``v (K1 + 1) / (K1 ((1 - B) + B len_u / mean(len)) + v) * idf_j``, with ``len_u`` the sum of
    row u's values (see the module docstring for idf), as
    ``implicit.nearest_neighbours.bm25_weight`` with the same defaults.

    ``K1 >= 0`` saturates repeated interactions (0: binary); ``0 <= B <= 1`` sets how much long
    rows are discounted. Raises ``ValueError`` where the weight would be 0/0 (implicit returns
    NaN there).
    """
    check_float("K1", K1)
    if isinstance(B, bool) or not isinstance(B, numbers.Real) or not 0.0 <= float(B) <= 1.0:
        raise ValueError(f"B must be a number in [0, 1], got {B!r}")
    coo = _entries(X)
    if coo.nnz:
        # K1 and B enter as given: a numpy float64 scalar computes in float64, a Python number
        # in the values' precision, exactly as in implicit.
        row_sums = np.ravel(coo.sum(axis=1))
        with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 is reported below
            length_norm = (1.0 - B) + B * row_sums / row_sums.mean()
            coo.data = (
                coo.data * (K1 + 1.0) / (K1 * length_norm[coo.row] + coo.data) * _idf(coo)[coo.col]
            )
    return _finite(coo.astype(np.float64), "bm25_weight")
