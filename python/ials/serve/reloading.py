"""The served bundle, swapped atomically for a new file on request or on SIGHUP."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from dataclasses import dataclass

from ..recommender import Recommender

log = logging.getLogger("ials.serve")


@dataclass(frozen=True)
class Loaded:
    """One loaded bundle; a request reads ``ModelHolder.current`` once and uses only this."""

    recommender: Recommender
    path: str
    generation: int
    loaded_at: float


class ModelHolder:
    """Holds the current bundle. A reload reads the whole new file first (in a worker thread),
    then replaces ``current`` in one assignment: requests already running finish on the bundle
    they started with, later ones get the new one, and a file that fails to load leaves the old
    bundle in place."""

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None) -> None:
        self.path = os.fspath(path)
        self.threads = threads
        self._loading = threading.Lock()
        self.current = Loaded(self._load(self.path), self.path, 1, time.time())

    def _load(self, path: str) -> Recommender:
        """The bundle, with ``threads`` (when set) in place of its saved ``num_threads``."""
        recommender = Recommender.load(path)
        if self.threads is not None:
            recommender.model.num_threads = self.threads
        return recommender

    def reload(self, path: str | None = None) -> Loaded:
        """Loads ``path`` (default: the file served now) and swaps it in."""
        with self._loading:  # two reloads at once would race to number their generations
            target = self.path if path is None else os.fspath(path)
            recommender = self._load(target)
            loaded = Loaded(recommender, target, self.current.generation + 1, time.time())
            self.path = target
            self.current = loaded
        log.info("loaded %s (generation %d)", target, loaded.generation)
        return loaded

    def reload_on_sighup(self, loop: asyncio.AbstractEventLoop) -> None:
        """SIGHUP reloads the file in a worker thread (the event loop keeps serving)."""
        import signal

        def reload_logged() -> None:
            try:
                self.reload()
            except Exception as err:  # a bad file must not stop the server
                log.error(
                    "reload on SIGHUP failed, still serving generation %d: %s",
                    self.current.generation,
                    err,
                )

        def handler() -> None:
            loop.run_in_executor(None, reload_logged)

        loop.add_signal_handler(signal.SIGHUP, handler)
