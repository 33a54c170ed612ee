"""Property-based fuzzing of every public entry point with malformed input.

Each call must either answer correctly or raise a Python exception of a documented type
(``ValueError``, ``TypeError``, ``MemoryError``; ``OSError`` for files); it must never crash the
process, hang, or change an array it was given. The groups that reach native code (the model's
methods, ``fit``, the solver, the metrics, and everything fed a corrupted sparse matrix) run in a
child process (tests/isolated.py), so a crash fails the test instead of the run; the others run
here. Hypothesis settings come from tests/conftest.py (derandomized in CI), in the child too.
"""

from __future__ import annotations

import copy
import io
import math
import os
import warnings
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import ials
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from ials import confidence, evaluation, nearest_neighbours, solver, splits
from ials.callbacks import EarlyStopping
from isolated import assert_clean_exit, run_isolated

DOCUMENTED = (ValueError, TypeError, MemoryError)
N_USERS, N_ITEMS, K = 7, 6, 3


# --- helpers -------------------------------------------------------------------------------------


def _leaves(value: Any) -> Iterator[Any]:
    """The numpy arrays and sparse matrices inside ``value`` (through tuples, lists, dicts)."""
    if isinstance(value, np.ndarray) or sp.issparse(value):
        yield value
    elif isinstance(value, tuple | list):
        for item in value:
            yield from _leaves(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)


def _parts(leaf: Any) -> list[np.ndarray]:
    """The arrays a numpy array or sparse matrix is made of."""
    if not sp.issparse(leaf):
        return [leaf]
    names = ("data", "indices", "indptr", "row", "col", "offsets")
    return [getattr(leaf, n) for n in names if isinstance(getattr(leaf, n, None), np.ndarray)]


def _snapshot(value: Any) -> list[tuple[Any, list[np.ndarray]]]:
    return [(leaf, [np.array(a, copy=True) for a in _parts(leaf)]) for leaf in _leaves(value)]


def _unchanged(snapshots: list[tuple[Any, list[np.ndarray]]]) -> None:
    for leaf, parts in snapshots:
        now = _parts(leaf)
        assert len(now) == len(parts), "an input's arrays were replaced"
        for before, after in zip(parts, now, strict=True):
            assert before.dtype == after.dtype and before.shape == after.shape, "input changed"
            if before.dtype.kind == "O":
                continue  # elements compared by equality could be anything
            np.testing.assert_array_equal(before, after, err_msg="an input array was modified")


@contextmanager
def _quiet() -> Iterator[None]:
    """Warnings (a copy to CSR, say) are not what is tested here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def call(
    function: Callable[..., Any], *args: Any, changes: tuple[Any, ...] = (), **kwargs: Any
) -> tuple[bool, Any]:
    """(True, result) or (False, the documented exception); anything else propagates. The
    arguments, but those in ``changes`` (documented as written in place), must come back
    unchanged either way."""
    snapshots = [
        (leaf, parts)
        for leaf, parts in _snapshot((args, kwargs))
        if not any(leaf is changed for changed in changes)
    ]
    try:
        with _quiet():
            result = function(*args, **kwargs)
    except DOCUMENTED as err:
        _unchanged(snapshots)
        return False, err
    _unchanged(snapshots)
    return True, result


def _matrix(n_rows: int, n_cols: int, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = rng.integers(0, 4, size=(n_rows, n_cols)).astype(np.float32)
    dense[rng.random(dense.shape) < 0.5] = 0
    return sp.csr_matrix(dense)


def _model() -> ials.AlternatingLeastSquares:
    model = ials.AlternatingLeastSquares(factors=K, iterations=2, random_state=0)
    with _quiet():
        model.fit(_matrix(N_USERS, N_ITEMS), show_progress=False)
    return model


# --- strategies ----------------------------------------------------------------------------------

SPECIAL_INTS = [-(2**63), -(2**31) - 1, -1, 0, 1, 2**31 - 1, 2**31, 2**32 + 1, 2**63 - 1]
SPECIAL_FLOATS = [math.nan, math.inf, -math.inf, -0.0, 1e-320, 1e308, -1.5, 0.5]
DTYPES = [np.int8, np.uint8, np.int32, np.int64, np.uint64, np.float16, np.float32, np.float64]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 12),
    st.sampled_from(SPECIAL_INTS),
    st.sampled_from(SPECIAL_FLOATS),
    st.text(max_size=4),
    st.just(b"\x00"),
    st.just(1 + 2j),
    st.just(object()),
)


@st.composite
def arrays(draw: st.DrawFn, upper: int = 8) -> np.ndarray:
    dtype = draw(st.sampled_from([*DTYPES, bool, object, "U3", np.complex64]))
    shape = draw(st.sampled_from([(), (0,), (1,), (3,), (2, 2), (1, 3), (2, 0, 1)]))
    size = int(np.prod(shape))
    values = draw(st.lists(st.integers(-3, upper + 3), min_size=size, max_size=size))
    if dtype is object:
        return np.array([*values, None], dtype=object)[:size].reshape(shape)
    with _quiet():
        return np.array(values).astype(dtype).reshape(shape)


@st.composite
def sparse(draw: st.DrawFn, rows: int | None = None, cols: int | None = None) -> Any:
    """A well-formed sparse matrix, of the asked shape or not, in any format and dtype."""
    n_rows = rows if rows is not None and draw(st.booleans()) else draw(st.integers(0, 9))
    n_cols = cols if cols is not None and draw(st.booleans()) else draw(st.integers(0, 9))
    matrix = _matrix(n_rows, n_cols, draw(st.integers(0, 3)))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.int64, bool, np.int8]))
    value = draw(st.sampled_from([None, *SPECIAL_FLOATS]))
    with _quiet():
        matrix = matrix.astype(dtype)
        if value is not None and matrix.nnz and np.dtype(dtype).kind == "f":
            matrix.data[0] = value
        fmt = draw(st.sampled_from(["csr", "csc", "coo", "lil", "dok", "bsr", "array"]))
        if fmt == "array":
            return sp.csr_array(matrix)
        return matrix.asformat(fmt)


def mostly(valid: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``valid`` three times in four, so that the checks of correct answers run often."""
    return st.integers(0, 3).flatmap(lambda r: bad if r == 0 else valid)


def ids(upper: int) -> st.SearchStrategy[Any]:
    valid = st.one_of(
        st.integers(0, upper - 1),
        st.lists(st.integers(0, upper - 1), unique=True, max_size=4),
        st.lists(st.integers(0, upper - 1), unique=True, min_size=1, max_size=4).map(np.array),
    )
    bad = st.one_of(
        st.integers(-2, upper + 2),
        st.lists(st.integers(-2, upper + 2), max_size=5),
        arrays(upper),
        scalars,
    )
    return mostly(valid, bad)


def counts() -> st.SearchStrategy[Any]:
    return mostly(
        st.one_of(st.integers(1, 12), st.sampled_from([10**9, 10**15, 2**63 - 1])),
        st.one_of(st.integers(-3, 0), scalars),
    )


def flags() -> st.SearchStrategy[Any]:
    return mostly(st.booleans(), scalars)


def rows(n_rows: int, n_cols: int) -> st.SearchStrategy[Any]:
    """A matrix of exactly this shape (any format), mostly; anything otherwise."""
    exact = st.integers(0, 3).map(lambda seed: _matrix(n_rows, n_cols, seed))
    return mostly(st.one_of(exact, sparse(n_rows, n_cols)), anything())


def anything(rows: int | None = None, cols: int | None = None) -> st.SearchStrategy[Any]:
    return st.one_of(sparse(rows, cols), arrays(), scalars, st.none())


# --- the model's methods (child process) ---------------------------------------------------------


def _first(flags: np.ndarray) -> bool:
    """Every True comes before every False."""
    return bool(np.all(np.diff(flags.astype(np.int8)) <= 0))


def _check_ranking(
    model: ials.AlternatingLeastSquares, queries: np.ndarray, result: Any, n_targets: int
) -> None:
    """ids in range, each score the dot product of its query and target, best first."""
    found, scores = result
    found, scores = np.atleast_2d(found), np.atleast_2d(scores)
    assert found.shape == scores.shape and found.shape[1] <= n_targets
    assert found.dtype == np.int32
    assert ((found >= -1) & (found < n_targets)).all()
    for query, row_ids, row_scores in zip(queries, found, scores, strict=True):
        real = row_ids >= 0
        assert np.isneginf(row_scores[~real]).all() and _first(real)
        finite = np.isfinite(row_scores[real])
        assert _first(finite)  # liked items among items= come last, at -inf
        ranked = row_scores[real][finite]
        assert np.all(np.diff(ranked) <= 0)
        expected = model.item_factors[row_ids[real][finite]] @ query
        np.testing.assert_allclose(ranked, expected, rtol=1e-4, atol=1e-6)
        assert len(set(row_ids[real].tolist())) == real.sum()


METHODS = ("recommend", "recommend_all", "similar_items", "similar_users", "score", "explain")
FOLD_IN = ("recalculate_user", "recalculate_item", "partial_fit_users", "partial_fit_items")


@st.composite
def method_calls(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    name = draw(st.sampled_from(METHODS + FOLD_IN))
    user_ids, item_ids = ids(N_USERS), ids(N_ITEMS)
    if name == "recommend":
        chosen = draw(user_ids)
        n = len(chosen) if isinstance(chosen, list) or np.ndim(chosen) == 1 else 1
        kwargs = {
            "userid": chosen,
            "user_items": draw(rows(n, N_ITEMS)),
            "N": draw(counts()),
            "filter_already_liked_items": draw(flags()),
            "filter_items": draw(st.one_of(st.none(), item_ids)),
            "recalculate_user": draw(flags()),
            "items": draw(st.one_of(st.none(), item_ids)),
        }
    elif name == "recommend_all":
        kwargs = {
            "user_items": draw(st.one_of(st.none(), rows(N_USERS, N_ITEMS))),
            "N": draw(counts()),
            "recalculate_user": draw(st.booleans()),
            "filter_already_liked_items": draw(st.booleans()),
            "filter_items": draw(st.one_of(st.none(), item_ids)),
            "users_items_offset": draw(st.one_of(st.integers(-2, N_USERS + 2), scalars)),
            "items": draw(st.one_of(st.none(), item_ids)),
        }
    elif name == "similar_items":
        kwargs = {
            "itemid": draw(item_ids),
            "N": draw(counts()),
            "recalculate_item": draw(st.booleans()),
            "item_users": draw(st.one_of(st.none(), rows(1, N_USERS))),
            "filter_items": draw(st.one_of(st.none(), item_ids)),
            "items": draw(st.one_of(st.none(), item_ids)),
        }
    elif name == "similar_users":
        kwargs = {
            "userid": draw(user_ids),
            "N": draw(counts()),
            "filter_users": draw(st.one_of(st.none(), user_ids)),
            "users": draw(st.one_of(st.none(), user_ids)),
        }
    elif name == "score":
        kwargs = {"userids": draw(user_ids), "itemids": draw(item_ids)}
    elif name == "explain":
        kwargs = {
            "userid": draw(user_ids),
            "user_items": draw(st.one_of(rows(N_USERS, N_ITEMS), rows(1, N_ITEMS))),
            "itemid": draw(item_ids),
            "user_weights": draw(
                st.one_of(st.none(), scalars, st.tuples(arrays(), scalars), arrays())
            ),
            "N": draw(counts()),
        }
    else:
        users = name.endswith("user") or name.endswith("users")
        chosen = draw(user_ids if users else item_ids)
        n = len(chosen) if isinstance(chosen, list) or np.ndim(chosen) == 1 else 1
        width = N_ITEMS if users else N_USERS
        kwargs = {
            "ids": chosen,
            "rows": draw(rows(n, width)),
        }
    return name, kwargs


def _call_method(model: ials.AlternatingLeastSquares, name: str, kwargs: dict[str, Any]) -> None:
    before = model.user_factors.copy(), model.item_factors.copy()
    target = copy.deepcopy(model) if name.startswith("partial_fit") else model
    if name in FOLD_IN:
        ok, result = call(getattr(target, name), kwargs["ids"], kwargs["rows"])
    else:
        ok, result = call(getattr(target, name), **kwargs)
    np.testing.assert_array_equal(model.user_factors, before[0])
    np.testing.assert_array_equal(model.item_factors, before[1])
    if not ok:
        return
    if name in ("recommend", "recommend_all") and not kwargs.get("recalculate_user"):
        if name == "recommend":
            queries = model.user_factors[np.atleast_1d(kwargs["userid"]).astype(np.int64)]
        else:
            offset = int(kwargs["users_items_offset"])
            rows = N_USERS - offset if kwargs["user_items"] is None else kwargs["user_items"]
            count = rows if isinstance(rows, int) else rows.shape[0]
            queries = model.user_factors[offset : offset + count]
        _check_ranking(model, queries, result, N_ITEMS)
    elif name == "score":
        u, i = (np.asarray(kwargs[name]).astype(np.int64) for name in ("userids", "itemids"))
        u, i = np.broadcast_arrays(u, i)
        expected = np.einsum("...k,...k->...", model.user_factors[u], model.item_factors[i])
        np.testing.assert_allclose(result, expected, rtol=1e-5)
    elif name.startswith("partial_fit"):
        assert np.isfinite(target.user_factors).all() and np.isfinite(target.item_factors).all()
    elif name.startswith("recalculate"):
        assert np.isfinite(result).all()


def model_methods_child() -> None:
    import conftest  # noqa: F401  (the hypothesis profiles)

    model = _model()

    @given(method_calls())
    def run(case: tuple[str, dict[str, Any]]) -> None:
        _call_method(model, *case)

    run()


@st.composite
def parameters(draw: st.DrawFn) -> dict[str, Any]:
    """Constructor arguments: each valid and small, or garbage."""
    small = {
        "factors": st.integers(1, 6),
        "regularization": st.floats(0, 10),
        "alpha": st.floats(0, 50),
        "dtype": st.sampled_from([np.float32, np.float64, "float32"]),
        "use_cg": st.booleans(),
        "iterations": st.integers(0, 3),
        "calculate_training_loss": st.booleans(),
        "num_threads": st.integers(0, 4),
        "random_state": st.one_of(st.none(), st.integers(0, 2**32)),
        "cg_steps": st.integers(1, 5),
        "regularization_exponent": st.one_of(st.floats(0, 3), st.sampled_from([50.0, 1000.0])),
        "unobserved_weight": st.floats(0, 5),
    }
    # Billions of sweeps are a valid request that runs for days, not a hang: never drawn.
    bounded = scalars.filter(lambda v: not (isinstance(v, int) and v > 100))
    chosen = draw(st.sets(st.sampled_from(sorted(small)), max_size=5))
    return {
        name: draw(mostly(small[name], bounded if name in ("iterations", "cg_steps") else scalars))
        for name in chosen
    }


def fit_child() -> None:
    import conftest  # noqa: F401

    @given(parameters(), sparse(), st.booleans())
    def run(params: dict[str, Any], data: Any, continue_fit: bool) -> None:
        ok, model = call(ials.AlternatingLeastSquares, **params)
        if not ok:
            return
        if continue_fit:
            call(model.fit, _matrix(N_USERS, N_ITEMS), show_progress=False)
        ok, _ = call(model.fit, data, show_progress=False)
        if ok:
            assert np.isfinite(model.user_factors).all() and np.isfinite(model.item_factors).all()
            assert model.user_factors.shape == (data.shape[0], model.factors)

    run()


@st.composite
def factor_arrays(draw: st.DrawFn, rows: int) -> Any:
    if draw(st.booleans()):
        return draw(anything())
    dtype = draw(st.sampled_from([np.float32, np.float64, np.float16, np.int32]))
    n = rows if draw(st.booleans()) else draw(st.integers(0, 9))
    k = draw(st.integers(0, 4))
    array = np.random.default_rng(draw(st.integers(0, 9))).random((n, k)).astype(dtype)
    if draw(st.booleans()) and array.size and array.dtype.kind == "f":
        with _quiet():
            array.flat[0] = draw(st.sampled_from(SPECIAL_FLOATS))
    layout = draw(st.sampled_from(["C", "F", "strided", "readonly"]))
    if layout == "F":
        array = np.asfortranarray(array)
    elif layout == "strided":
        array = np.repeat(array, 2, axis=1)[:, ::2]
    elif layout == "readonly":
        array.setflags(write=False)
    return array


@st.composite
def well_formed_factors(draw: st.DrawFn, rows: int, k: int, dtype: Any) -> np.ndarray:
    seed = draw(st.integers(0, 9))
    return np.random.default_rng(seed).random((rows, k)).astype(dtype) - 0.5


def _modest(y: np.ndarray, *parameters: Any) -> bool:
    """Parameters and fixed factors that keep the row systems well conditioned."""
    small = all(isinstance(v, float) and 0.01 <= v <= 5 for v in parameters)
    return small and bool(np.abs(y).max(initial=0) <= 10)


def solver_child() -> None:
    import conftest  # noqa: F401
    import reference

    @given(st.data(), st.sampled_from(["solve_rows", "calculate_loss", "gram"]))
    def run(data: st.DataObject, name: str) -> None:
        dtype = data.draw(st.sampled_from([np.float32, np.float64]))
        k = data.draw(st.integers(1, 4))
        matrix = data.draw(rows(N_USERS, N_ITEMS))
        x = data.draw(mostly(well_formed_factors(N_USERS, k, dtype), factor_arrays(N_USERS)))
        y = data.draw(mostly(well_formed_factors(N_ITEMS, k, dtype), factor_arrays(N_ITEMS)))
        reg = data.draw(mostly(st.floats(0.01, 5), scalars))
        extra = data.draw(
            st.dictionaries(
                st.sampled_from(["alpha", "regularization_exponent", "unobserved_weight"]),
                mostly(st.floats(0.01, 3), scalars),
                max_size=2,
            )
        )
        threads = data.draw(mostly(st.integers(0, 3), scalars))
        if name == "gram":
            ok, result = call(solver.gram, y, threads)
            if ok:
                np.testing.assert_allclose(result, y.astype(np.float64).T @ y, rtol=1e-4, atol=1e-6)
        elif name == "solve_rows":
            ok, _ = call(
                solver.solve_rows,
                matrix,
                x,
                y,
                reg,
                use_cg=False,
                **extra,
                num_threads=threads,
                changes=(x,),
            )
            # Compared with the float64 reference when the values drawn keep the systems well
            # conditioned; alpha = 2**63 (a valid number) makes any float32 answer meaningless.
            if ok and _modest(y, reg, *extra.values()):
                expected = reference.exact_solve_rows(matrix, y, reg, **extra)
                np.testing.assert_allclose(x, expected, rtol=2e-3, atol=2e-3)
            elif ok:
                assert np.isfinite(x).all()
        else:
            ok, result = call(
                solver.calculate_loss, matrix, x, y, reg, **extra, num_threads=threads
            )
            if ok:
                assert result >= 0  # inf when a term overflows, never NaN

    run()


def evaluation_child() -> None:
    import conftest  # noqa: F401

    model = _model()
    shape = (N_USERS, N_ITEMS)

    @given(
        st.sampled_from(["ranking_metrics_at_k", "precision_at_k", "ndcg_at_k", "AUC_at_k"]),
        st.one_of(sparse(*shape), anything()),
        st.one_of(sparse(*shape), anything()),
        counts(),
        st.one_of(st.integers(0, 3), scalars),
    )
    def run(name: str, train: Any, test: Any, k: Any, threads: Any) -> None:
        ok, result = call(
            getattr(evaluation, name),
            model,
            train,
            test,
            K=k,
            show_progress=False,
            num_threads=threads,
        )
        if ok:
            values = result.values() if isinstance(result, dict) else [result]
            assert all(0 <= v <= max(1, N_USERS) for v in values)

    run()


# --- corrupted sparse matrices (child process) ---------------------------------------------------


@st.composite
def corrupted(draw: st.DrawFn, shape: tuple[int, int]) -> Any:
    """A matrix whose arrays were reassigned after construction: out-of-range or wrongly typed
    indices, indptr of the wrong length or order, values of another length."""
    fmt = draw(st.sampled_from(["csr", "csc", "coo", "bsr", "dia", "lil"]))
    with _quiet():
        matrix = _matrix(*shape, seed=draw(st.integers(0, 3))).asformat(fmt)
    if fmt == "lil":  # lists of column indices and of values, one of each per row
        row = draw(st.integers(0, shape[0] - 1))
        which = draw(st.sampled_from(["rows", "data"]))
        entries = list(getattr(matrix, which)[row])
        if entries and draw(st.booleans()):
            entries.pop()
        else:
            entries.append(draw(st.one_of(st.sampled_from(SPECIAL_INTS), st.integers(-9, 9))))
        getattr(matrix, which)[row] = entries
        return matrix
    names = {"coo": ["row", "col", "data"], "dia": ["offsets", "data"]}.get(
        fmt, ["indptr", "indices", "data"]
    )
    for _ in range(draw(st.integers(1, 2))):
        name = draw(st.sampled_from(names))
        array = np.array(getattr(matrix, name), copy=True)
        how = draw(st.sampled_from(["set", "cut", "grow", "dtype"]))
        if how == "set" and array.size:
            value = draw(st.one_of(st.sampled_from(SPECIAL_INTS), st.integers(-20, 20)))
            if array.dtype.kind == "f":
                value = draw(st.one_of(st.sampled_from(SPECIAL_FLOATS), st.just(value)))
            array = array.astype(np.int64 if array.dtype.kind in "iu" else array.dtype)
            if array.dtype.kind in "iu" and not -(2**63) <= value < 2**63:
                continue
            with _quiet():
                array[draw(st.integers(0, array.shape[0] - 1))] = value
        elif how == "cut" and array.size:
            array = array[: draw(st.integers(0, array.shape[0] - 1))].copy()
        elif how == "grow":
            array = np.concatenate([array, array[:1] if array.size else array])
        elif how == "dtype":
            with _quiet():
                array = array.astype(draw(st.sampled_from([*DTYPES, bool, object])))
        try:
            setattr(matrix, name, array)
        except (ValueError, TypeError):  # scipy refused the assignment itself
            continue
    return matrix


ENTRY_POINTS: dict[str, tuple[tuple[int, int], Callable[[Any, Any], Any]]] = {
    "fit": ((N_USERS, N_ITEMS), lambda m, bad: copy.deepcopy(m).fit(bad, show_progress=False)),
    "recommend": ((1, N_ITEMS), lambda m, bad: m.recommend(0, bad, recalculate_user=True)),
    "recommend_all": ((N_USERS, N_ITEMS), lambda m, bad: m.recommend_all(bad)),
    "partial_fit_items": (
        (1, N_USERS),
        lambda m, bad: copy.deepcopy(m).partial_fit_items([0], bad),
    ),
    "explain": ((N_USERS, N_ITEMS), lambda m, bad: m.explain(0, bad, 1)),
    "similar_items": ((1, N_USERS), lambda m, bad: m.similar_items(0, True, bad)),
    "metrics": (
        (N_USERS, N_ITEMS),
        lambda m, bad: evaluation.ranking_metrics_at_k(m, bad, bad, show_progress=False),
    ),
    "EarlyStopping": ((N_USERS, N_ITEMS), lambda m, bad: EarlyStopping(m, bad, bad)),
    "solve_rows": (
        (N_USERS, N_ITEMS),
        lambda m, bad: solver.solve_rows(bad, np.zeros((N_USERS, K)), np.ones((N_ITEMS, K)), 1.0),
    ),
    "train_test_split": ((N_USERS, N_ITEMS), lambda m, bad: splits.train_test_split(bad)),
    "implicit split": ((N_USERS, N_ITEMS), lambda m, bad: evaluation.train_test_split(bad)),
    "leave_k_out_split": ((N_USERS, N_ITEMS), lambda m, bad: splits.leave_k_out_split(bad)),
    "per_user_split": ((N_USERS, N_ITEMS), lambda m, bad: splits.per_user_split(bad)),
    "Interactions": ((N_USERS, N_ITEMS), lambda m, bad: ials.Interactions(bad)),
    "confidence.log": ((N_USERS, N_ITEMS), lambda m, bad: confidence.log(bad, 1.0)),
    "bm25_weight": ((N_USERS, N_ITEMS), lambda m, bad: nearest_neighbours.bm25_weight(bad)),
    "tfidf_weight": ((N_USERS, N_ITEMS), lambda m, bad: nearest_neighbours.tfidf_weight(bad)),
}


def corrupted_child() -> None:
    import conftest  # noqa: F401

    model = _model()

    @given(st.data(), st.sampled_from(sorted(ENTRY_POINTS)))
    def run(data: st.DataObject, name: str) -> None:
        shape, entry = ENTRY_POINTS[name]
        call(entry, model, data.draw(corrupted(shape)))

    run()


CHILDREN = [
    "model_methods_child",
    "fit_child",
    "solver_child",
    "evaluation_child",
    "corrupted_child",
]


@pytest.mark.parametrize("child", CHILDREN)
def test_native_entry_points_in_a_child_process(child: str) -> None:
    """The child runs the property; any crash, hang or failed example fails this test."""
    assert_clean_exit(run_isolated("test_fuzz", child, timeout=300))


# --- in this process: ids, splits, transforms, files, the command line ---------------------------


@given(
    st.sampled_from(["from_arrays", "matrix"]),
    st.one_of(arrays(), st.lists(st.one_of(st.integers(-3, 5), st.text(max_size=2)), max_size=5)),
    st.one_of(arrays(), st.lists(st.integers(-3, 5), max_size=5)),
    st.one_of(st.none(), arrays(), st.lists(st.sampled_from(SPECIAL_FLOATS), max_size=5)),
    sparse(),
)
def test_interactions(name: str, users: Any, items: Any, weights: Any, matrix: Any) -> None:
    if name == "from_arrays":
        ok, result = call(ials.Interactions.from_arrays, users, items, weights)
    else:
        ok, result = call(ials.Interactions, matrix, users, items)
    if ok:
        assert np.isfinite(result.matrix.data).all()
        assert result.matrix.shape == (len(result.user_ids), len(result.item_ids))


@given(
    st.sampled_from(["train_test_split", "implicit", "leave_k_out_split", "per_user_split"]),
    st.one_of(sparse(), anything()),
    st.one_of(st.floats(-1, 2), scalars),
    st.one_of(st.integers(-1, 5), scalars),
    st.one_of(st.none(), st.integers(0, 2**32), scalars),
)
def test_splits(name: str, ratings: Any, fraction: Any, k: Any, seed: Any) -> None:
    if name == "train_test_split":
        ok, result = call(splits.train_test_split, ratings, fraction, seed)
    elif name == "implicit":
        ok, result = call(evaluation.train_test_split, ratings, fraction, seed)
    elif name == "leave_k_out_split":
        ok, result = call(splits.leave_k_out_split, ratings, k, fraction, seed)
    else:
        ok, result = call(splits.per_user_split, ratings, fraction, seed)
    if ok:
        train, test = result
        assert train.shape == test.shape == ratings.shape


@given(st.sampled_from(["linear", "log"]), st.one_of(sparse(), anything()), scalars, scalars)
def test_confidence_transforms(name: str, R: Any, alpha: Any, eps: Any) -> None:
    args = (R, alpha) if name == "linear" else (R, alpha, eps)
    ok, result = call(getattr(confidence, name), *args)
    if ok:
        values = sp.csr_matrix(result).data  # lil and dok hold their values otherwise
        assert result.shape == R.shape and result.format == R.format
        assert np.isfinite(values).all() and (values >= 1).all()


@given(
    mostly(st.integers(1, 40), scalars),
    mostly(st.integers(4, 40), scalars),
    mostly(st.integers(1, 4), scalars),
    mostly(st.floats(1, 4), scalars),
    mostly(st.integers(0, 9), scalars),
)
def test_synthetic_data(n_users: Any, n_items: Any, groups: Any, per_user: Any, seed: Any) -> None:
    from ials import datasets

    ok, result = call(datasets.synthetic, n_users, n_items, groups, per_user, random_state=seed)
    if ok:
        matrix, _ = result
        assert matrix.shape == (n_users, n_items) and matrix.has_canonical_format
        assert np.isfinite(matrix.data).all() and (matrix.data >= 1).all()


@given(
    st.sampled_from(["bm25_weight", "tfidf_weight"]),
    mostly(sparse(), anything()),
    mostly(st.floats(0, 200), scalars),
    mostly(st.floats(0, 1), scalars),
)
def test_weightings(name: str, X: Any, k1: Any, b: Any) -> None:
    args = (X, k1, b) if name == "bm25_weight" else (X,)
    ok, result = call(getattr(nearest_neighbours, name), *args)
    if ok:
        assert result.shape == np.shape(X) and np.isfinite(result.data).all()


def _model_file() -> bytes:
    buffer = io.BytesIO()
    _model().save(buffer)
    return buffer.getvalue()


MODEL_FILE = _model_file()


@st.composite
def damaged_files(draw: st.DrawFn) -> bytes:
    how = draw(st.sampled_from(["random", "flip", "cut", "insert", "member"]))
    data = bytearray(MODEL_FILE)
    if how == "random":
        return draw(st.binary(max_size=300))
    if how == "flip":
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= draw(st.integers(1, 255))
    elif how == "cut":
        del data[draw(st.integers(0, len(data) - 1)) :]
    elif how == "insert":
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(min_size=1, max_size=20))
    else:  # one member replaced by arbitrary bytes or a header of another shape
        with zipfile.ZipFile(io.BytesIO(MODEL_FILE)) as archive:
            members = [(m.filename, archive.read(m)) for m in archive.infolist()]
        index = draw(st.integers(0, len(members) - 1))
        payload = draw(
            st.one_of(
                st.binary(max_size=200),
                st.tuples(
                    st.lists(st.sampled_from([0, 1, 3, 2**20, 2**40]), max_size=3),
                    st.sampled_from(["<f4", "<f8", "|O", "<U5", "|b1"]),
                ).map(lambda spec: _header(*spec) + bytes(24)),
            )
        )
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as archive:
            for i, (filename, content) in enumerate(members):
                archive.writestr(filename, payload if i == index else content)
        return out.getvalue()
    return bytes(data)


def _header(shape: list[int], descr: str) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": descr, "fortran_order": False, "shape": tuple(shape)}
    )
    return buffer.getvalue()


@given(damaged_files())
def test_model_file_loader(data: bytes) -> None:
    ok, model = call(ials.AlternatingLeastSquares.load, io.BytesIO(data))
    if ok:  # a flipped byte the checksum cannot see (zip metadata): the model is intact
        reference = ials.AlternatingLeastSquares.load(io.BytesIO(MODEL_FILE))
        np.testing.assert_array_equal(model.user_factors, reference.user_factors)
        np.testing.assert_array_equal(model.item_factors, reference.item_factors)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    (root / "log.csv").write_text(
        "user,item,weight\n"
        + "".join(f"u{u},i{(u * 3 + j) % 9},{j + 1}\n" for u in range(12) for j in range(5))
    )
    (root / "bad.csv").write_text("user,item\nu1\n,,\n\x00\n")
    (root / "params.json").write_text('{"factors": 2, "iterations": 1}')
    (root / "garbage.npz").write_bytes(os.urandom(64))
    from ials.cli import main

    with _quiet(), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        assert (
            main(
                [
                    "fit",
                    str(root / "log.csv"),
                    "-o",
                    str(root / "model"),
                    "--factors",
                    "2",
                    "--iterations",
                    "1",
                    "--quiet",
                ]
            )
            == 0
        )
    return root


FLAGS = [
    "--user",
    "--item",
    "-n",
    "--json",
    "--quiet",
    "--factors",
    "--iterations",
    "--alpha",
    "--regularization",
    "--regularization-exponent",
    "--dtype",
    "--confidence",
    "--threads",
    "--seed",
    "--users",
    "--items",
    "--sep",
    "--user-col",
    "--weight-col",
    "--no-header",
    "--force",
    "--params",
    "-o",
    "--confidence-eps",
    "--cg-steps",
    "--show",
    "--k",
    "--test-fraction",
    "--all",
    "--unobserved-weight",
    "--no-use-cg",
]
VALUES = [
    "0",
    "1",
    "2",
    "-1",
    "nan",
    "inf",
    "1e400",
    "10000000",
    "1000000000000",
    "abc",
    "",
    "u1",
    "i3",
    "float64",
    "log",
    "x" * 300,
    "\x00",
    ",",
    "0.5",
    "user",
    "weight",
]


LARGE = ("10000000", "1000000000000")


def _bases(root: Path) -> dict[str, list[str]]:
    """A valid call of each command (small and quick), to mutate."""
    log, model, out = str(root / "log.csv"), str(root / "model.npz"), str(root / "out")
    small = ["--factors", "2", "--iterations", "1", "--quiet"]
    return {
        "recommend": ["recommend", model, "--user", "u1", "-n", "3", "--quiet"],
        "similar": ["similar", model, "--item", "i3", "-n", "3", "--quiet"],
        "fit": ["fit", log, "-o", out, "--force", "--weight-col", "weight", *small],
        "evaluate": ["evaluate", log, "--k", "3", *small],
        "demo": ["demo", "--users", "30", "--items", "40", "--show", "1", *small],
    }


@st.composite
def argv(draw: st.DrawFn, root: Path) -> list[str]:
    """A valid command line with up to three tokens replaced, dropped or added."""
    files = [
        str(root / name)
        for name in ("log.csv", "bad.csv", "model.npz", "garbage.npz", "params.json", "absent")
    ]
    words = list(draw(st.sampled_from(list(_bases(root).values()))))
    for _ in range(draw(st.integers(0, 3))):
        how = draw(st.sampled_from(["replace", "drop", "add"]))
        at = draw(st.integers(1, len(words)))
        token = draw(st.sampled_from(VALUES + files + FLAGS))
        if how == "replace" and at < len(words):
            words[at] = token
        elif how == "drop" and at < len(words):
            del words[at]
        else:
            words[at:at] = [draw(st.sampled_from(FLAGS)), token]
    for at in range(1, len(words)):
        # A million sweeps is a valid request that takes hours, not a hang: keep them few.
        if words[at - 1] in ("--iterations", "--cg-steps") and words[at] in LARGE:
            words[at] = "3"
    if words[0] == "demo":  # a large size given is one no machine holds: refused at once
        # (a demo of ten million users takes minutes)
        words = [w if w not in LARGE else "1000000000000000" for w in words]
    return words


@settings(max_examples=40)
@given(st.data())
def test_command_line(workspace: Path, data: st.DataObject) -> None:
    from ials.cli import main

    words = data.draw(argv(workspace))
    out, err = io.StringIO(), io.StringIO()
    # A mutated output path may be a bare name: it must land in the workspace, not the checkout.
    previous = os.getcwd()
    os.chdir(workspace)
    try:
        with _quiet(), redirect_stdout(out), redirect_stderr(err):
            try:
                status = main(words)
            except SystemExit as exit_:  # argparse: --help, or a bad flag
                status = exit_.code if isinstance(exit_.code, int) else 2
    finally:
        os.chdir(previous)
    assert status in (0, 1, 2), (words, err.getvalue())
    if status == 2 and err.getvalue() and "usage:" not in err.getvalue():
        assert len(err.getvalue().strip().splitlines()) == 1, err.getvalue()
