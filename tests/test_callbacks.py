"""Tests of ials.EarlyStopping and of ending fit from a callback (ials.callbacks.StopFitting)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import ials
import ials.evaluation
import numpy as np
import pytest
import scipy.sparse as sp
from ials.callbacks import EarlyStopping, StopFitting
from ials.datasets import synthetic
from ials.splits import per_user_split


@pytest.fixture(scope="module")
def split() -> tuple[sp.csr_matrix, sp.csr_matrix]:
    data, _ = synthetic(n_users=300, n_items=150, random_state=0)
    return per_user_split(data, 0.2, random_state=0)


def model(iterations: int = 12, **kwargs: Any) -> ials.AlternatingLeastSquares:
    return ials.AlternatingLeastSquares(
        factors=8, iterations=iterations, regularization=0.1, random_state=1, **kwargs
    )


class Scripted:
    """Stands in for ranking_metrics_at_k: returns scripted values of one metric and records
    the factors it was shown."""

    def __init__(self, metric: str, values: list[float]) -> None:
        self.metric = metric
        self.values: Iterator[float] = iter(values)
        self.seen: list[tuple[np.ndarray, np.ndarray]] = []

    def __call__(self, model: Any, train: Any, test: Any, **kwargs: Any) -> dict[str, Any]:
        self.seen.append((model.user_factors.copy(), model.item_factors.copy()))
        result = dict.fromkeys(("precision", "recall", "map", "ndcg", "auc", "epr"), 0.5)
        result[self.metric] = next(self.values)
        result["users"] = 1
        return result


def scripted(monkeypatch: pytest.MonkeyPatch, metric: str, values: list[float]) -> Scripted:
    fake = Scripted(metric, values)
    monkeypatch.setattr(ials.evaluation, "ranking_metrics_at_k", fake)
    return fake


def test_stops_after_patience_and_restores_the_best(
    split: tuple[sp.csr_matrix, sp.csr_matrix], monkeypatch: pytest.MonkeyPatch
) -> None:
    train, validation = split
    fake = scripted(monkeypatch, "ndcg", [0.1, 0.3, 0.2, 0.25, 0.9, 0.9])
    m = model(iterations=10)
    stopper = EarlyStopping(m, train, validation, metric="ndcg", k=5, patience=2)
    m.fit(train, show_progress=False, callback=stopper)  # returns normally
    assert len(fake.seen) == 4  # iterations 0..3: two without improvement after the best (1)
    assert stopper.history == [(0, 0.1), (1, 0.3), (2, 0.2), (3, 0.25)]
    assert (stopper.best_iteration, stopper.best_score, stopper.stopped_iteration) == (1, 0.3, 3)
    np.testing.assert_array_equal(m.user_factors, fake.seen[1][0])
    np.testing.assert_array_equal(m.item_factors, fake.seen[1][1])
    assert not np.array_equal(fake.seen[1][0], fake.seen[3][0])  # something was restored


def test_min_delta_and_lower_is_better(
    split: tuple[sp.csr_matrix, sp.csr_matrix], monkeypatch: pytest.MonkeyPatch
) -> None:
    train, validation = split
    scripted(monkeypatch, "recall", [0.30, 0.305, 0.309, 0.5])
    m = model()
    stopper = EarlyStopping(m, train, validation, metric="recall", patience=2, min_delta=0.01)
    m.fit(train, show_progress=False, callback=stopper)
    assert stopper.best_iteration == 0 and stopper.stopped_iteration == 2

    fake = scripted(monkeypatch, "epr", [0.30, 0.20, 0.25, 0.21, 0.22])
    m = model()
    stopper = EarlyStopping(m, train, validation, metric="EPR", patience=3)
    m.fit(train, show_progress=False, callback=stopper)
    assert stopper.best_iteration == 1 and stopper.best_score == 0.20
    assert stopper.stopped_iteration == 4
    np.testing.assert_array_equal(m.user_factors, fake.seen[1][0])


def test_best_factors_restored_when_all_iterations_run(
    split: tuple[sp.csr_matrix, sp.csr_matrix], monkeypatch: pytest.MonkeyPatch
) -> None:
    train, validation = split
    fake = scripted(monkeypatch, "map", [0.2, 0.5, 0.4, 0.45])
    m = model(iterations=4)
    stopper = EarlyStopping(m, train, validation, metric="map", patience=5)
    m.fit(train, show_progress=False, callback=stopper)
    assert stopper.stopped_iteration is None
    assert len(stopper.history) == 4
    np.testing.assert_array_equal(m.user_factors, fake.seen[1][0])
    np.testing.assert_array_equal(m.item_factors, fake.seen[1][1])


def test_with_the_real_metric(split: tuple[sp.csr_matrix, sp.csr_matrix]) -> None:
    train, validation = split
    m = model(iterations=15, calculate_training_loss=True)
    stopper = EarlyStopping(m, train, validation, metric="ndcg", k=10, patience=2)
    m.fit(train, show_progress=False, callback=stopper)
    values = [value for _, value in stopper.history]
    assert stopper.best_score == max(values)
    assert stopper.history[stopper.best_iteration][1] == stopper.best_score
    assert [i for i, _ in stopper.history] == list(range(len(values)))
    assert len(stopper.metrics) == len(stopper.losses) == len(values)
    assert all(loss is not None and loss > 0 for loss in stopper.losses)
    # The model ends with the best iteration's factors: measuring it again gives the best score.
    again = ials.evaluation.ranking_metrics_at_k(m, train, validation, K=10, show_progress=False)
    assert again["ndcg"] == pytest.approx(stopper.best_score, abs=1e-12)
    # Monitoring NDCG ranks only each user's top K: every metric but AUC and EPR is recorded.
    at_cutoff = {name: value for name, value in again.items() if name not in ("auc", "epr")}
    assert stopper.metrics[stopper.best_iteration] == pytest.approx(at_cutoff)
    if stopper.stopped_iteration is not None:
        assert stopper.stopped_iteration == stopper.best_iteration + 2
        assert len(values) < 15


def test_a_new_fit_starts_a_new_history(
    split: tuple[sp.csr_matrix, sp.csr_matrix], monkeypatch: pytest.MonkeyPatch
) -> None:
    train, validation = split
    scripted(monkeypatch, "auc", [0.1, 0.2, 0.05, 0.06])
    m = model(iterations=2)
    stopper = EarlyStopping(m, train, validation, metric="auc", patience=1)
    m.fit(train, show_progress=False, callback=stopper)
    assert stopper.history == [(0, 0.1), (1, 0.2)]
    m.fit(train, show_progress=False, callback=stopper)
    assert stopper.history == [(0, 0.05), (1, 0.06)]
    assert stopper.best_iteration == 1


def test_restore_outside_fit_refreshes_cached_norms(
    split: tuple[sp.csr_matrix, sp.csr_matrix], monkeypatch: pytest.MonkeyPatch
) -> None:
    train, validation = split
    scripted(monkeypatch, "ndcg", [0.9, 0.1])
    m = model(iterations=1)
    stopper = EarlyStopping(m, train, validation, patience=3)
    m.fit(train, show_progress=False, callback=stopper)
    best = m.item_factors.copy()
    m.fit(sp.csr_matrix(train), show_progress=False)  # one more sweep, no callback
    m.similar_items(0, N=3)  # caches the item norms of the newer factors
    stopper.restore_best()
    np.testing.assert_array_equal(m.item_factors, best)
    reference = model()
    reference.user_factors, reference.item_factors = m.user_factors.copy(), best.copy()
    for got, expected in zip(m.similar_items(0, N=5), reference.similar_items(0, N=5), strict=True):
        np.testing.assert_array_equal(got, expected)


def test_any_callback_can_stop_fit(split: tuple[sp.csr_matrix, sp.csr_matrix]) -> None:
    train, _ = split
    calls: list[int] = []

    def stop_after_three(iteration: int, seconds: float, loss: float | None) -> None:
        calls.append(iteration)
        if iteration == 2:
            raise StopFitting

    stopped = model(iterations=10)
    stopped.fit(train, show_progress=False, callback=stop_after_three)
    assert calls == [0, 1, 2]
    three = model(iterations=3)
    three.fit(train, show_progress=False)
    np.testing.assert_array_equal(stopped.user_factors, three.user_factors)
    np.testing.assert_array_equal(stopped.item_factors, three.item_factors)


def test_other_exceptions_still_propagate(split: tuple[sp.csr_matrix, sp.csr_matrix]) -> None:
    train, _ = split

    def broken(iteration: int, seconds: float, loss: float | None) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        model().fit(train, show_progress=False, callback=broken)


def test_train_none_ranks_every_item(
    split: tuple[sp.csr_matrix, sp.csr_matrix], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, validation = split
    seen: list[sp.csr_matrix] = []

    def fake(model: Any, train: Any, test: Any, **kwargs: Any) -> dict[str, Any]:
        seen.append(train)
        return {"ndcg": 0.5}

    monkeypatch.setattr(ials.evaluation, "ranking_metrics_at_k", fake)
    m = model(iterations=1)
    m.fit(validation, show_progress=False, callback=EarlyStopping(m, None, validation))
    assert seen[0].shape == validation.shape and seen[0].nnz == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"metric": "f1"}, ValueError, "metric must be one of.*'f1'"),
        ({"k": 0}, ValueError, "k must be >= 1, got 0"),
        ({"k": 2.0}, TypeError, "k must be an integer"),
        ({"patience": 0}, ValueError, "patience must be >= 1"),
        ({"min_delta": -0.1}, ValueError, "min_delta.*-0.1"),
        ({"min_delta": "0"}, TypeError, "min_delta"),
        ({"validation": np.ones((2, 2))}, TypeError, "validation must be a scipy.sparse"),
        ({"train": sp.csr_matrix((3, 3))}, ValueError, "same shape"),
        ({"model": object()}, TypeError, "model must be an AlternatingLeastSquares"),
    ],
)
def test_bad_arguments(
    split: tuple[sp.csr_matrix, sp.csr_matrix], kwargs: dict[str, Any], error: type, pattern: str
) -> None:
    train, validation = split
    arguments: dict[str, Any] = {"model": model(), "train": train, "validation": validation}
    arguments.update(kwargs)
    with pytest.raises(error, match=pattern):
        EarlyStopping(**arguments)


def test_exported() -> None:
    assert ials.EarlyStopping is EarlyStopping
    assert issubclass(StopFitting, Exception)
