"""Training and batch scoring on a Dask cluster (``pip install 'ials[dask]'``).

::

    from distributed import Client
    import ials
    import ials.distributed

    client = Client("tcp://scheduler:8786")
    model = ials.AlternatingLeastSquares(factors=128, iterations=15, random_state=0)
    ials.distributed.fit(client, user_items, model)  # scipy matrix or Dask DataFrame
    ials.distributed.write_recommendations(client, user_items, model, "/shared/recs", N=50)

The interactions are split into contiguous blocks of users and of items
(:class:`DistributedInteractions`), balanced by number of interactions, and stay on the workers
for the whole fit: only factors move. Each half-sweep broadcasts the fixed side's factors and
their Gram matrix to the workers, each worker solves its blocks with :func:`ials.solve_rows`, and
the client gathers the new blocks and sums their Gram pieces in block order.

**Same answer as one machine.** Given the same starting factors (a fresh model draws them from
``random_state`` exactly as :meth:`AlternatingLeastSquares.fit` does), the factors are bitwise
identical to a single-machine fit for any number of workers and blocks. Every row is solved
independently by the same code; the one reduction, the Gram matrix of the side just solved, is a
float64 sum of partial sums over fixed blocks of :data:`GRAM_BLOCK_ROWS` rows added in order (see
``rust/ials-core/src/gram.rs``). Block boundaries are therefore multiples of
:data:`GRAM_BLOCK_ROWS`, each worker returns the partial Gram matrix of every such chunk of its
block, and the client adds them in chunk order, the same additions in the same order. This needs
every worker and the client to run the same ials build with the same kernels
(:func:`ials.simd_level`); :func:`fit` logs a warning when they differ.

**Faults.** A worker that dies mid-fit costs a retry of the blocks it held, not the fit: the
interaction blocks are recreated from their source and the factors from the client's copy, and
the result is the same. What is assumed:

- Blocks built from a scipy matrix are scattered from the client, which keeps the matrix for the
  life of the :class:`DistributedInteractions`; a block lost with its worker is scattered again.
- Blocks built from a Dask DataFrame are tasks derived from its partitions, so the scheduler
  recomputes a lost block from the DataFrame's own graph (read it from files, e.g. with
  ``dask.dataframe.read_parquet``, or ``persist`` it; a DataFrame made from data scattered by
  hand cannot be recomputed once that data is lost).
- The client keeps every factor (it gathers each new block) and broadcasts the fixed side and
  its Gram matrix each half-sweep; a block's own rows warm-start its next solve from the worker
  that solved them, without being sent again. A lost broadcast, or rows lost with their worker,
  are scattered again from the client's copy, and only the blocks whose tasks did not finish
  are solved again. A solve depends only on the current broadcast, its interaction block and
  its block's previous rows, whose own inputs are released as soon as it has finished, so no
  lineage builds up across iterations (Dask cannot recompute old iterations; ials never needs
  it to).
- A task that itself kills its worker repeatedly fails with Dask's ``KilledWorker`` (the
  scheduler's ``distributed.scheduler.allowed-failures``), and an exception raised by a task is
  raised by :func:`fit`: only lost work is retried, at most ``max_retries`` times per step.

Workers need ials (the same version as the client) and numpy/scipy; writing recommendations also
needs pyarrow. Start them with one Dask thread each (``dask worker --nthreads 1``): each block is
solved with ``num_threads`` Rayon threads (0 = every core of the worker).
"""

from __future__ import annotations

import itertools
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import CancelledError, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import distributed
import numpy as np
import scipy.sparse as sp
from dask.delayed import delayed as dask_delayed

from . import _ranking
from ._core import simd_level
from ._progress import Progress
from ._validation import as_csr, check_dtype, check_int, transpose
from .als import AlternatingLeastSquares, Callback
from .callbacks import run_callback
from .solver import calculate_loss, gram, solve_rows

__all__ = [
    "GRAM_BLOCK_ROWS",
    "DistributedInteractions",
    "block_bounds",
    "fit",
    "write_recommendations",
]

log = logging.getLogger(__name__)

# distributed annotates only part of its API (strict mypy rejects calls of the rest), so its
# objects are plain Any here; the aliases say what is meant.
Client = Any
"""A ``distributed.Client``."""
Future = Any
"""A ``distributed.Future``."""
_wait: Any = distributed.wait
_delayed: Any = dask_delayed

GRAM_BLOCK_ROWS = 4096
"""Rows per partial sum of the core's Gram matrix (``BLOCK_ROWS`` in ``gram.rs``): block
boundaries are multiples of it so that per-block pieces add up to the single-machine bytes."""


# ------------------------------------------------------------------------------------------------
# Blocks


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


class _Source:
    """Where one block lives on the cluster, and how to get it back when it is lost."""

    def future(self) -> Future:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError


class _Scattered(_Source):
    """A value the client keeps, scattered (again) whenever the cluster does not hold it."""

    def __init__(self, client: Client, value: Any, future: Future) -> None:
        self._client = client
        self._value = value
        self._future: Future | None = future

    def future(self) -> Future:
        if self._future is None or self._future.status != "finished":
            self._future = self._client.scatter(self._value, hash=False)
        return self._future

    def release(self) -> None:
        if self._future is not None:
            self._future.release()
            self._future = None


class _Computed(_Source):
    """A task of a graph; the scheduler recomputes it from the graph when its worker dies."""

    def __init__(self, client: Client, graph: Any, future: Future) -> None:
        self._client = client
        self._graph = graph
        self._future: Future | None = future

    def future(self) -> Future:
        if self._future is None or self._future.status == "cancelled":
            self._future = self._client.compute(self._graph)
        return self._future

    def release(self) -> None:
        if self._future is not None:
            self._future.release()
            self._future = None


def _n_workers(client: Client) -> int:
    return max(1, len(client.nthreads()))


def _is_dask_dataframe(value: Any) -> bool:
    try:
        import dask.dataframe as dd
    except ImportError:  # dask without its dataframe dependencies (pandas, pyarrow)
        return False
    return isinstance(value, dd.DataFrame)


class DistributedInteractions:
    """A users x items interaction matrix split into row blocks held on a Dask cluster.

    Users ``[user_bounds[b], user_bounds[b + 1])`` form user block ``b`` (a CSR matrix of those
    rows with every item as a column); item blocks likewise hold rows of the transpose. Blocks are
    contiguous, balanced by number of interactions, and their boundaries are multiples of
    :data:`GRAM_BLOCK_ROWS` (so there are at most ``ceil(n_users / 4096)`` user blocks).
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
        Blocks per side (default: the number of workers), capped by the number of 4096-row
        chunks.
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
        blocks = _n_workers(client) if n_blocks is None else check_int("n_blocks", n_blocks, 1)
        self.user_bounds: np.ndarray
        self.item_bounds: np.ndarray | None = None
        self._user_blocks: list[_Source] = []
        self._item_blocks: list[_Source] = []
        if sp.issparse(user_items):
            if shape is not None:
                raise ValueError("shape is only for a DataFrame; a sparse matrix has its own")
            self._from_sparse(user_items, blocks, items_side)
        elif _is_dask_dataframe(user_items):
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

    def _scatter_blocks(self, csr: sp.csr_matrix, bounds: np.ndarray) -> list[_Source]:
        pieces = [csr[int(lo) : int(hi)] for lo, hi in itertools.pairwise(bounds)]
        futures = self.client.scatter(pieces, hash=False)  # round-robin over the workers
        return [_Scattered(self.client, piece, f) for piece, f in zip(pieces, futures, strict=True)]

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
        counted = [_delayed(_count_partition, pure=True)(p, user, item, weight) for p in parts]
        while len(counted) > 1:  # tree reduction: the client receives one pair of count arrays
            counted = [
                _delayed(_add_counts, pure=True)(*counted[i : i + 8])
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
            _delayed(_split_partition, pure=True, nout=sum(len(b) - 1 for b, _ in sides))(
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
                    _delayed(_assemble_block, pure=True)(
                        int(bounds[b + 1] - bounds[b]), n_cols, *pieces
                    )
                )
            offset += len(bounds) - 1
        futures = self.client.compute(graphs)
        sources: list[_Source] = [
            _Computed(self.client, g, f) for g, f in zip(graphs, futures, strict=True)
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


def _count_partition(
    frame: Any, user: str, item: str, weight: str | None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Interactions per user and per item of one partition, and its number of rows."""
    users, items = _ids(frame[user], user), _ids(frame[item], item)
    _weights(frame, weight)  # checked here too, so bad data fails before any block is built
    return np.bincount(users), np.bincount(items), len(users)


def _add_counts(*parts: tuple[np.ndarray, np.ndarray, int]) -> tuple[np.ndarray, np.ndarray, int]:
    def add(arrays: Iterable[np.ndarray]) -> np.ndarray:
        arrays = list(arrays)
        total = np.zeros(max((len(a) for a in arrays), default=0), dtype=np.int64)
        for a in arrays:
            total[: len(a)] += a
        return total

    return add(p[0] for p in parts), add(p[1] for p in parts), sum(p[2] for p in parts)


Piece = tuple[np.ndarray, np.ndarray, np.ndarray]


def _split_partition(
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


def _assemble_block(n_rows: int, n_cols: int, *pieces: Piece) -> sp.csr_matrix:
    """The canonical CSR block (as :meth:`AlternatingLeastSquares.fit` sees it) of its pieces."""
    rows = np.concatenate([p[0] for p in pieces]) if pieces else np.zeros(0, np.int64)
    cols = np.concatenate([p[1] for p in pieces]) if pieces else np.zeros(0, np.int64)
    values = np.concatenate([p[2] for p in pieces]) if pieces else np.zeros(0, np.float32)
    if cols.size and cols.max() >= n_cols:
        raise ValueError(f"an id ({cols.max()}) is out of range for {n_cols} columns")
    matrix = sp.coo_matrix((values, (rows, cols)), shape=(n_rows, n_cols)).tocsr()
    return as_csr(matrix, "the weight column", warn=False)


# ------------------------------------------------------------------------------------------------
# Running one step over every block, with retries of lost work


class _Lost:
    pass


_LOST = _Lost()


def _settle(futures: Iterable[Future]) -> None:
    """Waits until every future is finished, failed or cancelled."""
    pending = [f for f in futures if not f.done()]
    while pending:
        try:
            _wait(pending)
        except CancelledError:  # one was cancelled (its input was lost): wait for the others
            pass
        pending = [f for f in pending if not f.done()]


class _Runner:
    def __init__(self, client: Client, max_retries: int) -> None:
        self.client = client
        self.max_retries = max_retries

    def run(
        self, what: str, n: int, submit: Callable[[list[int]], list[Future]]
    ) -> tuple[list[Any], list[Future]]:
        """Results of ``submit``'s tasks for blocks ``0..n-1``, and their futures (which the
        caller releases); blocks whose task was lost (its worker died, or an input was lost with
        it) are submitted again."""
        results: dict[int, Any] = {}
        kept: dict[int, Future] = {}
        todo = list(range(n))
        for attempt in range(self.max_retries + 1):
            try:
                futures = dict(zip(todo, submit(todo), strict=True))
            except (OSError, TimeoutError) as err:  # a worker left while data was sent to it
                log.warning("%s: sending blocks failed (%s); trying again", what, err)
                time.sleep(0.1 * 2**attempt)
                continue
            _settle(futures.values())
            lost: list[int] = []
            finished: list[int] = []
            for b, f in futures.items():
                if f.status == "finished":
                    finished.append(b)
                elif f.status == "error":
                    f.result()  # raises the task's exception, with its traceback
                else:
                    lost.append(b)
            values = self._gather([futures[b] for b in finished])
            for b, value in zip(finished, values, strict=True):
                if value is _LOST:
                    lost.append(b)
                    futures[b].release()
                else:
                    results[b], kept[b] = value, futures[b]
            if not lost:
                return [results[b] for b in range(n)], [kept[b] for b in range(n)]
            todo = sorted(lost)
            log.warning(
                "%s: %d of %d blocks were lost with a worker; submitting them again (retry %d)",
                what,
                len(todo),
                n,
                attempt + 1,
            )
        for f in kept.values():
            f.release()
        raise RuntimeError(
            f"{what}: blocks were still being lost after {self.max_retries} retries "
            "(workers keep dying?)"
        )

    def _gather(self, futures: list[Future]) -> list[Any]:
        try:
            return list(self.client.gather(futures))
        except (CancelledError, OSError):  # a result was lost after it finished: keep the others
            out: list[Any] = []
            for f in futures:
                try:
                    out.append(f.result())
                except CancelledError:
                    out.append(_LOST)
            return out


def _scatter_near(
    client: Client, arrays: Sequence[np.ndarray], near: Sequence[Future]
) -> list[Future]:
    """Scatters ``arrays[j]`` to a worker holding ``near[j]`` (where its block's task will run)."""
    who_has = client.who_has(list(near))
    running = set(client.nthreads())
    groups: dict[str | None, list[int]] = {}
    for j, f in enumerate(near):
        holders = [w for w in who_has.get(f.key, ()) if w in running]
        groups.setdefault(holders[0] if holders else None, []).append(j)
    out: list[Future | None] = [None] * len(arrays)
    for worker, indices in groups.items():
        values = [arrays[j] for j in indices]
        try:
            futures = client.scatter(
                values, workers=None if worker is None else [worker], hash=False
            )
        except (KeyError, OSError, TimeoutError, ValueError):  # the worker just left: anywhere
            futures = client.scatter(values, hash=False)
        for j, f in zip(indices, futures, strict=True):
            out[j] = f
    return [f for f in out if f is not None]


# ------------------------------------------------------------------------------------------------
# Tasks run on the workers


@dataclass(frozen=True)
class _Spec:
    regularization: float
    alpha: float
    regularization_exponent: float
    unobserved_weight: float
    use_cg: bool
    cg_steps: int
    num_threads: int
    penalties: bool


def _aligned(array: np.ndarray) -> np.ndarray:
    """``array``, copied if needed to be C-contiguous and aligned: arrays deserialised from the
    network may start at any byte, and the core reads only aligned memory."""
    return np.require(array, requirements=["C", "A"])


def _aligned_rows(rows: sp.csr_matrix) -> sp.csr_matrix:
    parts = (rows.data, rows.indices, rows.indptr)
    if all(a.flags.aligned for a in parts):
        return rows
    data, indices, indptr = (_aligned(a) for a in parts)
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


def _penalty(rows: sp.csr_matrix, x: np.ndarray, spec: _Spec) -> float:
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


def _solve_task(
    rows: sp.csr_matrix,
    x: np.ndarray | tuple[Any, ...],
    y: np.ndarray,
    gram_y: np.ndarray,
    spec: _Spec,
) -> tuple[np.ndarray, np.ndarray, float]:
    """One block's half-sweep: new rows, their Gram pieces and (optionally) their penalty."""
    x = np.array(_block_rows(x), copy=True, order="C")  # solved in place: never shared memory
    rows, y, gram_y = _aligned_rows(rows), _aligned(y), _aligned(gram_y)
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


def _loss_task(
    rows: sp.csr_matrix, x: np.ndarray | tuple[Any, ...], y: np.ndarray, spec: _Spec
) -> tuple[float, float, float]:
    """(weighted squared error, total confidence weight, penalty of ``x``) of one user block."""
    rows, x, y = _aligned_rows(rows), _aligned(_block_rows(x)), _aligned(y)
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


# ------------------------------------------------------------------------------------------------
# Training


class _Broadcast:
    """Values the client keeps, scattered to every worker (again whenever one was lost)."""

    def __init__(self, client: Client, *values: Any) -> None:
        self._client = client
        self._values = list(values)
        self._futures: list[Future] = []

    def futures(self) -> list[Future]:
        if not self._futures or any(f.status != "finished" for f in self._futures):
            self.release()
            self._futures = self._client.scatter(self._values, broadcast=True, hash=False)
        return self._futures

    def release(self) -> None:
        for f in self._futures:
            f.release()
        self._futures = []


class _Side:
    """One side of the factorisation: its blocks, its factors (the client's copy) and, for each
    block, the future of its latest solve, whose rows warm-start the next one where they are."""

    def __init__(
        self, name: str, blocks: Sequence[_Source], bounds: np.ndarray, factors: np.ndarray
    ) -> None:
        self.name = name
        self.blocks = blocks
        self.bounds = bounds
        self.factors = factors
        self.latest: list[Future | None] = [None] * len(blocks)

    def rows(self, b: int) -> np.ndarray:
        return self.factors[self.bounds[b] : self.bounds[b + 1]]

    def inputs(self, client: Client, todo: list[int]) -> tuple[list[Future], list[Future]]:
        """The futures of blocks ``todo`` and of their current rows: the latest solve's result
        on the cluster, or (first sweep, or lost with a worker) the client's copy, scattered."""
        block_futures = [self.blocks[b].future() for b in todo]
        rows: list[Future | None] = []
        for b in todo:
            latest = self.latest[b]
            rows.append(latest if latest is not None and latest.status == "finished" else None)
        missing = [j for j, f in enumerate(rows) if f is None]
        if missing:
            scattered = _scatter_near(
                client,
                [self.rows(todo[j]).copy() for j in missing],
                [block_futures[j] for j in missing],
            )
            for j, f in zip(missing, scattered, strict=True):
                rows[j] = f
        return block_futures, [f for f in rows if f is not None]

    def keep(self, futures: list[Future]) -> None:
        self.release()
        self.latest = list(futures)

    def release(self) -> None:
        for f in self.latest:
            if f is not None:
                f.release()
        self.latest = [None] * len(self.blocks)


def _half_sweep(
    runner: _Runner, side: _Side, fixed: _Broadcast, spec: _Spec
) -> tuple[np.ndarray, float]:
    """Solves every block of ``side`` against the broadcast (factors, Gram matrix) of the other
    side, writes the rows into the client's copy; returns their Gram matrix and penalty."""
    client = runner.client

    def submit(todo: list[int]) -> list[Future]:
        block_futures, row_futures = side.inputs(client, todo)
        y_future, gram_future = fixed.futures()
        n = len(todo)
        futures: list[Future] = client.map(
            _solve_task,
            block_futures,
            row_futures,
            [y_future] * n,
            [gram_future] * n,
            [spec] * n,
            pure=False,
        )
        return futures

    results, futures = runner.run(side.name, len(side.blocks), submit)
    side.keep(futures)
    k = side.factors.shape[1]
    total = np.zeros((k, k))
    penalty = 0.0
    for b, (rows, pieces, block_penalty) in enumerate(results):
        side.rows(b)[:] = rows
        for piece in pieces:  # chunk order: the additions of the core's own gram()
            total += piece
        penalty += block_penalty
    return total, penalty


def _loss(
    runner: _Runner, users: _Side, fixed: _Broadcast, spec: _Spec, item_penalty: float
) -> float:
    """The training objective (as :func:`ials.calculate_loss`) from per-block pieces."""
    client = runner.client

    def submit(todo: list[int]) -> list[Future]:
        block_futures, row_futures = users.inputs(client, todo)
        y_future = fixed.futures()[0]
        n = len(todo)
        futures: list[Future] = client.map(
            _loss_task, block_futures, row_futures, [y_future] * n, [spec] * n, pure=False
        )
        return futures

    parts, futures = runner.run("loss", len(users.blocks), submit)
    for f in futures:
        f.release()
    total = sum(p[0] + p[2] for p in parts) + item_penalty
    weight = sum(p[1] for p in parts)
    return total / weight if weight > 0 else total


def _check_kernels(client: Client) -> None:
    levels = set(client.run(simd_level).values())
    if levels - {simd_level()}:
        log.warning(
            "the workers' kernels (%s) differ from the client's (%s): factors will not be bitwise "
            "identical to a single-machine fit",
            ", ".join(sorted(levels)),
            simd_level(),
        )


def fit(
    client: Client,
    user_items: Any,
    model: AlternatingLeastSquares,
    *,
    n_blocks: int | None = None,
    num_threads: int | None = None,
    show_progress: bool = True,
    callback: Callback | None = None,
    max_retries: int = 5,
) -> None:
    """Fits ``model`` on the cluster of ``client``: the distributed :meth:`model.fit
    <ials.AlternatingLeastSquares.fit>`, with the same factors (bitwise, from the same starting
    factors).

    Every parameter of the model is honoured (``factors``, ``regularization``, ``alpha``,
    ``dtype``, ``use_cg``, ``cg_steps``, ``iterations``, ``calculate_training_loss``,
    ``random_state``, ``regularization_exponent``, ``unobserved_weight``), and so are existing
    factors that fit the data, as in ``model.fit``. ``callback(iteration, seconds, loss)`` runs
    on the client after each sweep and may raise :class:`ials.callbacks.StopFitting`.

    Parameters
    ----------
    client : distributed.Client
    user_items : scipy.sparse matrix, dask.dataframe.DataFrame or DistributedInteractions
        The interactions; a matrix or DataFrame is split into blocks (see
        :class:`DistributedInteractions`) for this fit and released afterwards.
    model : AlternatingLeastSquares
        Receives the factors.
    n_blocks : int, optional
        Blocks per side when ``user_items`` is not already split (default: one per worker).
    num_threads : int, optional
        Rayon threads per block task on a worker (default: ``model.num_threads``; 0 = all cores).
    max_retries : int
        How many times one step may resubmit blocks lost with a worker before giving up.
    """
    model._check_parameters()
    objective = model._objective()
    dtype = check_dtype(model.dtype)
    threads = check_int("num_threads", model.num_threads if num_threads is None else num_threads, 0)
    max_retries = check_int("max_retries", max_retries, 0)
    data = user_items
    if not isinstance(user_items, DistributedInteractions):
        data = DistributedInteractions(client, user_items, n_blocks=n_blocks)
    elif n_blocks is not None:
        raise ValueError("n_blocks is fixed by the DistributedInteractions already built")
    try:
        if data.item_bounds is None:
            raise ValueError("user_items was built with items_side=False: fit needs item blocks")
        _check_kernels(client)
        spec = _Spec(
            *objective,
            use_cg=bool(model.use_cg),
            cg_steps=int(model.cg_steps),
            num_threads=threads,
            penalties=bool(model.calculate_training_loss),
        )
        _fit(client, data, model, dtype, spec, show_progress, callback, max_retries)
    finally:
        if data is not user_items:
            data.close()


def _fit(
    client: Client,
    data: DistributedInteractions,
    model: AlternatingLeastSquares,
    dtype: np.dtype[Any],
    spec: _Spec,
    show_progress: bool,
    callback: Callback | None,
    max_retries: int,
) -> None:
    assert data.item_bounds is not None
    n_users, n_items = data.shape
    model._initialise(n_users, n_items, dtype)
    x, y = model.user_factors, model.item_factors
    assert x is not None and y is not None
    model.user_factors, model.item_factors = x, y  # drops caches even if a callback raises
    runner = _Runner(client, max_retries)
    users = _Side("users", data._user_blocks, data.user_bounds, x)
    items = _Side("items", data._item_blocks, data.item_bounds, y)
    gram_y = gram(y)
    fixed_y: _Broadcast | None = None
    current_loss: float | None = None
    try:
        with Progress(model.iterations, show_progress) as progress:
            for iteration in range(model.iterations):
                start = time.perf_counter()
                fixed_y = fixed_y or _Broadcast(client, y.copy(), gram_y)
                gram_x, _ = _half_sweep(runner, users, fixed_y, spec)
                fixed_y.release()
                fixed_x = _Broadcast(client, x.copy(), gram_x)
                gram_y, item_penalty = _half_sweep(runner, items, fixed_x, spec)
                fixed_x.release()
                fixed_y = None
                if spec.penalties:
                    fixed_y = _Broadcast(client, y.copy(), gram_y)  # reused by the next sweep
                    current_loss = _loss(runner, users, fixed_y, spec, item_penalty)
                    if not show_progress:
                        log.info("iteration %d: loss %.6g", iteration, current_loss)
                progress.update(current_loss)
                if not run_callback(callback, iteration, time.perf_counter() - start, current_loss):
                    break
    finally:
        if fixed_y is not None:
            fixed_y.release()
        users.release()
        items.release()
        model.user_factors, model.item_factors = x, y


# ------------------------------------------------------------------------------------------------
# Batch recommendations


@dataclass(frozen=True)
class _RecommendSpec:
    n: int
    filter_already_liked_items: bool
    filter_items: np.ndarray | None
    items: np.ndarray | None
    num_threads: int


def _recommend_task(
    rows: sp.csr_matrix | None,
    x: np.ndarray,
    y: np.ndarray,
    first_user: int,
    spec: _RecommendSpec,
    path: str,
) -> tuple[str, int]:
    """Writes one user block's top-N as a Parquet file; returns its path and number of rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    model = AlternatingLeastSquares(factors=x.shape[1], dtype=x.dtype, num_threads=spec.num_threads)
    model.user_factors = _aligned(x)
    model.item_factors = _aligned(y)
    rows = None if rows is None else _aligned_rows(rows)
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


def write_recommendations(
    client: Client,
    user_items: Any,
    model: AlternatingLeastSquares,
    directory: str | os.PathLike[str],
    *,
    N: int = 10,
    filter_already_liked_items: bool = True,
    filter_items: Any = None,
    items: Any = None,
    n_blocks: int | None = None,
    num_threads: int | None = None,
    overwrite: bool = False,
    max_retries: int = 5,
) -> list[str]:
    """The top ``N`` items of every user, written by the workers as one Parquet file per user
    block (``part-00000.parquet``, ...) in ``directory``; no score reaches the client.

    Each file has columns ``user`` (int64), ``rank`` (int32, 1 = best), ``item`` (int64) and
    ``score`` (the factor dtype), sorted by user then rank: exactly what
    ``model.recommend_all(user_items, N=N, ...)`` returns for those users, without the -1 / -inf
    padding (a user with fewer than ``N`` eligible items has fewer rows). Read them all back with
    ``pandas.read_parquet(directory)`` or ``dask.dataframe.read_parquet(directory)``.

    ``user_items`` (a scipy matrix, a Dask DataFrame or :class:`DistributedInteractions`) is used
    to filter each user's own items; it may be None when ``filter_already_liked_items=False``.
    ``directory`` must be one path that every worker can write (a shared filesystem) and that
    the client can see; an existing non-empty directory is refused unless ``overwrite=True``,
    which removes the ``part-*.parquet`` files in it first. Returns the paths, in user order.
    """
    users, item_factors = model._fitted()
    n = check_int("N", N, 1)
    threads = check_int("num_threads", model.num_threads if num_threads is None else num_threads, 0)
    max_retries = check_int("max_retries", max_retries, 0)
    out = Path(directory)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty (pass overwrite=True to replace its files)")
        for old in out.glob("part-*.parquet"):
            old.unlink()
    _ranking.selection("filter_items", filter_items, "items", items, item_factors.shape[0])
    spec = _RecommendSpec(
        n,
        bool(filter_already_liked_items),
        None if filter_items is None else np.asarray(filter_items),
        None if items is None else np.asarray(items),
        threads,
    )
    data: DistributedInteractions | None = None
    if isinstance(user_items, DistributedInteractions):
        if n_blocks is not None:
            raise ValueError("n_blocks is fixed by the DistributedInteractions already built")
        data = user_items
    elif user_items is not None:
        data = DistributedInteractions(client, user_items, n_blocks=n_blocks, items_side=False)
    elif filter_already_liked_items:
        raise ValueError("user_items is required to filter already liked items")
    try:
        if data is not None:
            if data.shape != (users.shape[0], item_factors.shape[0]):
                raise ValueError(
                    f"user_items has shape {data.shape} but the model has {users.shape[0]} users "
                    f"and {item_factors.shape[0]} items"
                )
            bounds = data.user_bounds
        else:
            blocks = _n_workers(client) if n_blocks is None else n_blocks
            bounds = block_bounds(np.zeros(users.shape[0], np.int64), blocks)
        fixed = _Broadcast(client, item_factors.copy())
        paths = [str(out / f"part-{b:05d}.parquet") for b in range(len(bounds) - 1)]

        def submit(todo: list[int]) -> list[Future]:
            rows = [users[bounds[b] : bounds[b + 1]].copy() for b in todo]
            if data is None:
                block_futures: list[Any] = [None] * len(todo)
                row_futures = client.scatter(rows, hash=False)
            else:
                block_futures = [data._user_blocks[b].future() for b in todo]
                row_futures = _scatter_near(client, rows, block_futures)
            y_future = fixed.futures()[0]
            return [
                client.submit(
                    _recommend_task, bf, rf, y_future, int(bounds[b]), spec, paths[b], pure=False
                )
                for b, bf, rf in zip(todo, block_futures, row_futures, strict=True)
            ]

        try:
            written, futures = _Runner(client, max_retries).run("recommend", len(paths), submit)
        finally:
            fixed.release()
        for f in futures:
            f.release()
        return [path for path, _ in written]
    finally:
        if data is not None and data is not user_items:
            data.close()
