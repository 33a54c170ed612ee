"""The helpers implicit users import besides the model, against implicit 0.7.3 itself:
``ials.nearest_neighbours.bm25_weight`` / ``tfidf_weight``, ``ials.utils`` and
``ials.evaluation.train_test_split``. Expected values all come from running implicit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ials
import implicit.evaluation
import implicit.nearest_neighbours
import implicit.utils
import numpy as np
import pytest
import scipy.sparse as sp
from ials import evaluation, nearest_neighbours, splits, utils

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def assert_same_sparse(ours: Any, theirs: Any) -> None:
    """Same class, dtype, shape and stored entries in the same order, bit for bit."""
    assert type(ours) is type(theirs)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    if ours.format == "coo":
        np.testing.assert_array_equal(ours.row, theirs.row)
        np.testing.assert_array_equal(ours.col, theirs.col)
    else:
        np.testing.assert_array_equal(ours.indptr, theirs.indptr)
        np.testing.assert_array_equal(ours.indices, theirs.indices)
    np.testing.assert_array_equal(ours.data, theirs.data)


def counts(seed: int, shape: tuple[int, int], dtype: Any, fmt: str, density: float) -> Any:
    """Positive counts 1..40 of some dtype in some sparse format."""
    rng = np.random.default_rng(seed)
    matrix = sp.random(*shape, density=density, random_state=rng, format="coo")
    matrix.data = np.ceil(matrix.data * 40)
    return matrix.astype(dtype).asformat(fmt)


CASES = [
    (seed, shape, dtype, fmt, density)
    for seed, (shape, dtype, fmt, density) in enumerate(
        [
            ((30, 20), np.float32, "csr", 0.3),
            ((30, 20), np.float64, "coo", 0.3),
            ((7, 50), np.int64, "csc", 0.5),
            ((50, 7), np.int32, "csr", 0.9),
            ((1, 5), np.float32, "csr", 1.0),
            ((200, 100), np.float32, "csr", 0.02),
        ]
    )
]


@pytest.mark.parametrize(("seed", "shape", "dtype", "fmt", "density"), CASES)
@pytest.mark.parametrize(("K1", "B"), [(100, 0.8), (1.2, 0.75), (0.0, 0.0), (3, 1.0)])
def test_bm25_weight_is_implicits(
    seed: int, shape: tuple[int, int], dtype: Any, fmt: str, density: float, K1: float, B: float
) -> None:
    X = counts(seed, shape, dtype, fmt, density)
    theirs = implicit.nearest_neighbours.bm25_weight(X, K1=K1, B=B)
    assert_same_sparse(nearest_neighbours.bm25_weight(X, K1=K1, B=B), theirs)


@pytest.mark.parametrize(("seed", "shape", "dtype", "fmt", "density"), CASES)
def test_tfidf_weight_and_bm25_defaults_are_implicits(
    seed: int, shape: tuple[int, int], dtype: Any, fmt: str, density: float
) -> None:
    X = counts(seed, shape, dtype, fmt, density)
    assert_same_sparse(
        nearest_neighbours.tfidf_weight(X), implicit.nearest_neighbours.tfidf_weight(X)
    )
    assert_same_sparse(
        nearest_neighbours.bm25_weight(X), implicit.nearest_neighbours.bm25_weight(X)
    )


def test_weights_keep_duplicates_and_stored_zeros_as_implicit_does() -> None:
    # a CSR with a duplicate (row 0, column 1) and a stored zero, and a csr_array
    X = sp.csr_matrix(
        (np.array([2.0, 3.0, 0.0, 5.0, 1.0], dtype=np.float32), [1, 1, 2, 0, 2], [0, 3, 5]),
        shape=(2, 4),
    )
    for matrix in (X, sp.csr_array(X)):
        for ours, theirs in (
            (nearest_neighbours.tfidf_weight, implicit.nearest_neighbours.tfidf_weight),
            (nearest_neighbours.bm25_weight, implicit.nearest_neighbours.bm25_weight),
        ):
            assert_same_sparse(ours(matrix), theirs(matrix))
    np.testing.assert_array_equal(X.data, [2.0, 3.0, 0.0, 5.0, 1.0])  # input untouched


@pytest.mark.skipif(not (DATA / "lastfm-2k").is_dir(), reason="../shared/data is not present")
def test_weights_of_lastfm_play_counts_are_implicits() -> None:
    """implicit's Last.fm example weights artist x user play counts with BM25 (K1=100, B=0.8)
    before fitting; the same matrix as users x artists too."""
    table = np.loadtxt(DATA / "lastfm-2k" / "user_artists.dat", skiprows=1, dtype=np.int64)
    users = np.unique(table[:, 0], return_inverse=True)[1]
    artists = np.unique(table[:, 1], return_inverse=True)[1]
    user_plays = sp.csr_matrix((table[:, 2].astype(np.float32), (users, artists)))
    assert user_plays.shape == (1892, 17632) and user_plays.nnz == 92834
    for X in (user_plays, user_plays.T.tocsr()):
        assert_same_sparse(
            nearest_neighbours.bm25_weight(X, K1=100, B=0.8),
            implicit.nearest_neighbours.bm25_weight(X, K1=100, B=0.8),
        )
        assert_same_sparse(
            nearest_neighbours.tfidf_weight(X), implicit.nearest_neighbours.tfidf_weight(X)
        )
    # and the weighted matrix trains a model (bm25 of counts >= 1 is finite and mostly positive)
    weighted = nearest_neighbours.bm25_weight(user_plays).tocsr()
    model = ials.AlternatingLeastSquares(factors=8, iterations=2, random_state=0)
    model.fit(weighted, show_progress=False)
    assert np.isfinite(model.item_factors).all()


def test_weights_accept_dense_input_and_empty_matrices() -> None:
    dense = np.array([[0, 2, 1], [4, 0, 0]])
    assert_same_sparse(
        nearest_neighbours.bm25_weight(dense), implicit.nearest_neighbours.bm25_weight(dense)
    )
    assert_same_sparse(
        nearest_neighbours.tfidf_weight(dense), implicit.nearest_neighbours.tfidf_weight(dense)
    )
    for weight in (nearest_neighbours.bm25_weight, nearest_neighbours.tfidf_weight):
        empty = weight(sp.csr_matrix((3, 4), dtype=np.float32))  # implicit warns 0/0 here
        assert isinstance(empty, sp.coo_matrix)
        assert empty.shape == (3, 4) and empty.nnz == 0 and empty.dtype == np.float64


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: nearest_neighbours.bm25_weight(sp.csr_matrix([[1.0, -2.0]])), ValueError, "X"),
        (lambda: nearest_neighbours.tfidf_weight(sp.csr_matrix([[np.nan, 1]])), ValueError, "X"),
        (lambda: nearest_neighbours.tfidf_weight(np.ones(3)), ValueError, "X must be a 2-D"),
        (lambda: nearest_neighbours.tfidf_weight([["a"]]), ValueError, "X must be a 2-D"),
        (lambda: nearest_neighbours.tfidf_weight("plays"), ValueError, "X must be a 2-D"),
        (lambda: nearest_neighbours.bm25_weight(sp.eye(2), K1=-1), ValueError, "K1"),
        (lambda: nearest_neighbours.bm25_weight(sp.eye(2), K1="100"), TypeError, "K1"),
        (lambda: nearest_neighbours.bm25_weight(sp.eye(2), B=1.5), ValueError, "B"),
        (lambda: nearest_neighbours.bm25_weight(sp.eye(2), B=None), ValueError, "B"),
        # a stored 0 in a row whose length norm is 0 (B = 1, the row sums to 0): 0/0
        (
            lambda: nearest_neighbours.bm25_weight(
                sp.csr_matrix((np.array([0.0, 1.0]), [0, 1], [0, 1, 2]), shape=(2, 2)), B=1.0
            ),
            ValueError,
            "not finite for 1 stored entries",
        ),
        (
            lambda: nearest_neighbours.bm25_weight(sp.csr_matrix((np.zeros(2), [0, 1], [0, 1, 2]))),
            ValueError,
            "every value of X is 0",
        ),
    ],
)
def test_weights_refuse_what_has_no_weight(call: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call()


# --- ials.utils ----------------------------------------------------------------------------------


def test_nonzeros_is_implicits() -> None:
    X = counts(1, (6, 9), np.float32, "csr", 0.4)
    X.data[0] = 0.0  # a stored zero is listed, as there
    for row in range(X.shape[0]):
        ours = list(utils.nonzeros(X, row))
        theirs = list(implicit.utils.nonzeros(X, row))
        assert ours == theirs
        assert [tuple(map(type, pair)) for pair in ours] == [
            tuple(map(type, pair)) for pair in theirs
        ]
    assert list(utils.nonzeros(sp.csr_array(X), np.int64(2))) == list(implicit.utils.nonzeros(X, 2))
    with pytest.raises(ValueError, match=r"row 6 is out of range 0\.\.5"):
        utils.nonzeros(X, 6)
    with pytest.raises(TypeError, match=r"m must be a scipy\.sparse CSR"):
        utils.nonzeros(X.tocoo(), 0)
    with pytest.raises(TypeError, match="row must be an integer"):
        utils.nonzeros(X, 1.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_augment_inner_product_matrix_is_implicits(dtype: Any) -> None:
    factors = np.random.default_rng(4).normal(size=(30, 5)).astype(dtype)
    factors[3] = 0.0
    max_norm, augmented = utils.augment_inner_product_matrix(factors)
    their_norm, theirs = implicit.utils.augment_inner_product_matrix(factors)
    assert max_norm == their_norm and type(max_norm) is type(their_norm)
    assert augmented.dtype == theirs.dtype
    np.testing.assert_array_equal(augmented, theirs)
    # every augmented row has the largest norm, so cosine order is inner-product order
    np.testing.assert_allclose(np.linalg.norm(augmented, axis=1), max_norm, rtol=1e-5)
    with pytest.raises(ValueError, match="factors must be a 2-D float array"):
        utils.augment_inner_product_matrix(np.zeros((0, 3)))


def test_check_random_state_is_implicits() -> None:
    for seed in (0, 7, 2**40):
        ours, theirs = utils.check_random_state(seed), implicit.utils.check_random_state(seed)
        np.testing.assert_array_equal(ours.random(5), theirs.random(5))
    generator = np.random.default_rng(1)
    assert utils.check_random_state(generator) is generator  # as implicit (default_rng of it)
    assert implicit.utils.check_random_state(generator) is generator
    assert isinstance(utils.check_random_state(None), np.random.Generator)
    # implicit 0.7.3 raises AttributeError for a RandomState; here it seeds a Generator
    first = utils.check_random_state(np.random.RandomState(3)).random(4)
    np.testing.assert_array_equal(
        first, utils.check_random_state(np.random.RandomState(3)).random(4)
    )
    with pytest.raises(TypeError, match="random_state"):
        utils.check_random_state("seed")


def test_parameter_warning_is_what_ials_warns_with() -> None:
    model = ials.AlternatingLeastSquares(factors=2, iterations=1, random_state=0)
    with pytest.warns(utils.ParameterWarning):
        model.fit(sp.coo_matrix(np.eye(3, dtype=np.float32)), show_progress=False)
    assert utils.ParameterWarning is ials.ParameterWarning
    assert ials.utils is utils and ials.nearest_neighbours is nearest_neighbours


# --- ials.evaluation.train_test_split -------------------------------------------------------------


def ratings(seed: int, shape: tuple[int, int], dtype: Any, fmt: str) -> Any:
    """Values -2..3 (negatives and stored zeros included) in some sparse format."""
    rng = np.random.default_rng(seed)
    matrix = sp.random(*shape, density=0.3, random_state=rng, format="coo")
    matrix.data = np.round(matrix.data * 5 - 2)
    return matrix.astype(dtype).asformat(fmt)


@pytest.mark.parametrize("seed", [0, 1, 42, 2**31 - 1])
@pytest.mark.parametrize(
    ("shape", "dtype", "fmt"),
    [
        ((40, 30), np.float32, "csr"),
        ((40, 30), np.float64, "coo"),
        ((5, 200), np.int64, "csc"),
        ((300, 3), np.float32, "csr_array"),
    ],
)
@pytest.mark.parametrize("fraction", [0.8, 0.5, 0.0, 1.0])
def test_train_test_split_is_implicits(
    seed: int, shape: tuple[int, int], dtype: Any, fmt: str, fraction: float
) -> None:
    array = fmt.endswith("_array")
    R = ratings(seed, shape, dtype, fmt.removesuffix("_array"))
    R = sp.csr_array(R) if array else R
    ours = evaluation.train_test_split(R, fraction, random_state=seed)
    theirs = implicit.evaluation.train_test_split(R, fraction, random_state=seed)
    for mine, implicits in zip(ours, theirs, strict=True):
        assert_same_sparse(mine, implicits)


def test_train_test_split_with_duplicates_and_a_generator_is_implicits() -> None:
    R = sp.csr_matrix(
        (np.array([1.0, 2.0, 0.0, -1.0, 4.0, 5.0]), [2, 2, 0, 1, 3, 2], [0, 4, 6]), shape=(2, 4)
    )
    for seed in range(20):
        ours = evaluation.train_test_split(R, 0.5, random_state=np.random.default_rng(seed))
        theirs = implicit.evaluation.train_test_split(
            R, 0.5, random_state=np.random.default_rng(seed)
        )
        for mine, implicits in zip(ours, theirs, strict=True):
            assert_same_sparse(mine, implicits)
    assert evaluation.train_test_split is splits.implicit_train_test_split
    assert evaluation.train_test_split is not splits.train_test_split  # ials's exact-size split


def test_train_test_split_refuses_bad_arguments() -> None:
    R = sp.csr_matrix(np.eye(3))
    with pytest.raises(ValueError, match=r"train_percentage must be in \[0, 1\], got 1.5"):
        evaluation.train_test_split(R, 1.5)
    with pytest.raises(TypeError, match=r"ratings must be a scipy\.sparse"):
        evaluation.train_test_split(np.eye(3))
    with pytest.raises(TypeError, match="random_state"):
        evaluation.train_test_split(R, random_state="seed")
