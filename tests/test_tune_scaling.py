"""Tests of ``ials.tune.scale_dimension`` (Rendle et al.'s protocol: double the factors while
validation improves, re-tuning the penalty and unobserved weight at each size), the solver
settings in a search space, and ``ials tune --double-factors`` with ``fit --params``.

Most tests replace the model and the evaluator by fakes whose validation score is a known
function of the number of factors, so that the expected sizes follow from the table alone."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from cli_run import ials, write_play_log
from ials import AlternatingLeastSquares, Recommender
from ials import evaluation as evaluation_module
from ials.datasets import synthetic
from ials.evaluation import METRICS, ranking_metrics_at_k
from ials.splits import per_user_split
from ials.tune import Choice, IntRange, Uniform, scale_dimension, search


@pytest.fixture(scope="module")
def splits() -> tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
    """fit part, validation (carved from the training data) and the test set."""
    matrix, _ = synthetic(n_users=200, n_items=80, random_state=5)
    train, test = per_user_split(matrix, 0.2, random_state=0)
    fit_part, validation = per_user_split(train, 0.2, random_state=1)
    return fit_part, validation, test


class FakeModel:
    """Records its arguments and what it is fitted on; fitting takes ``delay`` seconds."""

    def __init__(self, factory: Fakes, factors: int, **arguments: Any) -> None:
        self.factory = factory
        self.factors = factors
        self.arguments = arguments
        self.iterations = arguments.get("iterations", 1)
        self.user_factors: Any = None
        self.item_factors: Any = None

    def fit(self, user_items: Any, show_progress: bool = True) -> None:
        self.factory.fitted.append(sp.csr_matrix(user_items, copy=True))
        time.sleep(self.factory.delay)
        self.user_factors = np.zeros((user_items.shape[0], self.factors))
        self.item_factors = np.zeros((user_items.shape[1], self.factors))


class Fakes:
    """The model factory and the evaluator: the score at ``factors`` is ``table[factors]``,
    less a little for a regularization far from 0.01 (so each size has one best setting)."""

    def __init__(self, table: dict[int, float], delay: float = 0.0) -> None:
        self.table = table
        self.delay = delay
        self.built: list[dict[str, Any]] = []
        self.fitted: list[sp.csr_matrix] = []
        self.evaluated: list[tuple[sp.csr_matrix, sp.csr_matrix]] = []

    def __call__(self, factors: int, **arguments: Any) -> FakeModel:
        self.built.append({"factors": factors, **arguments})
        return FakeModel(self, factors, **arguments)

    def evaluate(self, model: FakeModel, train: Any, test: Any, **_: Any) -> dict[str, float]:
        self.evaluated.append((train, test))
        distance = abs(math.log(model.arguments["regularization"] / 0.01))
        score = self.table[model.factors] - 1e-4 * distance
        return {name: score for name in METRICS}


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Any:
    def make(table: dict[int, float], delay: float = 0.0) -> Fakes:
        created = Fakes(table, delay)
        monkeypatch.setattr(evaluation_module, "ranking_metrics_at_k", created.evaluate)
        return created

    return make


def scale(splits: Any, fake: Fakes | None, **kwargs: Any) -> Any:
    arguments: dict[str, Any] = {
        "factors": 4,
        "trials_per_size": 3,
        "budget_seconds": None,
        "max_trials": 40,
        "random_state": 0,
        "show_progress": False,
        "num_threads": 1,
        "model": fake,
    }
    arguments.update(kwargs)
    return scale_dimension(splits[0], splits[1], **arguments)


# ---------------------------------------------------------------------------------------------
# the doubling


def test_doubles_while_validation_improves(splits: Any, fakes: Any) -> None:
    fake = fakes({4: 0.1, 8: 0.2, 16: 0.3, 32: 0.25, 64: 0.9})
    result = scale(splits, fake, search_width=2.0)
    assert [s.factors for s in result.searches] == [4, 8, 16, 32]  # 64 never tried
    assert result.stopped == "no_improvement"
    assert result.factors == 16 and result.chosen is result.searches[2]
    assert result.best_score == pytest.approx(0.3, abs=1e-3)
    assert [row["chosen"] for row in result.curve] == [False, False, True, False]
    assert {built["factors"] for built in fake.built} == {4, 8, 16, 32}
    assert result.make_model().factors == 16
    # Each size re-tunes the penalty and unobserved weight within a factor 2 of the previous
    # size's best and keeps every other setting of it; nu stays 1 throughout.
    for previous, current in zip(result.searches, result.searches[1:], strict=False):
        best = previous.best
        for row in current.trials:
            for name, key in (("regularization", "row_penalty"), ("unobserved_weight", None)):
                value, center = row[key or name], best[key or name]
                assert center / 2.0 <= value <= center * 2.0, (name, value, center)
            for name in ("confidence", "median_confidence", "iterations"):
                assert row.get(name) == best.get(name), name
    assert {row["regularization_exponent"] for row in result.trials} == {1.0}
    assert len({row["row_penalty"] for row in result.searches[0].trials}) == 3  # searched


def test_min_improvement_and_max_factors(splits: Any, fakes: Any) -> None:
    fake = fakes({4: 0.1, 8: 0.105, 16: 0.5})
    small_gain = scale(splits, fake, min_improvement=0.01)
    assert [s.factors for s in small_gain.searches] == [4, 8]
    assert small_gain.factors == 4 and small_gain.stopped == "no_improvement"
    fake = fakes({4: 0.1, 8: 0.2, 16: 0.3, 32: 0.4})
    capped = scale(splits, fake, max_factors=20)
    assert [s.factors for s in capped.searches] == [4, 8, 16]
    assert capped.factors == 16 and capped.stopped == "max_factors"


def test_lower_is_better_metric(splits: Any, fakes: Any) -> None:
    fake = fakes({4: 0.5, 8: 0.4, 16: 0.45})
    result = scale(splits, fake, metric="epr")
    assert [s.factors for s in result.searches] == [4, 8, 16]
    assert result.factors == 8


def test_budget_of_trials(splits: Any, fakes: Any) -> None:
    fake = fakes({4: 0.1, 8: 0.2, 16: 0.3, 32: 0.4})
    result = scale(splits, fake, max_trials=5, trials_per_size=2)
    assert [len(s.trials) for s in result.searches] == [2, 2, 1]
    assert len(fake.fitted) == 5 and result.stopped == "max_trials"
    assert result.factors == 16


def test_budget_of_seconds(splits: Any, fakes: Any) -> None:
    delay, budget = 0.04, 0.3
    fake = fakes({4 * 2**i: 0.1 * i for i in range(12)}, delay=delay)
    result = scale(splits, fake, budget_seconds=budget, max_trials=None, trials_per_size=2)
    assert result.stopped == "budget"
    # No evaluation starts once the budget is spent: at most one runs past it.
    assert len(fake.fitted) <= math.ceil(budget / delay) + 1
    assert result.seconds < budget + delay + 0.2
    assert len(result.searches) >= 2


def test_only_training_data_is_used(splits: Any, fakes: Any) -> None:
    fit_part, validation, test = splits
    fake = fakes({4: 0.1, 8: 0.2, 16: 0.1})
    scale(splits, fake)
    assert fake.fitted and fake.evaluated
    pattern = (fit_part != 0).astype(np.int8)
    for fitted in fake.fitted:
        assert ((fitted != 0).astype(np.int8) != pattern).nnz == 0  # exactly the fit part
    for train, held_out in fake.evaluated:
        assert (train != fit_part).nnz == 0 and (held_out != validation).nnz == 0
    for matrix in [*fake.fitted, *(m for pair in fake.evaluated for m in pair)]:
        assert matrix.multiply(test).nnz == 0  # no test cell ever seen


def test_real_models_report_every_size(splits: Any) -> None:
    fit_part, validation, _ = splits
    result = scale(splits, None, factors=2, max_factors=8, space={"iterations": 3}, random_state=2)
    sizes = [s.factors for s in result.searches]
    assert sizes[0] == 2 and sizes == [2 * 2**i for i in range(len(sizes))]
    assert [row["factors"] for row in result.curve] == sizes
    assert {row["factors"] for row in result.trials} == set(sizes)
    assert len(result.trials) == sum(len(s.trials) for s in result.searches)
    table = result.to_markdown().splitlines()
    assert len(table) == 2 + len(sizes) and "| factors | ndcg@20 |" in table[0]
    elapsed = [row["elapsed"] for row in result.curve]
    assert elapsed == sorted(elapsed)
    assert elapsed[-1] == pytest.approx(sum(s.seconds for s in result.searches))
    model = result.make_model(num_threads=1)
    assert isinstance(model, AlternatingLeastSquares) and model.factors == result.factors
    model.fit(result.transform(fit_part), show_progress=False)
    metrics = ranking_metrics_at_k(model, fit_part, validation, K=20, show_progress=False)
    assert metrics["ndcg"] == pytest.approx(result.best_score, rel=1e-6)


# ---------------------------------------------------------------------------------------------
# solver settings in the space


def test_solver_settings_are_searched_and_passed(splits: Any, fakes: Any) -> None:
    fake = fakes({6: 0.1})
    space = {"solver": Choice(("cg", "block")), "block_size": IntRange(1, 3), "block_sweeps": 2}
    result = search(
        splits[0], splits[1], factors=6, space=space, max_trials=12, budget_seconds=None,
        random_state=0, show_progress=False, model=fake,
    )  # fmt: skip
    assert {built["solver"] for built in fake.built} == {"cg", "block"}
    assert {built["block_size"] for built in fake.built} == {1, 2, 3}
    assert {built["block_sweeps"] for built in fake.built} == {2}
    assert {key: result.params[key] for key in ("solver", "block_size", "block_sweeps")} == {
        key: result.best[key] for key in ("solver", "block_size", "block_sweeps")
    }


def test_block_solver_model_is_built(splits: Any) -> None:
    result = search(
        splits[0], splits[1], factors=4, space={"solver": "block", "block_size": 2,
        "iterations": 2}, max_trials=1, budget_seconds=None, random_state=0,
        show_progress=False, num_threads=1,
    )  # fmt: skip
    model = result.make_model()
    assert (model.solver, model.block_size, model.factors) == ("block", 2, 4)


@pytest.mark.parametrize(
    ("space", "error", "fragments"),
    [
        ({"solver": "lu"}, ValueError, ("solver", "'lu'")),
        ({"solver": Choice(("cg", "qr"))}, ValueError, ("solver", "'qr'")),
        ({"block_size": 0}, ValueError, ("block_size", "0")),
        ({"block_sweeps": Uniform(1, 3)}, TypeError, ("block_sweeps",)),
        ({"block_size": 2.5}, TypeError, ("block_size", "2.5")),
    ],
)
def test_bad_solver_space(
    splits: Any, space: dict[str, Any], error: type[Exception], fragments: tuple[str, ...]
) -> None:
    with pytest.raises(error) as caught:
        search(splits[0], splits[1], space=space, max_trials=1, show_progress=False)
    for fragment in fragments:
        assert fragment in str(caught.value), str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "error", "fragments"),
    [
        ({"factors": 8, "max_factors": 4}, ValueError, ("max_factors", "4")),
        ({"trials_per_size": 0}, ValueError, ("trials_per_size", "0")),
        ({"search_width": 1.0}, ValueError, ("search_width", "1.0")),
        ({"search_width": "2"}, TypeError, ("search_width", "'2'")),
        ({"min_improvement": -0.1}, ValueError, ("min_improvement", "-0.1")),
        ({"budget_seconds": 0}, ValueError, ("budget_seconds", "0")),
        ({"budget_seconds": None, "max_trials": None}, ValueError, ("budget_seconds",)),
        ({"metric": "hits"}, ValueError, ("metric", "'hits'")),
        ({"space": {"lambda": 1.0}}, ValueError, ("space", "'lambda'")),
        ({"space": [1]}, TypeError, ("space", "list")),
        ({"random_state": "x"}, TypeError, ("random_state", "'x'")),
    ],
)
def test_bad_arguments(
    splits: Any, kwargs: dict[str, Any], error: type[Exception], fragments: tuple[str, ...]
) -> None:
    with pytest.raises(error) as caught:
        scale(splits, None, **kwargs)
    for fragment in fragments:
        assert fragment in str(caught.value), str(caught.value)


def test_fixed_penalty_is_not_retuned(splits: Any, fakes: Any) -> None:
    fake = fakes({4: 0.1, 8: 0.2, 16: 0.1})
    result = scale(splits, fake, space={"regularization": 0.5, "unobserved_weight": 0.01})
    assert {row["row_penalty"] for row in result.trials} == {0.5}
    assert {row["unobserved_weight"] for row in result.trials} == {0.01}


# ---------------------------------------------------------------------------------------------
# command line


@pytest.fixture(scope="module")
def log_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_play_log(tmp_path_factory.mktemp("scale") / "plays.tsv")


def test_cli_double_factors_round_trip(log_file: Path, tmp_path: Path) -> None:
    settings = tmp_path / "best.json"
    result = ials(
        "tune", str(log_file), "--weight-col", "plays", "--double-factors", "--factors", "2",
        "--max-factors", "8", "--trials-per-size", "2", "--trials", "6", "--k", "5",
        "--solver", "block", "--block-size", "2", "--json", "--quiet", "-o", str(settings),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    sizes = [row["factors"] for row in report["curve"]]
    assert sizes[0] == 2 and sizes == [2 * 2**i for i in range(len(sizes))] and sizes[-1] <= 8
    chosen = [row for row in report["curve"] if row["chosen"]]
    assert len(chosen) == 1 and chosen[0]["factors"] == report["factors"]
    assert report["best_score"] == max(row["score"] for row in report["curve"])
    assert {row["factors"] for row in report["trials"]} == set(sizes)
    written = json.loads(settings.read_text(encoding="utf-8"))
    assert written["factors"] == report["factors"]
    assert (written["solver"], written["block_size"]) == ("block", 2)
    assert written["regularization_exponent"] == 1.0
    model_path = tmp_path / "model"
    fitted = ials(
        "fit", str(log_file), "--weight-col", "plays", "--params", str(settings),
        "-o", str(model_path), "--quiet",
    )  # fmt: skip
    assert fitted.returncode == 0, fitted.stderr
    model = Recommender.load(str(model_path) + ".npz").model
    assert model.factors == report["factors"]
    assert (model.solver, model.block_size) == ("block", 2)
    assert model.regularization == pytest.approx(written["regularization"])


def test_cli_text_report(log_file: Path) -> None:
    result = ials(
        "tune", str(log_file), "--double-factors", "--factors", "2", "--max-factors", "4",
        "--trials-per-size", "1", "--k", "5", "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "doubling factors from 2" in result.stdout
    assert "| factors | ndcg@5 |" in result.stdout
    assert "AlternatingLeastSquares(factors=" in result.stdout


def test_cli_scaling_flags_need_double_factors(log_file: Path) -> None:
    result = ials("tune", str(log_file), "--max-factors", "8", "--trials", "1")
    assert result.returncode == 2
    assert "--max-factors" in result.stderr and "--double-factors" in result.stderr
