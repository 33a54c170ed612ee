"""The functions the workers run on one block: solve it, measure its part of the loss, write its
recommendations."""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..als import AlternatingLeastSquares
from ..solver import calculate_loss, gram, solve_rows
from .blocks import GRAM_BLOCK_ROWS


@dataclass(frozen=True)
class Spec:
    """What a block's solve and loss need besides their data: the model's checked parameters."""

    regularization: float
    alpha: float
    regularization_exponent: float
    unobserved_weight: float
    use_cg: bool
    cg_steps: int
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


def _gram_pieces(x: np.ndarray, num_threads: int) -> np.ndarray:
    """The Gram matrix of each :data:`GRAM_BLOCK_ROWS`-row chunk of ``x``, stacked."""
    starts = range(0, x.shape[0], GRAM_BLOCK_ROWS)
    if not starts:
        return np.zeros((0, x.shape[1], x.shape[1]))

    def piece(start: int) -> np.ndarray:
        return gram(x[start : start + GRAM_BLOCK_ROWS], 1)

    workers = min(len(starts), num_threads or os.cpu_count() or 1)
    if workers <= 1:
        return np.stack([piece(s) for s in starts])
    with ThreadPoolExecutor(workers) as pool:  # the core releases the GIL
        return np.stack(list(pool.map(piece, starts)))


def _penalty(rows: sp.csr_matrix, x: np.ndarray, spec: Spec) -> float:
    """``sum_u lambda_u |x_u|^2`` over the block's rows (the objective's regularization term)."""
    if spec.regularization_exponent == 0.0:
        lam: Any = spec.regularization
    else:
        support = np.diff(rows.indptr) + spec.unobserved_weight * rows.shape[1]
        lam = spec.regularization * support**spec.regularization_exponent
    squares = np.einsum("ij,ij->i", x, x, dtype=np.float64)
    return float(np.sum(lam * squares))


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
    """One block's half-sweep: new rows, their Gram pieces and (optionally) their penalty."""
    x = np.array(_block_rows(x), copy=True, order="C")  # solved in place: never shared memory
    rows, y, gram_y = aligned_rows(rows), aligned_array(y), aligned_array(gram_y)
    solve_rows(
        rows,
        x,
        y,
        spec.regularization,
        alpha=spec.alpha,
        use_cg=spec.use_cg,
        cg_steps=spec.cg_steps,
        regularization_exponent=spec.regularization_exponent,
        unobserved_weight=spec.unobserved_weight,
        gram=gram_y,
        num_threads=spec.num_threads,
    )
    penalty = _penalty(rows, x, spec) if spec.penalties else 0.0
    return x, _gram_pieces(x, spec.num_threads), penalty


def loss_task(
    rows: sp.csr_matrix, x: np.ndarray | tuple[Any, ...], y: np.ndarray, spec: Spec
) -> tuple[float, float, float]:
    """(weighted squared error, total confidence weight, penalty of ``x``) of one user block."""
    rows, x, y = aligned_rows(rows), aligned_array(_block_rows(x)), aligned_array(y)
    normalised = calculate_loss(
        rows,
        x,
        y,
        0.0,
        alpha=spec.alpha,
        regularization_exponent=spec.regularization_exponent,
        unobserved_weight=spec.unobserved_weight,
        num_threads=spec.num_threads,
    )
    confidence = np.abs(rows.data) * np.float32(spec.alpha)  # in float32, as the core does
    weight = float(confidence.sum(dtype=np.float64)) + spec.unobserved_weight * float(
        rows.shape[0] * rows.shape[1] - rows.nnz
    )
    error = normalised * weight if weight > 0 else normalised
    return error, weight, _penalty(rows, x, spec)


@dataclass(frozen=True)
class RecommendSpec:
    """What a block's recommendations need besides its factors: the checked arguments."""

    n: int
    filter_already_liked_items: bool
    filter_items: np.ndarray | None
    items: np.ndarray | None
    num_threads: int


def recommend_task(
    rows: sp.csr_matrix | None,
    x: np.ndarray,
    y: np.ndarray,
    first_user: int,
    spec: RecommendSpec,
    path: str,
) -> tuple[str, int]:
    """Writes one user block's top-N as a Parquet file; returns its path and number of rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

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
    kept = ids >= 0  # padding (-1 / -inf) only ever ends a row
    users = np.broadcast_to((first_user + np.arange(ids.shape[0]))[:, None], ids.shape)
    ranks = np.broadcast_to(np.arange(1, ids.shape[1] + 1, dtype=np.int32), ids.shape)
    table = pa.table(
        {
            "user": pa.array(users[kept], pa.int64()),
            "rank": pa.array(ranks[kept], pa.int32()),
            "item": pa.array(ids[kept].astype(np.int64), pa.int64()),
            "score": pa.array(scores[kept]),
        }
    )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    partial = f"{path}.{uuid.uuid4().hex}.tmp"  # a retried task never leaves half a file
    pq.write_table(table, partial)
    os.replace(partial, path)
    return path, int(kept.sum())
