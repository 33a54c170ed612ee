"""Explanations, fold-in, partial fits and the weighted objective (issue 4).

Expected values come from the float64 NumPy reference (tests/reference.py: ``row_system``,
``exact_solve_rows``, ``objective``) or from implicit 0.7.3; never from ials' own earlier output
(the one exception, asked for by the issue, checks fold-in against ``ials.solve_rows`` *and* the
reference).

Tolerances follow tests/test_solver_properties.py: |got - want| <= (rtol + 16 eps cond) * scale
+ atol, where cond is the 2-norm condition number of the row's system, eps the machine epsilon of
the factor dtype and scale the size of the expected value. The row systems themselves are always
assembled and solved in float64 (DESIGN.md section 1), so float32 factors only add the rounding of
stored results and of float32 products.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import ials
import implicit.cpu.als as implicit_als
import numpy as np
import pytest
import reference as ref
import scipy.sparse as sp
import threadpoolctl
from hypothesis import assume, given
from hypothesis import strategies as st
from strategies import Problem, dtypes, problems, random_factors, random_sparse

ALS = ials.AlternatingLeastSquares

EPS = {np.dtype(np.float32): float(np.finfo(np.float32).eps), np.dtype(np.float64): 2.2e-16}
RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-9}
ATOL = 1e-12

VARIANTS = [(0.0, 1.0), (0.5, 0.1), (1.0, 3.0), (1.0, 0.1), (0.5, 1.0), (0.0, 3.0)]


@pytest.fixture(scope="module", autouse=True)
def _single_threaded_blas() -> Iterator[None]:
    # implicit warns (RuntimeWarning) at construction when OpenBLAS runs several threads; with
    # filterwarnings=error that would fail, so every test here runs with one BLAS thread, as
    # tests/test_implicit_parity.py does.
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        yield


# --- helpers ---------------------------------------------------------------------------------


def model_for(prob: Problem, dtype: Any, **overrides: Any) -> Any:
    """An ials model holding the problem's factors (cast to ``dtype``) and parameters."""
    kwargs: dict[str, Any] = {
        "factors": prob.k,
        "regularization": prob.regularization,
        "dtype": dtype,
        "num_threads": 1,
        **prob.params(),
        **overrides,
    }
    model = ALS(**kwargs)
    model.user_factors = np.array(prob.X, dtype=dtype, order="C")
    model.item_factors = np.array(prob.Y, dtype=dtype, order="C")
    return model


def row_of(R: sp.csr_matrix, u: int) -> tuple[np.ndarray, np.ndarray]:
    start, end = R.indptr[u], R.indptr[u + 1]
    return R.indices[start:end], R.data[start:end]


def system(prob: Problem, indices: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return ref.row_system(indices, values, prob.Y, prob.regularization, **prob.params())


def weights(values: np.ndarray, alpha: float) -> np.ndarray:
    """c_j p_j of each stored value (zero unless positive)."""
    return np.array([np.prod(ref.preference_confidence(v, alpha)) for v in values])


def bound(dtype: Any, cond: float, scale: float, rtol: float | None = None) -> float:
    dt = np.dtype(dtype)
    return ((RTOL[dt] if rtol is None else rtol) + 16 * EPS[dt] * cond) * scale + ATOL


def conditions(prob: Problem, R: sp.csr_matrix, fixed: np.ndarray) -> np.ndarray:
    """Condition number of each row system of ``R`` against ``fixed`` (1 for empty rows)."""
    conds = np.ones(R.shape[0])
    for u in range(R.shape[0]):
        indices, values = row_of(R, u)
        if len(indices):
            A, _ = ref.row_system(indices, values, fixed, prob.regularization, **prob.params())
            conds[u] = np.linalg.cond(A)
    return conds


def assert_rows_close(
    got: np.ndarray, want: np.ndarray, conds: np.ndarray, dtype: Any, rtol: float | None = None
) -> None:
    got64 = np.asarray(got, dtype=np.float64)
    assert got64.shape == want.shape
    assert np.all(np.isfinite(got64))
    for u in range(want.shape[0]):
        err = float(np.linalg.norm(got64[u] - want[u]))
        limit = bound(dtype, conds[u], float(np.linalg.norm(want[u])), rtol)
        assert err <= limit, f"row {u}: got {got64[u]}, want {want[u]} (err {err} > {limit})"


def csr(matrix: Any) -> sp.csr_matrix:
    out = sp.csr_matrix(matrix)
    out.sort_indices()
    return out


def with_entries(matrix: sp.csr_matrix, entries: list[tuple[int, int, float]]) -> sp.csr_matrix:
    """``matrix`` with these cells set (so that the rows are not empty)."""
    lil = matrix.tolil()
    for r, c, v in entries:
        lil[r, c] = v
    return csr(lil.tocsr().astype(np.float32))


def snapshot(model: Any) -> tuple[np.ndarray, np.ndarray]:
    return model.user_factors.copy(), model.item_factors.copy()


class Explanation:
    """The reference decomposition of one user's score for one item (Hu et al. section 5)."""

    def __init__(self, prob: Problem, indices: np.ndarray, values: np.ndarray, item: int):
        A, b = system(prob, indices, values)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.x = np.linalg.solve(A, b)
        self.cond = float(np.linalg.cond(A))
        y = prob.Y[item]
        self.total = float(y @ self.x)
        w = np.linalg.solve(A, y)  # A^-1 y_item (A is symmetric)
        cp = weights(values, prob.alpha)
        similarity = prob.Y[self.indices] @ w if len(indices) else np.zeros(0)
        self.contributions = similarity * cp
        self.positive = self.indices[cp > 0]
        norms = np.linalg.norm(prob.Y[self.indices], axis=1) if len(indices) else np.zeros(0)
        # size of each contribution and of the total, for the error bounds
        self.scales = cp * norms * np.linalg.norm(w)
        self.total_scale = float(np.linalg.norm(y) * np.linalg.norm(self.x) + self.scales.sum())

    def by_item(self) -> dict[int, tuple[float, float]]:
        return {
            int(i): (float(c), float(s))
            for i, c, s in zip(self.indices, self.contributions, self.scales, strict=True)
        }


def check_explanation(
    got: tuple[float, list[tuple[int, float]], Any],
    want: Explanation,
    dtype: Any,
    complete: bool = True,
) -> None:
    total, top, _ = got
    assert isinstance(total, float)
    limit = bound(dtype, want.cond, want.total_scale)
    assert abs(total - want.total) <= limit, (total, want.total, limit)
    ids = [i for i, _ in top]
    assert len(ids) == len(set(ids))
    expected = want.by_item()
    for item, contribution in top:
        assert item in set(want.positive.tolist()), f"item {item} listed but not positive"
        c, s = expected[item]
        assert abs(contribution - c) <= bound(dtype, want.cond, s), (item, contribution, c)
    values = [c for _, c in top]
    assert values == sorted(values, reverse=True)
    if complete:
        assert sorted(ids) == sorted(want.positive.tolist())


# --- explain ---------------------------------------------------------------------------------


@given(problems(negatives=None, explicit_zeros=None, variants=True), dtypes, st.data())
def test_explain_decomposes_the_exact_solve(prob: Problem, dtype: Any, data: st.DataObject) -> None:
    """All contributions (N large) sum to the total, the total is y_i . x of the reference exact
    solve, each contribution is (y_i^T A^-1 y_j) c_j p_j, and only positive items are listed."""
    u = data.draw(st.integers(0, prob.R.shape[0] - 1), label="user")
    item = data.draw(st.integers(0, prob.R.shape[1] - 1), label="item")
    model = model_for(prob, dtype)
    before = snapshot(model)
    got = model.explain(u, prob.R, item, N=prob.R.shape[1] + 5)
    want = Explanation(prob, *row_of(prob.R, u), item)
    check_explanation(got, want, dtype)
    total, top, _ = got
    # the identity itself, within ials' own float64 arithmetic
    summed = sum(c for _, c in top)
    assert abs(summed - total) <= 16 * EPS[np.dtype(np.float64)] * want.cond * want.total_scale + (
        ATOL
    ), (summed, total)
    for a, b in zip(before, snapshot(model), strict=True):
        np.testing.assert_array_equal(a, b)


@given(problems(negatives=None, explicit_zeros=None, variants=True), dtypes, st.data())
def test_explain_top_n_are_the_largest_contributions(
    prob: Problem, dtype: Any, data: st.DataObject
) -> None:
    u = data.draw(st.integers(0, prob.R.shape[0] - 1), label="user")
    item = data.draw(st.integers(0, prob.R.shape[1] - 1), label="item")
    n = data.draw(st.integers(1, 4), label="N")
    want = Explanation(prob, *row_of(prob.R, u), item)
    got = model_for(prob, dtype).explain(u, prob.R, item, N=n)
    check_explanation(got, want, dtype, complete=False)
    _, top, _ = got
    positive = np.isin(want.indices, want.positive)
    expected = np.sort(want.contributions[positive])[::-1][:n]
    assert len(top) == len(expected)
    # compared by value so that two near-equal contributions may come in either order
    worst = max(want.scales.max(initial=0.0), 1.0)
    for (_, c), e in zip(top, expected, strict=True):
        assert abs(c - e) <= bound(dtype, want.cond, worst)


@given(problems(negatives=None, explicit_zeros=None, variants=True), dtypes, st.data())
def test_explain_unseen_user_from_their_row(prob: Problem, dtype: Any, data: st.DataObject) -> None:
    """A user id beyond the model's users, explained from a single row."""
    u = data.draw(st.integers(0, prob.R.shape[0] - 1), label="row")
    item = data.draw(st.integers(0, prob.R.shape[1] - 1), label="item")
    extra = data.draw(st.integers(0, 1000), label="extra")
    model = model_for(prob, dtype)
    row = csr(prob.R[u])
    got = model.explain(prob.R.shape[0] + extra, row, item, N=prob.R.shape[1])
    check_explanation(got, Explanation(prob, *row_of(prob.R, u), item), dtype)
    assert model.user_factors.shape == prob.X.shape  # nothing stored for the unseen user


@given(problems(negatives=None, explicit_zeros=None, variants=True), dtypes, st.data())
def test_explain_reused_user_weights(prob: Problem, dtype: Any, data: st.DataObject) -> None:
    u = data.draw(st.integers(0, prob.R.shape[0] - 1), label="user")
    first = data.draw(st.integers(0, prob.R.shape[1] - 1), label="first")
    second = data.draw(st.integers(0, prob.R.shape[1] - 1), label="second")
    model = model_for(prob, dtype)
    n = prob.R.shape[1]
    _, _, user_weights = model.explain(u, prob.R, first, N=n)
    reused = model.explain(u, prob.R, second, user_weights=user_weights, N=n)
    fresh = model.explain(u, prob.R, second, N=n)
    want = Explanation(prob, *row_of(prob.R, u), second)
    check_explanation(reused, want, dtype)
    assert reused[0] == pytest.approx(fresh[0], rel=1e-12, abs=1e-12)
    assert [i for i, _ in reused[1]] == [i for i, _ in fresh[1]]
    np.testing.assert_allclose(
        [c for _, c in reused[1]], [c for _, c in fresh[1]], rtol=1e-12, atol=1e-12
    )


def test_explain_skips_negative_and_zero_items() -> None:
    """Items stored with r < 0 (p = 0) or r == 0 (no weight) are never listed, but r < 0 still
    shapes A, so the total is that of the full reference system."""
    rng = np.random.default_rng(7)
    Y = random_factors(rng, 6, 3)
    row = sp.csr_matrix(
        (
            np.array([3.0, -4.0, 0.0, 2.0, -1.0], dtype=np.float32),
            np.array([0, 1, 2, 4, 5], dtype=np.int32),
            np.array([0, 5]),
        ),
        shape=(1, 6),
    )
    prob = Problem(
        R=row,
        X=random_factors(rng, 1, 3),
        Y=Y,
        regularization=0.3,
        alpha=2.0,
        regularization_exponent=0.5,
        unobserved_weight=0.1,
    )
    model = model_for(prob, np.float64)
    got = model.explain(0, row, 3, N=10)
    want = Explanation(prob, row.indices, row.data, 3)
    check_explanation(got, want, np.float64)
    assert sorted(i for i, _ in got[1]) == [0, 4]
    # the negative items are in A: without them the total differs
    without = Explanation(prob, np.array([0, 4]), np.array([3.0, 2.0]), 3)
    assert abs(without.total - want.total) > 1e-3
    # N counts listed items only: here item 4 contributes +0.03 and item 0 -0.30, below the
    # (unlisted) zeros of items 1, 2 and 5, which must not take the second slot
    assert want.by_item()[4][0] > 0 > want.by_item()[0][0]
    _, top2, _ = model.explain(0, row, 3, N=2)
    assert [i for i, _ in top2] == [4, 0]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("regularization", "alpha"), [(0.5, 1.0), (0.125, 2.0), (0.25, 0.5)])
@pytest.mark.parametrize("seed", [0, 1])
def test_explain_matches_implicit(
    dtype: Any, regularization: float, alpha: float, seed: int
) -> None:
    """Same factors and positive data: the same total, top items and contributions as implicit
    0.7.3 (default regularization_exponent and unobserved_weight)."""
    rng = np.random.default_rng(seed)
    n_users, n_items, k = 12, 30, 5
    R = random_sparse(rng, n_users, n_items, 0.3)
    X = random_factors(rng, n_users, k).astype(dtype)
    Y = random_factors(rng, n_items, k).astype(dtype)
    theirs = implicit_als.AlternatingLeastSquares(
        factors=k, regularization=regularization, alpha=alpha, dtype=dtype, num_threads=1
    )
    theirs.user_factors, theirs.item_factors = X.copy(), Y.copy()
    ours = ALS(factors=k, regularization=regularization, alpha=alpha, dtype=dtype, num_threads=1)
    ours.user_factors, ours.item_factors = X.copy(), Y.copy()
    rtol = 1e-9 if dtype == np.float64 else 1e-4
    checked = 0
    for u in range(n_users):
        if R.indptr[u + 1] - R.indptr[u] < 2:
            continue
        for item in (0, 7, 29):
            for n in (3, n_items):
                t_total, t_top, _ = theirs.explain(u, R, item, N=n)
                o_total, o_top, _ = ours.explain(u, R, item, N=n)
                scale = 1.0 + sum(abs(c) for _, c in t_top)
                assert o_total == pytest.approx(t_total, rel=rtol, abs=rtol * scale)
                assert [i for i, _ in o_top] == [int(i) for i, _ in t_top]
                np.testing.assert_allclose(
                    [c for _, c in o_top], [c for _, c in t_top], rtol=rtol, atol=rtol * scale
                )
                checked += 1
    assert checked > 20


# --- recalculate_user / recalculate_item -----------------------------------------------------


@given(problems(negatives=None, explicit_zeros=None, variants=True), dtypes, st.data())
def test_recalculate_user_is_the_reference_exact_solve(
    prob: Problem, dtype: Any, data: st.DataObject
) -> None:
    model = model_for(prob, dtype)
    before = snapshot(model)
    rows = data.draw(
        st.lists(st.integers(0, prob.R.shape[0] - 1), min_size=1, max_size=5), label="rows"
    )
    matrix = csr(prob.R[rows])
    # ids are arbitrary (fold-in of new users), including ids beyond the model's users
    ids = [r + 3 * prob.R.shape[0] * (j % 2) for j, r in enumerate(rows)]
    got = model.recalculate_user(np.array(ids), matrix)
    want = ref.exact_solve_rows(matrix, prob.Y, prob.regularization, **prob.params())
    assert got.dtype == np.dtype(dtype)
    assert_rows_close(got, want, conditions(prob, matrix, prob.Y), dtype)
    single = model.recalculate_user(ids[0], csr(matrix[0]))
    assert single.shape == (prob.k,)
    assert_rows_close(single[None, :], want[:1], conditions(prob, matrix, prob.Y)[:1], dtype)
    for a, b in zip(before, snapshot(model), strict=True):
        np.testing.assert_array_equal(a, b)


@given(problems(negatives=None, explicit_zeros=None, variants=True), dtypes, st.data())
def test_recalculate_item_is_the_reference_exact_solve(
    prob: Problem, dtype: Any, data: st.DataObject
) -> None:
    model = model_for(prob, dtype)
    before = snapshot(model)
    side = prob.transposed()  # items x users, fixed side X
    items = data.draw(
        st.lists(st.integers(0, side.R.shape[0] - 1), min_size=1, max_size=5), label="items"
    )
    matrix = csr(side.R[items])
    got = model.recalculate_item(np.array(items), matrix)
    want = ref.exact_solve_rows(matrix, side.Y, side.regularization, **side.params())
    assert got.dtype == np.dtype(dtype)
    assert_rows_close(got, want, conditions(side, matrix, side.Y), dtype)
    single = model.recalculate_item(items[0], csr(matrix[0]))
    assert single.shape == (prob.k,)
    assert_rows_close(single[None, :], want[:1], conditions(side, matrix, side.Y)[:1], dtype)
    for a, b in zip(before, snapshot(model), strict=True):
        np.testing.assert_array_equal(a, b)


# --- partial_fit_users / partial_fit_items ---------------------------------------------------


def expected_partial_fit(
    old: np.ndarray, ids: list[int], solved: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(expected matrix, mask of the rows that were solved)."""
    size = max(old.shape[0], max(ids) + 1)
    out = np.zeros((size, old.shape[1]))
    out[: old.shape[0]] = old
    out[ids] = solved
    mask = np.zeros(size, dtype=bool)
    mask[ids] = True
    return out, mask


@pytest.mark.parametrize("side_name", ["users", "items"])
@given(problems(negatives=None, explicit_zeros=None, variants=True), dtypes, st.data())
def test_partial_fit_stores_the_reference_solve(
    side_name: str, prob: Problem, dtype: Any, data: st.DataObject
) -> None:
    side = prob if side_name == "users" else prob.transposed()
    n_rows = side.R.shape[0]
    ids = data.draw(
        st.lists(st.integers(0, n_rows + 6), min_size=1, max_size=6, unique=True), label="ids"
    )
    matrix = csr(side.R[[i % n_rows for i in ids]])
    model = model_for(prob, dtype)
    old = dict(zip(("users", "items"), snapshot(model), strict=True))
    getattr(model, f"partial_fit_{side_name}")(np.array(ids), matrix)
    solved = ref.exact_solve_rows(matrix, side.Y, side.regularization, **side.params())
    want, mask = expected_partial_fit(old[side_name], ids, solved)
    got = getattr(model, f"{side_name[:-1]}_factors")
    assert got.dtype == np.dtype(dtype)
    assert got.shape == want.shape
    # untouched rows keep their exact values; grown rows that were not given are zeros
    np.testing.assert_array_equal(got[~mask], want[~mask].astype(dtype))
    if want.shape[0] > n_rows:
        gap = np.setdiff1d(np.arange(n_rows, want.shape[0]), ids)
        assert not got[gap].any()
    assert_rows_close(got[ids], solved, conditions(side, matrix, side.Y), dtype)
    other = "items" if side_name == "users" else "users"
    np.testing.assert_array_equal(getattr(model, f"{other[:-1]}_factors"), old[other])


def top_n(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((np.arange(len(scores)), -scores))[:n]
    return order, scores[order]


def cosine(factors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(factors, axis=1)
    norms[norms == 0] = 1e-10
    return factors / norms[:, None]


def test_partial_fit_invalidates_cached_norms_and_gram() -> None:
    """recommend (with and without recalculate_user), similar_items and similar_users called
    before a partial fit must use the new factors after it."""
    rng = np.random.default_rng(3)
    n_users, n_items, k = 15, 12, 4
    R = random_sparse(rng, n_users, n_items, 0.4)
    params = {"alpha": 1.5, "regularization_exponent": 0.5, "unobserved_weight": 0.1}
    X = random_factors(rng, n_users, k)
    Y = random_factors(rng, n_items, k)
    model = ALS(factors=k, regularization=0.2, dtype=np.float64, num_threads=1, **params)
    model.user_factors, model.item_factors = X.copy(), Y.copy()
    u = 2
    row = csr(R[u])
    empty = sp.csr_matrix((1, n_items), dtype=np.float32)
    # fill every cache
    model.recommend(u, row, N=3, recalculate_user=True)
    model.recommend(u, empty, N=3, filter_already_liked_items=False)
    model.similar_items(1, N=3)
    model.similar_users(1, N=3)

    # items 0..3 and a new item 14 (12 and 13 are grown as zeros) from new user columns
    item_ids = [0, 1, 2, 3, n_items + 2]
    item_users = csr(random_sparse(rng, len(item_ids), n_users, 0.5))
    model.partial_fit_items(np.array(item_ids), item_users)
    Y_new, _ = expected_partial_fit(Y, item_ids, ref.exact_solve_rows(item_users, X, 0.2, **params))
    assert model.item_factors.shape == Y_new.shape
    np.testing.assert_allclose(model.item_factors, Y_new, rtol=1e-9, atol=1e-12)

    wide_row = csr(sp.hstack([row, sp.csr_matrix((1, 3), dtype=np.float32)]))
    x_u = ref.exact_solve_rows(wide_row, Y_new, 0.2, **params)[0]
    ids, scores = model.recommend(u, wide_row, N=3, recalculate_user=True)
    liked = set(row.indices.tolist())
    all_scores = Y_new @ x_u
    all_scores[list(liked)] = -np.inf
    want_ids, want_scores = top_n(all_scores, 3)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model.recalculate_user(u, wide_row), x_u, rtol=1e-9, atol=1e-12)

    wide_empty = sp.csr_matrix((1, n_items + 3), dtype=np.float32)
    ids, scores = model.recommend(u, wide_empty, N=3, filter_already_liked_items=False)
    want_ids, want_scores = top_n(Y_new @ X[u], 3)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-9, atol=1e-12)

    ids, scores = model.similar_items(1, N=4)
    normed = cosine(Y_new)
    want_ids, want_scores = top_n(normed @ normed[1], 4)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-9, atol=1e-12)

    # users 1 and a new user 16 from rows of the new item width
    user_ids = [1, n_users + 1]
    user_items = csr(random_sparse(rng, len(user_ids), n_items + 3, 0.5))
    model.partial_fit_users(np.array(user_ids), user_items)
    X_new, _ = expected_partial_fit(
        X, user_ids, ref.exact_solve_rows(user_items, Y_new, 0.2, **params)
    )
    np.testing.assert_allclose(model.user_factors, X_new, rtol=1e-9, atol=1e-12)
    ids, scores = model.similar_users(1, N=4)
    normed = cosine(X_new)
    want_ids, want_scores = top_n(normed @ normed[1], 4)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-9, atol=1e-12)
    ids, scores = model.recommend(1, wide_empty, N=3, filter_already_liked_items=False)
    want_ids, want_scores = top_n(Y_new @ X_new[1], 3)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-9, atol=1e-12)


def test_partial_fit_matches_implicit() -> None:
    """Default objective, positive data: implicit 0.7.3's partial fits (growth included) give the
    same factors."""
    rng = np.random.default_rng(5)
    n_users, n_items, k = 10, 9, 3
    X = random_factors(rng, n_users, k)
    Y = random_factors(rng, n_items, k)
    user_ids = np.array([3, n_users + 2])
    user_items = with_entries(random_sparse(rng, 2, n_items, 0.5), [(0, 0, 2.0), (1, 1, 3.0)])
    item_ids = np.array([n_items + 1, 0])
    item_users = with_entries(random_sparse(rng, 2, n_users + 3, 0.5), [(0, 0, 1.0), (1, 2, 4.0)])
    theirs = implicit_als.AlternatingLeastSquares(
        factors=k, regularization=0.25, alpha=2.0, dtype=np.float64, num_threads=1
    )
    ours = ALS(factors=k, regularization=0.25, alpha=2.0, dtype=np.float64, num_threads=1)
    for model in (theirs, ours):
        model.user_factors, model.item_factors = X.copy(), Y.copy()
        model.partial_fit_users(user_ids, user_items)
        model.partial_fit_items(item_ids, item_users)
    assert ours.user_factors.shape == theirs.user_factors.shape == (n_users + 3, k)
    assert ours.item_factors.shape == theirs.item_factors.shape == (n_items + 2, k)
    np.testing.assert_allclose(ours.user_factors, theirs.user_factors, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.item_factors, theirs.item_factors, rtol=1e-9, atol=1e-12)


# --- fold-in is one more exact half-sweep ----------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("nu", "w0"), VARIANTS)
def test_fold_in_of_training_rows_is_one_more_exact_half_sweep(
    dtype: Any, nu: float, w0: float
) -> None:
    rng = np.random.default_rng(11)
    R = random_sparse(rng, 25, 18, 0.3, negative_fraction=0.1)
    params = {"alpha": 1.25, "regularization_exponent": nu, "unobserved_weight": w0}
    model = ALS(
        factors=4,
        regularization=0.1,
        iterations=2,
        use_cg=False,
        dtype=dtype,
        random_state=2,
        num_threads=1,
        **params,
    )
    model.fit(R, show_progress=False)
    X, Y = snapshot(model)
    sweep = X.copy()
    ials.solve_rows(R, sweep, Y.copy(), 0.1, use_cg=False, **params)
    want = ref.exact_solve_rows(R, Y.astype(np.float64), 0.1, **params)
    prob = Problem(
        R=R, X=X.astype(np.float64), Y=Y.astype(np.float64), regularization=0.1, **params
    )
    conds = conditions(prob, R, prob.Y)
    rtol = RTOL[np.dtype(dtype)]
    for u in range(R.shape[0]):
        got = model.recalculate_user(u, csr(R[u]))
        np.testing.assert_allclose(
            got, sweep[u], rtol=rtol, atol=1e-7 if dtype == np.float32 else 1e-12
        )
        assert_rows_close(got[None, :], want[u : u + 1], conds[u : u + 1], dtype)
    got_all = model.recalculate_user(np.arange(R.shape[0]), R)
    assert_rows_close(got_all, want, conds, dtype)

    RT = csr(R.T)
    sweep_items = Y.copy()
    ials.solve_rows(RT, sweep_items, X.copy(), 0.1, use_cg=False, **params)
    want_items = ref.exact_solve_rows(RT, X.astype(np.float64), 0.1, **params)
    side = prob.transposed()
    got_items = model.recalculate_item(np.arange(RT.shape[0]), RT)
    np.testing.assert_allclose(
        got_items, sweep_items, rtol=rtol, atol=1e-7 if dtype == np.float32 else 1e-12
    )
    assert_rows_close(got_items, want_items, conditions(side, RT, side.Y), dtype)


# --- the weighted objective in fit and in the loss -------------------------------------------


@given(problems(negatives=None, explicit_zeros=None, variants=True), dtypes)
def test_exact_fit_iteration_is_two_reference_half_sweeps(prob: Problem, dtype: Any) -> None:
    model = model_for(prob, dtype, use_cg=False, iterations=1)
    model.fit(prob.R, show_progress=False)
    X1 = ref.exact_solve_rows(prob.R, prob.Y, prob.regularization, **prob.params())
    users = model.user_factors
    assert_rows_close(users, X1, conditions(prob, prob.R, prob.Y), dtype)
    # the item half-sweep solves against the user factors as stored (rounded to the dtype)
    stored = users.astype(np.float64)
    side = Problem(
        R=csr(prob.R.T),
        X=prob.Y,
        Y=stored,
        regularization=prob.regularization,
        alpha=prob.alpha,
        regularization_exponent=prob.regularization_exponent,
        unobserved_weight=prob.unobserved_weight,
    )
    Y1 = ref.exact_solve_rows(side.R, stored, prob.regularization, **prob.params())
    assert_rows_close(model.item_factors, Y1, conditions(side, side.R, stored), dtype)


@given(problems(negatives=None, explicit_zeros=None, variants=True), st.booleans())
def test_training_loss_is_the_reference_objective(prob: Problem, use_cg: bool) -> None:
    # the loss divides by the total weight, which must be positive
    n_cells = prob.R.shape[0] * prob.R.shape[1]
    assume(prob.R.nnz < n_cells or np.any(prob.R.data != 0))
    losses: list[float] = []
    factors: list[tuple[np.ndarray, np.ndarray]] = []
    model = model_for(prob, np.float64, use_cg=use_cg, iterations=2, calculate_training_loss=True)

    def record(iteration: int, elapsed: float, loss: float | None) -> None:
        assert loss is not None
        losses.append(loss)
        factors.append(snapshot(model))

    model.fit(prob.R, show_progress=False, callback=record)
    assert len(losses) == 2
    for loss, (X, Y) in zip(losses, factors, strict=True):
        want = ref.objective(prob.R, X, Y, prob.regularization, **prob.params())
        assert loss == pytest.approx(want, rel=1e-9, abs=1e-12)


# --- bad input -------------------------------------------------------------------------------


@pytest.fixture
def fitted() -> tuple[Any, sp.csr_matrix]:
    rng = np.random.default_rng(0)
    R = random_sparse(rng, 8, 6, 0.5)
    model = ALS(factors=3, iterations=2, random_state=0, num_threads=1)
    model.fit(R, show_progress=False)
    return model, R


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m, R: m.recalculate_user(-1, csr(R[0])), "userid"),
        (lambda m, R: m.recalculate_user(np.array([0, -3]), csr(R[:2])), "userid"),
        (lambda m, R: m.recalculate_item(-1, csr(R.T[0])), "itemid"),
        (lambda m, R: m.partial_fit_users(np.array([-1]), csr(R[0])), "userids"),
        (lambda m, R: m.partial_fit_items(np.array([-2]), csr(R.T[0])), "itemids"),
        (lambda m, R: m.explain(8, R, 0), "userid"),  # unknown in the full matrix
        (lambda m, R: m.explain(-1, R, 0), "userid"),
        (lambda m, R: m.explain(-1, csr(R[0]), 0), "userid"),  # negative, with a single row
        (lambda m, R: m.explain(0, R, 6), "itemid"),
        (lambda m, R: m.explain(0, R, -1), "itemid"),
        (lambda m, R: m.explain(0, csr(R[0]), 6), "itemid"),
    ],
    ids=[
        "recalculate_user-negative",
        "recalculate_user-negative-in-array",
        "recalculate_item-negative",
        "partial_fit_users-negative",
        "partial_fit_items-negative",
        "explain-unknown-user",
        "explain-negative-user",
        "explain-negative-user-single-row",
        "explain-item-too-large",
        "explain-negative-item",
        "explain-item-too-large-single-row",
    ],
)
def test_bad_ids_are_value_errors(fitted: Any, call: Any, match: str) -> None:
    model, R = fitted
    before = snapshot(model)
    with pytest.raises(ValueError, match=match):
        call(model, R)
    for a, b in zip(before, snapshot(model), strict=True):
        np.testing.assert_array_equal(a, b)


def widen(matrix: sp.csr_matrix, extra: int) -> sp.csr_matrix:
    if extra >= 0:
        return csr(sp.hstack([matrix, sp.csr_matrix((matrix.shape[0], extra))]))
    return csr(matrix[:, :extra])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m, R: m.recalculate_user(0, widen(R[0], 1)), "user_items"),
        (lambda m, R: m.recalculate_user(np.array([0, 1]), csr(R[0])), "user_items"),
        (lambda m, R: m.recalculate_item(0, widen(csr(R.T[0]), 1)), "item_users"),
        (lambda m, R: m.partial_fit_users(np.array([0]), widen(R[0], 2)), "user_items"),
        (lambda m, R: m.partial_fit_users(np.array([0, 9]), csr(R[:3])), "user_items"),
        (lambda m, R: m.partial_fit_items(np.array([0]), widen(csr(R.T[0]), 2)), "item_users"),
        (lambda m, R: m.partial_fit_items(np.array([0, 1]), csr(R.T[:1])), "item_users"),
        (lambda m, R: m.explain(0, widen(R, 1), 0), "user_items"),
        (lambda m, R: m.explain(0, widen(R[0], -1), 0), "user_items"),
    ],
    ids=[
        "recalculate_user-wide",
        "recalculate_user-row-count",
        "recalculate_item-wide",
        "partial_fit_users-wide",
        "partial_fit_users-row-count",
        "partial_fit_items-wide",
        "partial_fit_items-row-count",
        "explain-wide-matrix",
        "explain-narrow-row",
    ],
)
def test_rows_of_the_wrong_shape_are_value_errors(fitted: Any, call: Any, match: str) -> None:
    # Fold-in rows with fewer columns than the model are widened (tests/test_implicit_dropin.py).
    model, R = fitted
    before = snapshot(model)
    with pytest.raises(ValueError, match=match):
        call(model, R)
    for a, b in zip(before, snapshot(model), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["regularization_exponent", "unobserved_weight"])
@pytest.mark.parametrize("value", [-1.0, -1e-9, float("nan"), float("inf")])
def test_bad_weighting_parameters_are_value_errors(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=name):
        ALS(**{name: value})


@pytest.mark.parametrize(
    "call",
    [
        lambda m, R: m.explain(0, R, 0),
        lambda m, R: m.explain(0, csr(R[0]), 0),
        lambda m, R: m.recalculate_user(0, csr(R[0])),
        lambda m, R: m.recalculate_item(0, csr(R.T[0])),
        lambda m, R: m.partial_fit_users(np.array([0]), csr(R[0])),
        lambda m, R: m.partial_fit_items(np.array([0]), csr(R.T[0])),
    ],
    ids=[
        "explain",
        "explain-single-row",
        "recalculate_user",
        "recalculate_item",
        "partial_fit_users",
        "partial_fit_items",
    ],
)
def test_never_fitted_model_is_a_value_error(fitted: Any, call: Any) -> None:
    _, R = fitted
    model = ALS(factors=3)
    with pytest.raises(ValueError, match="fit"):
        call(model, R)
    assert model.user_factors is None and model.item_factors is None


def test_non_csr_rows_give_the_reference_results() -> None:
    """A COO row is accepted by explain and fold-in and gives the reference results."""
    rng = np.random.default_rng(1)
    R = with_entries(random_sparse(rng, 5, 7, 0.6), [(0, 1, 2.0)])
    prob = Problem(
        R=R,
        X=random_factors(rng, 5, 3),
        Y=random_factors(rng, 7, 3),
        regularization=0.2,
        alpha=1.0,
    )
    model = model_for(prob, np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a conversion warning is allowed, not required
        explained = model.explain(0, sp.coo_matrix(R[0]), 2, N=7)
        folded = model.recalculate_user(0, sp.coo_matrix(R[0]))
    check_explanation(explained, Explanation(prob, *row_of(R, 0), 2), np.float64)
    np.testing.assert_allclose(
        folded, ref.exact_solve_rows(R[:1], prob.Y, 0.2)[0], rtol=1e-9, atol=1e-12
    )
