"""Interaction blocks from a Dask DataFrame: the tasks that count, cut and assemble its
partitions into the same CSR blocks a scipy matrix gives."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import scipy.sparse as sp

from .._validation import as_csr


def is_dask_dataframe(value: Any) -> bool:
    try:
        import dask.dataframe as dd
    except ImportError:  # dask without its dataframe dependencies (pandas, pyarrow)
        return False
    return isinstance(value, dd.DataFrame)


def _ids(values: Any, name: str) -> np.ndarray:
    ids = np.asarray(values)
    if ids.dtype == bool or not (ids.size == 0 or np.issubdtype(ids.dtype, np.integer)):
        raise TypeError(f"the {name} column must hold integer ids, got dtype {ids.dtype}")
    ids = ids.astype(np.int64, copy=False)
    if ids.size and ids.min() < 0:
        raise ValueError(f"the {name} column holds a negative id ({ids.min()})")
    return ids


def _weights(frame: Any, weight: str | None) -> np.ndarray:
    if weight is None:
        return np.ones(len(frame), dtype=np.float32)
    values = np.asarray(frame[weight])
    if values.dtype.kind not in "biuf":
        raise TypeError(f"the {weight} column must hold real numbers, got dtype {values.dtype}")
    return values


def count_partition(
    frame: Any, user: str, item: str, weight: str | None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Interactions per user and per item of one partition, and its number of rows."""
    users, items = _ids(frame[user], user), _ids(frame[item], item)
    _weights(frame, weight)  # checked here too, so bad data fails before any block is built
    return np.bincount(users), np.bincount(items), len(users)


def add_counts(*parts: tuple[np.ndarray, np.ndarray, int]) -> tuple[np.ndarray, np.ndarray, int]:
    def add(arrays: Iterable[np.ndarray]) -> np.ndarray:
        arrays = list(arrays)
        total = np.zeros(max((len(a) for a in arrays), default=0), dtype=np.int64)
        for a in arrays:
            total[: len(a)] += a
        return total

    return add(p[0] for p in parts), add(p[1] for p in parts), sum(p[2] for p in parts)


Piece = tuple[np.ndarray, np.ndarray, np.ndarray]


def split_partition(
    frame: Any, user: str, item: str, weight: str | None, *bounds_per_side: np.ndarray
) -> tuple[Piece, ...]:
    """One partition cut into (row within block, column, value) pieces: the user blocks first
    (rows are users), then, with a second set of bounds, the item blocks (rows are items)."""
    users, items = _ids(frame[user], user), _ids(frame[item], item)
    values = _weights(frame, weight)
    pieces: list[Piece] = []
    for side, bounds in enumerate(bounds_per_side):
        rows, cols = (users, items) if side == 0 else (items, users)
        block = np.searchsorted(bounds, rows, side="right") - 1
        order = np.argsort(block, kind="stable")
        starts = np.searchsorted(block[order], np.arange(len(bounds)))
        for b in range(len(bounds) - 1):
            chosen = order[starts[b] : starts[b + 1]]
            pieces.append((rows[chosen] - bounds[b], cols[chosen], values[chosen]))
    return tuple(pieces)


def assemble_block(n_rows: int, n_cols: int, *pieces: Piece) -> sp.csr_matrix:
    """The canonical CSR block (as :meth:`AlternatingLeastSquares.fit` sees it) of its pieces."""
    rows = np.concatenate([p[0] for p in pieces]) if pieces else np.zeros(0, np.int64)
    cols = np.concatenate([p[1] for p in pieces]) if pieces else np.zeros(0, np.int64)
    values = np.concatenate([p[2] for p in pieces]) if pieces else np.zeros(0, np.float32)
    if cols.size and cols.max() >= n_cols:
        raise ValueError(f"an id ({cols.max()}) is out of range for {n_cols} columns")
    matrix = sp.coo_matrix((values, (rows, cols)), shape=(n_rows, n_cols)).tocsr()
    return as_csr(matrix, "the weight column", warn=False)
