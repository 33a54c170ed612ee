"""Keeping work alive on a cluster that loses workers: every value the cluster holds has a way
back (the client's copy, or the graph that computes it), and a step over many blocks submits
again only the blocks whose work was lost."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import CancelledError
from typing import Any

import distributed
import numpy as np

log = logging.getLogger(__package__)

# distributed annotates only part of its API (strict mypy rejects calls of the rest), so its
# objects are plain Any here; the aliases say what is meant.
Client = Any
"""A ``distributed.Client``."""
Future = Any
"""A ``distributed.Future``."""
_wait: Any = distributed.wait


class Source:
    """Where one block lives on the cluster, and how to get it back when it is lost."""

    def __init__(self, client: Client, origin: Any, future: Future) -> None:
        self._client = client
        self._origin = origin
        self._future: Future | None = future

    def future(self) -> Future:
        if self._future is None or self._lost(self._future):
            self._future = self._recreate()
        return self._future

    def release(self) -> None:
        if self._future is not None:
            self._future.release()
            self._future = None

    def _lost(self, future: Future) -> bool:
        raise NotImplementedError

    def _recreate(self) -> Future:
        raise NotImplementedError


class Scattered(Source):
    """A value the client keeps, scattered (again) whenever the cluster does not hold it."""

    def _lost(self, future: Future) -> bool:
        return bool(future.status != "finished")

    def _recreate(self) -> Future:
        return self._client.scatter(self._origin, hash=False)


class Computed(Source):
    """A task of a graph; the scheduler recomputes it from the graph when its worker dies."""

    def _lost(self, future: Future) -> bool:
        return bool(future.status == "cancelled")

    def _recreate(self) -> Future:
        return self._client.compute(self._origin)


class Broadcast:
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


class Runner:
    """Runs one step (a task per block) to the end, whatever workers are lost on the way."""

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


def scatter_near(
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
