"""Sanity tests of tests/reference.py against independent formulas (no ials import needed)."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st
from strategies import Problem, problems, random_factors, random_sparse


def dense_lambdas(prob: Problem) -> np.ndarray:
    """lambda_u of every row, vectorised from the stored counts."""
    n_u = np.diff(prob.R.indptr)
    base = n_u + prob.unobserved_weight * prob.R.shape[1]
    return prob.regularization * base.astype(np.float64) ** prob.regularization_exponent


def dense_pc(prob: Problem) -> tuple[np.ndarray, np.ndarray]:
    """P and C built with vectorised NumPy, independently of reference.py's loops."""
    R = prob.R
    stored = np.zeros(R.shape, dtype=bool)
    value = np.zeros(R.shape)
    rows = np.repeat(np.arange(R.shape[0]), np.diff(R.indptr))
    stored[rows, R.indices] = True
    value[rows, R.indices] = R.data
    P = (value > 0).astype(np.float64)
    C = np.where(stored, prob.alpha * np.abs(value), prob.unobserved_weight)
    return P, C


def dense_row_solution(prob: Problem, u: int) -> np.ndarray:
    """argmin_x sum_i C_ui (P_ui - x.y_i)^2 + lambda_u |x|^2 via the normal equations."""
    P, C = dense_pc(prob)
    Y = prob.Y
    lam = dense_lambdas(prob)[u]
    A = Y.T @ np.diag(C[u]) @ Y + lam * np.eye(prob.k)
    b = Y.T @ (C[u] * P[u])
    return np.linalg.solve(A, b)


@given(problems(negatives=None, explicit_zeros=None, variants=True))
def test_dense_pc_matches_reference(prob: Problem) -> None:
    P, C = ref.dense_preference_confidence(prob.R, prob.alpha, prob.unobserved_weight)
    P2, C2 = dense_pc(prob)
    np.testing.assert_array_equal(P, P2)
    np.testing.assert_allclose(C, C2, rtol=1e-15)


@given(problems(negatives=None, explicit_zeros=None, variants=True))
def test_row_system_equals_dense_normal_equations(prob: Problem) -> None:
    P, C = dense_pc(prob)
    lam = dense_lambdas(prob)
    for u in range(prob.R.shape[0]):
        s, e = prob.R.indptr[u], prob.R.indptr[u + 1]
        A, b = ref.row_system(
            prob.R.indices[s:e],
            prob.R.data[s:e],
            prob.Y,
            prob.regularization,
            **prob.params(),
        )
        A2 = prob.Y.T @ (C[u][:, None] * prob.Y) + lam[u] * np.eye(prob.k)
        b2 = prob.Y.T @ (C[u] * P[u])
        np.testing.assert_allclose(A, A2, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(b, b2, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(A, A.T, rtol=0, atol=1e-12)


@given(problems(negatives=None, explicit_zeros=None, variants=True))
def test_exact_solve_satisfies_dense_normal_equations(prob: Problem) -> None:
    X = ref.exact_solve_rows(prob.R, prob.Y, prob.regularization, **prob.params())
    assert X.shape == prob.X.shape and X.dtype == np.float64
    n_u = np.diff(prob.R.indptr)
    for u in range(prob.R.shape[0]):
        if n_u[u] == 0:
            assert np.all(X[u] == 0.0)
        else:
            np.testing.assert_allclose(X[u], dense_row_solution(prob, u), rtol=1e-8, atol=1e-10)


@given(problems(negatives=None, explicit_zeros=None, variants=True), st.data())
def test_exact_solve_minimises_objective(prob: Problem, data: st.DataObject) -> None:
    X = ref.exact_solve_rows(prob.R, prob.Y, prob.regularization, **prob.params())
    base = ref.objective(prob.R, X, prob.Y, prob.regularization, **prob.params())
    # the starting point and any perturbation of a solved row can only be worse
    start = ref.objective(prob.R, prob.X, prob.Y, prob.regularization, **prob.params())
    assert base <= start * (1 + 1e-12) + 1e-15
    solved = np.flatnonzero(np.diff(prob.R.indptr))
    if solved.size:
        u = data.draw(st.sampled_from(list(solved)), label="row")
        Xp = X.copy()
        Xp[u] += np.random.default_rng(prob.seed).normal(size=prob.k) * 1e-3
        worse = ref.objective(prob.R, Xp, prob.Y, prob.regularization, **prob.params())
        assert worse >= base * (1 - 1e-12)


@given(problems(negatives=None, explicit_zeros=None, variants=True))
def test_objective_equals_vectorised_formula(prob: Problem) -> None:
    P, C = dense_pc(prob)
    X, Y = prob.X, prob.Y
    lam_u = dense_lambdas(prob)
    n_i = np.bincount(prob.R.indices, minlength=prob.R.shape[1])
    base_i = n_i + prob.unobserved_weight * prob.R.shape[0]
    lam_i = prob.regularization * base_i.astype(np.float64) ** prob.regularization_exponent
    loss = np.sum(C * (P - X @ Y.T) ** 2)
    loss += np.sum(lam_u * np.sum(X * X, axis=1)) + np.sum(lam_i * np.sum(Y * Y, axis=1))
    expected = loss / np.sum(C)
    got = ref.objective(prob.R, X, Y, prob.regularization, **prob.params())
    np.testing.assert_allclose(got, expected, rtol=1e-10)


@given(problems(negatives=None, explicit_zeros=None, variants=True))
def test_cg_with_enough_steps_reaches_exact(prob: Problem) -> None:
    exact = ref.exact_solve_rows(prob.R, prob.Y, prob.regularization, **prob.params())
    cg = ref.cg_solve_rows(
        prob.R,
        prob.X,
        prob.Y,
        prob.regularization,
        **prob.params(),
        cg_steps=prob.k + 2,
    )
    scale = np.linalg.norm(exact, axis=1, keepdims=True) + 1e-3
    assert np.all(np.abs(cg - exact) <= 1e-6 * scale)


@given(problems(negatives=None, explicit_zeros=None, variants=True), st.integers(0, 4))
def test_cg_decreases_row_quadratic_each_step(prob: Problem, steps: int) -> None:
    """f(x) = x'Ax/2 - b'x never increases with more CG steps; 0 steps keeps solved rows."""
    before = ref.cg_solve_rows(
        prob.R, prob.X, prob.Y, prob.regularization, **prob.params(), cg_steps=steps
    )
    after = ref.cg_solve_rows(
        prob.R, prob.X, prob.Y, prob.regularization, **prob.params(), cg_steps=steps + 1
    )
    if steps == 0:
        n_u = np.diff(prob.R.indptr)
        np.testing.assert_array_equal(before[n_u > 0], prob.X[n_u > 0])
        np.testing.assert_array_equal(before[n_u == 0], 0.0)
    for u in range(prob.R.shape[0]):
        s, e = prob.R.indptr[u], prob.R.indptr[u + 1]
        if s == e:
            continue
        A, b = ref.row_system(
            prob.R.indices[s:e],
            prob.R.data[s:e],
            prob.Y,
            prob.regularization,
            **prob.params(),
        )

        def f(x: np.ndarray, A: np.ndarray = A, b: np.ndarray = b) -> float:
            return 0.5 * float(x @ A @ x) - float(b @ x)

        assert f(after[u]) <= f(before[u]) + 1e-12 * (1 + abs(f(before[u])))


def test_cg_one_step_is_steepest_descent() -> None:
    """Hand-computed: one CG step from x0 is x0 + (r.r / r.Ar) r."""
    R = sp.csr_matrix(np.array([[2.0, 0.0, -1.0]], dtype=np.float32))
    Y = np.array([[1.0, 0.5], [0.0, 1.0], [0.5, -0.5]])
    x0 = np.array([[0.1, -0.2]])
    reg, alpha = 0.1, 2.0
    # C = [4, 1, 2], P = [1, 0, 0]
    A = Y.T @ np.diag([4.0, 1.0, 2.0]) @ Y + reg * np.eye(2)
    b = Y.T @ np.array([4.0, 0.0, 0.0])
    r = b - A @ x0[0]
    expected = x0[0] + (r @ r) / (r @ A @ r) * r
    got = ref.cg_solve_rows(R, x0, Y, reg, alpha=alpha, cg_steps=1)
    np.testing.assert_allclose(got[0], expected, rtol=1e-12)
    np.testing.assert_allclose(
        ref.exact_solve_rows(R, Y, reg, alpha=alpha)[0],
        np.linalg.solve(A, b),
        rtol=1e-12,
    )


def test_objective_hand_computed() -> None:
    """2x2 example with a negative, an explicit zero, w0=0.5 and nu=1, summed by hand."""
    R = sp.csr_matrix(
        (
            np.array([3.0, -2.0, 0.0], dtype=np.float32),
            np.array([0, 1, 0]),
            np.array([0, 2, 3]),
        ),
        shape=(2, 2),
    )
    X = np.array([[1.0], [2.0]])
    Y = np.array([[0.5], [-1.0]])
    reg, alpha, w0, nu = 0.1, 2.0, 0.5, 1.0
    # cells: (0,0) p=1 c=6 pred 0.5; (0,1) p=0 c=4 pred -1; (1,0) removed; (1,1) p=0 c=.5 pred -2
    data = 6 * 0.25 + 4 * 1.0 + 0.0 + 0.5 * 4.0
    # n_u = [2, 1] (explicit zero counts), n_i = [2, 1]; lambda = 0.1 * (n + 0.5 * 2)
    reg_term = 0.1 * 3 * 1 + 0.1 * 2 * 4 + 0.1 * 3 * 0.25 + 0.1 * 2 * 1
    total = 6 + 4 + 0 + 0.5
    got = ref.objective(R, X, Y, reg, alpha=alpha, regularization_exponent=nu, unobserved_weight=w0)
    assert got == pytest.approx((data + reg_term) / total, rel=1e-12)


def test_reference_keeps_explicit_zeros_and_input_order() -> None:
    R = sp.csr_matrix(
        (np.array([0.0, 1.0], dtype=np.float32), np.array([1, 0]), np.array([0, 2])),
        shape=(1, 2),
    )
    assert ref.stored_counts(R)[0].tolist() == [2]
    P, C = ref.dense_preference_confidence(R, alpha=3.0)
    np.testing.assert_array_equal(P, [[1.0, 0.0]])
    np.testing.assert_array_equal(C, [[3.0, 0.0]])


# --- cross-check with implicit 0.7.3 where it is installed (w0 = 1, nu = 0 only) -------------


def _implicit_cui(prob: Problem) -> sp.csr_matrix:
    """alpha * R rounded to float32 (implicit casts its data to float32); use with alpha=1."""
    Cui = sp.csr_matrix(prob.R.astype(np.float64) * prob.alpha)
    Cui.data = Cui.data.astype(np.float32).astype(np.float64)
    return Cui


@given(problems(negatives=None, explicit_zeros=None), st.integers(1, 4))
def test_reference_cg_matches_implicit(prob: Problem, steps: int) -> None:
    als = pytest.importorskip("implicit.cpu._als")
    reg = float(np.float32(prob.regularization))  # implicit takes a C float
    X = prob.X.copy()
    als.least_squares_cg(
        _implicit_cui(prob),
        X,
        prob.Y.copy(),
        reg,
        num_threads=1,
        cg_steps=steps,
    )
    got = ref.cg_solve_rows(_implicit_cui(prob), prob.X, prob.Y, reg, cg_steps=steps)
    scale = np.linalg.norm(got, axis=1, keepdims=True) + np.linalg.norm(
        prob.X, axis=1, keepdims=True
    )
    assert np.all(np.abs(X - got) <= 1e-8 * (scale + 1e-6))


@given(problems(negatives=None, explicit_zeros=None))
def test_reference_exact_matches_implicit(prob: Problem) -> None:
    als = pytest.importorskip("implicit.cpu._als")
    reg = float(np.float32(prob.regularization))  # implicit takes a C float
    X = prob.X.copy()
    als.least_squares(_implicit_cui(prob), X, prob.Y.copy(), reg, num_threads=1)
    got = ref.exact_solve_rows(_implicit_cui(prob), prob.Y, reg)
    np.testing.assert_allclose(X, got, rtol=1e-7, atol=1e-9)


@given(problems(negatives=False, explicit_zeros=None))
def test_reference_loss_matches_implicit(prob: Problem) -> None:
    """Non-negative data only: implicit 0.7.3's calculate_loss adds c_ui * 1 (as if p = 1) for
    negative entries, contradicting its own solver (p = 0); our objective uses p = 0."""
    als = pytest.importorskip("implicit.cpu._als")
    reg = float(np.float32(prob.regularization))  # implicit takes a C float
    loss = als.calculate_loss(_implicit_cui(prob), prob.X, prob.Y, reg, num_threads=1)
    expected = ref.objective(_implicit_cui(prob), prob.X, prob.Y, reg)
    assert loss == pytest.approx(expected, rel=1e-9)


def test_strategy_helpers_shapes() -> None:
    rng = np.random.default_rng(0)
    R = random_sparse(rng, 7, 5, 0.5, negative_fraction=0.5, zero_fraction=0.2)
    assert R.shape == (7, 5) and R.dtype == np.float32
    assert R.has_sorted_indices
    Y = random_factors(rng, 5, 3)
    assert np.array_equal(Y.astype(np.float32).astype(np.float64), Y)
