"""Properties of the core engine (ials.solve_rows, ials.calculate_loss, ials.gram) against the
float64 NumPy reference (tests/reference.py) and independent dense formulas."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import reference as ref
import scipy.sparse as sp
from closeness import CG_COND_FACTOR, EPS, assert_rows_close, row_conditions
from hypothesis import given
from hypothesis import strategies as st
from strategies import Problem, dtypes, problems, random_factors, random_sparse

ials = pytest.importorskip("ials")

RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-9}


# --- helpers ---------------------------------------------------------------------------------


def solve(
    prob: Problem,
    dtype: Any,
    *,
    use_cg: bool,
    cg_steps: int = 3,
    num_threads: int = 0,
    **overrides: Any,
) -> np.ndarray:
    """One ials half-sweep of prob (rows of R against Y), starting from prob.X."""
    x = np.array(prob.X, dtype=dtype, order="C", copy=True)  # never solve prob.X itself
    y = np.array(prob.Y, dtype=dtype, order="C", copy=True)
    kwargs: dict[str, Any] = {**prob.params(), **overrides}
    result = ials.solve_rows(
        prob.R,
        x,
        y,
        prob.regularization,
        use_cg=use_cg,
        cg_steps=cg_steps,
        num_threads=num_threads,
        **kwargs,
    )
    assert result is None  # in place
    assert x.dtype == np.dtype(dtype) and x.shape == prob.X.shape
    return x


def ref_exact(prob: Problem) -> np.ndarray:
    return ref.exact_solve_rows(prob.R, prob.Y, prob.regularization, **prob.params())


def ref_cg(prob: Problem, cg_steps: int) -> np.ndarray:
    return ref.cg_solve_rows(
        prob.R, prob.X, prob.Y, prob.regularization, **prob.params(), cg_steps=cg_steps
    )


def ref_loss(prob: Problem, X: np.ndarray | None = None, Y: np.ndarray | None = None) -> float:
    return ref.objective(
        prob.R,
        prob.X if X is None else X,
        prob.Y if Y is None else Y,
        prob.regularization,
        **prob.params(),
    )


def snapshot(*arrays: np.ndarray) -> list[tuple[bytes, tuple[int, ...], np.dtype]]:
    return [(a.tobytes(), a.shape, a.dtype) for a in arrays]


# --- exact solver ----------------------------------------------------------------------------


@given(problems(negatives=None, explicit_zeros=None, variants=True), dtypes)
def test_exact_equals_reference(prob: Problem, dtype: Any) -> None:
    got = solve(prob, dtype, use_cg=False)
    dt = np.dtype(dtype)
    assert_rows_close(got, ref_exact(prob), rtol=RTOL[dt], conds=row_conditions(prob), eps=EPS[dt])


@given(
    problems(min_k=32, max_k=48, max_cols=60, negatives=None, explicit_zeros=None, variants=True),
    dtypes,
)
def test_exact_equals_reference_where_short_rows_share_one_factorisation(
    prob: Problem, dtype: Any
) -> None:
    """From about 30 factors, a row with a few items (none weighted below the unobserved
    weight, nu = 0) is solved through one factorisation of the part all rows share (the Woodbury
    identity) instead of its own k x k system; the rest as before. Both against the reference."""
    got = solve(prob, dtype, use_cg=False)
    dt = np.dtype(dtype)
    assert_rows_close(got, ref_exact(prob), rtol=RTOL[dt], conds=row_conditions(prob), eps=EPS[dt])


@given(problems(negatives=True, explicit_zeros=None, variants=True), dtypes)
def test_negative_and_zero_values_match_explicit_p_and_c(prob: Problem, dtype: Any) -> None:
    """Stored r < 0 acts as p = 0 with weight alpha |r|; a stored 0 removes the cell. Compared
    with the normal equations of the dense weighted least squares built from full P and C."""
    P, C = ref.dense_preference_confidence(prob.R, prob.alpha, prob.unobserved_weight)
    n_u, _ = ref.stored_counts(prob.R)
    Y = prob.Y
    want = np.zeros_like(prob.X)
    for u in range(prob.R.shape[0]):
        if n_u[u] == 0:
            continue
        lam = ref.row_lambda(
            prob.regularization,
            int(n_u[u]),
            Y.shape[0],
            prob.regularization_exponent,
            prob.unobserved_weight,
        )
        A = Y.T @ (C[u][:, None] * Y) + lam * np.eye(prob.k)
        want[u] = np.linalg.solve(A, Y.T @ (C[u] * P[u]))
    got = solve(prob, dtype, use_cg=False)
    dt = np.dtype(dtype)
    assert_rows_close(got, want, rtol=RTOL[dt], conds=row_conditions(prob), eps=EPS[dt])


def test_confidence_is_formed_in_float32_as_implicit_does() -> None:
    """The interaction values are float32 and so is c = alpha * |r| (implicit scales its float32
    matrix by alpha before solving); with float64 factors everything after that is float64. So a
    float64 solve with alpha equals the reference on the float32 product with alpha = 1."""
    R = sp.csr_matrix(np.array([[1.1, 0.0, -2.3], [0.0, 4.9, 0.7]], dtype=np.float32))
    Y = random_factors(np.random.default_rng(5), 3, 2)
    alpha = 3.0
    scaled = R.copy()
    scaled.data = (np.float32(alpha) * R.data).astype(np.float32)
    x = np.zeros((2, 2))
    ials.solve_rows(R, x, Y.copy(), 0.5, alpha=alpha, use_cg=False)
    assert_rows_close(x, ref.exact_solve_rows(scaled, Y, 0.5, alpha=1.0), rtol=1e-12)
    X = random_factors(np.random.default_rng(6), 2, 2)
    loss = ials.calculate_loss(R, X, Y.copy(), 0.5, alpha=alpha)
    assert loss == pytest.approx(ref.objective(scaled, X, Y, 0.5, alpha=1.0), rel=1e-12)


# --- conjugate gradient ----------------------------------------------------------------------


@given(problems(negatives=None, explicit_zeros=None, variants=True))
def test_cg_with_k_steps_reaches_exact_float64(prob: Problem) -> None:
    got = solve(prob, np.float64, use_cg=True, cg_steps=prob.k + 2)
    assert_rows_close(got, ref_exact(prob), rtol=1e-6, atol=1e-9)


@given(problems(negatives=None, explicit_zeros=None, variants=True), st.integers(1, 4))
def test_cg_equals_reference_cg_float64(prob: Problem, steps: int) -> None:
    got = solve(prob, np.float64, use_cg=True, cg_steps=steps)
    want = ref_cg(prob, steps)
    scale = np.abs(want) + np.abs(prob.X)
    assert_rows_close(
        got,
        want,
        rtol=1e-9,
        scale=scale,
        conds=row_conditions(prob),
        eps=EPS[np.dtype(np.float64)],
        atol=1e-9,
    )


@given(problems(negatives=None, explicit_zeros=None, variants=True))
def test_cg_three_steps_equals_reference_cg_float32(prob: Problem) -> None:
    got = solve(prob, np.float32, use_cg=True, cg_steps=3)
    want = ref_cg(prob, 3)
    scale = np.abs(want) + np.abs(prob.X)
    assert_rows_close(
        got,
        want,
        rtol=1e-4,
        scale=scale,
        conds=row_conditions(prob),
        eps=EPS[np.dtype(np.float32)],
        atol=1e-6,
        cond_factor=CG_COND_FACTOR,
    )


def test_cg_default_is_three_steps() -> None:
    rng = np.random.default_rng(7)
    prob = Problem(
        R=random_sparse(rng, 20, 15, 0.4),
        X=random_factors(rng, 20, 8),
        Y=random_factors(rng, 15, 8),
        regularization=0.1,
        alpha=2.0,
    )
    x = prob.X.copy()
    ials.solve_rows(prob.R, x, prob.Y.copy(), prob.regularization, alpha=prob.alpha)
    assert_rows_close(x, ref_cg(prob, 3), rtol=1e-9, scale=np.abs(prob.X) + 1, atol=1e-9)
    # and 3 steps from a random start are far from converged here, so the test has teeth
    assert np.max(np.abs(ref_cg(prob, 3) - ref_exact(prob))) > 1e-6


# --- objective -------------------------------------------------------------------------------


@given(problems(negatives=None, explicit_zeros=None, variants=True), dtypes)
def test_calculate_loss_equals_reference(prob: Problem, dtype: Any) -> None:
    got = ials.calculate_loss(
        prob.R,
        prob.X.astype(dtype),
        prob.Y.astype(dtype),
        prob.regularization,
        **prob.params(),
    )
    assert isinstance(got, float)
    want = ref_loss(prob)
    rtol = 1e-5 if np.dtype(dtype) == np.float32 else 1e-9
    assert got == pytest.approx(want, rel=rtol, abs=1e-12)


@given(problems(negatives=None, explicit_zeros=None, variants=True), dtypes)
def test_calculate_loss_is_symmetric_under_transpose(prob: Problem, dtype: Any) -> None:
    X, Y = prob.X.astype(dtype), prob.Y.astype(dtype)
    params = prob.params()
    a = ials.calculate_loss(prob.R, X, Y, prob.regularization, **params)
    b = ials.calculate_loss(sp.csr_matrix(prob.R.T), Y, X, prob.regularization, **params)
    assert a == pytest.approx(b, rel=1e-5 if np.dtype(dtype) == np.float32 else 1e-10)


@given(
    problems(negatives=None, explicit_zeros=None, variants=True),
    dtypes,
    st.booleans(),
    st.booleans(),
)
def test_half_sweep_never_increases_loss(
    prob: Problem, dtype: Any, use_cg: bool, item_side: bool
) -> None:
    if item_side:  # solve the items given the users; the loss is still R's
        side = prob.transposed()
    else:
        side = prob
    X, Y = side.X.astype(dtype), side.Y.astype(dtype)
    before = ials.calculate_loss(side.R, X, Y, side.regularization, **side.params())
    new = solve(side, dtype, use_cg=use_cg)
    after = ials.calculate_loss(side.R, new, Y, side.regularization, **side.params())
    slack = 1e-5 if np.dtype(dtype) == np.float32 else 1e-12
    assert after <= before * (1 + slack) + 1e-12
    # the reference agrees on the new value (so the decrease is real, not a loss bug)
    if item_side:
        want = ref_loss(prob, X=prob.X, Y=new.astype(np.float64))
    else:
        want = ref_loss(prob, X=new.astype(np.float64))
    assert after == pytest.approx(want, rel=1e-5 if np.dtype(dtype) == np.float32 else 1e-9)


# --- structure -------------------------------------------------------------------------------


@given(problems(negatives=None, explicit_zeros=None, variants=True), dtypes, st.booleans())
def test_empty_rows_get_exact_zeros(prob: Problem, dtype: Any, use_cg: bool) -> None:
    # make sure there is at least one empty row (row 0) and a non-zero start everywhere
    R = prob.R
    counts = np.diff(R.indptr)
    counts[0] = 0
    keep = np.ones(R.nnz, dtype=bool)
    keep[R.indptr[0] : R.indptr[1]] = False
    prob.R = sp.csr_matrix(
        (R.data[keep], R.indices[keep], np.concatenate([[0], np.cumsum(counts)])),
        shape=R.shape,
    )
    prob.X = prob.X + 0.25 * np.sign(prob.X + 1e-300) + 0.25  # no exact zeros in the start
    assert np.all(prob.X != 0)
    got = solve(prob, dtype, use_cg=use_cg)
    empty = np.diff(prob.R.indptr) == 0
    assert empty[0]
    assert np.all(got[empty] == 0.0)
    # and the other rows are still the solver's (reference) answer
    want = ref_exact(prob) if not use_cg else ref_cg(prob, 3)
    dt = np.dtype(dtype)
    scale = np.abs(want) + np.abs(prob.X)
    assert_rows_close(
        got,
        want,
        rtol=RTOL[dt],
        scale=scale,
        conds=row_conditions(prob),
        eps=EPS[dt],
        atol=1e-6,
        cond_factor=CG_COND_FACTOR if use_cg else 16.0,
    )


@given(
    problems(negatives=None, explicit_zeros=None, variants=True), dtypes, st.booleans(), st.data()
)
def test_row_permutation_permutes_factors(
    prob: Problem, dtype: Any, use_cg: bool, data: st.DataObject
) -> None:
    n = prob.R.shape[0]
    perm = np.array(data.draw(st.permutations(range(n)), label="perm"), dtype=np.int64)
    base = solve(prob, dtype, use_cg=use_cg)
    permuted = Problem(
        R=sp.csr_matrix(prob.R[perm]),
        X=prob.X[perm],
        Y=prob.Y,
        regularization=prob.regularization,
        alpha=prob.alpha,
        regularization_exponent=prob.regularization_exponent,
        unobserved_weight=prob.unobserved_weight,
    )
    got = solve(permuted, dtype, use_cg=use_cg)
    # rows are independent computations, so they should match to the last bit
    np.testing.assert_array_equal(got, base[perm])


@given(
    problems(negatives=None, explicit_zeros=None, variants=True), dtypes, st.booleans(), st.data()
)
def test_column_permutation_leaves_factors_unchanged(
    prob: Problem, dtype: Any, use_cg: bool, data: st.DataObject
) -> None:
    """Permuting the columns of R together with the rows of Y changes only summation order."""
    m = prob.R.shape[1]
    perm = np.array(data.draw(st.permutations(range(m)), label="perm"), dtype=np.int64)
    base = solve(prob, dtype, use_cg=use_cg)
    Rp = sp.csr_matrix(prob.R[:, perm])
    Rp.sort_indices()
    permuted = Problem(
        R=Rp,
        X=prob.X,
        Y=prob.Y[perm],
        regularization=prob.regularization,
        alpha=prob.alpha,
        regularization_exponent=prob.regularization_exponent,
        unobserved_weight=prob.unobserved_weight,
    )
    got = solve(permuted, dtype, use_cg=use_cg)
    dt = np.dtype(dtype)
    scale = np.abs(base.astype(np.float64)) + np.abs(prob.X)
    assert_rows_close(
        got,
        base.astype(np.float64),
        rtol=RTOL[dt] / 10,
        scale=scale,
        conds=row_conditions(prob),
        eps=EPS[dt],
        atol=1e-6 if dt == np.float32 else 1e-10,
    )


# --- inputs ----------------------------------------------------------------------------------


@given(problems(negatives=None, explicit_zeros=None, variants=True), dtypes, st.booleans())
def test_inputs_are_not_mutated(prob: Problem, dtype: Any, use_cg: bool) -> None:
    R = prob.R
    x = np.ascontiguousarray(prob.X, dtype=dtype)
    y = np.ascontiguousarray(prob.Y, dtype=dtype)
    g = ials.gram(y)
    before = snapshot(R.data, R.indices, R.indptr, y, g)
    ials.solve_rows(R, x, y, prob.regularization, use_cg=use_cg, gram=g, **prob.params())
    ials.solve_rows(R, x, y, prob.regularization, use_cg=use_cg, **prob.params())
    x_before = snapshot(x)
    ials.calculate_loss(R, x, y, prob.regularization, **prob.params())
    ials.gram(y)
    assert snapshot(R.data, R.indices, R.indptr, y, g) == before
    assert snapshot(x) == x_before
    assert R.shape == prob.R.shape and R.format == "csr"


def test_non_canonical_input_not_mutated_and_duplicates_summed() -> None:
    """Unsorted indices with duplicates: the caller's arrays stay as they were, and the solve is
    the one of the summed matrix."""
    data = np.array([1.0, 2.0, 3.0, 4.0, 0.5], dtype=np.float32)
    indices = np.array([2, 0, 2, 1, 0], dtype=np.int32)  # row 0: cols 2, 0, 2 (dup); row 1: 1, 0
    indptr = np.array([0, 3, 5], dtype=np.int64)
    R = sp.csr_matrix((data, indices, indptr), shape=(2, 3))
    R.has_canonical_format = False
    saved = snapshot(R.data, R.indices, R.indptr)
    rng = np.random.default_rng(3)
    Y = random_factors(rng, 3, 2)
    x = np.zeros((2, 2))
    ials.solve_rows(R, x, Y.copy(), 0.1, alpha=2.0, use_cg=False)
    assert snapshot(R.data, R.indices, R.indptr) == saved
    summed = sp.csr_matrix(
        (np.array([2.0, 4.0, 0.5, 4.0], dtype=np.float32), [0, 2, 0, 1], [0, 2, 4]), shape=(2, 3)
    )
    assert_rows_close(x, ref.exact_solve_rows(summed, Y, 0.1, alpha=2.0), rtol=1e-9)


@pytest.mark.parametrize("fmt", ["coo", "csc", "lil", "dok"])
def test_solve_rows_accepts_other_formats_with_warning(fmt: str) -> None:
    rng = np.random.default_rng(11)
    R = random_sparse(rng, 12, 9, 0.4)
    Y = random_factors(rng, 9, 4)
    want = ref.exact_solve_rows(R, Y, 0.2, alpha=1.5)
    x = np.zeros((12, 4))
    with pytest.warns(ials.ParameterWarning):
        ials.solve_rows(R.asformat(fmt), x, Y.copy(), 0.2, alpha=1.5, use_cg=False)
    assert_rows_close(x, want, rtol=1e-9)


def test_solve_rows_accepts_csr_array_without_warning() -> None:
    rng = np.random.default_rng(12)
    R = random_sparse(rng, 12, 9, 0.4)
    Y = random_factors(rng, 9, 4)
    x = np.zeros((12, 4))
    ials.solve_rows(sp.csr_array(R), x, Y.copy(), 0.2, alpha=1.5, use_cg=False)  # no warning
    assert_rows_close(x, ref.exact_solve_rows(R, Y, 0.2, alpha=1.5), rtol=1e-9)


# --- gram ------------------------------------------------------------------------------------


@given(st.integers(0, 60), st.integers(1, 12), dtypes, st.integers(0, 2**32 - 1))
def test_gram_equals_yty(n: int, k: int, dtype: Any, seed: int) -> None:
    y = np.random.default_rng(seed).normal(size=(n, k)).astype(dtype)
    g = ials.gram(y)
    assert g.dtype == np.float64 and g.shape == (k, k)
    y64 = y.astype(np.float64)
    want = y64.T @ y64
    # float64 input: float64 throughout. float32 input: gram.rs sums blocks of up to 64 rows in
    # float32 before adding them in float64, so allow the float32 error of such a partial sum.
    if np.dtype(dtype) == np.float32:
        eps = (min(n, 64) + 2) * float(np.finfo(np.float32).eps)
    else:
        eps = (min(n, 64) + 2) * 2.2e-16
    bound = eps * (np.abs(y64).T @ np.abs(y64)) + 1e-300
    assert np.all(np.abs(g - want) <= bound)
    np.testing.assert_array_equal(g, g.T)


@given(problems(negatives=None, explicit_zeros=None, variants=True), dtypes, st.booleans())
def test_gram_argument_is_used_as_given(prob: Problem, dtype: Any, use_cg: bool) -> None:
    y = np.ascontiguousarray(prob.Y, dtype=dtype)
    # the correct gram gives the same bytes as letting solve_rows compute it
    a = solve(prob, dtype, use_cg=use_cg)
    b = solve(prob, dtype, use_cg=use_cg, gram=ials.gram(y))
    np.testing.assert_array_equal(a, b)
    # a different gram G enters as A_u = w0 G + sum (c - w0) y y^T + lambda_u I
    rng = np.random.default_rng(prob.seed)
    Z = rng.uniform(-0.5, 0.5, size=(3, prob.k))
    G = prob.Y.T @ prob.Y + Z.T @ Z  # keeps every A_u positive definite
    got = solve(prob, np.float64, use_cg=False, gram=G)
    Y = prob.Y
    want = np.zeros_like(prob.X)
    for u in range(prob.R.shape[0]):
        s, e = prob.R.indptr[u], prob.R.indptr[u + 1]
        if s == e:
            continue
        A, bvec = ref.row_system(
            prob.R.indices[s:e], prob.R.data[s:e], Y, prob.regularization, **prob.params()
        )
        A = A - prob.unobserved_weight * (Y.T @ Y) + prob.unobserved_weight * G
        want[u] = np.linalg.solve(A, bvec)
    assert_rows_close(got, want, rtol=1e-7, atol=1e-9)


# --- threads ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_problem() -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2024)
    R = random_sparse(rng, 2000, 500, 0.02, negative_fraction=0.05, integer_values=False)
    return R, random_factors(rng, 2000, 32), random_factors(rng, 500, 32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("use_cg", [True, False])
def test_thread_count_gives_identical_bytes(
    big_problem: tuple[sp.csr_matrix, np.ndarray, np.ndarray], dtype: Any, use_cg: bool
) -> None:
    R, X, Y = big_problem
    results = {}
    for threads in (1, 2, 0):
        x = X.astype(dtype)
        y = Y.astype(dtype)
        g = ials.gram(y, num_threads=threads)
        ials.solve_rows(R, x, y, 0.1, alpha=2.0, use_cg=use_cg, num_threads=threads)
        RT = sp.csr_matrix(R.T)
        ials.solve_rows(RT, y, x, 0.1, alpha=2.0, use_cg=use_cg, num_threads=threads)
        loss = ials.calculate_loss(R, x, y, 0.1, alpha=2.0, num_threads=threads)
        results[threads] = (x.tobytes(), y.tobytes(), g.tobytes(), loss)
    assert results[1] == results[2] == results[0]
    # and the large problem is solved correctly (spot-check a few rows against the reference)
    x = X.astype(np.float64)
    ials.solve_rows(R, x, Y.copy(), 0.1, alpha=2.0, use_cg=False, num_threads=2)
    rows = [0, 1, 999, 1999]
    want = ref.exact_solve_rows(R[rows], Y, 0.1, alpha=2.0)
    assert_rows_close(x[rows], want, rtol=1e-8)


# --- argument checks -------------------------------------------------------------------------


def _args() -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    R = sp.csr_matrix(np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]], dtype=np.float32))
    return R, np.zeros((3, 2), dtype=np.float32), np.ones((2, 2), dtype=np.float32)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"regularization": -0.1}, ValueError, "regularization"),
        ({"regularization": float("nan")}, ValueError, "regularization"),
        ({"alpha": -1.0}, ValueError, "alpha"),
        ({"cg_steps": 0}, ValueError, "cg_steps"),
        ({"num_threads": -1}, ValueError, "num_threads"),
        ({"unobserved_weight": -1.0}, ValueError, "unobserved_weight"),
        ({"regularization_exponent": -0.5}, ValueError, "regularization_exponent"),
        ({"gram": np.eye(3)}, ValueError, "gram"),
    ],
)
def test_solve_rows_rejects_bad_parameters(
    kwargs: dict[str, Any], exc: type[Exception], match: str
) -> None:
    R, x, y = _args()
    reg = kwargs.pop("regularization", 0.1)
    with pytest.raises(exc, match=match):
        ials.solve_rows(R, x, y, reg, **kwargs)
    assert np.all(x == 0)  # nothing was written


def test_solve_rows_rejects_bad_arrays() -> None:
    R, x, y = _args()
    with pytest.raises(TypeError, match="user_items"):
        ials.solve_rows(R.toarray(), x, y, 0.1)
    with pytest.raises(TypeError):
        ials.solve_rows(R, x.astype(np.float64), y, 0.1)  # dtype mismatch
    with pytest.raises(ValueError):
        ials.solve_rows(R, np.zeros((4, 2), dtype=np.float32), y, 0.1)  # wrong row count
    with pytest.raises(ValueError):
        ials.solve_rows(R, x, np.ones((3, 2), dtype=np.float32), 0.1)  # y rows != n_cols
    with pytest.raises(ValueError):
        ials.solve_rows(R, np.zeros((3, 3), dtype=np.float32), y, 0.1)  # k mismatch
    with pytest.raises(ValueError):
        ials.solve_rows(R, np.zeros((2, 3), dtype=np.float32).T, y, 0.1)  # not C-contiguous
    ro = np.zeros((3, 2), dtype=np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError):
        ials.solve_rows(R, ro, y, 0.1)
    bad = R.copy()
    bad.data[0] = np.nan
    with pytest.raises(ValueError, match="user_items"):
        ials.solve_rows(bad, x, y, 0.1)
    with pytest.raises(TypeError):
        ials.solve_rows(R, x.astype(np.int32), y.astype(np.int32), 0.1)
