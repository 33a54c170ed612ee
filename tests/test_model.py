"""Tests of ials.AlternatingLeastSquares: training loop, state, seeding, input handling."""

from __future__ import annotations

import itertools
import pickle
import warnings
from typing import Any

import numpy as np
import pytest
import reference as ref
import scipy.sparse as sp
from strategies import random_sparse

ials = pytest.importorskip("ials")
ALS = ials.AlternatingLeastSquares


# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def R() -> sp.csr_matrix:
    """30 users x 20 items, counts 1..10, a few negatives, one empty user row and item column."""
    rng = np.random.default_rng(0)
    m = random_sparse(rng, 30, 20, 0.3, negative_fraction=0.1).tolil()
    m[4, :] = 0
    m[:, 7] = 0
    m = sp.csr_matrix(m)
    m.eliminate_zeros()
    return sp.csr_matrix(
        (m.data.astype(np.float32), m.indices.astype(np.int32), m.indptr.astype(np.int64)),
        shape=m.shape,
    )


def fit(model: Any, user_items: Any, **kwargs: Any) -> Any:
    model.fit(user_items, show_progress=False, **kwargs)
    return model


def initial_factors(seed: int, n_users: int, n_items: int, k: int, dtype: Any = np.float32):
    """The documented start: default_rng(seed).random((n, k), dtype) * 0.01, users then items."""
    rng = np.random.default_rng(seed)
    users = rng.random((n_users, k), dtype=dtype) * 0.01
    items = rng.random((n_items, k), dtype=dtype) * 0.01
    return users, items


def ref_iteration(
    R: sp.csr_matrix,
    X: np.ndarray,
    Y: np.ndarray,
    regularization: float,
    *,
    use_cg: bool,
    cg_steps: int = 3,
    **params: float,
) -> tuple[np.ndarray, np.ndarray]:
    """One ALS sweep of the reference: users given items, then items given the new users."""
    RT = sp.csr_matrix(R.T)
    if use_cg:
        X = ref.cg_solve_rows(R, X, Y, regularization, **params, cg_steps=cg_steps)
        Y = ref.cg_solve_rows(RT, Y, X, regularization, **params, cg_steps=cg_steps)
    else:
        X = ref.exact_solve_rows(R, Y, regularization, **params)
        Y = ref.exact_solve_rows(RT, X, regularization, **params)
    return X, Y


class Recorder:
    """A callback that records its arguments and copies of the factors at each call."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.calls: list[tuple[Any, Any, Any]] = []
        self.factors: list[tuple[np.ndarray, np.ndarray]] = []

    def __call__(self, iteration: Any, elapsed: Any, loss: Any) -> None:
        self.calls.append((iteration, elapsed, loss))
        self.factors.append((self.model.user_factors.copy(), self.model.item_factors.copy()))


# --- training --------------------------------------------------------------------------------


@pytest.mark.parametrize("use_cg", [True, False])
def test_loss_decreases_and_callback_reports_it(R: sp.csr_matrix, use_cg: bool) -> None:
    model = ALS(
        factors=6,
        regularization=0.1,
        alpha=2.0,
        iterations=6,
        calculate_training_loss=True,
        use_cg=use_cg,
        random_state=3,
    )
    rec = Recorder(model)
    fit(model, R, callback=rec)
    assert [c[0] for c in rec.calls] == list(range(6))
    for iteration, elapsed, loss in rec.calls:
        assert isinstance(iteration, int)
        assert isinstance(elapsed, float) and elapsed >= 0.0
        assert isinstance(loss, float) and np.isfinite(loss)
    losses = [c[2] for c in rec.calls]
    start = ref.objective(R, *initial_factors(3, 30, 20, 6), 0.1, alpha=2.0)
    assert losses[0] < start
    for a, b in itertools.pairwise(losses):
        assert b <= a * (1 + 1e-6)
    assert losses[-1] < losses[0]
    # each reported loss is the objective of the factors at that moment
    for (X, Y), loss in zip(rec.factors, losses, strict=True):
        assert loss == pytest.approx(ref.objective(R, X, Y, 0.1, alpha=2.0), rel=1e-5)
    # the last factors are the model's
    np.testing.assert_array_equal(rec.factors[-1][0], model.user_factors)
    np.testing.assert_array_equal(rec.factors[-1][1], model.item_factors)


def test_callback_loss_is_none_without_training_loss(R: sp.csr_matrix) -> None:
    model = ALS(factors=3, iterations=3, random_state=0)
    rec = Recorder(model)
    fit(model, R, callback=rec)
    assert [c[0] for c in rec.calls] == [0, 1, 2]
    assert all(c[2] is None for c in rec.calls)


@pytest.mark.parametrize("use_cg", [True, False])
@pytest.mark.parametrize(("nu", "w0"), [(0.0, 1.0), (0.5, 0.1), (1.0, 3.0)])
def test_fit_equals_reference_iterations_float64(
    R: sp.csr_matrix, use_cg: bool, nu: float, w0: float
) -> None:
    params = {"alpha": 1.5, "regularization_exponent": nu, "unobserved_weight": w0}
    model = ALS(
        factors=4,
        regularization=0.2,
        iterations=3,
        dtype=np.float64,
        use_cg=use_cg,
        random_state=11,
        **params,
    )
    fit(model, R)
    assert model.user_factors.dtype == np.float64 and model.item_factors.dtype == np.float64
    X, Y = initial_factors(11, 30, 20, 4, np.float64)
    for _ in range(3):
        X, Y = ref_iteration(R, X, Y, 0.2, use_cg=use_cg, **params)
    np.testing.assert_allclose(model.user_factors, X, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(model.item_factors, Y, rtol=1e-7, atol=1e-10)
    # empty user 4 and empty item 7 are exact zeros
    assert np.all(model.user_factors[4] == 0) and np.all(model.item_factors[7] == 0)


def test_fit_equals_solve_rows_half_sweeps(R: sp.csr_matrix) -> None:
    model = fit(ALS(factors=5, regularization=0.05, iterations=2, random_state=4), R)
    X, Y = initial_factors(4, 30, 20, 5)
    RT = sp.csr_matrix(R.T)
    for _ in range(2):
        ials.solve_rows(R, X, Y, 0.05)
        ials.solve_rows(RT, Y, X, 0.05)
    np.testing.assert_array_equal(model.user_factors, X)
    np.testing.assert_array_equal(model.item_factors, Y)


def test_second_fit_continues_from_factors(R: sp.csr_matrix) -> None:
    once = fit(ALS(factors=4, iterations=5, random_state=9), R)
    twice = fit(ALS(factors=4, iterations=2, random_state=9), R)
    after_two = twice.user_factors.copy()
    twice.iterations = 3
    fit(twice, R)
    assert not np.array_equal(after_two, twice.user_factors)  # the second fit did train
    np.testing.assert_array_equal(once.user_factors, twice.user_factors)
    np.testing.assert_array_equal(once.item_factors, twice.item_factors)
    # factors set by hand are used as the start too
    manual = ALS(factors=4, iterations=5, random_state=12345)
    manual.user_factors, manual.item_factors = initial_factors(9, 30, 20, 4)
    fit(manual, R)
    np.testing.assert_array_equal(once.user_factors, manual.user_factors)


def test_shape_change_reinitialises(R: sp.csr_matrix) -> None:
    model = fit(ALS(factors=4, iterations=2, random_state=5), R)
    bigger = random_sparse(np.random.default_rng(1), 40, 25, 0.3)
    fit(model, bigger)
    assert model.user_factors.shape == (40, 4) and model.item_factors.shape == (25, 4)
    assert np.all(np.isfinite(model.user_factors)) and np.all(np.isfinite(model.item_factors))
    fresh = fit(ALS(factors=4, iterations=2, random_state=5), bigger)
    np.testing.assert_array_equal(model.user_factors, fresh.user_factors)
    np.testing.assert_array_equal(model.item_factors, fresh.item_factors)
    # a change of `factors` is a shape change as well
    model.factors = 6
    fit(model, bigger)
    assert model.user_factors.shape == (40, 6) and model.item_factors.shape == (25, 6)
    assert np.all(np.isfinite(model.user_factors))


# --- seeding and initialisation --------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_initial_factors_match_default_rng(R: sp.csr_matrix, dtype: Any) -> None:
    model = fit(ALS(factors=7, iterations=0, random_state=21, dtype=dtype), R)
    users, items = initial_factors(21, 30, 20, 7, dtype)
    assert model.user_factors.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(model.user_factors, users)
    np.testing.assert_array_equal(model.item_factors, items)


def test_random_state_kinds(R: sp.csr_matrix) -> None:
    def factors(random_state: Any) -> np.ndarray:
        return fit(ALS(factors=3, iterations=1, random_state=random_state), R).user_factors

    a, b, c = factors(42), factors(42), factors(43)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(factors(np.random.default_rng(42)), a)
    for state in (None, np.random.RandomState(1)):
        f = factors(state)
        assert f.shape == (30, 3) and np.all(np.isfinite(f)) and np.any(f != 0)
    np.testing.assert_array_equal(
        factors(np.random.RandomState(7)), factors(np.random.RandomState(7))
    )
    assert not np.array_equal(factors(None), factors(None))


def test_iterations_zero_does_not_call_back(R: sp.csr_matrix) -> None:
    calls: list[Any] = []
    model = fit(ALS(factors=2, iterations=0, random_state=0), R, callback=calls.append)
    assert calls == []
    assert model.user_factors.shape == (30, 2) and model.item_factors.shape == (20, 2)


# --- persistence -----------------------------------------------------------------------------


def test_pickle_round_trip(R: sp.csr_matrix) -> None:
    model = ALS(factors=3, regularization=0.2, iterations=2, random_state=8, cg_steps=4)
    clone = pickle.loads(pickle.dumps(model))  # unfitted
    assert clone.user_factors is None and clone.item_factors is None
    np.testing.assert_array_equal(fit(clone, R).user_factors, fit(model, R).user_factors)

    restored = pickle.loads(pickle.dumps(model))  # fitted
    for name in ("factors", "regularization", "iterations", "cg_steps", "alpha", "dtype"):
        assert getattr(restored, name) == getattr(model, name)
    np.testing.assert_array_equal(restored.user_factors, model.user_factors)
    np.testing.assert_array_equal(restored.item_factors, model.item_factors)
    # both continue identically
    fit(restored, R)
    fit(model, R)
    np.testing.assert_array_equal(restored.user_factors, model.user_factors)
    np.testing.assert_array_equal(restored.item_factors, model.item_factors)


# --- input formats ---------------------------------------------------------------------------


WARNING_FORMATS = [
    lambda m: sp.coo_matrix(m),
    lambda m: sp.csc_matrix(m),
    lambda m: sp.lil_matrix(m),
    lambda m: sp.dok_matrix(m),
    lambda m: sp.bsr_matrix(m),
    lambda m: sp.dia_matrix(m),
    lambda m: sp.coo_array(m),
    lambda m: sp.csc_array(m),
    lambda m: sp.lil_array(m),
    lambda m: sp.dok_array(m),
]


@pytest.mark.parametrize("convert", WARNING_FORMATS)
def test_non_csr_input_warns_and_matches_csr(R: sp.csr_matrix, convert: Any) -> None:
    assert issubclass(ials.ParameterWarning, UserWarning)
    expected = fit(ALS(factors=3, iterations=2, random_state=1), R)
    converted = convert(R)
    assert converted.format != "csr"
    model = ALS(factors=3, iterations=2, random_state=1)
    with pytest.warns(ials.ParameterWarning):
        fit(model, converted)
    np.testing.assert_array_equal(model.user_factors, expected.user_factors)
    np.testing.assert_array_equal(model.item_factors, expected.item_factors)


@pytest.mark.parametrize("convert", [sp.csr_matrix, sp.csr_array])
def test_csr_input_does_not_warn(R: sp.csr_matrix, convert: Any) -> None:
    expected = fit(ALS(factors=3, iterations=2, random_state=1), R)
    model = ALS(factors=3, iterations=2, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit(model, convert(R))
    np.testing.assert_array_equal(model.user_factors, expected.user_factors)


def test_other_value_dtypes_are_accepted(R: sp.csr_matrix) -> None:
    expected = fit(ALS(factors=3, iterations=2, random_state=1), R)
    for dtype in (np.float64, np.int64):
        m = R.astype(dtype) if dtype != np.int64 else sp.csr_matrix(R.astype(np.int64))
        got = fit(ALS(factors=3, iterations=2, random_state=1), m)
        np.testing.assert_array_equal(got.user_factors, expected.user_factors)


def test_input_matrix_is_not_mutated(R: sp.csr_matrix) -> None:
    copies = [a.copy() for a in (R.data, R.indices, R.indptr)]
    fit(ALS(factors=3, iterations=2, random_state=1, calculate_training_loss=True), R)
    for before, after in zip(copies, (R.data, R.indices, R.indptr), strict=True):
        assert before.dtype == after.dtype
        np.testing.assert_array_equal(before, after)


# --- edge cases ------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (0, 0)])
def test_empty_dimensions(shape: tuple[int, int]) -> None:
    model = fit(
        ALS(factors=3, iterations=2, random_state=0), sp.csr_matrix(shape, dtype=np.float32)
    )
    assert model.user_factors.shape == (shape[0], 3)
    assert model.item_factors.shape == (shape[1], 3)
    assert np.all(model.user_factors == 0) and np.all(model.item_factors == 0)


@pytest.mark.parametrize("use_cg", [True, False])
def test_all_zero_matrix_gives_zero_factors(use_cg: bool) -> None:
    model = ALS(factors=3, iterations=2, random_state=0, use_cg=use_cg)
    model.calculate_training_loss = True
    losses: list[Any] = []
    fit(
        model,
        sp.csr_matrix((3, 4), dtype=np.float32),
        callback=lambda i, t, loss: losses.append(loss),
    )
    assert np.all(model.user_factors == 0) and np.all(model.item_factors == 0)
    assert losses == [0.0, 0.0]  # nothing to fit, no penalty on zero factors


@pytest.mark.parametrize("use_cg", [True, False])
def test_one_by_one(use_cg: bool) -> None:
    R1 = sp.csr_matrix(np.array([[3.0]], dtype=np.float32))
    model = fit(
        ALS(
            factors=2,
            iterations=2,
            random_state=0,
            dtype=np.float64,
            use_cg=use_cg,
            regularization=0.1,
        ),
        R1,
    )
    X, Y = initial_factors(0, 1, 1, 2, np.float64)
    for _ in range(2):
        X, Y = ref_iteration(R1, X, Y, 0.1, use_cg=use_cg)
    np.testing.assert_allclose(model.user_factors, X, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(model.item_factors, Y, rtol=1e-8, atol=1e-12)


def test_show_progress_runs(R: sp.csr_matrix, capsys: pytest.CaptureFixture[str]) -> None:
    model = ALS(factors=2, iterations=2, random_state=0, calculate_training_loss=True)
    model.fit(R, show_progress=True)
    assert model.user_factors.shape == (30, 2)
    capsys.readouterr()


# --- errors ----------------------------------------------------------------------------------


class Boom(RuntimeError):
    pass


def test_callback_exception_propagates_and_model_stays_usable(R: sp.csr_matrix) -> None:
    model = ALS(factors=3, iterations=4, random_state=2)

    def callback(iteration: int, elapsed: float, loss: float | None) -> None:
        if iteration == 1:
            raise Boom("stop")

    with pytest.raises(Boom):
        fit(model, R, callback=callback)
    assert model.user_factors.shape == (30, 3)
    assert np.all(np.isfinite(model.user_factors))
    # two sweeps were done before the exception; two more complete the same 4 sweeps
    model.iterations = 2
    fit(model, R)
    full = fit(ALS(factors=3, iterations=4, random_state=2), R)
    np.testing.assert_array_equal(model.user_factors, full.user_factors)
    np.testing.assert_array_equal(model.item_factors, full.item_factors)


@pytest.mark.parametrize("bad", [np.ones((3, 4), dtype=np.float32), [[1.0, 0.0], [0.0, 1.0]], None])
def test_non_sparse_input_is_a_type_error(bad: Any) -> None:
    with pytest.raises(TypeError, match="user_items"):
        fit(ALS(factors=2, iterations=1), bad)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_rejected(R: sp.csr_matrix, value: float) -> None:
    bad = R.copy()
    bad.data[3] = value
    model = ALS(factors=2, iterations=1)
    with pytest.raises(ValueError, match="user_items"):
        fit(model, bad)


def construct_and_fit(R: sp.csr_matrix, **kwargs: Any) -> None:
    """Errors may come from __init__ or from fit; both count."""
    fit(ALS(**{"factors": 2, "iterations": 1, **kwargs}), R)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"factors": 0}, ValueError, "factors"),
        ({"factors": -3}, ValueError, "factors"),
        ({"factors": 2.5}, (TypeError, ValueError), "factors"),
        ({"regularization": -0.01}, ValueError, "regularization"),
        ({"regularization": float("nan")}, ValueError, "regularization"),
        ({"alpha": -1.0}, ValueError, "alpha"),
        ({"iterations": -1}, ValueError, "iterations"),
        ({"cg_steps": 0}, ValueError, "cg_steps"),
        ({"num_threads": -1}, ValueError, "num_threads"),
        ({"dtype": np.int32}, (TypeError, ValueError), "dtype"),
        ({"dtype": np.float16}, (TypeError, ValueError), "dtype"),
        ({"dtype": "not a dtype"}, (TypeError, ValueError), "dtype"),
        ({"unobserved_weight": -1.0}, ValueError, "unobserved_weight"),
        ({"regularization_exponent": -1.0}, ValueError, "regularization_exponent"),
        ({"random_state": "seed"}, (TypeError, ValueError), "random_state"),
        ({"use_gpu": True}, ValueError, "(?i)gpu"),
    ],
)
def test_bad_parameters_name_the_argument(
    R: sp.csr_matrix, kwargs: dict[str, Any], exc: Any, match: str
) -> None:
    with pytest.raises(exc, match=match):
        construct_and_fit(R, **kwargs)


def test_parameters_changed_after_construction_are_checked(R: sp.csr_matrix) -> None:
    model = ALS(factors=2, iterations=1)
    model.factors = 0
    with pytest.raises(ValueError, match="factors"):
        fit(model, R)
    model.factors = 2
    model.regularization = -1.0
    with pytest.raises(ValueError, match="regularization"):
        fit(model, R)
