"""Training on the cluster: each half-sweep broadcasts the fixed side, solves every block where
it lives and gathers the new rows and their Gram pieces in block order."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._basis import Basis
from .._native import LossTerms, gram_sum, simd_level
from .._rwlock import writing
from .._training import Callback, train
from .._validation import check_int
from ..als import AlternatingLeastSquares
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
    for b, (rows, _, _) in enumerate(results):
        side.rows(b)[:] = rows
    # Every block's Gram pieces, in block order: the additions of the core's own gram().
    total = gram_sum(np.concatenate([pieces for _, pieces, _ in results]))
    return total, sum(penalty for _, _, penalty in results)


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
    return LossTerms(
        sum(p.error for p in parts),
        sum(p.weight for p in parts),
        sum(p.row_penalty for p in parts),
        item_penalty,
    ).normalised()


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
    ``dtype``, ``use_cg``, ``cg_steps``, ``solver``, ``block_size``, ``block_sweeps``,
    ``iterations``, ``calculate_training_loss``, ``random_state``, ``regularization_exponent``,
    ``unobserved_weight``), and so are existing
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
    settings = model.fit_settings()
    threads = check_int(
        "num_threads", settings.num_threads if num_threads is None else num_threads, 0
    )
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
            settings.objective,
            solver=settings.solver,
            num_threads=threads,
            penalties=settings.calculate_training_loss,
        )
        # The factors are solved in place: other threads wait, as during model.fit.
        with writing(model):
            x, y = model.starting_factors(*data.shape)
            sweeps = _ClusterHalfSweeps(
                Runner(client, max_retries),
                _Side("users", data._user_blocks, data.user_bounds, x),
                _Side("items", data._item_blocks, data.item_bounds, y),
                spec,
            )
            try:
                train(model, sweeps, settings, show_progress, callback)
            finally:
                sweeps.release()
    finally:
        if data is not user_items:
            data.close()


class _ClusterHalfSweeps:
    """The half-sweeps of a fit on the cluster (:class:`ials._training.HalfSweeps`): the fixed
    side and its Gram matrix are broadcast, each block is solved where it lives, and the client's
    copy of the factors receives the new rows."""

    def __init__(self, runner: Runner, users: _Side, items: _Side, spec: Spec) -> None:
        self._runner = runner
        self._users = users
        self._items = items
        self._spec = spec
        self._gram_x: np.ndarray | None = None
        self._gram_y = gram(items.factors)
        self._item_penalty = 0.0
        self._fixed_y: Broadcast | None = None
        self._basis = Basis(spec.num_threads)

    def _broadcast(self, side: _Side, gram_matrix: np.ndarray) -> Broadcast:
        return Broadcast(self._runner.client, side.factors.copy(), gram_matrix)

    def _turned(self, solved: _Side, fixed: _Side, gram_matrix: np.ndarray) -> np.ndarray:
        """The Gram matrix of ``fixed`` to solve ``solved`` against: as given, or, where turning
        pays, tridiagonal, the client's copies of both sides turned to its basis as a fit in one
        process turns them (the rows on the cluster are then stale, and released)."""
        k = solved.factors.shape[1]
        if not self._basis.pays(self._spec.solver, len(solved.factors), len(fixed.factors), k):
            return gram_matrix
        turned = self._basis.reduce(gram_matrix, solved.factors, fixed.factors)
        self._users.release()
        self._items.release()
        if self._fixed_y is not None:
            self._fixed_y.release()
            self._fixed_y = None
        return turned

    def solve_users(self) -> None:
        gram_y = self._turned(self._users, self._items, self._gram_y)
        self._fixed_y = self._fixed_y or self._broadcast(self._items, gram_y)
        self._gram_x, _ = _half_sweep(self._runner, self._users, self._fixed_y, self._spec)
        self._fixed_y.release()

    def solve_items(self) -> None:
        assert self._gram_x is not None, "the users are solved first"
        gram_x = self._turned(self._items, self._users, self._gram_x)
        fixed_x = self._broadcast(self._users, gram_x)
        self._gram_y, self._item_penalty = _half_sweep(
            self._runner, self._items, fixed_x, self._spec
        )
        fixed_x.release()
        self._fixed_y = None

    def loss(self) -> float:
        # The broadcast of the new item factors is kept for the next sweep's users.
        self._fixed_y = self._broadcast(self._items, self._gram_y)
        return _loss(self._runner, self._users, self._fixed_y, self._spec, self._item_penalty)

    def restore_basis(self) -> None:
        self._basis.restore(self._users.factors, self._items.factors)
        self._users.release()
        self._items.release()

    def release(self) -> None:
        if self._fixed_y is not None:
            self._fixed_y.release()
        self._users.release()
        self._items.release()
