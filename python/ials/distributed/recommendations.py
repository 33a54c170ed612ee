"""Batch recommendations written by the workers, one Parquet file per user block."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .. import _ranking
from .._validation import check_int
from ..als import AlternatingLeastSquares
from ..interactions import as_raw_ids
from .blocks import DistributedInteractions, block_bounds, n_workers
from .retries import Broadcast, Client, Future, Runner, scatter_near
from .tasks import RecommendSpec, recommend_task


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
    user_ids: Any = None,
    item_ids: Any = None,
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

    ``user_ids`` and ``item_ids`` (e.g. ``data.user_ids`` and ``data.item_ids`` of the
    :class:`ials.Interactions` or :class:`ials.Recommender` the model was fitted with) are the raw
    ids of the rows and columns: given, the ``user`` and ``item`` columns hold them (int64 or
    string), as ``ials recommend --all`` writes (:mod:`ials.export`).
    """
    users, item_factors = model.fitted_factors()
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
    raw_users = np.arange(users.shape[0], dtype=np.int64)
    raw_items = None
    if user_ids is not None:
        raw_users = as_raw_ids("user_ids", user_ids)
    if item_ids is not None:
        raw_items = as_raw_ids("item_ids", item_ids)
    for name, raw, count in (
        ("user_ids", raw_users, users.shape[0]),
        ("item_ids", raw_items, item_factors.shape[0]),
    ):
        if raw is not None and len(raw) != count:
            raise ValueError(f"{name} has {len(raw)} ids but the model has {count} factor rows")
    spec = RecommendSpec(
        n,
        bool(filter_already_liked_items),
        None if filter_items is None else np.asarray(filter_items),
        None if items is None else np.asarray(items),
        threads,
        raw_items,
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
            blocks = n_workers(client) if n_blocks is None else n_blocks
            bounds = block_bounds(np.zeros(users.shape[0], np.int64), blocks)
        fixed = Broadcast(client, item_factors.copy())
        paths = [str(out / f"part-{b:05d}.parquet") for b in range(len(bounds) - 1)]

        def submit(todo: list[int]) -> list[Future]:
            rows = [users[bounds[b] : bounds[b + 1]].copy() for b in todo]
            if data is None:
                block_futures: list[Any] = [None] * len(todo)
                row_futures = client.scatter(rows, hash=False)
            else:
                block_futures = [data._user_blocks[b].future() for b in todo]
                row_futures = scatter_near(client, rows, block_futures)
            y_future = fixed.futures()[0]
            return [
                client.submit(
                    recommend_task,
                    bf,
                    rf,
                    y_future,
                    raw_users[bounds[b] : bounds[b + 1]],
                    spec,
                    paths[b],
                    pure=False,
                )
                for b, bf, rf in zip(todo, block_futures, row_futures, strict=True)
            ]

        try:
            written, futures = Runner(client, max_retries).run("recommend", len(paths), submit)
        finally:
            fixed.release()
        for f in futures:
            f.release()
        return [path for path, _ in written]
    finally:
        if data is not None and data is not user_items:
            data.close()
