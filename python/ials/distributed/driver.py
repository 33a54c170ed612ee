"""Training on the cluster: each half-sweep broadcasts the fixed side, solves every block where
it lives and gathers the new rows and their Gram pieces in block order."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._core import simd_level
from .._progress import Progress
from .._validation import check_dtype, check_int
from ..als import AlternatingLeastSquares, Callback
from ..callbacks import run_callback
from ..solver import gram
from .blocks import DistributedInteractions
from .retries import Broadcast, Client, Future, Runner, Source, scatter_near
from .tasks import Spec, loss_task, solve_task

log = logging.getLogger(__package__)


class _Side:
    """One side of the factorisation: its blocks, its factors (the client's copy) and, for each
    block, the future of its latest solve, whose rows warm-start the next one where they are."""

    def __init__(
        self, name: str, blocks: Sequence[Source], bounds: np.ndarray, factors: np.ndarray
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
            scattered = scatter_near(
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
    runner: Runner, side: _Side, fixed: Broadcast, spec: Spec
) -> tuple[np.ndarray, float]:
    """Solves every block of ``side`` against the broadcast (factors, Gram matrix) of the other
    side, writes the rows into the client's copy; returns their Gram matrix and penalty."""
    client = runner.client

    def submit(todo: list[int]) -> list[Future]:
        block_futures, row_futures = side.inputs(client, todo)
        y_future, gram_future = fixed.futures()
        n = len(todo)
        futures: list[Future] = client.map(
            solve_task,
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


def _loss(runner: Runner, users: _Side, fixed: Broadcast, spec: Spec, item_penalty: float) -> float:
    """The training objective (as :func:`ials.calculate_loss`) from per-block pieces."""
    client = runner.client

    def submit(todo: list[int]) -> list[Future]:
        block_futures, row_futures = users.inputs(client, todo)
        y_future = fixed.futures()[0]
        n = len(todo)
        futures: list[Future] = client.map(
            loss_task, block_futures, row_futures, [y_future] * n, [spec] * n, pure=False
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
        spec = Spec(
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
    spec: Spec,
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
    runner = Runner(client, max_retries)
    users = _Side("users", data._user_blocks, data.user_bounds, x)
    items = _Side("items", data._item_blocks, data.item_bounds, y)
    gram_y = gram(y)
    fixed_y: Broadcast | None = None
    current_loss: float | None = None
    try:
        with Progress(model.iterations, show_progress) as progress:
            for iteration in range(model.iterations):
                start = time.perf_counter()
                fixed_y = fixed_y or Broadcast(client, y.copy(), gram_y)
                gram_x, _ = _half_sweep(runner, users, fixed_y, spec)
                fixed_y.release()
                fixed_x = Broadcast(client, x.copy(), gram_x)
                gram_y, item_penalty = _half_sweep(runner, items, fixed_x, spec)
                fixed_x.release()
                fixed_y = None
                if spec.penalties:
                    fixed_y = Broadcast(client, y.copy(), gram_y)  # reused by the next sweep
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
