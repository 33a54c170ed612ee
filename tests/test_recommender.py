"""ials.Recommender: a model bundled with its raw ids and confidence transform."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import ials
import numpy as np
import pytest
import scipy.sparse as sp
from ials.interactions import UnknownIdError


def _log(seed: int = 0, n: int = 900) -> tuple[list[str], list[int], list[int]]:
    rng = np.random.default_rng(seed)
    users = [f"listener-{u}" for u in rng.integers(0, 60, n)]
    items = [int(i) for i in rng.integers(1000, 1080, n)]
    plays = [int(p) for p in rng.integers(1, 30, n)]
    return users, items, plays


@pytest.fixture
def data() -> ials.Interactions:
    return ials.Interactions.from_arrays(*_log())


@pytest.fixture
def bundle(data: ials.Interactions) -> ials.Recommender:
    model = ials.AlternatingLeastSquares(factors=8, iterations=6, random_state=0)
    return ials.Recommender.fit(data, model, confidence=ials.Confidence("log", alpha=5.0, eps=2.0))


def test_fit_applies_the_transform(data: ials.Interactions) -> None:
    reference = ials.AlternatingLeastSquares(factors=8, iterations=6, random_state=0)
    reference.fit(ials.confidence.log(data.matrix, 5.0, 2.0), show_progress=False)
    bundle = ials.Recommender.fit(
        data,
        ials.AlternatingLeastSquares(factors=8, iterations=6, random_state=0),
        confidence=functools.partial(ials.confidence.log, alpha=5.0, eps=2.0),
    )
    assert bundle.confidence == ials.Confidence("log", 5.0, 2.0)
    np.testing.assert_array_equal(bundle.model.user_factors, reference.user_factors)
    np.testing.assert_array_equal(bundle.model.item_factors, reference.item_factors)


def test_answers_in_raw_ids_match_the_model(bundle: ials.Recommender) -> None:
    model, data = bundle.model, bundle.interactions
    user = "listener-7"
    row = int(np.flatnonzero(data.user_ids == user)[0])
    ids, scores = model.recommend(row, data.matrix[row], N=5)
    got = bundle.recommend(user, N=5)
    assert [i for i, _ in got] == data.item_ids[ids].tolist()
    np.testing.assert_allclose([s for _, s in got], scores, rtol=1e-6)
    liked = set(data.item_ids[data.matrix[row].indices].tolist())
    assert not liked & {item for item, _ in bundle.recommend(user, N=30)}
    kept = data.item_ids[:10].tolist()
    assert {item for item, _ in bundle.recommend(user, N=30, items=kept)} <= set(kept)
    dropped = [item for item, _ in bundle.recommend(user, N=3)]
    assert not set(dropped) & {i for i, _ in bundle.recommend(user, N=30, filter_items=dropped)}

    item = int(data.item_ids[4])
    ids, scores = model.similar_items(4, N=4)
    assert [i for i, _ in bundle.similar_items(item, N=4)] == data.item_ids[ids].tolist()
    ids, scores = model.similar_users(row, N=3)
    assert [u for u, _ in bundle.similar_users(user, N=3)] == data.user_ids[ids].tolist()
    column = int(np.flatnonzero(data.item_ids == 1003)[0])
    assert model.user_factors is not None and model.item_factors is not None
    expected = float(model.user_factors[row] @ model.item_factors[column])
    assert bundle.score([user], [1003]) == [pytest.approx(expected, rel=1e-6)]


def test_a_batch_is_a_one_dimensional_list_of_raw_ids(bundle: ials.Recommender) -> None:
    users = ["listener-3", "listener-9", "listener-3"]
    batch = bundle.recommend_batch(users, N=4)
    assert batch == [bundle.recommend(user, N=4) for user in users]
    # Fewer eligible items than N: the padding of the batch is not returned.
    everything = bundle.recommend_batch(users, N=bundle.n_items)
    for user, results in zip(users, everything, strict=True):
        row = bundle.interactions.matrix[bundle.interactions.user_index(user)]
        assert len(results) == bundle.n_items - row.nnz
        assert -1 not in [item for item, _ in results]


def test_explain_uses_the_training_confidences(bundle: ials.Recommender) -> None:
    data, model = bundle.interactions, bundle.model
    row = int(np.flatnonzero(data.user_ids == "listener-2")[0])
    weights = ials.confidence.log(data.matrix[row], 5.0, 2.0)
    total, top, _ = model.explain(row, weights, 0, N=100)
    score, contributions = bundle.explain("listener-2", int(data.item_ids[0]), N=100)
    assert score == pytest.approx(total)
    assert [i for i, _ in contributions] == [int(data.item_ids[i]) for i, _ in top]
    np.testing.assert_allclose([c for _, c in contributions], [c for _, c in top])
    assert sum(c for _, c in contributions) == pytest.approx(score, rel=1e-6)


def test_history_is_folded_in_with_the_transform_and_not_stored(bundle: ials.Recommender) -> None:
    history = {1001: 1, 1005: 12}
    before = bundle.n_users
    columns = [int(np.flatnonzero(bundle.item_ids == i)[0]) for i in (1001, 1005)]
    row = sp.csr_matrix(([1.0, 12.0], ([0, 0], columns)), shape=(1, bundle.n_items))
    ids, _ = bundle.model.recommend(
        0, ials.confidence.log(row, 5.0, 2.0), N=6, recalculate_user=True
    )
    got = bundle.recommend_history(history, N=6)
    assert [i for i, _ in got] == bundle.item_ids[ids].tolist()
    assert bundle.n_users == before
    # A list counts each item once per mention.
    assert bundle.recommend_history([1005, 1001, 1005], N=6) == bundle.recommend_history(
        {1001: 1, 1005: 2}, N=6
    )


def test_fold_in_new_user_grows_ids_factors_and_history(bundle: ials.Recommender) -> None:
    n_users = bundle.n_users
    expected = bundle.recommend_history({1002: 4, 1010: 1}, N=5)
    bundle.fold_in_users(["newcomer", "newcomer"], [1002, 1010], [4, 1])
    assert bundle.model.user_factors is not None
    assert bundle.n_users == n_users + 1 == bundle.model.user_factors.shape[0]
    assert bundle.user_ids[-1] == "newcomer"
    assert bundle.recommend("newcomer", N=5) == expected
    # More plays add to the history and re-solve the user.
    bundle.fold_in_users(["newcomer"], [1020], [7])
    assert bundle.n_users == n_users + 1
    assert bundle.recommend("newcomer", N=5) == bundle.recommend_history(
        {1002: 4, 1010: 1, 1020: 7}, N=5
    )
    with pytest.raises(UnknownIdError, match="unknown item id 5"):
        bundle.fold_in_users(["other"], [5])
    assert bundle.n_users == n_users + 1  # a refused fold-in changes nothing


def test_fold_in_new_item(bundle: ials.Recommender) -> None:
    users = ["listener-1", "listener-2", "listener-3"]
    model = bundle.model
    rows = [int(np.flatnonzero(bundle.user_ids == u)[0]) for u in users]
    column = sp.csr_matrix(([2.0, 5.0, 1.0], ([0, 0, 0], rows)), shape=(1, bundle.n_users))
    expected = model.recalculate_item(0, ials.confidence.log(column, 5.0, 2.0))
    bundle.fold_in_items([2000] * 3, users, [2, 5, 1])
    assert bundle.item_ids[-1] == 2000
    factors = bundle.model.item_factors
    assert factors is not None
    np.testing.assert_allclose(factors[-1], expected, rtol=1e-6)
    assert bundle.model.user_factors is model.user_factors  # users unchanged
    assert bundle.similar_items(2000, N=1)[0][0] == 2000
    with pytest.raises(TypeError, match="item ids of this model are integers, got 'song'"):
        bundle.fold_in_items(["song"], ["listener-1"])


def test_save_load_round_trip(bundle: ials.Recommender, tmp_path: Path) -> None:
    bundle.fold_in_users(["a-much-longer-listener-id"], [1003])
    path = tmp_path / "bundle.npz"
    bundle.save(path)
    loaded = ials.Recommender.load(path)
    assert loaded.confidence == bundle.confidence
    np.testing.assert_array_equal(loaded.user_ids, bundle.user_ids)
    np.testing.assert_array_equal(loaded.item_ids, bundle.item_ids)
    assert (loaded.interactions.matrix != bundle.interactions.matrix).nnz == 0
    assert loaded.recommend("a-much-longer-listener-id", N=5) == bundle.recommend(
        "a-much-longer-listener-id", N=5
    )
    assert loaded.info() == bundle.info()
    with pytest.raises(UnknownIdError, match="a-much-longer-listener-id-2"):
        loaded.recommend("a-much-longer-listener-id-2")
    # The same file is a model file and an interactions file.
    model = ials.AlternatingLeastSquares.load(path)
    np.testing.assert_array_equal(model.item_factors, bundle.model.item_factors)
    assert ials.Interactions.load(path).n_users == bundle.n_users


def test_load_plain_model_file(tmp_path: Path) -> None:
    model = ials.AlternatingLeastSquares(factors=4, iterations=2, random_state=0)
    matrix = sp.random(20, 15, density=0.3, format="csr", random_state=0, dtype=np.float32)
    model.fit(matrix, show_progress=False)
    model.save(tmp_path / "plain.npz")
    bundle = ials.Recommender.load(tmp_path / "plain.npz")
    assert bundle.confidence == ials.Confidence()
    np.testing.assert_array_equal(bundle.user_ids, np.arange(20))
    ids, _ = model.recommend(3, None, N=4, filter_already_liked_items=False)
    assert [i for i, _ in bundle.recommend(3, N=4)] == ids.tolist()
    unfitted = ials.AlternatingLeastSquares(factors=4)
    unfitted.save(tmp_path / "unfitted.npz")
    with pytest.raises(ValueError, match="never fitted"):
        ials.Recommender.load(tmp_path / "unfitted.npz")


def test_saved_transform_must_be_complete(bundle: ials.Recommender, tmp_path: Path) -> None:
    from ials import _persistence

    bundle.save(tmp_path / "bundle.npz")
    with np.load(tmp_path / "bundle.npz") as archive:
        entries = {name: archive[name] for name in archive.files}
    del entries["confidence_eps"]
    entries["ials_checksum"] = np.array(_persistence._checksum(entries))
    np.savez(tmp_path / "edited.npz", **entries)
    with pytest.raises(ValueError, match="confidence transform is incomplete"):
        ials.Recommender.load(tmp_path / "edited.npz")


@pytest.mark.parametrize(
    ("transform", "error", "pattern"),
    [
        (lambda r: r, TypeError, "cannot describe the confidence transform"),
        (ials.confidence.log, TypeError, "cannot describe"),
        (functools.partial(ials.confidence.log, 2.0), TypeError, "cannot describe"),
        (functools.partial(np.log1p), TypeError, "cannot describe"),
        ("log", ValueError, "needs its alpha"),
    ],
)
def test_refuses_a_transform_it_cannot_describe(
    bundle: ials.Recommender, transform: Any, error: type, pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        ials.Recommender(bundle.model, bundle.interactions, transform)


@pytest.mark.parametrize(
    ("arguments", "error", "pattern"),
    [
        (("square",), ValueError, "confidence must be one of raw, linear, log"),
        (("log", -1.0), ValueError, "alpha must be finite and >= 0"),
        (("log", 1.0, 0.0), ValueError, "eps must be finite and > 0"),
        (("linear", "2"), TypeError, "alpha must be a real number"),
    ],
)
def test_bad_confidence(arguments: tuple[Any, ...], error: type, pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        ials.Confidence(*arguments)


def test_bad_inputs(bundle: ials.Recommender) -> None:
    with pytest.raises(UnknownIdError, match="unknown user id 'nobody'"):
        bundle.recommend("nobody")
    with pytest.raises(UnknownIdError, match="unknown item id 7"):
        bundle.similar_items(7)
    with pytest.raises(ValueError, match="outside the int64 range"):
        bundle.similar_items(10**30)
    with pytest.raises(ValueError, match="int64 range"):
        bundle.fold_in_users(["listener-1"], [2**63])
    with pytest.raises(ValueError, match="must be 1-D"):
        bundle.recommend_batch([["listener-1", "listener-2"]])
    with pytest.raises(ValueError, match="same length"):
        bundle.score(["listener-1"], [1001, 1002])
    with pytest.raises(TypeError, match="history must be a mapping"):
        bundle.recommend_history("1001")
    with pytest.raises(TypeError, match="strengths must be numbers"):
        text: Any = "3"
        bundle.recommend_history({1001: text})
    with pytest.raises(ValueError, match="finite"):
        bundle.recommend_history({1001: float("nan")})
    with pytest.raises(ValueError, match="history strengths must be >= 0 with the log confidence"):
        bundle.recommend_history({1001: -2})
    with pytest.raises(ValueError, match="weights must be >= 0 with the log confidence transform"):
        bundle.fold_in_users(["listener-1"], [1001], [-2])
    with pytest.raises(TypeError, match=r"interactions must be an ials\.Interactions"):
        ials.Recommender(bundle.model, bundle.interactions.matrix)
    with pytest.raises(ValueError, match="fit it on this data"):
        ials.Recommender(bundle.model, ials.Interactions(sp.csr_matrix((3, 3))))
