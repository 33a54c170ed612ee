"""Validation and normalisation for the ranking methods, and the call into the top-K kernel."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import scipy.sparse as sp

from . import _native
from ._validation import as_csr, check_int, core_rows


class IdOutOfRangeError(ValueError, IndexError):
    """An id outside the model's range: a ValueError like every bad argument here, and an
    IndexError, which is what implicit raises (its tests expect it)."""


def as_ids(name: str, value: Any, upper: int) -> tuple[np.ndarray, bool]:
    """``value`` (an int or a 1-D array-like of ints) as int64 ids in ``0..upper``, and whether
    it was a single id."""
    single = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    ids = np.asarray(value)
    if ids.dtype == bool or not (ids.size == 0 or np.issubdtype(ids.dtype, np.integer)):
        raise TypeError(f"{name} must be an int or an array of ints, got {value!r}")
    ids = ids.astype(np.int64, copy=False)
    if ids.ndim > 1 or (ids.ndim == 0 and not single):
        raise ValueError(f"{name} must be an int or a 1-D array of ints, got shape {ids.shape}")
    out_of_range = (ids < 0) | (ids >= upper)
    if out_of_range.any():
        raise IdOutOfRangeError(
            f"{name} {ids[out_of_range].flat[0]} is out of range 0..{upper - 1}"
        )
    return ids.reshape(-1), single


def check_n(value: Any) -> int:
    return check_int("N", value, 1)


def selection(
    filter_name: str, filter_ids: Any, only_name: str, only_ids: Any, upper: int
) -> tuple[np.ndarray | None, np.ndarray | None, int]:
    """(mask of excluded ids, ascending candidate ids, number of ids that may be ranked)."""
    blocked = None
    if filter_ids is not None:
        ids, _ = as_ids(filter_name, filter_ids, upper)
        blocked = np.zeros(upper, dtype=bool)
        blocked[ids] = True
    candidates = None
    if only_ids is not None:
        ids, _ = as_ids(only_name, only_ids, upper)
        candidates = np.unique(ids).astype(np.int32)
        if len(candidates) != len(ids):
            raise ValueError(f"{only_name} holds duplicate ids")
    pool = np.arange(upper) if candidates is None else candidates
    eligible = len(pool) if blocked is None else int((~blocked[pool]).sum())
    return blocked, candidates, eligible


_COLUMNS = {"user_items": "items", "item_users": "users"}


def rows_for(name: str, matrix: Any, n_rows: int, n_cols: int) -> sp.csr_matrix:
    """``matrix`` as canonical CSR with exactly one row per requested id and ``n_cols`` columns.

    A matrix with fewer columns is widened with empty ones, as implicit reads it: the columns
    are the model's items (or users) from 0, so data built before ``partial_fit_*`` added some
    has no interactions with those.
    """
    if matrix is None:
        raise ValueError(f"{name} is required here (one row per requested id)")
    csr = as_csr(matrix, name, warn=False)
    if csr.shape[0] != n_rows or csr.shape[1] > n_cols:
        raise ValueError(
            f"{name} must have {n_rows} rows (one per requested id) and at most {n_cols} columns "
            f"(one per {_COLUMNS[name][:-1]} of the model, which has {n_cols} {_COLUMNS[name]}), "
            f"got shape {csr.shape}"
        )
    if csr.shape[1] < n_cols:
        csr = sp.csr_matrix((csr.data, csr.indices, csr.indptr), shape=(n_rows, n_cols))
    return csr


def top_k(
    queries: np.ndarray,
    targets: np.ndarray,
    n: int,
    liked: sp.csr_matrix | None,
    blocked: np.ndarray | None,
    candidates: np.ndarray | None,
    eligible: int,
    num_threads: int,
    index: _native.ItemIndex[Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Best ``n`` targets per query row: int32 ids and scores, padded with -1 / -inf to
    ``min(n, len(targets))`` columns. ``index``, the targets prepared for many calls, is used
    when every target is a candidate; the results are the same."""
    # Slots past the number of targets could only hold padding: N = 10**9 must not allocate them.
    n = min(n, len(targets))
    width = min(n, eligible) if len(queries) else 0
    if width == 0:
        ids = np.empty((len(queries), 0), dtype=np.int32)
        scores = np.empty((len(queries), 0), dtype=targets.dtype)
    else:
        queries = np.ascontiguousarray(queries, dtype=targets.dtype)
        liked_rows = None if liked is None else core_rows(liked)
        if index is not None and candidates is None:
            ids, scores = index.top_k(queries, width, liked_rows, blocked, num_threads)
        else:
            ids, scores = _native.top_k(
                queries, targets, width, liked_rows, blocked, candidates, num_threads
            )
    if width < n:
        ids = np.pad(ids, ((0, 0), (0, n - width)), constant_values=-1)
        scores = np.pad(scores, ((0, 0), (0, n - width)), constant_values=-np.inf)
    return ids, scores


def liked_last(
    ids: np.ndarray,
    scores: np.ndarray,
    liked: sp.csr_matrix,
    candidates: np.ndarray,
    blocked: np.ndarray | None,
) -> None:
    """Fills the padding of each row of a ``top_k`` result ranked among ``candidates`` with the
    row's liked candidates (not ``blocked``), by increasing id, with score -inf, in place.

    implicit ranks every id of ``items=`` and puts the liked ones last (score -3.4e38), so a call
    for a given list returns all of it; -inf keeps them below every real score, as ials's padding.
    """
    pool = np.zeros(liked.shape[1], dtype=bool)
    pool[candidates] = True
    if blocked is not None:
        pool &= ~blocked
    row_of = np.repeat(np.arange(liked.shape[0]), np.diff(liked.indptr))
    keep = pool[liked.indices]
    rows, cols = row_of[keep], liked.indices[keep]  # canonical CSR: ids ascend within a row
    if not len(rows):
        return
    first = np.searchsorted(rows, np.arange(liked.shape[0]))  # each row's first kept entry
    slot = (ids >= 0).sum(axis=1)[rows] + np.arange(len(rows)) - first[rows]
    fits = slot < ids.shape[1]
    ids[rows[fits], slot[fits]] = cols[fits]
    scores[rows[fits], slot[fits]] = -np.inf


def single(ids: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The one row of a single-query result, without its padding."""
    keep = ids[0] >= 0
    return ids[0][keep], scores[0][keep]


def normalized(factors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; a zero row keeps norm 1e-10 as in implicit (so it stays 0)."""
    norms = np.linalg.norm(factors, axis=1)
    norms[norms == 0] = 1e-10
    return np.ascontiguousarray(factors / norms[:, None], dtype=factors.dtype)
