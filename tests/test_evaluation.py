"""ranking_metrics_at_k against a plain NumPy reference written from the documented definitions.

Factors are small integers, so every score is an exact integer in float32 and float64 alike:
ties are real ties in both, and the reference's ordering (score descending, then lower item id)
is unambiguous. The reference ranks by a full sort; ials counts ranks without sorting.
"""

from __future__ import annotations

from typing import Any

import ials
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st
from ials.evaluation import (
    AUC_at_k,
    mean_average_precision_at_k,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics_at_k,
    recall_at_k,
)


class Factors:
    """The smallest model ranking_metrics_at_k accepts: two factor arrays."""

    def __init__(self, users: np.ndarray, items: np.ndarray) -> None:
        self.user_factors = users
        self.item_factors = items


def reference(
    users: np.ndarray,
    items: np.ndarray,
    train: sp.csr_matrix,
    test: sp.csr_matrix,
    K: int,
    truncated_recall: bool = False,
) -> dict[str, float]:
    scores = users.astype(np.float64) @ items.astype(np.float64).T
    n_items = items.shape[0]
    per_user: dict[str, list[float]] = {m: [] for m in ("precision", "recall", "map", "ndcg")}
    per_user.update(auc=[], epr=[])
    for u in range(users.shape[0]):
        liked = set(train.indices[train.indptr[u] : train.indptr[u + 1]].tolist())
        test_ids = test.indices[test.indptr[u] : test.indptr[u + 1]]
        test_values = test.data[test.indptr[u] : test.indptr[u + 1]]
        pairs_of_test = zip(test_ids.tolist(), test_values.tolist(), strict=True)
        held = {i: float(w) for i, w in pairs_of_test if i not in liked}
        if not held:
            continue
        eligible = np.array([i for i in range(n_items) if i not in liked])
        order = eligible[np.lexsort((eligible, -scores[u, eligible]))]
        rank = {int(item): r for r, item in enumerate(order)}
        ranks = sorted(rank[i] for i in held)
        hits = [r for r in ranks if r < K]
        ideal = min(K, len(held))
        per_user["precision"].append(len(hits) / K)
        per_user["recall"].append(len(hits) / (ideal if truncated_recall else len(held)))
        per_user["map"].append(sum((h + 1) / (r + 1) for h, r in enumerate(hits)) / ideal)
        dcg = sum(1 / np.log2(r + 2) for r in hits)
        per_user["ndcg"].append(dcg / sum(1 / np.log2(r + 2) for r in range(ideal)))
        negatives = [rank[int(i)] for i in order if int(i) not in held]
        pairs = [(h, n) for h in ranks for n in negatives]
        per_user["auc"].append(np.mean([h < n for h, n in pairs]) if pairs else 1.0)
        spread = max(len(order) - 1, 1)
        percentile = {i: rank[i] / spread if len(order) > 1 else 0.0 for i in held}
        weights = {i: max(w, 0.0) for i, w in held.items()}
        total = sum(weights.values())
        per_user["epr"].append(
            sum(weights[i] * percentile[i] for i in held) / total
            if total > 0
            else float(np.mean(list(percentile.values())))
        )
    out = {name: float(np.mean(values)) for name, values in per_user.items()}
    out["users"] = len(per_user["auc"])
    return out


def random_matrix(
    rng: np.random.Generator, shape: tuple[int, int], density: float
) -> sp.csr_matrix:
    mask = rng.random(shape) < density
    values = rng.integers(1, 5, size=shape).astype(np.float32) * mask
    return sp.csr_matrix(values)


@st.composite
def problems(draw: Any) -> dict[str, Any]:
    n_users = draw(st.integers(1, 14), label="n_users")
    n_items = draw(st.integers(2, 40), label="n_items")
    k = draw(st.integers(1, 5), label="k")
    seed = draw(st.integers(0, 2**32 - 1), label="seed")
    rng = np.random.default_rng(seed)
    dtype = draw(st.sampled_from([np.float32, np.float64]), label="dtype")
    train = random_matrix(rng, (n_users, n_items), draw(st.floats(0.0, 0.5), label="train"))
    test = random_matrix(rng, (n_users, n_items), draw(st.floats(0.05, 0.5), label="test"))
    if test.nnz == 0:
        test = sp.csr_matrix(([1.0], ([0], [n_items - 1])), shape=(n_users, n_items))
    return {
        "users": rng.integers(-3, 4, size=(n_users, k)).astype(dtype),
        "items": rng.integers(-3, 4, size=(n_items, k)).astype(dtype),
        "train": train,
        "test": test,
        "K": draw(st.integers(1, n_items + 3), label="K"),
        "truncated_recall": draw(st.booleans(), label="truncated_recall"),
        "full_ranking": draw(st.booleans(), label="full_ranking"),
    }


def evaluable(p: dict[str, Any]) -> bool:
    train, test = p["train"].tolil(), p["test"]
    for u in range(test.shape[0]):
        row = test.indices[test.indptr[u] : test.indptr[u + 1]]
        if any(train[u, int(i)] == 0 for i in row):
            return True
    return False


@given(problems())
def test_all_metrics_match_the_reference(p: dict[str, Any]) -> None:
    model = Factors(p["users"], p["items"])
    args = (model, p["train"], p["test"])
    if not evaluable(p):
        with pytest.raises(ValueError, match="no user has a test item"):
            ranking_metrics_at_k(*args, K=p["K"], show_progress=False)
        return
    got = ranking_metrics_at_k(
        *args,
        K=p["K"],
        show_progress=False,
        truncated_recall=p["truncated_recall"],
        full_ranking=p["full_ranking"],
    )
    want = reference(p["users"], p["items"], p["train"], p["test"], p["K"], p["truncated_recall"])
    assert got["users"] == want["users"]
    ranked = ("auc", "epr") if p["full_ranking"] else ()
    assert set(got) == {"precision", "recall", "map", "ndcg", *ranked, "users"}
    for name in ("precision", "recall", "map", "ndcg", *ranked):
        assert got[name] == pytest.approx(want[name], abs=1e-9), name


def test_many_strips_groups_and_blocks_match_the_reference_for_any_thread_count() -> None:
    """Enough users for several parallel blocks and a padded group, enough items for several
    strips and a partial last one, and many tied scores."""
    rng = np.random.default_rng(11)
    n_users, n_items, k = 301, 203, 4
    users = rng.integers(-2, 3, size=(n_users, k)).astype(np.float32)
    items = rng.integers(-2, 3, size=(n_items, k)).astype(np.float32)
    items[::17] = 0.0  # cold items: all score exactly 0
    items[::5] *= 4  # norms spread out, so the top-K-only ranking stops early
    train = random_matrix(rng, (n_users, n_items), 0.05)
    test = random_matrix(rng, (n_users, n_items), 0.03)
    model = Factors(users, items)
    want = reference(users, items, train, test, 20)
    for full_ranking in (True, False):
        results = [
            ranking_metrics_at_k(
                model,
                train,
                test,
                K=20,
                show_progress=False,
                num_threads=t,
                full_ranking=full_ranking,
            )
            for t in (1, 2)
        ]
        assert results[0] == results[1]
        names = ("precision", "recall", "map", "ndcg") + (("auc", "epr") if full_ranking else ())
        for name in names:
            assert results[0][name] == pytest.approx(want[name], abs=1e-9), name
        assert results[0]["users"] == want["users"]


def test_single_metric_functions_agree_with_the_table() -> None:
    rng = np.random.default_rng(5)
    users = rng.integers(-2, 3, size=(30, 3)).astype(np.float64)
    items = rng.integers(-2, 3, size=(50, 3)).astype(np.float64)
    train = random_matrix(rng, (30, 50), 0.1)
    test = random_matrix(rng, (30, 50), 0.1)
    model = Factors(users, items)
    table = ranking_metrics_at_k(model, train, test, K=7, show_progress=False)
    for function, name in (
        (precision_at_k, "precision"),
        (recall_at_k, "recall"),
        (mean_average_precision_at_k, "map"),
        (ndcg_at_k, "ndcg"),
        (AUC_at_k, "auc"),
    ):
        assert function(model, train, test, K=7, show_progress=False) == table[name], name


def test_a_fitted_model_scores_its_own_test_items_above_chance() -> None:
    R, _ = ials.datasets.synthetic(400, 150, random_state=2)
    train, test = ials.evaluation.train_test_split(R, 0.8, random_state=0)
    model = ials.AlternatingLeastSquares(factors=16, iterations=8, random_state=0)
    model.fit(train, show_progress=False)
    metrics = ranking_metrics_at_k(model, train, test, K=10, show_progress=False)
    random = ranking_metrics_at_k(
        Factors(
            np.random.default_rng(0).normal(size=model.user_factors.shape).astype(np.float32),
            np.random.default_rng(1).normal(size=model.item_factors.shape).astype(np.float32),
        ),
        train,
        test,
        K=10,
        show_progress=False,
    )
    assert metrics["auc"] > 0.6 > random["auc"] - 0.1
    assert metrics["epr"] < 0.4 < random["epr"] + 0.1
    assert metrics["ndcg"] > random["ndcg"]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"K": 0}, ValueError, "N must be >= 1"),
        ({"full_ranking": "yes"}, TypeError, "full_ranking must be True or False, got 'yes'"),
        ({"num_threads": -1}, ValueError, "num_threads"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, Any], error: type, message: str) -> None:
    rng = np.random.default_rng(0)
    model = Factors(rng.normal(size=(4, 2)), rng.normal(size=(6, 2)))
    test = sp.csr_matrix(np.eye(4, 6))
    with pytest.raises(error, match=message):
        ranking_metrics_at_k(model, sp.csr_matrix((4, 6)), test, show_progress=False, **kwargs)


def test_a_test_matrix_of_the_wrong_shape_is_named() -> None:
    rng = np.random.default_rng(0)
    model = Factors(rng.normal(size=(4, 2)), rng.normal(size=(6, 2)))
    with pytest.raises(ValueError, match=r"test_user_items must have shape \(4, 6\)"):
        ranking_metrics_at_k(model, sp.csr_matrix((4, 6)), sp.csr_matrix((4, 5)))
