"""CG in the basis that makes the fixed side's Gram matrix tridiagonal (ials._basis): the same
model as plain CG up to rounding, the factors handed back in the caller's basis, the same bits
for any thread count; and the native reduction and turn it rests on."""

from __future__ import annotations

from typing import Any

import ials
import numpy as np
import pytest
import scipy.sparse as sp
import turning
from ials import _basis, _native
from ials.solver import RowSolver


def interactions(n_users: int, n_items: int, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    nnz = 12 * n_users
    users = rng.integers(0, n_users, nnz)
    items = np.minimum(rng.zipf(1.4, nnz) - 1, n_items - 1)
    values = rng.integers(1, 5, nnz).astype(np.float32)
    matrix = sp.csr_matrix((values, (users, items)), shape=(n_users, n_items))
    matrix.sum_duplicates()
    return matrix


def fitted(matrix: sp.csr_matrix, **params: Any) -> ials.AlternatingLeastSquares:
    settings: dict[str, Any] = dict(
        factors=16, iterations=4, random_state=0, alpha=2.0, regularization=0.05
    )
    model = ials.AlternatingLeastSquares(**{**settings, **params})
    model.fit(matrix, show_progress=False)
    return model


@pytest.fixture
def turn_always(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Turning on at every size and row count; counts the reductions."""
    return turning.turn_always(monkeypatch)


def plain(matrix: sp.csr_matrix, **params: Any) -> ials.AlternatingLeastSquares:
    """The fit without turning."""
    with pytest.MonkeyPatch.context() as patch:
        turning.never_turn(patch)
        return fitted(matrix, **params)


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


@pytest.mark.parametrize(("dtype", "tolerance"), [(np.float64, 1e-10), (np.float32, 1e-3)])
def test_a_turned_fit_is_plain_cg_up_to_rounding(
    turn_always: list[int], dtype: type, tolerance: float
) -> None:
    matrix = interactions(300, 120)
    want = plain(matrix, dtype=dtype)
    got = fitted(matrix, dtype=dtype)
    assert turn_always == [16] * 8, "both half-sweeps of every iteration turned"
    assert got.user_factors.dtype == dtype
    # The factors, not only their products: they are back in the caller's basis.
    assert relative_error(got.user_factors, want.user_factors) < tolerance
    assert relative_error(got.item_factors, want.item_factors) < tolerance


def test_turned_fits_have_the_same_bits_for_any_thread_count(turn_always: list[int]) -> None:
    matrix = interactions(300, 120, seed=3)
    one = fitted(matrix, num_threads=1)
    two = fitted(matrix, num_threads=2)
    assert turn_always, "the fits turned"
    np.testing.assert_array_equal(one.user_factors, two.user_factors)
    np.testing.assert_array_equal(one.item_factors, two.item_factors)


def test_a_fit_stopped_early_is_handed_back_in_the_callers_basis(
    turn_always: list[int],
) -> None:
    matrix = interactions(300, 120, seed=4)
    want = plain(matrix, dtype=np.float64, iterations=2)

    def stop_after_two(iteration: int, _seconds: float, _loss: float | None) -> None:
        if iteration == 1:
            raise ials.callbacks.StopFitting

    model = ials.AlternatingLeastSquares(
        factors=16, iterations=6, random_state=0, alpha=2.0, regularization=0.05, dtype=np.float64
    )
    model.fit(matrix, show_progress=False, callback=stop_after_two)
    assert turn_always == [16] * 4
    assert relative_error(model.user_factors, want.user_factors) < 1e-10
    assert relative_error(model.item_factors, want.item_factors) < 1e-10


def test_the_training_loss_is_the_plain_fits(turn_always: list[int]) -> None:
    matrix = interactions(200, 90, seed=5)
    losses: dict[str, list[float]] = {"turned": [], "plain": []}

    def record(name: str) -> Any:
        return lambda _i, _s, loss: losses[name].append(loss)

    with pytest.MonkeyPatch.context() as patch:
        turning.never_turn(patch)
        model = ials.AlternatingLeastSquares(
            factors=16, iterations=3, random_state=0, calculate_training_loss=True, dtype=np.float64
        )
        model.fit(matrix, show_progress=False, callback=record("plain"))
    model = ials.AlternatingLeastSquares(
        factors=16, iterations=3, random_state=0, calculate_training_loss=True, dtype=np.float64
    )
    model.fit(matrix, show_progress=False, callback=record("turned"))
    assert turn_always
    np.testing.assert_allclose(losses["turned"], losses["plain"], rtol=1e-12)


def test_turning_where_it_saves_more_than_it_costs() -> None:
    cg3 = RowSolver("cg", cg_steps=3, block_size=1, block_sweeps=1)
    cg1 = RowSolver("cg", cg_steps=1, block_size=1, block_sweeps=1)
    exact = RowSolver("cholesky", cg_steps=1, block_size=1, block_sweeps=1)
    block = RowSolver("block", cg_steps=1, block_size=32, block_sweeps=1)
    # gowalla's shape: 29,858 users, 40,981 items.
    assert _basis.turning_pays(cg3, 29858, 40981, 256)
    assert _basis.turning_pays(cg3, 40981, 29858, 256)
    assert not _basis.turning_pays(cg3, 29858, 40981, 64), "below TURN_FROM_FACTORS"
    assert not _basis.turning_pays(cg1, 29858, 40981, 256), (
        "two products saved per row: less than the turn"
    )
    assert not _basis.turning_pays(cg3, 200, 40981, 256), "few rows against many"
    assert not _basis.turning_pays(cg3, 300, 100, 256), "the reduction outweighs 300 rows"
    assert not _basis.turning_pays(cg3, 2**64 - 1, 2**64 - 1, 2**64 - 1), "no overflow"
    assert _basis.turning_pays(cg3, 2**62, 1, 256)
    # Block coordinate descent depends on the basis; the exact solve gains nothing.
    assert not _basis.turning_pays(exact, 29858, 40981, 256)
    assert not _basis.turning_pays(block, 29858, 40981, 256)


def test_at_128_factors_a_fit_turns_by_itself() -> None:
    """The rule as shipped (no patching) turns the users' half-sweeps of a tall matrix."""
    matrix = interactions(3000, 300, seed=6)
    calls: list[int] = []
    reduce = _basis.Basis.reduce

    def counted(basis: _basis.Basis, gram: np.ndarray, x: np.ndarray, y: np.ndarray) -> Any:
        calls.append(len(gram))
        return reduce(basis, gram, x, y)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_basis.Basis, "reduce", counted)
        got = fitted(matrix, factors=128, iterations=2, dtype=np.float64)
    assert calls == [128, 128], "the users' half-sweeps turned, the items' did not"
    want = plain(matrix, factors=128, iterations=2, dtype=np.float64)
    assert relative_error(got.user_factors, want.user_factors) < 1e-10


def test_the_reduction_the_turn_and_the_way_back() -> None:
    rng = np.random.default_rng(7)
    y = rng.standard_normal((50, 12))
    x = rng.standard_normal((30, 12))
    x0, y0 = x.copy(), y.copy()
    gram = _native.gram(y, 1)
    basis = _native.TurnedBasis()
    tridiagonal = basis.reduce(gram, x, y, 2)
    assert not np.triu(tridiagonal, 2).any() and not np.tril(tridiagonal, -2).any()
    np.testing.assert_allclose(np.linalg.eigvalsh(tridiagonal), np.linalg.eigvalsh(gram))
    np.testing.assert_allclose(x @ y.T, x0 @ y0.T, atol=1e-12)
    np.testing.assert_allclose(_native.gram(y, 1), tridiagonal, atol=1e-11)
    assert not np.allclose(x, x0), "turned"
    # A second turn, then back through both.
    basis.reduce(_native.gram(x, 1), y, x, 1)
    basis.restore(x, y, 2)
    np.testing.assert_allclose(x, x0, atol=1e-12)
    np.testing.assert_allclose(y, y0, atol=1e-12)
    basis.restore(x, y, 2)  # nothing turned since: a no-op
    np.testing.assert_allclose(x, x0, atol=1e-12)


def test_bad_arguments_to_the_native_basis_are_refused_before_anything_turns() -> None:
    basis = _native.TurnedBasis()
    x, y = np.ones((4, 3)), np.ones((5, 3))
    with pytest.raises(ValueError, match="symmetric"):
        basis.reduce(np.arange(9.0).reshape(3, 3), x, y, 1)
    with pytest.raises(ValueError, match="entries"):
        basis.reduce(np.zeros((3, 4)), x, y, 1)
    with pytest.raises(ValueError, match="non-finite"):
        basis.reduce(np.full((3, 3), np.nan), x, y, 1)
    with pytest.raises(ValueError, match="columns"):
        basis.reduce(np.eye(4), x, y, 1)
    with pytest.raises(TypeError):
        basis.reduce(np.eye(3), x, y.astype(np.float32), 1)
    np.testing.assert_array_equal(x, 1.0)
    np.testing.assert_array_equal(y, 1.0)
