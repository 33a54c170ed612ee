"""Ranking methods (recommend, recommend_all, similar_items, similar_users, score,
recalculate_user) against a plain NumPy reference and against implicit 0.7.3.

The reference ranks the eligible items of each query with ``np.argsort(-scores, kind="stable")``
over ascending item ids, so ties go to the lower id. Expected values come from that reference,
from ``reference.exact_solve_rows`` or from implicit, never from ials' own output.

Exactness: the recommend properties use coarse factors (small integers, or multiples of 1/8 in
[-2, 2]) with k <= 8, so every partial sum of every dot product is exactly representable in float32
and float64 whatever the summation order: ials' scores must equal the reference bit for bit, and
ties (frequent with integer factors) are real ties in both. Cosines and recalculated users are not
exact; they are compared with a tolerance, and ids are required to match wherever the reference
ordering is unambiguous at that tolerance (or the reference scores are exact ties among rows whose
normalised vectors are identical, where the lower id must come first).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ials
import implicit.cpu.als as implicit_als
import numpy as np
import pytest
import reference as ref
import scipy.sparse as sp
import threadpoolctl
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from strategies import DTYPES, problems, random_factors

# --------------------------------------------------------------------------------------------
# NumPy reference of the ranking (kept apart from tests/reference.py on purpose: plain and short)


def reference_ranking(
    scores: np.ndarray, eligible: np.ndarray, n: int, last: np.ndarray | None = None
) -> list[np.ndarray]:
    """Per query row: the ids of its best ``n`` eligible items, best first, ties to lower ids,
    followed by the ids of ``last`` (liked items among ``items=``) by increasing id."""
    result = []
    for q, (row_scores, row_eligible) in enumerate(
        zip(np.asarray(scores, dtype=np.float64), eligible, strict=True)
    ):
        ids = np.flatnonzero(row_eligible)
        ranked = ids[np.argsort(-row_scores[ids], kind="stable")]
        if last is not None:
            ranked = np.concatenate([ranked, np.flatnonzero(last[q])])
        result.append(ranked[:n])
    return result


def reference_cosine(queries: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Cosine similarity in float64, zero-norm rows given norm 1e-10 (as implicit)."""

    def unit(rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.float64)
        norms = np.linalg.norm(rows, axis=1)
        norms[norms == 0] = 1e-10
        return rows / norms[:, None]

    return unit(queries) @ unit(targets).T


def eligibility(
    n_queries: int,
    n_items: int,
    liked: sp.csr_matrix | None = None,
    filter_items: Any = None,
    items: Any = None,
) -> np.ndarray:
    """Boolean (n_queries, n_items): ``items`` only, minus ``filter_items``, minus each query's
    stored entries of ``liked`` (any stored entry, whatever its value)."""
    mask = np.ones((n_queries, n_items), dtype=bool)
    if items is not None:
        mask[:] = False
        mask[:, np.asarray(items, dtype=np.int64)] = True
    if filter_items is not None:
        mask[:, np.asarray(filter_items, dtype=np.int64)] = False
    if liked is not None:
        coo = sp.coo_matrix(liked)
        mask[coo.row, coo.col] = False
    return mask


def liked_among_items(
    n_queries: int,
    n_items: int,
    liked: sp.csr_matrix | None,
    filter_items: Any = None,
    items: Any = None,
) -> np.ndarray | None:
    """Boolean (n_queries, n_items): the stored entries of ``liked`` among ``items`` and not in
    ``filter_items``, which recommend ranks after every eligible item (as implicit), or None when
    there is no ``items`` list or no liked filter."""
    if items is None or liked is None:
        return None
    among = eligibility(n_queries, n_items, None, filter_items, items)
    return among & ~eligibility(n_queries, n_items, liked)


# --------------------------------------------------------------------------------------------
# Checks


def as_rows(result: tuple[np.ndarray, np.ndarray], single: bool, n: int, n_queries: int):
    """The result's rows with the padding checked and stripped: [(ids, scores), ...]."""
    ids, scores = result
    assert isinstance(ids, np.ndarray) and isinstance(scores, np.ndarray)
    assert ids.dtype == np.int32
    if single:
        assert ids.ndim == 1 and ids.shape == scores.shape and len(ids) <= n
        assert (ids >= 0).all()
        return [(ids, scores)]
    # padded to N, or to the number of items when that is smaller
    assert ids.shape == scores.shape and ids.shape[0] == n_queries and ids.shape[1] <= n
    rows = []
    for row_ids, row_scores in zip(ids, scores, strict=True):
        count = int((row_ids >= 0).sum())
        # real entries first (their scores are checked by the caller: liked items ranked last
        # among items= score -inf), then -1 / -inf padding only
        np.testing.assert_array_equal(row_ids[count:], -1)
        assert np.isneginf(row_scores[count:]).all()
        assert (row_ids[:count] >= 0).all()
        rows.append((row_ids[:count], row_scores[:count]))
    return rows


def check_exact(
    result: tuple[np.ndarray, np.ndarray],
    scores: np.ndarray,
    eligible: np.ndarray,
    n: int,
    single: bool,
    dtype: Any,
    last: np.ndarray | None = None,
) -> None:
    """ids equal to the reference ranking and scores equal to the exact reference scores (-inf
    for the ``last`` ids)."""
    assert result[1].dtype == np.dtype(dtype)
    expected = reference_ranking(scores, eligible, n, last)
    rows = as_rows(result, single, n, len(expected))
    assert len(rows) == len(expected)
    for q, ((ids, got), want) in enumerate(zip(rows, expected, strict=True)):
        np.testing.assert_array_equal(ids, want, err_msg=f"query row {q}")
        want_scores = np.where(eligible[q, want], scores[q, want], -np.inf).astype(dtype)
        np.testing.assert_array_equal(got, want_scores, err_msg=f"query row {q}")


def check_close_row(
    ids: np.ndarray,
    got: np.ndarray,
    scores: np.ndarray,
    eligible: np.ndarray,
    n: int,
    tol: float,
) -> None:
    """One query's ranking against float64 reference ``scores`` known to within ``tol``.

    The reference order is split into clusters of scores closer than 2 tol; in a cluster whose
    reference scores are all exactly equal (a singleton, or rows with identical normalised
    vectors) the ids must be those of the reference, in its order (ties to lower ids)."""
    (order,) = reference_ranking(scores[None, :], eligible[None, :], len(scores))
    count = min(n, len(order))
    assert len(ids) == count, (len(ids), count)
    assert len(np.unique(ids)) == count, "an id is returned twice"
    assert eligible[ids].all(), f"ineligible ids returned: {ids[~eligible[ids]]}"
    np.testing.assert_allclose(got, scores[ids], rtol=0, atol=tol)
    # the k-th returned item scores (in the reference) like the reference's k-th best
    np.testing.assert_allclose(scores[ids], scores[order[:count]], rtol=0, atol=2 * tol)
    # own order: by score, ties by lower id
    steps = np.diff(got.astype(np.float64))
    assert (steps <= 0).all(), "scores are not sorted descending"
    assert (np.diff(ids)[steps == 0] > 0).all(), "equal scores not ordered by lower id"
    ordered = scores[order]
    start = 0
    while start < count:
        end = start + 1
        while end < len(ordered) and ordered[end - 1] - ordered[end] <= 2 * tol:
            end += 1
        if ordered[start] == ordered[end - 1]:
            np.testing.assert_array_equal(
                ids[start : min(end, count)], order[start : min(end, count)]
            )
        start = end


def check_close(
    result: tuple[np.ndarray, np.ndarray],
    scores: np.ndarray,
    eligible: np.ndarray,
    n: int,
    single: bool,
    dtype: Any,
    tol: float,
) -> None:
    assert result[1].dtype == np.dtype(dtype)
    rows = as_rows(result, single, n, len(scores))
    assert len(rows) == len(scores)
    for q, (ids, got) in enumerate(rows):
        try:
            check_close_row(ids, got, scores[q], eligible[q], n, tol)
        except AssertionError as err:
            raise AssertionError(f"query row {q}: {err}") from err


# --------------------------------------------------------------------------------------------
# Data


def make_model(
    user_factors: np.ndarray | None,
    item_factors: np.ndarray | None,
    dtype: Any = np.float32,
    num_threads: int = 1,
    **params: Any,
) -> ials.AlternatingLeastSquares:
    k = (user_factors if user_factors is not None else item_factors).shape[1]
    model = ials.AlternatingLeastSquares(factors=k, dtype=dtype, num_threads=num_threads, **params)
    if user_factors is not None:
        model.user_factors = np.ascontiguousarray(user_factors, dtype=dtype)
    if item_factors is not None:
        model.item_factors = np.ascontiguousarray(item_factors, dtype=dtype)
    return model


def coarse_factors(rng: np.random.Generator, n: int, k: int, kind: str) -> np.ndarray:
    """float64 factors whose dot products (k <= 8) are exact in float32 in any order."""
    assert k <= 8
    if kind == "integers":  # |x.y| <= 72, many ties and zero rows
        return rng.integers(-3, 4, size=(n, k)).astype(np.float64)
    return rng.integers(-16, 17, size=(n, k)) / 8.0  # multiples of 1/64, |x.y| <= 32


def liked_matrix(
    rng: np.random.Generator, n_rows: int, n_items: int, density: float, layout: str
) -> sp.csr_matrix | sp.csr_array:
    """Stored entries with positive, negative and explicitly zero values (all count as liked)."""
    mask = rng.random((n_rows, n_items)) < density
    rows, cols = np.nonzero(mask)
    values = rng.choice(np.array([1.0, 3.0, 0.0, -1.0], dtype=np.float32), size=rows.size)
    indptr = np.concatenate([[0], np.cumsum(mask.sum(axis=1))]).astype(np.int64)
    cols = cols.astype(np.int32)
    if layout == "unsorted":  # valid CSR with each row's indices in descending order
        for r in range(n_rows):
            cols[indptr[r] : indptr[r + 1]] = cols[indptr[r] : indptr[r + 1]][::-1].copy()
    matrix = sp.csr_matrix((values, cols, indptr), shape=(n_rows, n_items))
    return sp.csr_array(matrix) if layout == "csr_array" else matrix


def id_container(draw: st.DrawFn, ids: list[int]) -> Any:
    """ids as a list or as an array of some integer dtype."""
    kind = draw(st.sampled_from(["list", "int64", "int32", "uint32"]), label="id container")
    return list(ids) if kind == "list" else np.array(ids, dtype=kind)


@dataclass
class RecommendCase:
    X: np.ndarray  # float64, exact in float32
    Y: np.ndarray
    dtype: Any
    userid: Any
    user_rows: np.ndarray  # the user id of each row of liked
    single: bool
    liked: Any
    N: int
    filter_liked: bool
    filter_items: Any
    items: Any
    num_threads: int


@st.composite
def recommend_cases(
    draw: st.DrawFn, max_users: int = 10, max_items: int = 60, batch: tuple[int, int] = (1, 8)
) -> RecommendCase:
    n_users = draw(st.integers(1, max_users), label="n_users")
    n_items = draw(st.integers(1, max_items), label="n_items")
    k = draw(st.integers(1, 8), label="k")
    kind = draw(st.sampled_from(["integers", "eighths"]), label="values")
    seed = draw(st.integers(0, 2**32 - 1), label="seed")
    rng = np.random.default_rng(seed)
    single = batch[0] == 1 and draw(st.booleans(), label="single")
    if single:
        userid: Any = draw(st.integers(0, n_users - 1), label="userid")
        user_rows = np.array([userid])
    else:
        count = draw(st.integers(*batch), label="batch size")
        users = rng.integers(0, n_users, size=count).tolist()  # repeats allowed
        userid = id_container(draw, users)
        user_rows = np.array(users)
    density = draw(st.sampled_from([0.0, 0.1, 0.4, 0.9, 1.0]), label="liked density")
    layout = draw(st.sampled_from(["csr_matrix", "csr_array", "unsorted"]), label="layout")
    filter_items = None
    if draw(st.booleans(), label="use filter_items"):
        drawn = draw(st.lists(st.integers(0, n_items - 1), max_size=n_items + 3), label="filter")
        filter_items = id_container(draw, drawn)  # duplicates allowed
    items = None
    if draw(st.booleans(), label="use items"):
        drawn = draw(
            st.lists(st.integers(0, n_items - 1), unique=True, max_size=n_items), label="items"
        )
        items = id_container(draw, drawn)  # any order
    return RecommendCase(
        X=coarse_factors(rng, n_users, k, kind),
        Y=coarse_factors(rng, n_items, k, kind),
        dtype=draw(st.sampled_from(DTYPES), label="dtype"),
        userid=userid,
        user_rows=user_rows,
        single=single,
        liked=liked_matrix(rng, len(user_rows), n_items, density, layout),
        N=draw(st.integers(1, n_items + 5), label="N"),
        filter_liked=draw(st.booleans(), label="filter_already_liked_items"),
        filter_items=filter_items,
        items=items,
        num_threads=draw(st.sampled_from([1, 2]), label="num_threads"),
    )


def expected_for(case: RecommendCase) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    scores = case.X[case.user_rows] @ case.Y.T
    shape = (len(case.user_rows), len(case.Y))
    liked = case.liked if case.filter_liked else None
    eligible = eligibility(*shape, liked, case.filter_items, case.items)
    return scores, eligible, liked_among_items(*shape, liked, case.filter_items, case.items)


# --------------------------------------------------------------------------------------------
# recommend / recommend_all against the reference


def recommend_and_check(case: RecommendCase) -> None:
    model = make_model(case.X, case.Y, case.dtype, case.num_threads)
    result = model.recommend(
        case.userid,
        case.liked,
        N=case.N,
        filter_already_liked_items=case.filter_liked,
        filter_items=case.filter_items,
        items=case.items,
    )
    scores, eligible, last = expected_for(case)
    check_exact(result, scores, eligible, case.N, case.single, case.dtype, last)


@given(recommend_cases())
def test_recommend_matches_reference(case: RecommendCase) -> None:
    recommend_and_check(case)


@given(recommend_cases(max_users=3, max_items=700))
def test_recommend_across_item_strips_and_buffer_compaction(case: RecommendCase) -> None:
    """Hundreds of items (many strips of the kernel) and N up to the number of items."""
    recommend_and_check(case)


@settings(max_examples=30)
@given(recommend_cases(max_users=100, max_items=300, batch=(16, 60)))
def test_recommend_batches_of_packed_strips(case: RecommendCase) -> None:
    """16 users or more: the items are packed into strips (fewer read the rows in place)."""
    recommend_and_check(case)


@settings(max_examples=30)
@given(recommend_cases(max_users=400, max_items=300, batch=(256, 320)))
def test_recommend_large_batches_that_stop_early_by_norm(case: RecommendCase) -> None:
    """256 users or more: the items are ordered by norm and each user stops scanning once no
    remaining item can enter its top N (integer factors: norms spread, scores tie)."""
    recommend_and_check(case)


@given(recommend_cases(), st.booleans())
def test_recommend_all_matches_reference(case: RecommendCase, use_liked: bool) -> None:
    model = make_model(case.X, case.Y, case.dtype, case.num_threads)
    n_users, n_items = len(case.X), len(case.Y)
    liked = liked_matrix(
        np.random.default_rng(n_users * n_items), n_users, n_items, 0.3, "csr_matrix"
    )
    filter_liked = case.filter_liked and use_liked
    result = model.recommend_all(
        liked if use_liked else None,
        N=case.N,
        filter_already_liked_items=filter_liked,
        filter_items=case.filter_items,
        items=case.items,
    )
    scores = case.X @ case.Y.T
    filtered = liked if filter_liked else None
    eligible = eligibility(n_users, n_items, filtered, case.filter_items, case.items)
    last = liked_among_items(n_users, n_items, filtered, case.filter_items, case.items)
    check_exact(result, scores, eligible, case.N, False, case.dtype, last)
    # the same as a batch recommend of every user (which the reference pins down as well)
    batch = model.recommend(
        np.arange(n_users),
        liked if use_liked else None,
        N=case.N,
        filter_already_liked_items=filter_liked,
        filter_items=case.filter_items,
        items=case.items,
    )
    check_exact(batch, scores, eligible, case.N, False, case.dtype, last)


@given(
    problems(max_rows=8, max_cols=30, variants=True, negatives=None, explicit_zeros=None),
    st.sampled_from(DTYPES),
    st.booleans(),
    st.booleans(),
    st.integers(1, 35),
    st.sampled_from([0, 1, 1000]),
)
def test_recommend_recalculate_user_matches_exact_solve(
    prob: Any, dtype: Any, single: bool, filter_liked: bool, n: int, offset: int
) -> None:
    """recalculate_user: the user vector is the exact solve of the given row against the item
    factors with the model's objective, for ids inside and outside the trained users."""
    params = prob.params()
    model = make_model(prob.X, prob.Y, dtype, 1, regularization=prob.regularization, **params)
    item_factors = prob.Y.astype(dtype).astype(np.float64)
    solved = ref.exact_solve_rows(prob.R, item_factors, prob.regularization, **params)
    tol_vector = {np.float32: 2e-5, np.float64: 1e-9}[dtype] * max(1.0, np.abs(solved).max())
    rows = [0] if single else list(range(prob.R.shape[0]))
    userid: Any = offset if single else np.arange(len(rows)) + offset
    liked = prob.R[rows]

    vectors = model.recalculate_user(userid, liked)
    assert vectors.shape == ((prob.k,) if single else (len(rows), prob.k))
    np.testing.assert_allclose(vectors.reshape(len(rows), -1), solved[rows], atol=tol_vector)

    result = model.recommend(
        userid, liked, N=n, filter_already_liked_items=filter_liked, recalculate_user=True
    )
    scores = solved[rows] @ item_factors.T
    tol = tol_vector * np.abs(item_factors).sum(axis=1).max() + 1e-6 * np.abs(scores).max()
    eligible = eligibility(len(rows), prob.R.shape[1], liked if filter_liked else None)
    check_close(result, scores, eligible, n, single, dtype, tol)


def test_recalculate_user_of_an_empty_row_is_zero() -> None:
    model = make_model(np.ones((2, 3)), np.arange(12.0).reshape(4, 3))
    empty = sp.csr_matrix((1, 4), dtype=np.float32)
    np.testing.assert_array_equal(model.recalculate_user(7, empty), np.zeros(3))
    ids, scores = model.recommend(7, empty, N=4, recalculate_user=True)
    np.testing.assert_array_equal(ids, [0, 1, 2, 3])  # all scores 0: ties by id
    np.testing.assert_array_equal(scores, np.zeros(4))


# --------------------------------------------------------------------------------------------
# N edge cases, filtering everything, ties


@pytest.mark.parametrize("dtype", DTYPES)
def test_n_one_and_n_beyond_the_number_of_items(dtype: Any) -> None:
    X = np.array([[1.0, 0.0], [0.0, 1.0]])
    Y = np.array([[1.0, 2.0], [3.0, 0.0], [2.0, 2.0], [3.0, -1.0]])
    model = make_model(X, Y, dtype)
    scores = X @ Y.T
    none = sp.csr_matrix((3, 4), dtype=np.float32)
    for n in (1, 3, 4, 5, 50):
        for users, single in ((0, True), (1, True), (np.array([1, 0, 1]), False)):
            rows = np.atleast_1d(users)
            liked = none[: len(rows)]
            result = model.recommend(users, liked, N=n)
            check_exact(result, scores[rows], np.ones((len(rows), 4), bool), n, single, dtype)
            if n > 4:
                # a batch is padded to the number of items at most, never to a larger N
                assert len(result[0]) == 4 if single else result[0].shape == (3, 4)
    # user 0: [1, 3, 2, 3] -> ties between items 1 and 3 go to item 1
    ids, got = model.recommend(0, none[:1], N=2)
    np.testing.assert_array_equal(ids, [1, 3])
    np.testing.assert_array_equal(got, np.array([3, 3], dtype=dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("how", ["filter_items", "items_empty", "liked", "items_and_filter"])
def test_everything_filtered(dtype: Any, how: str) -> None:
    model = make_model(np.ones((3, 2)), np.arange(10.0).reshape(5, 2), dtype)
    all_liked = sp.csr_matrix(np.ones((1, 5), dtype=np.float32))
    none = sp.csr_matrix((1, 5), dtype=np.float32)
    kwargs: dict[str, Any] = {
        "filter_items": {"filter_items": [4, 0, 1, 2, 3]},
        "items_empty": {"items": []},
        "liked": {},
        "items_and_filter": {"items": [1, 3], "filter_items": [3, 1]},
    }[how]
    liked = all_liked if how == "liked" else none
    ids, scores = model.recommend(1, liked, N=3, **kwargs)
    assert ids.shape == scores.shape == (0,)
    assert ids.dtype == np.int32 and scores.dtype == np.dtype(dtype)
    batch_liked = sp.vstack([liked, liked]).tocsr()
    ids, scores = model.recommend(np.array([0, 2]), batch_liked, N=3, **kwargs)
    np.testing.assert_array_equal(ids, np.full((2, 3), -1))
    np.testing.assert_array_equal(scores, np.full((2, 3), -np.inf))
    assert ids.dtype == np.int32 and scores.dtype == np.dtype(dtype)
    ids, scores = model.recommend_all(sp.vstack([liked] * 3).tocsr(), N=2, **kwargs)
    np.testing.assert_array_equal(ids, np.full((3, 2), -1))
    assert np.isneginf(scores).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_liked_items_among_items_come_last(dtype: Any) -> None:
    """With ``items=``, every listed id is ranked (as implicit): the liked ones after the others,
    by increasing id, with score -inf; filter_items still removes ids; N still cuts."""
    model = make_model(np.array([[1.0], [2.0]]), np.arange(6.0).reshape(6, 1), dtype)
    liked = sp.csr_matrix(np.array([[0, 1, 0, 1, 0, 1], [1, 1, 1, 1, 1, 1]], dtype=np.float32))
    items = np.array([5, 4, 3, 1, 0])
    inf = -np.inf
    ids, scores = model.recommend(0, liked[0], N=10, items=items)
    np.testing.assert_array_equal(ids, [4, 0, 1, 3, 5])
    np.testing.assert_array_equal(scores, np.array([4, 0, inf, inf, inf], dtype=dtype))
    ids, scores = model.recommend(0, liked[0], N=3, items=items, filter_items=[3])
    np.testing.assert_array_equal(ids, [4, 0, 1])
    ids, scores = model.recommend([0, 1], liked, N=6, items=items)
    np.testing.assert_array_equal(ids, [[4, 0, 1, 3, 5, -1], [0, 1, 3, 4, 5, -1]])
    np.testing.assert_array_equal(
        scores, np.array([[4, 0, inf, inf, inf, inf], [inf] * 6], dtype=dtype)
    )
    assert ids.dtype == np.int32 and scores.dtype == np.dtype(dtype)
    # without items= the liked items are never returned
    ids, _ = model.recommend([0, 1], liked, N=6)
    np.testing.assert_array_equal(ids, [[4, 2, 0, -1, -1, -1], [-1] * 6])


def test_some_users_run_out_of_items() -> None:
    X = np.array([[1.0], [-1.0], [2.0]])
    Y = np.array([[1.0], [2.0], [3.0]])
    model = make_model(X, Y, np.float64)
    liked = sp.csr_matrix(np.array([[1, 1, 0], [0, 0, 0], [1, 1, 1]], dtype=np.float32))
    ids, scores = model.recommend(np.array([0, 1, 2]), liked, N=2)
    np.testing.assert_array_equal(ids, [[2, -1], [0, 1], [-1, -1]])
    np.testing.assert_array_equal(scores, [[3.0, -np.inf], [-1.0, -2.0], [-np.inf, -np.inf]])


def test_empty_batch_of_users() -> None:
    model = make_model(np.ones((3, 2)), np.ones((5, 2)))
    ids, scores = model.recommend(
        np.array([], dtype=np.int64), sp.csr_matrix((0, 5), dtype=np.float32), N=4
    )
    assert ids.shape == scores.shape == (0, 4)
    assert ids.dtype == np.int32


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7, 33, 100, 299])
def test_ties_go_to_the_lower_item_id(dtype: Any, n: int) -> None:
    """A handful of distinct scores over many items (several tiles), ties everywhere."""
    rng = np.random.default_rng(n)
    Y = rng.integers(0, 3, size=(300, 2)).astype(np.float64)
    X = np.array([[1.0, 1.0], [0.0, 0.0], [1.0, -1.0], [2.0, 0.0]])
    model = make_model(X, Y, dtype, num_threads=2)
    liked = liked_matrix(rng, 4, 300, 0.2, "csr_matrix")
    blocked = rng.choice(300, size=40, replace=False)
    result = model.recommend(np.arange(4), liked, N=n, filter_items=blocked)
    check_exact(result, X @ Y.T, eligibility(4, 300, liked, blocked), n, False, dtype)
    result = model.recommend(1, None, N=n, filter_already_liked_items=False)
    np.testing.assert_array_equal(result[0], np.arange(n))  # all scores 0


# --------------------------------------------------------------------------------------------
# threads


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("n_users", "n_items", "n"), [(3, 20_000, 10), (3, 20_000, 150), (500, 2_000, 50)]
)
def test_same_result_for_one_and_two_threads(
    dtype: Any, n_users: int, n_items: int, n: int
) -> None:
    rng = np.random.default_rng(n_users + n)
    X = rng.integers(-1, 2, size=(n_users, 4)).astype(np.float64)
    Y = rng.integers(-1, 2, size=(n_items, 4)).astype(np.float64)
    liked = liked_matrix(rng, n_users, n_items, 0.05, "csr_matrix")
    blocked = rng.choice(n_items, size=n_items // 10, replace=False)
    scores = X @ Y.T
    eligible = eligibility(n_users, n_items, liked, blocked)
    results = []
    for threads in (1, 2):
        model = make_model(X, Y, dtype, threads)
        result = model.recommend(np.arange(n_users), liked, N=n, filter_items=blocked)
        check_exact(result, scores, eligible, n, False, dtype)
        results.append(result)
    for one, two in zip(*results, strict=True):
        np.testing.assert_array_equal(one, two)
    # single user, many items: the items are split across threads
    for threads in (1, 2):
        model = make_model(X, Y, dtype, threads)
        result = model.recommend(1, liked[1], N=n, filter_items=blocked)
        check_exact(result, scores[1:2], eligible[1:2], n, True, dtype)


# --------------------------------------------------------------------------------------------
# similar_items / similar_users


def similar_factors(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Random directions (float32-exact), some zero rows, some rows repeating an earlier one
    scaled by a power of two (identical normalised vectors: exact ties)."""
    factors = random_factors(rng, n, k)
    factors[rng.random(n) < 0.15] = 0.0
    for i in range(1, n):
        if rng.random() < 0.25:
            factors[i] = factors[rng.integers(0, i)] * 2.0 ** rng.integers(-2, 3)
    return factors


@st.composite
def similar_cases(draw: st.DrawFn, max_rows: int = 60) -> dict[str, Any]:
    n = draw(st.integers(1, max_rows), label="n_rows")
    k = draw(st.integers(1, 8), label="k")
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="seed"))
    single = draw(st.booleans(), label="single")
    if single:
        query: Any = draw(st.integers(0, n - 1), label="id")
    else:
        drawn = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=8), label="ids")
        query = id_container(draw, drawn)
    exclude = None
    if draw(st.booleans(), label="use filter"):
        exclude = id_container(draw, draw(st.lists(st.integers(0, n - 1), max_size=n)))
    only = None
    if draw(st.booleans(), label="use only"):
        only = id_container(draw, draw(st.lists(st.integers(0, n - 1), unique=True, max_size=n)))
    return {
        "factors": similar_factors(rng, n, k),
        "query": query,
        "single": single,
        "N": draw(st.integers(1, n + 3), label="N"),
        "exclude": exclude,
        "only": only,
        "dtype": draw(st.sampled_from(DTYPES), label="dtype"),
        "num_threads": draw(st.sampled_from([1, 2]), label="num_threads"),
    }


TOL_COSINE = {np.float32: 1e-5, np.float64: 1e-12}


@given(similar_cases())
def test_similar_items_matches_reference(case: dict[str, Any]) -> None:
    Y, dtype = case["factors"], case["dtype"]
    model = make_model(np.ones((2, Y.shape[1])), Y, dtype, case["num_threads"])
    result = model.similar_items(
        case["query"], N=case["N"], filter_items=case["exclude"], items=case["only"]
    )
    rows = np.atleast_1d(np.asarray(case["query"], dtype=np.int64))
    scores = reference_cosine(Y[rows], Y)
    eligible = eligibility(len(rows), len(Y), None, case["exclude"], case["only"])
    check_close(result, scores, eligible, case["N"], case["single"], dtype, TOL_COSINE[dtype])


@given(similar_cases())
def test_similar_users_matches_reference(case: dict[str, Any]) -> None:
    X, dtype = case["factors"], case["dtype"]
    model = make_model(X, np.ones((3, X.shape[1])), dtype, case["num_threads"])
    result = model.similar_users(
        case["query"], N=case["N"], filter_users=case["exclude"], users=case["only"]
    )
    rows = np.atleast_1d(np.asarray(case["query"], dtype=np.int64))
    scores = reference_cosine(X[rows], X)
    eligible = eligibility(len(rows), len(X), None, case["exclude"], case["only"])
    check_close(result, scores, eligible, case["N"], case["single"], dtype, TOL_COSINE[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_similar_items_includes_the_query_and_handles_zero_rows(dtype: Any) -> None:
    Y = np.array([[1.0, 0.0], [0.0, 0.0], [2.0, 0.0], [1.0, 1.0], [0.0, 3.0], [-1.0, 0.0]])
    model = make_model(np.ones((1, 2)), Y, dtype)
    # item 0 and item 2 have the same direction: both cosine exactly 1, lower id first
    ids, scores = model.similar_items(2, N=6)
    np.testing.assert_array_equal(ids, [0, 2, 3, 1, 4, 5])
    np.testing.assert_allclose(scores, [1, 1, np.sqrt(0.5), 0, 0, -1], atol=1e-6)
    # the query itself is returned (with cosine 1) when nothing else has its direction
    ids, scores = model.similar_items(np.array([3, 4]), N=1)
    np.testing.assert_array_equal(ids, [[3], [4]])
    np.testing.assert_allclose(scores, [[1], [1]], atol=1e-6)
    # a zero-norm query is similar to nothing: every cosine 0, ranked by id
    ids, scores = model.similar_items(1, N=3)
    np.testing.assert_array_equal(ids, [0, 1, 2])
    np.testing.assert_array_equal(scores, np.zeros(3, dtype=dtype))


# --------------------------------------------------------------------------------------------
# score


@given(
    hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=4),
    st.sampled_from(DTYPES),
    st.integers(0, 2**32 - 1),
)
def test_score_pairs_with_broadcasting(shapes: Any, dtype: Any, seed: int) -> None:
    rng = np.random.default_rng(seed)
    X = coarse_factors(rng, 7, 5, "eighths")
    Y = coarse_factors(rng, 11, 5, "eighths")
    model = make_model(X, Y, dtype)
    users = rng.integers(0, 7, size=shapes.input_shapes[0])
    items = rng.integers(0, 11, size=shapes.input_shapes[1])
    got = model.score(users, items)
    users_b, items_b = np.broadcast_arrays(users, items)
    expected = (X[users_b] * Y[items_b]).sum(axis=-1)
    assert np.shape(got) == shapes.result_shape
    assert np.asarray(got).dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, expected.astype(dtype))


def test_score_of_one_pair_and_of_lists() -> None:
    model = make_model(np.array([[1.0, 2.0], [3.0, -1.0]]), np.array([[2.0, 1.0], [0.5, 0.5]]))
    assert np.ndim(model.score(1, 0)) == 0
    assert float(model.score(1, 0)) == 5.0
    np.testing.assert_array_equal(model.score([0, 1, 1], [1, 0, 1]), [1.5, 5.0, 1.0])
    np.testing.assert_array_equal(model.score(0, [0, 1]), [4.0, 1.5])


# --------------------------------------------------------------------------------------------
# layouts of the factor matrices (plain numpy attributes: users may assign any array)


@pytest.mark.parametrize("layout", ["fortran", "strided"])
def test_factor_matrices_of_any_memory_layout(layout: str) -> None:
    rng = np.random.default_rng(3)
    X = random_factors(rng, 6, 5)
    Y = random_factors(rng, 40, 5)

    def arrange(factors: np.ndarray) -> np.ndarray:
        factors = factors.astype(np.float32)
        if layout == "fortran":
            return np.asfortranarray(factors)
        wide = np.zeros((factors.shape[0], 2 * factors.shape[1]), dtype=np.float32)
        wide[:, ::2] = factors
        return wide[:, ::2]  # a view with a column stride of 2

    model = ials.AlternatingLeastSquares(factors=5, num_threads=1)
    model.user_factors = arrange(X)
    model.item_factors = arrange(Y)
    liked = liked_matrix(rng, 6, 40, 0.2, "csr_matrix")
    result = model.recommend(np.arange(6), liked, N=10)
    check_close(result, X @ Y.T, eligibility(6, 40, liked), 10, False, np.float32, 1e-5)
    result = model.recommend_all(liked, N=10)
    check_close(result, X @ Y.T, eligibility(6, 40, liked), 10, False, np.float32, 1e-5)
    result = model.similar_items(np.arange(40), N=5)
    check_close(result, reference_cosine(Y, Y), eligibility(40, 40), 5, False, np.float32, 1e-5)
    result = model.similar_users(np.arange(6), N=5)
    check_close(result, reference_cosine(X, X), eligibility(6, 6), 5, False, np.float32, 1e-5)
    np.testing.assert_allclose(model.score([0, 5], [39, 1]), [X[0] @ Y[39], X[5] @ Y[1]], 1e-5)
    solved = ref.exact_solve_rows(liked, Y, model.regularization)
    np.testing.assert_allclose(model.recalculate_user(np.arange(6), liked), solved, atol=1e-4)


# --------------------------------------------------------------------------------------------
# parity with implicit 0.7.3 (same factors loaded into both)


@pytest.fixture(scope="module", autouse=True)
def _single_threaded_blas() -> Iterator[None]:
    # implicit warns (RuntimeWarning) at construction when OpenBLAS runs several threads.
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        yield


def implicit_model(X: np.ndarray, Y: np.ndarray, dtype: Any) -> Any:
    model = implicit_als.AlternatingLeastSquares(factors=X.shape[1], dtype=dtype, num_threads=1)
    model.user_factors = np.ascontiguousarray(X, dtype=dtype)
    model.item_factors = np.ascontiguousarray(Y, dtype=dtype)
    return model


def check_same_as_implicit(
    ours: tuple[np.ndarray, np.ndarray],
    theirs: tuple[np.ndarray, np.ndarray],
    scores: np.ndarray,
    eligible: np.ndarray,
    single: bool,
    n: int,
    tol: float,
    last: np.ndarray | None = None,
) -> None:
    """implicit's first ``count`` slots are its real results (the rest are filtered items at
    -3.4e38 or id 0 with score 0). Scores must agree everywhere, ids wherever the float64
    reference ``scores`` show no tie within 2 tol (implicit breaks ties its own way). With
    ``last`` (liked items among ``items=``) both rank those next, in their own order: implicit
    with score -3.4e38, ials by id with score -inf."""
    rows = as_rows(ours, single, n, len(scores))
    their_ids = np.atleast_2d(np.asarray(theirs[0]))
    their_scores = np.atleast_2d(np.asarray(theirs[1], dtype=np.float64))
    order = reference_ranking(scores, eligible, scores.shape[1])
    for q, ((ids, got), ranked) in enumerate(zip(rows, order, strict=True)):
        count = min(n, len(ranked))
        if last is not None:
            tail = min(n, len(ranked) + int(last[q].sum())) - count
            assert len(ids) == count + tail
            np.testing.assert_array_equal(ids[count:], np.flatnonzero(last[q])[:tail])
            assert np.isneginf(got[count:]).all()
            # When N cuts the liked items short, each library keeps its own first ones.
            their_tail = set(their_ids[q, count : count + tail].tolist())
            assert len(their_tail) == tail
            assert their_tail <= set(np.flatnonzero(last[q]).tolist())
            filtered = -np.finfo(np.asarray(theirs[1]).dtype).max
            assert (their_scores[q, count : count + tail] == filtered).all()
            ids, got = ids[:count], got[:count]
        assert len(ids) == count
        want_ids, want = their_ids[q, :count], their_scores[q, :count]
        np.testing.assert_allclose(got, want, rtol=0, atol=2 * tol, err_msg=f"row {q}")
        gaps = -np.diff(scores[q, ranked])
        separated = np.ones(len(ranked), dtype=bool)
        separated[1:] &= gaps > 2 * tol
        separated[:-1] &= gaps > 2 * tol
        separated = separated[:count]
        np.testing.assert_array_equal(ids[separated], want_ids[separated], err_msg=f"row {q}")


@given(recommend_cases(), st.sampled_from(["none", "filter_items", "items"]))
def test_recommend_same_as_implicit(case: RecommendCase, selection: str) -> None:
    # continuous factors (implicit breaks ties its own way), positive liked values (implicit
    # drops stored zeros from the liked matrix when items= is given)
    rng = np.random.default_rng([len(case.X), len(case.Y), int(np.abs(case.X).sum() * 64)])
    X = random_factors(rng, len(case.X), case.X.shape[1])
    Y = random_factors(rng, len(case.Y), case.Y.shape[1])
    liked = sp.csr_matrix(case.liked)
    liked.sort_indices()
    liked.data[:] = 1.0
    filter_items = None
    if selection == "filter_items" and case.filter_items is not None and len(case.filter_items):
        filter_items = np.asarray(case.filter_items)
    items = case.items if selection == "items" and case.items is not None else None
    if items is not None and len(items) == 0:
        items = None
    kwargs = {
        "N": case.N,
        "filter_already_liked_items": case.filter_liked,
        "filter_items": filter_items,
        "items": items,
    }
    ours = make_model(X, Y, case.dtype, case.num_threads).recommend(case.userid, liked, **kwargs)
    userid = case.userid if case.single else np.asarray(case.userid, dtype=np.int64)
    theirs = implicit_model(X, Y, case.dtype).recommend(userid, liked, **kwargs)
    shape = (len(case.user_rows), len(Y))
    filtered = liked if case.filter_liked else None
    eligible = eligibility(*shape, filtered, filter_items, items)
    last = liked_among_items(*shape, filtered, filter_items, items)
    scores = X[case.user_rows] @ Y.T
    check_same_as_implicit(ours, theirs, scores, eligible, case.single, case.N, 1e-5, last)


@given(similar_cases(), st.sampled_from(["none", "filter_items", "items"]))
def test_similar_items_same_as_implicit(case: dict[str, Any], selection: str) -> None:
    Y, dtype = case["factors"], case["dtype"]
    exclude = case["exclude"] if selection == "filter_items" else None
    if exclude is not None and len(exclude) == 0:
        exclude = None
    only = case["only"] if selection == "items" else None
    if only is not None and len(only) == 0:
        only = None
    n = case["N"] if only is None else min(case["N"], len(only))  # implicit needs N <= items
    X = np.ones((2, Y.shape[1]))
    query = case["query"] if case["single"] else np.asarray(case["query"], dtype=np.int64)
    kwargs = {
        "N": n,
        "filter_items": None if exclude is None else np.asarray(exclude),
        "items": only,
    }
    ours = make_model(X, Y, dtype, case["num_threads"]).similar_items(query, **kwargs)
    with np.errstate(over="ignore"):  # implicit divides its -3.4e38 of filtered slots by norms
        theirs = implicit_model(X, Y, dtype).similar_items(query, **kwargs)
    rows = np.atleast_1d(np.asarray(query))
    eligible = eligibility(len(rows), len(Y), None, exclude, only)
    scores = reference_cosine(Y[rows], Y)
    check_same_as_implicit(ours, theirs, scores, eligible, case["single"], n, 1e-5)


# --------------------------------------------------------------------------------------------
# bad input


@pytest.fixture
def model() -> ials.AlternatingLeastSquares:
    rng = np.random.default_rng(0)
    return make_model(random_factors(rng, 4, 3), random_factors(rng, 6, 3))


def rows(n: int, n_items: int = 6) -> sp.csr_matrix:
    return sp.csr_matrix((n, n_items), dtype=np.float32)


@pytest.mark.parametrize("userid", [4, -1, 100, [0, 4], np.array([-1, 0])])
def test_recommend_rejects_user_ids_out_of_range(model: Any, userid: Any) -> None:
    n_rows = len(userid) if isinstance(userid, list | np.ndarray) else 1
    with pytest.raises(ValueError, match=r"userid .* out of range 0\.\.3"):
        model.recommend(userid, rows(n_rows))


def test_ranking_methods_reject_ids_out_of_range(model: Any) -> None:
    with pytest.raises(ValueError, match="itemid"):
        model.similar_items(6)
    with pytest.raises(ValueError, match="itemid"):
        model.similar_items(np.array([0, -1]))
    with pytest.raises(ValueError, match="userid"):
        model.similar_users(4)
    with pytest.raises(ValueError, match="userid"):
        model.similar_users(-1)
    with pytest.raises(ValueError, match="userids"):
        model.score(4, 0)
    with pytest.raises(ValueError, match="itemids"):
        model.score([0, 1], [0, -1])
    with pytest.raises(ValueError, match="broadcast"):
        model.score([0, 1, 2], [0, 1])


@pytest.mark.parametrize("n", [0, -1, -10])
def test_rejects_n_below_one(model: Any, n: int) -> None:
    with pytest.raises(ValueError, match=r"\bN\b"):
        model.recommend(0, rows(1), N=n)
    with pytest.raises(ValueError, match=r"\bN\b"):
        model.recommend(np.array([0, 1]), rows(2), N=n)
    with pytest.raises(ValueError, match=r"\bN\b"):
        model.recommend_all(rows(4), N=n)
    with pytest.raises(ValueError, match=r"\bN\b"):
        model.similar_items(0, N=n)
    with pytest.raises(ValueError, match=r"\bN\b"):
        model.similar_users(0, N=n)


@pytest.mark.parametrize("n", [2.0, 2.5, "3", None, True])
def test_rejects_n_that_is_not_an_integer(model: Any, n: Any) -> None:
    # TypeError, as check_int gives for every other integer argument (factors, iterations, ...)
    with pytest.raises(TypeError, match=r"\bN\b"):
        model.recommend(0, rows(1), N=n)
    with pytest.raises(TypeError, match=r"\bN\b"):
        model.similar_items(0, N=n)


def test_accepts_numpy_integers(model: Any) -> None:
    X, Y = model.user_factors.astype(np.float64), model.item_factors.astype(np.float64)
    ids, _ = model.recommend(np.int32(2), rows(1), N=np.int64(3))
    (expected,) = reference_ranking((X[2] @ Y.T)[None], np.ones((1, 6), bool), 3)
    np.testing.assert_array_equal(ids, expected)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"items": [1, 2, 1]}, "items"),
        ({"items": [0, 6]}, "items"),
        ({"items": [-1, 2]}, "items"),
        ({"filter_items": [6]}, "filter_items"),
        ({"filter_items": [0, -2]}, "filter_items"),
    ],
)
def test_recommend_rejects_bad_item_selections(model: Any, kwargs: Any, name: str) -> None:
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        model.recommend(0, rows(1), **kwargs)
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        model.similar_items(0, **kwargs)


def test_similar_users_rejects_bad_user_selections(model: Any) -> None:
    with pytest.raises(ValueError, match=r"\busers\b"):
        model.similar_users(0, users=[1, 1])
    with pytest.raises(ValueError, match=r"\busers\b"):
        model.similar_users(0, users=[4])
    with pytest.raises(ValueError, match=r"\bfilter_users\b"):
        model.similar_users(0, filter_users=[-1])


@pytest.mark.parametrize(
    ("userid", "shape", "expected"),
    [
        (0, (2, 6), "1 rows"),
        (np.array([0, 1]), (1, 6), "2 rows"),
        (np.array([0, 1]), (4, 5), "2 rows"),
        (np.array([0, 1, 2]), (3, 7), "at most 6 columns"),
    ],
)
def test_recommend_rejects_user_items_of_the_wrong_shape(
    model: Any, userid: Any, shape: tuple[int, int], expected: str
) -> None:
    # Fewer columns than items are accepted (tests/test_implicit_dropin.py): not an error here.
    wrong = sp.csr_matrix(shape, dtype=np.float32)
    message = f"user_items must have .*{expected}"
    with pytest.raises(ValueError, match=message) as info:
        model.recommend(userid, wrong)
    assert str(shape) in str(info.value)  # and says what it got
    with pytest.raises(ValueError, match=message):
        model.recommend(userid, wrong, filter_already_liked_items=False, recalculate_user=True)
    with pytest.raises(ValueError, match=message):
        model.recalculate_user(userid, wrong)


def test_recommend_all_takes_rows_from_an_offset_as_implicit(model: Any) -> None:
    # Row j of user_items belongs to user users_items_offset + j (implicit's convention).
    part = rows(2)
    got = model.recommend_all(part, N=3, users_items_offset=1)
    want = model.recommend(np.array([1, 2]), part, N=3)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    with pytest.raises(ValueError, match="userid 4 is out of range"):
        model.recommend_all(rows(5))  # more rows than users
    with pytest.raises(ValueError, match="users_items_offset"):
        model.recommend_all(rows(2), users_items_offset=-1)


def test_user_items_required_only_when_used(model: Any) -> None:
    with pytest.raises(ValueError, match="user_items"):
        model.recommend(0, None)
    with pytest.raises(ValueError, match="user_items"):
        model.recommend(np.array([0, 1]), None, filter_already_liked_items=True)
    with pytest.raises(ValueError, match="user_items"):
        model.recommend(0, None, filter_already_liked_items=False, recalculate_user=True)
    with pytest.raises(ValueError, match="user_items"):
        model.recommend_all(None)
    with pytest.raises(ValueError, match="user_items"):
        model.recalculate_user(0, None)
    X, Y = model.user_factors.astype(np.float64), model.item_factors.astype(np.float64)
    result = model.recommend(1, None, N=6, filter_already_liked_items=False)
    check_close(result, (X[1] @ Y.T)[None], np.ones((1, 6), bool), 6, True, np.float32, 1e-6)


def test_user_items_must_be_sparse(model: Any) -> None:
    with pytest.raises(TypeError, match="user_items"):
        model.recommend(0, np.zeros((1, 6), dtype=np.float32))


def test_an_unfitted_model_is_rejected() -> None:
    model = ials.AlternatingLeastSquares(factors=3)
    calls = [
        lambda: model.recommend(0, rows(1)),
        lambda: model.recommend(np.array([0]), rows(1), filter_already_liked_items=False),
        lambda: model.recommend_all(rows(1)),
        lambda: model.similar_items(0),
        lambda: model.similar_users(0),
        lambda: model.score(0, 0),
        lambda: model.recalculate_user(0, rows(1)),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="fit"):
            call()
    model.user_factors = np.ones((2, 3), dtype=np.float32)  # items still missing
    with pytest.raises(ValueError, match="fit"):
        model.recommend(0, rows(1))


@pytest.mark.parametrize("bad", [1.0, np.float32(1), "1", [0.0, 1.0], ["a"], True, [True]])
def test_ids_that_are_not_integers_are_a_type_error(model: Any, bad: Any) -> None:
    n_rows = len(bad) if isinstance(bad, list) else 1
    with pytest.raises(TypeError, match="userid"):
        model.recommend(bad, rows(n_rows))
    with pytest.raises(TypeError, match="itemid"):
        model.similar_items(bad)
    with pytest.raises(TypeError, match="userid"):
        model.similar_users(bad)
    with pytest.raises(TypeError, match="userids"):
        model.score(bad, 0)
    with pytest.raises(TypeError, match="itemids"):
        model.score(0, bad)
    with pytest.raises(TypeError, match=r"\bitems\b"):
        model.recommend(0, rows(1), items=np.atleast_1d(bad))
    with pytest.raises(TypeError, match=r"\bfilter_items\b"):
        model.recommend(0, rows(1), filter_items=np.atleast_1d(bad))
