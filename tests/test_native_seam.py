"""The seam to the Rust core: Ctrl-C inside native calls, exception types chosen by what went
wrong, thread-count bounds, and the parts of the objective that a distributed caller adds up."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from typing import Any

import ials
import numpy as np
import pytest
import scipy.sparse as sp
from ials import _native
from ials._validation import core_rows
from ials.solver import check_objective

# A child that starts a long native call and sends itself SIGINT shortly after it began. The
# parent never waits on the clock: the hang guard below is many times what an interrupted call
# needs, and far less than the uninterrupted call takes.
_INTERRUPTED_CALL = """
import os, signal, threading
import numpy as np, scipy.sparse as sp
from ials import _native
from ials._validation import core_rows
from ials.solver import check_objective

rng = np.random.default_rng(0)
{setup}
threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
try:
    {call}
except KeyboardInterrupt:
    print("interrupted")
    {after}
else:
    print("finished")
"""
_HANG_GUARD_S = 120


def _run_interrupted(setup: str, call: str, after: str = "pass") -> str:
    script = _INTERRUPTED_CALL.format(setup=textwrap.dedent(setup).strip(), call=call, after=after)
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=_HANG_GUARD_S,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_ctrl_c_stops_a_half_sweep_between_blocks_of_rows() -> None:
    # Exact solves at k = 256 of 40,000 rows, each forming and factoring its own system (a
    # penalty that grows with the row's length rules out the shared factorisation), take minutes
    # on two cores; an interrupt honoured only at the end would leave every row solved.
    out = _run_interrupted(
        setup="""
rows = sp.random(40_000, 2_000, density=0.01, format="csr", random_state=0, dtype=np.float32)
rows.data[:] = 1.0
k = 256
x = np.zeros((rows.shape[0], k), dtype=np.float32)
y = rng.normal(0, 0.1, (rows.shape[1], k)).astype(np.float32)
gram = _native.gram(y, 2)
objective = check_objective(0.01, 1.0, 0.5, 1.0)
exact = _native.Solver.cholesky()
""",
        call="_native.solve_rows(core_rows(rows), x, y, gram, objective, exact, 2)",
        after="print('untouched rows', int((np.abs(x).sum(axis=1) == 0).sum()))",
    )
    assert "interrupted" in out
    untouched = int(out.split("untouched rows")[1])
    assert untouched > 0, "the call ran to the end before raising"


def test_ctrl_c_stops_a_top_k_call() -> None:
    out = _run_interrupted(
        setup="""
queries = rng.normal(size=(60_000, 128)).astype(np.float32)
items = rng.normal(size=(200_000, 128)).astype(np.float32)
""",
        call="_native.top_k(queries, items, 100, None, None, None, 2)",
    )
    assert "interrupted" in out


def test_core_errors_map_to_exception_types() -> None:
    y = np.ones((3, 2), dtype=np.float32)
    with pytest.raises(TypeError, match="must all be float32 or all float64"):
        _native.top_k(y, y.astype(np.float64), 1, None, None, None, 1)
    with pytest.raises(ValueError, match="num_threads must be at most"):
        _native.gram(y, _native.MAX_THREADS + 1)
    with pytest.raises(ValueError, match="regularization must be a finite number"):
        _native.Objective(-1.0, 1.0, 0.0, 1.0)


@pytest.mark.parametrize("use_cg", [True, False])
def test_both_solvers_refuse_an_infinite_penalty(use_cg: bool) -> None:
    rows = sp.csr_matrix(np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]], dtype=np.float32))
    x = np.full((2, 2), 0.1, dtype=np.float32)
    y = np.full((3, 2), 0.2, dtype=np.float32)
    start = x.copy()
    with pytest.raises(ValueError, match="regularization_exponent"):
        ials.solve_rows(rows, x, y, 0.1, regularization_exponent=1000.0, use_cg=use_cg)
    np.testing.assert_array_equal(x, start)


def test_objective_pickles_as_itself() -> None:
    objective = check_objective(0.5, 2.0, 1.0, 0.25)
    again = pickle.loads(pickle.dumps(objective))
    assert again == objective
    assert (again.regularization, again.alpha) == (0.5, 2.0)
    assert (again.regularization_exponent, again.unobserved_weight) == (1.0, 0.25)


def test_gram_blocks_of_aligned_pieces_add_up_to_the_gram_matrix() -> None:
    rows = _native.GRAM_BLOCK_ROWS
    y = np.random.default_rng(1).normal(size=(2 * rows + 77, 5)).astype(np.float32)
    pieces = np.concatenate([_native.gram_blocks(y[:rows], 1), _native.gram_blocks(y[rows:], 2)])
    assert pieces.shape == (3, 5, 5)
    np.testing.assert_array_equal(_native.gram_sum(pieces), _native.gram(y, 1))
    exact = y.T.astype(np.float64) @ y
    np.testing.assert_allclose(_native.gram(y, 1), exact, atol=1e-5 * np.abs(exact).max())


@pytest.mark.parametrize("k", [5, 64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gram_in_waves_is_the_sum_of_all_blocks_for_any_thread_count(k: int, dtype: Any) -> None:
    # Five blocks: with 2 or 3 threads `gram` forms them in several waves; 64 factors take the
    # panel kernel for float32.
    n = 4 * _native.GRAM_BLOCK_ROWS + 77
    y = np.random.default_rng(4).normal(size=(n, k)).astype(dtype)
    every_block = _native.gram_sum(_native.gram_blocks(y, 2))
    for threads in (1, 2, 3):
        np.testing.assert_array_equal(_native.gram(y, threads), every_block)
    exact = y.T.astype(np.float64) @ y.astype(np.float64)
    np.testing.assert_allclose(every_block, exact, atol=1e-4 * np.abs(exact).max())


def test_loss_terms_of_row_blocks_add_up() -> None:
    rng = np.random.default_rng(2)
    matrix = sp.random(50, 30, density=0.2, format="csr", random_state=3, dtype=np.float32)
    x = rng.normal(size=(50, 4)).astype(np.float64)
    y = rng.normal(size=(30, 4)).astype(np.float64)
    objective = check_objective(0.3, 2.0, 0.5, 0.7)
    whole = _native.loss_terms(core_rows(matrix), x, y, objective, 1)
    head = _native.loss_terms(core_rows(matrix[:20]), x[:20], y, objective, 1)
    tail = _native.loss_terms(core_rows(matrix[20:]), x[20:], y, objective, 1)
    assert head.error + tail.error == pytest.approx(whole.error, rel=1e-12)
    assert head.weight + tail.weight == pytest.approx(whole.weight, rel=1e-12)
    assert head.row_penalty + tail.row_penalty == pytest.approx(whole.row_penalty, rel=1e-12)
    # The item side's penalty, from the item-major rows, is the column penalty of the whole.
    items_side = core_rows(matrix.T.tocsr())
    assert _native.penalty(items_side, y, objective) == pytest.approx(
        whole.column_penalty, rel=1e-12
    )
    # And against the definition, with the penalty lambda (n + alpha0 n_other) ** nu.
    counts = np.diff(matrix.indptr)
    lam = 0.3 * (counts + 0.7 * 30) ** 0.5
    assert whole.row_penalty == pytest.approx(float(np.sum(lam * (x * x).sum(axis=1))))
    total = whole.error + whole.row_penalty + whole.column_penalty
    assert whole.normalised() == pytest.approx(total / whole.weight)


def test_loss_terms_are_built_and_pickled_as_their_parts() -> None:
    terms = _native.LossTerms(6.0, 4.0, 1.0, 1.0)
    again = pickle.loads(pickle.dumps(terms))
    assert (again.error, again.weight, again.row_penalty, again.column_penalty) == (
        6.0,
        4.0,
        1.0,
        1.0,
    )
    assert again.normalised() == 2.0
    assert _native.LossTerms(6.0, 0.0, 1.0, 1.0).normalised() == 8.0  # no weight: the plain sum


def test_ctrl_c_during_fit_leaves_a_usable_model() -> None:
    out = _run_interrupted(
        setup="""
import ials
rows = sp.random(40_000, 2_000, density=0.01, format="csr", random_state=0, dtype=np.float32)
model = ials.AlternatingLeastSquares(factors=256, use_cg=False, iterations=50, random_state=0)
""",
        call="model.fit(rows, show_progress=False)",
        after=(
            "print('finite', bool(np.isfinite(model.user_factors).all() "
            "and np.isfinite(model.item_factors).all()), "
            "'ranks', len(model.recommend(0, rows[0], N=5)[0]))"
        ),
    )
    assert "interrupted" in out
    assert "finite True ranks 5" in out


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="counts threads in /proc/self/task"
)
def test_a_call_made_without_a_pool_starts_no_threads() -> None:
    # normal_equations (explain's one-row system) runs on the calling thread; its finiteness check
    # of large item factors must not start Rayon's global pool. In a fresh process, so that no
    # earlier call has started anything.
    script = """
import os
import numpy as np
from ials import _native
from ials.solver import check_objective

y = np.random.default_rng(0).random((5000, 64), dtype=np.float32)  # 320,000 values
gram = (y.T.astype(np.float64) @ y.astype(np.float64))
objective = check_objective(0.1, 1.0, 0.0, 1.0)
before = len(os.listdir("/proc/self/task"))
a, b = _native.normal_equations(
    np.array([1, 2], np.int32), np.array([1.0, 2.0], np.float32), y, gram, objective
)
print(before, len(os.listdir("/proc/self/task")), a.shape)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=_HANG_GUARD_S
    )
    assert done.returncode == 0, done.stderr
    before, after, shape = done.stdout.split(maxsplit=2)
    assert shape.strip() == "(64, 64)"
    assert after == before, f"{int(after) - int(before)} threads started"
