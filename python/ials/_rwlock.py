"""A readers-writer lock for sharing one model between Python threads.

Any number of threads may read a model at once (``recommend``, ``similar_*``, ``score``,
``explain``, ``save``...); a method that changes it (``fit``, ``partial_fit_*``, assigning
``user_factors`` / ``item_factors``) waits until the readers are done and excludes everyone while
it runs. The core solves factors in place with the GIL released, so without the lock a read
during a fit would see half-solved factors, and numpy's borrow checking in the bindings turns the
overlap into a ``PanicException``.
"""

from __future__ import annotations

import functools
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Concatenate, ParamSpec, TypeVar


class ReadWriteLock:
    """Many readers or one writer, built on one ``threading.Condition``.

    - Writers are preferred: once a writer waits, new readers wait behind it, so a steady stream
      of reads cannot starve a ``fit``.
    - Reentrant: a thread that reads may read again (``recommend_all`` calls ``recommend``); the
      writing thread may write again and may read (a ``fit`` callback may call ``recommend`` or
      ``save``). A thread that reads cannot start writing: it would wait for itself, so that
      raises ``RuntimeError``.
    - A forked child starts with every lock free (the threads holding them are not copied).
    """

    def __init__(self) -> None:
        self._reset()
        _ALL.add(self)

    def _reset(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._readers: dict[int, int] = {}  # thread id -> how many reads it holds
        self._writer: int | None = None
        self._writes = 0  # how many times the writer holds it
        self._waiting_writers = 0

    @contextmanager
    def reading(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._condition:
            if me not in self._readers and self._writer != me:
                while self._writer is not None or self._waiting_writers:
                    self._condition.wait()
            self._readers[me] = self._readers.get(me, 0) + 1
        try:
            yield
        finally:
            with self._condition:
                if self._readers[me] == 1:
                    del self._readers[me]
                    if not self._readers:
                        self._condition.notify_all()
                else:
                    self._readers[me] -= 1

    @contextmanager
    def writing(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._condition:
            if self._writer == me:
                self._writes += 1
            else:
                if me in self._readers:
                    raise RuntimeError(
                        "this thread is reading the model (inside recommend, explain, ...) and "
                        "cannot change it there"
                    )
                self._waiting_writers += 1
                try:
                    while self._writer is not None or self._readers:
                        self._condition.wait()
                except BaseException:  # gave up waiting (Ctrl-C): readers behind it may go
                    self._condition.notify_all()
                    raise
                finally:
                    self._waiting_writers -= 1
                self._writer, self._writes = me, 1
        try:
            yield
        finally:
            with self._condition:
                self._writes -= 1
                if not self._writes:
                    self._writer = None
                    self._condition.notify_all()


_ALL: weakref.WeakSet[ReadWriteLock] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for lock in list(_ALL):
        lock._reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# By id, not by the model itself: a model that compares equal to another (or cannot be hashed)
# still has a lock of its own. An entry goes when its model is collected.
_MODEL_LOCKS: dict[int, ReadWriteLock] = {}
_CREATING = threading.Lock()


def lock_of(model: object) -> ReadWriteLock:
    """The lock of ``model``, made on first use. It is kept outside the model, so that pickles,
    copies (each gets its own lock) and comparisons of models' ``__dict__`` ignore it."""
    key = id(model)
    lock = _MODEL_LOCKS.get(key)
    if lock is None:
        with _CREATING:
            lock = _MODEL_LOCKS.get(key)
            if lock is None:
                weakref.finalize(model, _MODEL_LOCKS.pop, key, None)
                lock = _MODEL_LOCKS[key] = ReadWriteLock()
    return lock


def _held(model: object, kind: str) -> AbstractContextManager[None]:
    try:
        lock = lock_of(model)
    except TypeError:  # an object without weak references: not a model of ours
        return nullcontext()
    manager: AbstractContextManager[None] = getattr(lock, kind)()
    return manager


def reading(model: object) -> AbstractContextManager[None]:
    """``model``'s lock held for reading, for code outside the model that reads its factors
    (evaluation, which also takes implicit's models)."""
    return _held(model, "reading")


def writing(model: object) -> AbstractContextManager[None]:
    """``model``'s lock held for writing, for code outside the model that changes its factors
    (a distributed fit)."""
    return _held(model, "writing")


_P = ParamSpec("_P")
_R = TypeVar("_R")
_S = TypeVar("_S")


def _holding(
    hold: Callable[[ReadWriteLock], AbstractContextManager[None]],
    method: Callable[Concatenate[_S, _P], _R],
) -> Callable[Concatenate[_S, _P], _R]:
    """``method``, run inside ``hold`` (``ReadWriteLock.reading`` or ``.writing``) of the lock of
    the object it is called on."""

    def locked(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with hold(lock_of(self)):
            return method(self, *args, **kwargs)

    functools.update_wrapper(locked, method)
    return locked


def reads(method: Callable[Concatenate[_S, _P], _R]) -> Callable[Concatenate[_S, _P], _R]:
    """The method runs holding the model's lock for reading."""
    return _holding(ReadWriteLock.reading, method)


def writes(method: Callable[Concatenate[_S, _P], _R]) -> Callable[Concatenate[_S, _P], _R]:
    """The method runs holding the model's lock for writing (alone)."""
    return _holding(ReadWriteLock.writing, method)


__all__ = ["ReadWriteLock", "lock_of", "reading", "reads", "writes", "writing"]
