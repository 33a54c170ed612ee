"""The interactions split into contiguous row blocks held on the cluster."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import scipy.sparse as sp
from dask.delayed import delayed as dask_delayed

from .. import _native
from .._validation import as_csr, check_int, transpose
from .frames import add_counts, assemble_block, count_partition, is_dask_dataframe, split_partition
from .retries import Client, Computed, Scattered, Source

_delayed: Any = dask_delayed

GRAM_BLOCK_ROWS: int = _native.GRAM_BLOCK_ROWS
"""Rows per partial sum of the core's Gram matrix: block boundaries are multiples of it so that
the per-block pieces add up to the single-machine bytes."""


def block_bounds(row_interactions: np.ndarray, n_blocks: int) -> np.ndarray:
    """Boundaries ``0 = b_0 < b_1 < ... < b_B = n`` of contiguous row blocks, each boundary but the
    last a multiple of :data:`GRAM_BLOCK_ROWS`, balanced by ``interactions + 1`` per row (so
    empty rows count too): cut ``j`` is the chunk boundary nearest to ``j / B`` of the total
    weight (kept strictly increasing). ``B = min(n_blocks, ceil(n / GRAM_BLOCK_ROWS))``, 1 for
    ``n = 0``."""
    n_blocks = check_int("n_blocks", n_blocks, 1)
    n = len(row_interactions)
    chunks = max(1, -(-n // GRAM_BLOCK_ROWS))
    blocks = min(n_blocks, chunks)
    weights = np.asarray(row_interactions, dtype=np.int64) + 1
    per_chunk = np.add.reduceat(weights, np.arange(0, n, GRAM_BLOCK_ROWS)) if n else np.zeros(1)
    cumulative = np.concatenate([[0], np.cumsum(per_chunk)])  # weight of the chunks before c
    total = float(cumulative[-1])
    cuts = [0]
    for j in range(1, blocks):
        target = total * j / blocks
        c = int(np.searchsorted(cumulative, target))
        if c > 0 and target - cumulative[c - 1] <= cumulative[c] - target:
            c -= 1
        cuts.append(min(max(c, cuts[-1] + 1), chunks - (blocks - j)))
    cuts.append(chunks)
    return np.minimum(np.asarray(cuts, dtype=np.int64) * GRAM_BLOCK_ROWS, n)


def n_workers(client: Client) -> int:
    return max(1, len(client.nthreads()))


class DistributedInteractions:
    """A users x items interaction matrix split into row blocks held on a Dask cluster.

    Users ``[user_bounds[b], user_bounds[b + 1])`` form user block ``b`` (a CSR matrix of those
    rows with every item as a column); item blocks likewise hold rows of the transpose. Blocks are
    contiguous, balanced by number of interactions, and their boundaries are multiples of
    :data:`GRAM_BLOCK_ROWS` (so there are at most ``ceil(n_users / GRAM_BLOCK_ROWS)`` user
    blocks).
    Build it once and pass it to :func:`fit` and :func:`write_recommendations` to ship the
    interactions to the cluster only once; :meth:`close` (or a ``with`` block) releases them.

    Parameters
    ----------
    client : distributed.Client
    user_items : scipy.sparse matrix or dask.dataframe.DataFrame
        A sparse users x items matrix (as for :meth:`AlternatingLeastSquares.fit`; the client
        keeps it to restore blocks lost with a worker), or a DataFrame with one row per
        interaction: integer ``user`` and ``item`` ids from 0 and a ``weight`` (the stored value;
        ``weight=None`` for 1). Duplicate (user, item) pairs are summed, as scipy does.
    n_blocks : int, optional
        Blocks per side (default: the number of workers), capped by the number of
        :data:`GRAM_BLOCK_ROWS`-row chunks.
    shape : (n_users, n_items), optional
        For a DataFrame: the matrix shape (default: one more than the largest ids).
    user, item, weight : str
        For a DataFrame: the column names.
    items_side : bool
        Also build the item blocks (needed by :func:`fit`, not by
        :func:`write_recommendations`).
    """

    def __init__(
        self,
        client: Client,
        user_items: Any,
        *,
        n_blocks: int | None = None,
        shape: tuple[int, int] | None = None,
        user: str = "user",
        item: str = "item",
        weight: str | None = "weight",
        items_side: bool = True,
    ) -> None:
        self.client = client
        blocks = n_workers(client) if n_blocks is None else check_int("n_blocks", n_blocks, 1)
        self.user_bounds: np.ndarray
        self.item_bounds: np.ndarray | None = None
        self._user_blocks: list[Source] = []
        self._item_blocks: list[Source] = []
        if sp.issparse(user_items):
            if shape is not None:
                raise ValueError("shape is only for a DataFrame; a sparse matrix has its own")
            self._from_sparse(user_items, blocks, items_side)
        elif is_dask_dataframe(user_items):
            self._from_dataframe(user_items, blocks, shape, user, item, weight, items_side)
        else:
            raise TypeError(
                "user_items must be a scipy.sparse matrix or a dask.dataframe.DataFrame, got "
                f"{type(user_items).__name__}"
            )

    @property
    def n_user_blocks(self) -> int:
        return len(self.user_bounds) - 1

    @property
    def n_item_blocks(self) -> int:
        return 0 if self.item_bounds is None else len(self.item_bounds) - 1

    def _from_sparse(self, matrix: Any, n_blocks: int, items_side: bool) -> None:
        csr = as_csr(matrix, "user_items")
        self.shape: tuple[int, int] = (int(csr.shape[0]), int(csr.shape[1]))
        self.nnz = int(csr.nnz)
        self.user_bounds = block_bounds(np.diff(csr.indptr), n_blocks)
        self._user_blocks = self._scatter_blocks(csr, self.user_bounds)
        if items_side:
            by_item = transpose(csr)
            self.item_bounds = block_bounds(np.diff(by_item.indptr), n_blocks)
            self._item_blocks = self._scatter_blocks(by_item, self.item_bounds)

    def _scatter_blocks(self, csr: sp.csr_matrix, bounds: np.ndarray) -> list[Source]:
        pieces = [csr[int(lo) : int(hi)] for lo, hi in itertools.pairwise(bounds)]
        futures = self.client.scatter(pieces, hash=False)  # round-robin over the workers
        return [Scattered(self.client, piece, f) for piece, f in zip(pieces, futures, strict=True)]

    def _from_dataframe(
        self,
        frame: Any,
        n_blocks: int,
        shape: tuple[int, int] | None,
        user: str,
        item: str,
        weight: str | None,
        items_side: bool,
    ) -> None:
        columns = [user, item] + ([] if weight is None else [weight])
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"the DataFrame has no column {missing[0]!r}")
        parts = frame[columns].to_delayed()
        counted = [_delayed(count_partition, pure=True)(p, user, item, weight) for p in parts]
        while len(counted) > 1:  # tree reduction: the client receives one pair of count arrays
            counted = [
                _delayed(add_counts, pure=True)(*counted[i : i + 8])
                for i in range(0, len(counted), 8)
            ]
        if counted:
            user_counts, item_counts, nnz = self.client.compute(counted[0]).result()
        else:
            user_counts, item_counts, nnz = np.zeros(0, np.int64), np.zeros(0, np.int64), 0
        if shape is None:
            shape = (len(user_counts), len(item_counts))
        n_users = check_int("shape[0]", shape[0], 0)
        n_items = check_int("shape[1]", shape[1], 0)
        if len(user_counts) > n_users or len(item_counts) > n_items:
            raise ValueError(
                f"ids up to ({len(user_counts) - 1}, {len(item_counts) - 1}) do not fit "
                f"shape {shape}"
            )
        self.shape = (n_users, n_items)
        self.nnz = int(nnz)
        user_counts = np.pad(user_counts, (0, n_users - len(user_counts)))
        item_counts = np.pad(item_counts, (0, n_items - len(item_counts)))
        self.user_bounds = block_bounds(user_counts, n_blocks)
        sides = [(self.user_bounds, n_items)]
        if items_side:
            self.item_bounds = block_bounds(item_counts, n_blocks)
            sides.append((self.item_bounds, n_users))
        splits = [
            _delayed(split_partition, pure=True, nout=sum(len(b) - 1 for b, _ in sides))(
                p, user, item, weight, *(b for b, _ in sides)
            )
            for p in parts
        ]
        graphs = []
        offset = 0
        for bounds, n_cols in sides:
            for b in range(len(bounds) - 1):
                pieces = [split[offset + b] for split in splits]
                graphs.append(
                    _delayed(assemble_block, pure=True)(
                        int(bounds[b + 1] - bounds[b]), n_cols, *pieces
                    )
                )
            offset += len(bounds) - 1
        futures = self.client.compute(graphs)
        sources: list[Source] = [
            Computed(self.client, g, f) for g, f in zip(graphs, futures, strict=True)
        ]
        self._user_blocks = sources[: self.n_user_blocks]
        self._item_blocks = sources[self.n_user_blocks :]

    def close(self) -> None:
        """Releases the blocks held on the cluster."""
        for source in self._user_blocks + self._item_blocks:
            source.release()

    def __enter__(self) -> DistributedInteractions:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
