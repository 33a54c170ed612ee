"""Ranking metrics for implicit-feedback models, computed in Rust, parallel over users.

For each user with at least one test item, all items are ranked by ``x_u . y_i`` (ties by lower
item id) with the user's training items removed, and the exact rank of every test item gives:

- ``precision`` = hits / K, where hits = test items among the top K;
- ``recall`` = hits / |test_u| (LightGCN-family papers), or hits / min(K, |test_u|) with
  ``truncated_recall=True`` (Liang et al. 2018, Rendle et al. 2022);
- ``map`` = (1 / min(K, |test_u|)) * sum over hits at position r of (hits up to r) / r;
- ``ndcg`` = DCG@K / IDCG@K with binary gains 1 / log2(r + 1) and the ideal DCG over
  min(K, |test_u|) positions;
- ``auc`` = fraction of (test item, non-test eligible item) pairs ranked in the right order, over
  the whole ranking (not only the top K);
- ``epr`` = expected percentile ranking (Hu, Koren & Volinsky 2008): mean of rank / (eligible - 1)
  over the user's test items weighted by their test values; 0 is best, 0.5 is random.

Every metric is the mean of the per-user values over users with at least one test item (test
items that are also training items are left out, as they cannot be ranked).

The first four only depend on which test items are in each user's top K. With
``full_ranking=False`` only that top K is found (most items are never scored, see the README's
performance section): the same values, several times faster, without ``auc`` and ``epr``.
``precision_at_k``, ``recall_at_k``, ``mean_average_precision_at_k``, ``ndcg_at_k`` and
:class:`ials.EarlyStopping` on those metrics work that way.

Where implicit's ``implicit.evaluation`` differs: its "precision" is sum(hits) / sum(min(K,
|test_u|)) pooled over users (a recall, and above 1 when K exceeds the number of items), its AUC
only looks inside the top K, and it has no recall or percentile ranking.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, cast

import numpy as np

from . import _native
from ._progress import Progress
from ._ranking import check_n
from ._rwlock import reading
from ._validation import as_csr, check_int, core_rows
from .splits import implicit_train_test_split as train_test_split
from .splits import leave_k_out_split, per_user_split

__all__ = [
    "METRICS",
    "AUC_at_k",
    "leave_k_out_split",
    "mean_average_precision_at_k",
    "ndcg_at_k",
    "per_user_split",
    "precision_at_k",
    "ranking_metrics_at_k",
    "recall_at_k",
    "train_test_split",
]

METRICS = {
    "precision": True,
    "recall": True,
    "map": True,
    "ndcg": True,
    "auc": True,
    "epr": False,
}
"""The metrics of :func:`ranking_metrics_at_k`, each with whether higher is better (expected
percentile ranking is better when lower)."""

FULL_RANKING = ("auc", "epr")
"""The metrics that need each user's full ranking; the others need only the top K."""


def metric_label(metric: str, K: int) -> str:
    """How reports name a metric: ``"ndcg@10"``, or ``"auc"`` for one of the full ranking."""
    return metric if metric in FULL_RANKING else f"{metric}@{K}"


# Users per call into Rust: bounds the time between progress updates, not the memory.
_USERS_PER_CALL = 8192


def ranking_metrics_at_k(
    model: Any,
    train_user_items: Any,
    test_user_items: Any,
    K: int = 10,
    show_progress: bool = True,
    num_threads: int = 0,
    truncated_recall: bool = False,
    full_ranking: bool = True,
) -> dict[str, float]:
    """All metrics at cutoff ``K`` (see the module docstring): a dict with ``precision``,
    ``recall``, ``map``, ``ndcg``, ``auc``, ``epr`` and ``users`` (how many were evaluated).
    With ``full_ranking=False`` only each user's top K is ranked and the dict has no ``auc``
    and ``epr``.

    ``model`` is anything with ``user_factors`` and ``item_factors`` arrays (an ials model, or an
    implicit one); ``train_user_items`` and ``test_user_items`` are users x items sparse matrices.
    """
    cutoff = check_n(K)
    num_threads = check_int("num_threads", num_threads, 0)
    if not isinstance(full_ranking, (bool, np.bool_)):
        raise TypeError(f"full_ranking must be True or False, got {full_ranking!r}")
    users, items = _factors(model)
    train = as_csr(train_user_items, "train_user_items", warn=False)
    test = as_csr(test_user_items, "test_user_items", warn=False)
    expected = (users.shape[0], items.shape[0])
    for name, matrix in (("train_user_items", train), ("test_user_items", test)):
        if matrix.shape != expected:
            raise ValueError(
                f"{name} must have shape {expected} (the model's users x items), got {matrix.shape}"
            )
    blocks = range(0, users.shape[0], _USERS_PER_CALL)
    tables = []
    # Under the model's read lock: a fit in another thread solves these factors in place.
    with reading(model), Progress(len(blocks), show_progress, "evaluating") as progress:
        for start in blocks:
            stop = min(start + _USERS_PER_CALL, users.shape[0])
            tables.append(
                _native.ranking_metrics(
                    users[start:stop],
                    items,
                    core_rows(train[start:stop]),
                    core_rows(test[start:stop]),
                    cutoff,
                    bool(full_ranking),
                    num_threads,
                )
            )
            progress.update()
    table = np.concatenate(tables) if tables else np.zeros((0, 6))
    n_test, hits, ndcg, average_precision, auc, percentile = table.T
    evaluated = n_test > 0
    if not evaluated.any():
        raise ValueError("no user has a test item that is not also a training item")
    n_test, hits = n_test[evaluated], hits[evaluated]
    recall_base = np.minimum(n_test, cutoff) if truncated_recall else n_test
    metrics = {
        "precision": float(np.mean(hits / cutoff)),
        "recall": float(np.mean(hits / recall_base)),
        "map": float(np.mean(average_precision[evaluated])),
        "ndcg": float(np.mean(ndcg[evaluated])),
    }
    if full_ranking:
        metrics["auc"] = float(np.mean(auc[evaluated]))
        metrics["epr"] = float(np.mean(percentile[evaluated]))
    return {**metrics, "users": int(evaluated.sum())}


def _factors(model: Any) -> tuple[np.ndarray, np.ndarray]:
    users = getattr(model, "user_factors", None)
    items = getattr(model, "item_factors", None)
    if not isinstance(users, np.ndarray) or not isinstance(items, np.ndarray):
        raise ValueError("the model is not fitted: it has no user_factors / item_factors arrays")
    if users.dtype != items.dtype or users.dtype not in (np.float32, np.float64):
        raise TypeError(
            f"the factors must both be float32 or float64, got {users.dtype} and {items.dtype}"
        )
    return np.ascontiguousarray(users), np.ascontiguousarray(items)


# The one-metric functions take implicit's arguments, the first six of ranking_metrics_at_k.
_ONE_METRIC = inspect.signature(ranking_metrics_at_k)
_ONE_METRIC = _ONE_METRIC.replace(
    parameters=list(_ONE_METRIC.parameters.values())[:6], return_annotation="float"
)


def _one(metric: str) -> Callable[..., float]:
    def compute(*args: Any, **kwargs: Any) -> float:
        given = _ONE_METRIC.bind(*args, **kwargs)
        given.apply_defaults()  # all six in given.args, in order
        model, train, test, K, show_progress, num_threads = given.args
        full = metric in FULL_RANKING
        metrics = ranking_metrics_at_k(
            model, train, test, K, show_progress, num_threads, full_ranking=full
        )
        return metrics[metric]

    cast(Any, compute).__signature__ = _ONE_METRIC
    compute.__name__ = compute.__qualname__ = f"{metric}_at_k"
    compute.__doc__ = f"``ranking_metrics_at_k(...)['{metric}']`` (see the module docstring)."
    return compute


precision_at_k = _one("precision")
recall_at_k = _one("recall")
mean_average_precision_at_k = _one("map")
ndcg_at_k = _one("ndcg")
AUC_at_k = _one("auc")
