"""Callbacks for ``AlternatingLeastSquares.fit``: early stopping on a validation metric.

``fit(user_items, callback=cb)`` calls ``cb(iteration, seconds, loss)`` after every sweep (the
signature of implicit). A callback that raises :class:`StopFitting` ends training cleanly after
that sweep: ``fit`` returns normally with the factors as they are.
"""

from __future__ import annotations

import logging
import numbers
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._validation import as_csr
from .evaluation import FULL_RANKING, METRICS

__all__ = ["METRICS", "EarlyStopping", "StopFitting"]

log = logging.getLogger(__name__)


def run_callback(callback: Any, iteration: int, seconds: float, loss: float | None) -> bool:
    """Calls a ``fit`` callback after a sweep; False when it raised :class:`StopFitting`."""
    if callback is None:
        return True
    try:
        callback(iteration, seconds, loss)
    except StopFitting:
        log.info("fit stopped by its callback after iteration %d", iteration)
        return False
    return True


class StopFitting(Exception):
    """Raised by a ``fit`` callback to end training after the current iteration."""


class EarlyStopping:
    """Stops ``fit`` when a ranking metric on held-out data stops improving, and keeps the best
    factors.

    After every iteration, ``ranking_metrics_at_k(model, train, validation, K=k)`` is computed
    (training items excluded from the ranking; with ``full_ranking=False`` unless ``metric`` is
    "auc" or "epr", since the others only need each user's top K). When ``metric`` has not
    improved on the best value so far by more than ``min_delta`` for ``patience`` iterations in
    a row, the factors of the best iteration are copied back into the model and training stops
    (by raising :class:`StopFitting`, which ``fit`` catches). When ``fit`` runs all its
    iterations, the best factors are restored at the last one too: after ``fit`` the model always
    holds the factors of ``best_iteration``.

    ::

        train, validation = ials.splits.per_user_split(data, 0.2, random_state=0)
        model = ials.AlternatingLeastSquares(iterations=50)
        stopper = ials.EarlyStopping(model, train, validation, metric="ndcg", k=20)
        model.fit(train, callback=stopper)
        stopper.best_iteration, stopper.best_score, stopper.history

    One instance serves one model; a new ``fit`` (iteration 0 again) starts a fresh history.

    Parameters
    ----------
    model : AlternatingLeastSquares
        The model being fitted (the callback signature of ``fit`` does not pass it).
    train : sparse matrix or None
        The training matrix, whose items are excluded from each user's ranking (None: rank every
        item).
    validation : sparse matrix, users x items
        The held-out interactions.
    metric : "precision", "recall", "map", "ndcg", "auc" or "epr"
        What to monitor; "epr" (expected percentile ranking) is better when lower, the others
        when higher.
    k : int
        The cut-off K of the metric.
    patience : int >= 1
        Iterations without improvement before stopping.
    min_delta : float >= 0
        The smallest change that counts as an improvement.
    truncated_recall, num_threads
        Passed to ``ranking_metrics_at_k``.

    Attributes
    ----------
    history : list of (iteration, value)
        The monitored metric after each iteration.
    metrics : list of dict
        Every metric computed after each iteration (no "auc" and "epr" when monitoring another
        metric).
    losses : list of float or None
        The training loss ``fit`` reported after each iteration.
    best_iteration, best_score
        The best iteration so far (0-based) and its metric value; None before the first.
    stopped_iteration : int or None
        The iteration after which training was stopped, None if it was not.
    """

    def __init__(
        self,
        model: Any,
        train: Any,
        validation: Any,
        metric: str = "ndcg",
        k: int = 20,
        patience: int = 2,
        min_delta: float = 0.0,
        truncated_recall: bool = False,
        num_threads: int = 0,
    ) -> None:
        if not hasattr(model, "fit") or not hasattr(model, "user_factors"):
            raise TypeError(f"model must be an AlternatingLeastSquares, got {model!r}")
        if not sp.issparse(validation):
            raise TypeError(
                f"validation must be a scipy.sparse matrix, got {type(validation).__name__}"
            )
        if train is None:
            train = sp.csr_matrix(validation.shape, dtype=np.float32)
        elif not sp.issparse(train):
            raise TypeError(f"train must be a scipy.sparse matrix, got {type(train).__name__}")
        if train.shape != validation.shape:
            raise ValueError(
                f"train {train.shape} and validation {validation.shape} must have the same shape"
            )
        if not isinstance(metric, str) or metric.lower() not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
        for name, value, minimum in (("k", k, 1), ("patience", patience, 1)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"{name} must be an integer, got {value!r}")
            if value < minimum:
                raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
        if isinstance(min_delta, bool) or not isinstance(min_delta, numbers.Real):
            raise TypeError(f"min_delta must be a real number, got {min_delta!r}")
        if not np.isfinite(min_delta) or min_delta < 0:
            raise ValueError(f"min_delta must be a finite number >= 0, got {min_delta!r}")
        self.model: Any = model
        self.train: sp.csr_matrix = as_csr(train, "train", warn=False)
        self.validation: sp.csr_matrix = as_csr(validation, "validation", warn=False)
        self.metric: str = metric.lower()
        self.k: int = int(k)
        self.patience: int = int(patience)
        self.min_delta: float = float(min_delta)
        self.truncated_recall: bool = bool(truncated_recall)
        self.num_threads: int = num_threads
        self._reset()

    def _reset(self) -> None:
        self.history: list[tuple[int, float]] = []
        self.metrics: list[dict[str, float]] = []
        self.losses: list[float | None] = []
        self.best_iteration: int | None = None
        self.best_score: float | None = None
        self.stopped_iteration: int | None = None
        self._best: tuple[np.ndarray, np.ndarray] | None = None
        self._waited = 0

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.metric]

    def _improves(self, value: float) -> bool:
        if self.best_score is None:
            return True
        gain = value - self.best_score if self.higher_is_better else self.best_score - value
        return gain > self.min_delta

    def __call__(self, iteration: int, elapsed: float, loss: float | None) -> None:
        from .evaluation import ranking_metrics_at_k

        if iteration == 0:
            self._reset()
        metrics = ranking_metrics_at_k(
            self.model,
            self.train,
            self.validation,
            K=self.k,
            show_progress=False,
            num_threads=self.num_threads,
            truncated_recall=self.truncated_recall,
            full_ranking=self.metric in FULL_RANKING,
        )
        value = float(metrics[self.metric])
        self.history.append((iteration, value))
        self.metrics.append(dict(metrics))
        self.losses.append(loss)
        if self._improves(value):
            self.best_iteration, self.best_score, self._waited = iteration, value, 0
            users, items = self.model.user_factors, self.model.item_factors
            self._best = (np.array(users, copy=True), np.array(items, copy=True))
        else:
            self._waited += 1
        if self._waited >= self.patience:
            self.stopped_iteration = iteration
            self.restore_best()
            raise StopFitting(f"{self.metric}@{self.k} has not improved for {self._waited} steps")
        if iteration + 1 >= int(self.model.iterations):
            self.restore_best()

    def restore_best(self) -> None:
        """Copies the factors of ``best_iteration`` back into the model (in place, so that
        ``fit`` ends with them)."""
        if self._best is None:
            return
        for name, best in zip(("user_factors", "item_factors"), self._best, strict=True):
            current = getattr(self.model, name)
            if isinstance(current, np.ndarray) and current.shape == best.shape:
                np.copyto(current, best)
                setattr(self.model, name, current)  # drops what was derived from the old values
            else:
                setattr(self.model, name, best.copy())
