"""Validation and normalisation for the ranking methods, and the call into the top-K kernel."""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from . import _core
from ._validation import as_csr, check_int, core_rows

_TOP_K: dict[np.dtype[Any], Callable[..., Any]] = {
    np.dtype(np.float32): _core.top_k_f32,
    np.dtype(np.float64): _core.top_k_f64,
}


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
        raise ValueError(f"{name} {ids[out_of_range].flat[0]} is out of range 0..{upper - 1}")
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


def rows_for(name: str, matrix: Any, n_rows: int, n_cols: int) -> sp.csr_matrix:
    """``matrix`` as canonical CSR with exactly one row per requested id and ``n_cols`` columns."""
    if matrix is None:
        raise ValueError(f"{name} is required here (one row per requested id)")
    csr = as_csr(matrix, name, warn=False)
    if csr.shape != (n_rows, n_cols):
        raise ValueError(
            f"{name} must have shape ({n_rows}, {n_cols}): one row per requested id and one "
            f"column per item of the model, got {csr.shape}"
        )
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
) -> tuple[np.ndarray, np.ndarray]:
    """Best ``n`` targets per query row: int32 ids and scores, padded with -1 / -inf to
    ``min(n, len(targets))`` columns."""
    # Slots past the number of targets could only hold padding: N = 10**9 must not allocate them.
    n = min(n, len(targets))
    width = min(n, eligible) if len(queries) else 0
    if width == 0:
        ids = np.empty((len(queries), 0), dtype=np.int32)
        scores = np.empty((len(queries), 0), dtype=targets.dtype)
    else:
        liked_arrays = None if liked is None else tuple(core_rows(liked))[:3]
        ids, scores = _TOP_K[targets.dtype](
            np.ascontiguousarray(queries, dtype=targets.dtype),
            targets,
            width,
            liked_arrays,
            blocked,
            candidates,
            num_threads,
        )
    if width < n:
        ids = np.pad(ids, ((0, 0), (0, n - width)), constant_values=-1)
        scores = np.pad(scores, ((0, 0), (0, n - width)), constant_values=-np.inf)
    return ids, scores


def single(ids: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The one row of a single-query result, without its padding."""
    keep = ids[0] >= 0
    return ids[0][keep], scores[0][keep]


def normalized(factors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; a zero row keeps norm 1e-10 as in implicit (so it stays 0)."""
    norms = np.linalg.norm(factors, axis=1)
    norms[norms == 0] = 1e-10
    return np.ascontiguousarray(factors / norms[:, None], dtype=factors.dtype)
