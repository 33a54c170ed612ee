"""The functions the workers run on one block: solve it, measure its part of the loss, write its
recommendations."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from .. import _native
from .._validation import core_rows
from ..als import AlternatingLeastSquares
from ..solver import Objective, RowSolver, half_sweep


@dataclass(frozen=True)
class Spec:
    """What a block's solve and loss need besides their data: the model's checked parameters."""

    objective: Objective
    solver: RowSolver
    num_threads: int
    penalties: bool


def aligned_array(array: np.ndarray) -> np.ndarray:
    """``array``, copied if needed to be C-contiguous and aligned: arrays deserialised from the
    network may start at any byte, and the core reads only aligned memory."""
    return np.require(array, requirements=["C", "A"])


def aligned_rows(rows: sp.csr_matrix) -> sp.csr_matrix:
    parts = (rows.data, rows.indices, rows.indptr)
    if all(a.flags.aligned for a in parts):
        return rows
    data, indices, indptr = (aligned_array(a) for a in parts)
    aligned = sp.csr_matrix((data, indices, indptr), shape=rows.shape, copy=False)
    aligned.has_sorted_indices = True  # a canonical block stays canonical
    aligned.has_canonical_format = True
    return aligned


def _block_rows(value: np.ndarray | tuple[Any, ...]) -> np.ndarray:
    """A block's rows: scattered from the client, or the result of its previous solve."""
    return value[0] if isinstance(value, tuple) else value


def solve_task(
    rows: sp.csr_matrix,
    x: np.ndarray | tuple[Any, ...],
    y: np.ndarray,
    gram_y: np.ndarray,
    spec: Spec,
) -> tuple[np.ndarray, np.ndarray, float]:
    """One block's half-sweep: new rows, the Gram matrices of their blocks of
    ``GRAM_BLOCK_ROWS`` rows and (optionally) their penalty."""
    x = np.array(_block_rows(x), copy=True, order="C")  # solved in place: never shared memory
    block = core_rows(aligned_rows(rows))
    y, gram_y = aligned_array(y), aligned_array(gram_y)
    half_sweep(block, x, y, gram_y, spec.objective, spec.solver, spec.num_threads)
    penalty = _native.penalty(block, x, spec.objective) if spec.penalties else 0.0
    return x, _native.gram_blocks(x, spec.num_threads), penalty


def loss_task(
    rows: sp.csr_matrix, x: np.ndarray | tuple[Any, ...], y: np.ndarray, spec: Spec
) -> _native.LossTerms:
    """The parts of the objective of one user block (its column penalty is the driver's)."""
    block = core_rows(aligned_rows(rows))
    x, y = aligned_array(_block_rows(x)), aligned_array(y)
    return _native.loss_terms(block, x, y, spec.objective, spec.num_threads)


@dataclass(frozen=True)
class RecommendSpec:
    """What a block's recommendations need besides its factors: the checked arguments."""

    n: int
    filter_already_liked_items: bool
    filter_items: np.ndarray | None
    items: np.ndarray | None
    num_threads: int
    item_ids: np.ndarray | None = None  # raw ids of the item columns, written instead of them


def recommend_task(
    rows: sp.csr_matrix | None,
    x: np.ndarray,
    y: np.ndarray,
    users: np.ndarray,
    spec: RecommendSpec,
    path: str,
) -> tuple[str, int]:
    """Writes one user block's top-N as a Parquet file (``users``: the id written for each row
    of the block); returns its path and number of rows."""
    import pyarrow.parquet as pq

    from ..export import arrow_table, recommendation_columns

    model = AlternatingLeastSquares(factors=x.shape[1], dtype=x.dtype, num_threads=spec.num_threads)
    model.user_factors = aligned_array(x)
    model.item_factors = aligned_array(y)
    rows = None if rows is None else aligned_rows(rows)
    ids, scores = model.recommend_all(
        rows,
        N=spec.n,
        filter_already_liked_items=spec.filter_already_liked_items and rows is not None,
        filter_items=spec.filter_items,
        items=spec.items,
    )
    columns = recommendation_columns(users, ids, scores, spec.item_ids)
    table = arrow_table(columns)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    partial = f"{path}.{uuid.uuid4().hex}.tmp"  # a retried task never leaves half a file
    pq.write_table(table, partial)
    os.replace(partial, path)
    return path, int(table.num_rows)
