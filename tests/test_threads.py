"""One model shared by Python threads: reads run together, changes run alone (ials._rwlock)."""

from __future__ import annotations

import copy
import os
import pickle
import signal
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import ials
import numpy as np
import pytest
import scipy.sparse as sp
from ials._rwlock import ReadWriteLock, lock_of

TIMEOUT = 30.0


def write_once(lock: ReadWriteLock) -> None:
    with lock.writing():
        pass


def run_threads(*targets: Callable[[], Any]) -> list[str]:
    """Runs each target in its own thread; the exceptions they raised (any kind, including a
    PanicException from the bindings), as text."""
    errors: list[str] = []

    def guarded(target: Callable[[], Any]) -> None:
        try:
            target()
        except BaseException as err:  # recorded: the test fails on any
            errors.append(f"{type(err).__name__}: {err}")

    threads = [threading.Thread(target=guarded, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a thread hangs"
    return errors


# --- the lock --------------------------------------------------------------------------------


def test_readers_run_together() -> None:
    lock = ReadWriteLock()
    inside = threading.Barrier(3, timeout=TIMEOUT)

    def read() -> None:
        with lock.reading():
            inside.wait()  # only passes when all three hold the lock at once

    assert run_threads(read, read, read) == []


def test_a_writer_excludes_readers_and_other_writers() -> None:
    lock = ReadWriteLock()
    events: list[str] = []
    writing = threading.Event()

    def write() -> None:
        with lock.writing():
            events.append("write start")
            writing.set()
            time.sleep(0.2)
            events.append("write end")

    def other(kind: str) -> Callable[[], None]:
        def run() -> None:
            assert writing.wait(TIMEOUT)
            with getattr(lock, kind)():
                events.append(kind)

        return run

    assert run_threads(write, other("reading"), other("writing")) == []
    assert events[:2] == ["write start", "write end"]
    assert sorted(events[2:]) == ["reading", "writing"]


def test_a_waiting_writer_goes_before_new_readers() -> None:
    lock = ReadWriteLock()
    events: list[str] = []
    first_reading = threading.Event()

    def first_reader() -> None:
        with lock.reading():
            first_reading.set()
            time.sleep(0.3)  # the writer, then the second reader, queue meanwhile
            events.append("first read")

    def writer() -> None:
        assert first_reading.wait(TIMEOUT)
        with lock.writing():
            events.append("write")

    def late_reader() -> None:
        assert first_reading.wait(TIMEOUT)
        time.sleep(0.1)  # after the writer started waiting
        with lock.reading():
            events.append("late read")

    assert run_threads(first_reader, writer, late_reader) == []
    assert events == ["first read", "write", "late read"]


def test_reentrancy() -> None:
    lock = ReadWriteLock()
    with lock.reading(), lock.reading():
        pass
    with lock.writing(), lock.writing(), lock.reading(), lock.reading():
        pass  # the writer may read (a fit callback calling recommend)
    with lock.reading(), pytest.raises(RuntimeError, match="cannot change it"):
        with lock.writing():
            pass
    # everything was released: another thread can write
    assert run_threads(lambda: write_once(lock)) == []


def test_an_exception_releases_the_lock() -> None:
    lock = ReadWriteLock()
    for kind in ("reading", "writing"):
        with pytest.raises(KeyboardInterrupt), getattr(lock, kind)():
            raise KeyboardInterrupt
    assert run_threads(lambda: write_once(lock)) == []


# --- a shared model --------------------------------------------------------------------------


def _data() -> sp.csr_matrix:
    return sp.random(400, 300, density=0.05, format="csr", random_state=0, dtype=np.float32)


def _reads(model: ials.AlternatingLeastSquares, data: sp.csr_matrix) -> list[Any]:
    users = np.arange(20)
    return [
        model.recommend(users, data[users], N=5),
        model.similar_items(np.arange(5), N=5),
        model.similar_users(3, N=5),
        model.score(users, 7),
        model.explain(1, data, 2, N=3)[:2],
        model.recalculate_user(0, data[0]),
    ]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple | list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return bool(a == b)


def test_fit_and_reads_in_threads_give_the_serial_results() -> None:
    """Two threads fit (each fit continues from the factors), three read. Every read must equal
    the serial read of one of the states between the fits: no panic, no half-solved factors."""
    data = _data()
    model = ials.AlternatingLeastSquares(factors=16, iterations=2, random_state=0, use_cg=False)
    model.fit(data, show_progress=False)
    states = [copy.deepcopy(model)]
    for _ in range(4):
        following = copy.deepcopy(states[-1])
        following.fit(data, show_progress=False)
        states.append(following)
    expected = [_reads(state, data) for state in states]
    seen: list[list[Any]] = []

    def fit() -> None:
        for _ in range(2):
            model.fit(data, show_progress=False)

    def read() -> None:
        for _ in range(15):
            seen.append(_reads(model, data))

    assert run_threads(fit, fit, read, read, read) == []
    np.testing.assert_array_equal(model.user_factors, states[4].user_factors)
    for result in seen:
        assert any(_same(result, e) for e in expected)


def test_partial_fit_and_reads_in_threads() -> None:
    data = _data()
    model = ials.AlternatingLeastSquares(factors=8, iterations=1, random_state=0)
    model.fit(data, show_progress=False)
    rows = data[:50]

    def fold_in() -> None:
        for _ in range(10):
            model.partial_fit_users(np.arange(50), rows)
            model.partial_fit_items(np.arange(3), data.T.tocsr()[:3])

    def read() -> None:
        for _ in range(10):
            model.recommend(np.arange(50), rows, N=5)
            model.similar_items(0)

    assert run_threads(fold_in, fold_in, read, read) == []


def test_a_fit_callback_may_read_the_model() -> None:
    data = _data()
    model = ials.AlternatingLeastSquares(factors=4, iterations=2, random_state=0)
    seen: list[np.ndarray] = []

    def callback(iteration: int, seconds: float, loss: float | None) -> None:
        seen.append(model.recommend(0, data[0], N=3)[0])

    assert run_threads(lambda: model.fit(data, show_progress=False, callback=callback)) == []
    assert len(seen) == 2


def test_copies_and_pickles_have_their_own_lock() -> None:
    data = _data()
    model = ials.AlternatingLeastSquares(factors=4, iterations=1, random_state=0)
    model.fit(data, show_progress=False)
    for other in (pickle.loads(pickle.dumps(model)), copy.copy(model), copy.deepcopy(model)):
        assert lock_of(other) is not lock_of(model)
        with lock_of(model).writing():  # the original busy: the copy still answers
            assert run_threads(lambda o=other: o.recommend(0, data[0])) == []
        np.testing.assert_array_equal(
            other.recommend(0, data[0])[0], model.recommend(0, data[0])[0]
        )


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_finds_the_lock_free() -> None:
    """A thread of the parent holds the model for writing when the process forks; that thread
    does not exist in the child, which must still be able to use the model."""
    data = _data()
    model = ials.AlternatingLeastSquares(factors=4, iterations=1, random_state=0)
    model.fit(data, show_progress=False)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock_of(model).writing():
            holding.set()
            release.wait(TIMEOUT)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(TIMEOUT)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
            pid = os.fork()
        if pid == 0:  # the child: exit status 0 only if recommend answers
            code = 1
            try:
                code = 0 if model.recommend(0, data[0])[0].size else 1
            finally:
                os._exit(code)
        deadline = time.monotonic() + TIMEOUT
        while (status := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        if status[0] == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hangs on the model's lock")
        assert os.waitstatus_to_exitcode(status[1]) == 0
    finally:
        release.set()
        holder.join(TIMEOUT)


def test_evaluation_during_a_fit_in_another_thread() -> None:
    """ranking_metrics_at_k reads the factors under the model's read lock."""
    data = _data()
    test = sp.random(400, 300, density=0.05, format="csr", random_state=1, dtype=np.float32)
    model = ials.AlternatingLeastSquares(factors=8, iterations=2, random_state=0)
    model.fit(data, show_progress=False)

    def fit() -> None:
        for _ in range(3):
            model.fit(data, show_progress=False)

    def evaluate() -> None:
        for _ in range(10):
            ials.evaluation.ranking_metrics_at_k(model, data, test, K=5, show_progress=False)

    assert run_threads(fit, evaluate, evaluate) == []


def test_each_model_has_its_own_lock_which_goes_with_it() -> None:
    import gc

    from ials import _rwlock

    class Valued(ials.AlternatingLeastSquares):  # equal by value, unhashable
        def __eq__(self, other: object) -> bool:
            return isinstance(other, Valued)

    first, second = Valued(factors=2), Valued(factors=2)
    assert first == second and lock_of(first) is not lock_of(second)
    # By key, not by count: the collection below may also take models other tests left behind.
    gone, kept = id(first), id(second)
    assert gone in _rwlock._MODEL_LOCKS and kept in _rwlock._MODEL_LOCKS
    del first
    gc.collect()
    assert gone not in _rwlock._MODEL_LOCKS and kept in _rwlock._MODEL_LOCKS
