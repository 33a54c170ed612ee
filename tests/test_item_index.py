"""The prepared item index behind ``recommend``: the same answers as scoring every item, and
never stale after the item factors are replaced."""

from __future__ import annotations

import pickle

import ials
import numpy as np
import pytest
import scipy.sparse as sp
from ials import _native


def _model(
    seed: int, dtype: type = np.float32
) -> tuple[ials.AlternatingLeastSquares, sp.csr_matrix]:
    rng = np.random.default_rng(seed)
    model = ials.AlternatingLeastSquares(factors=8, dtype=dtype, random_state=seed)
    model.user_factors = rng.normal(size=(40, 8)).astype(dtype)
    model.item_factors = rng.normal(size=(300, 8)).astype(dtype)
    liked = sp.random(40, 300, density=0.05, format="csr", random_state=seed, dtype=np.float32)
    return model, liked


def _scored_by_numpy(
    model: ials.AlternatingLeastSquares, user: int, liked: sp.csr_matrix, n: int
) -> np.ndarray:
    scores = model.item_factors.astype(np.float64) @ model.user_factors[user].astype(np.float64)
    scores[liked[user].indices] = -np.inf
    return np.argsort(-scores, kind="stable")[:n]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_index_answers_equal_scoring_every_item(dtype: type) -> None:
    model, liked = _model(0, dtype)
    users = np.arange(40)
    first = model.recommend(users, liked, N=7)
    assert model._item_index is not None  # built by that call and reused below
    again = model.recommend(users, liked, N=7)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    direct = _native.top_k(
        model.user_factors, model.item_factors, 7, ials._validation.core_rows(liked), None, None, 1
    )
    np.testing.assert_array_equal(first[0], direct[0])
    np.testing.assert_array_equal(first[1], direct[1])
    for user in (0, 17, 39):
        ids, _ = model.recommend(user, liked[user], N=7)
        np.testing.assert_array_equal(ids, _scored_by_numpy(model, user, liked, 7))


def test_replacing_item_factors_drops_the_index() -> None:
    model, liked = _model(1)
    model.recommend(3, liked[3], N=5)
    model.item_factors = -model.item_factors  # every ranking flips
    ids, _ = model.recommend(3, liked[3], N=5)
    np.testing.assert_array_equal(ids, _scored_by_numpy(model, 3, liked, 5))


def test_a_pickled_model_rebuilds_its_index() -> None:
    model, liked = _model(2)
    before = model.recommend(5, liked[5], N=6)
    copy = pickle.loads(pickle.dumps(model))
    assert copy._item_index is None
    after = copy.recommend(5, liked[5], N=6)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])


def test_index_refuses_non_finite_items() -> None:
    items = np.ones((4, 2), dtype=np.float32)
    items[2, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        _native.ItemIndex(items, 1)
    assert _native.ItemIndex(np.ones((4, 2), dtype=np.float32), 1).shape == (4, 2)
