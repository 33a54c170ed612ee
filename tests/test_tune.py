"""Tests of ``ials.tune.search`` and ``ials tune``: reproducibility, the bounds of the space, the
row-penalty formula, successive halving's bookkeeping, that only ``train`` is ever fitted, the
argument checks, and the command line end to end (in a subprocess)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from cli_run import ials, write_play_log
from ials import AlternatingLeastSquares
from ials.datasets import synthetic
from ials.evaluation import ranking_metrics_at_k
from ials.splits import per_user_split
from ials.tune import Choice, IntRange, LogUniform, Uniform, search

SETTINGS = (
    "confidence",
    "median_confidence",
    "alpha",
    "row_penalty",
    "regularization",
    "regularization_exponent",
    "unobserved_weight",
    "iterations",
)
SMALL_SPACE = {
    "confidence": Choice(("raw", "linear", "log")),
    "alpha": LogUniform(0.5, 20.0),
    "unobserved_weight": LogUniform(0.01, 1.0),
    "regularization_exponent": Uniform(0.0, 1.0),
    "regularization": LogUniform(0.05, 5.0),
    "iterations": IntRange(2, 6),
}


@pytest.fixture(scope="module")
def data() -> tuple[sp.csr_matrix, sp.csr_matrix]:
    matrix, _ = synthetic(n_users=300, n_items=120, random_state=3)
    return per_user_split(matrix, 0.2, random_state=0)


def run(data: tuple[sp.csr_matrix, sp.csr_matrix], **kwargs: Any) -> Any:
    arguments: dict[str, Any] = {
        "factors": 6,
        "space": SMALL_SPACE,
        "budget_seconds": None,
        "max_trials": 3,
        "random_state": 0,
        "show_progress": False,
        "num_threads": 1,
    }
    arguments.update(kwargs)
    return search(*data, **arguments)


def settings_of(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [tuple(row.get(name) for name in ("trial", "rung", *SETTINGS)) for row in rows]


# ---------------------------------------------------------------------------------------------
# reproducibility, bounds, bookkeeping


def test_same_seed_same_trials(data: Any) -> None:
    first, second = run(data, random_state=7), run(data, random_state=7)
    assert settings_of(first.trials) == settings_of(second.trials)
    assert [row["score"] for row in first.trials] == [row["score"] for row in second.trials]
    other = run(data, random_state=8)
    assert settings_of(other.trials) != settings_of(first.trials)


def test_settings_stay_in_the_space(data: Any) -> None:
    result = run(data, max_trials=8, random_state=1)
    assert len(result.trials) == 8
    for row in result.trials:
        assert row["confidence"] in ("raw", "linear", "log")
        assert 0.5 <= row["median_confidence"] <= 20.0
        assert 0.01 <= row["unobserved_weight"] <= 1.0
        assert 0.0 <= row["regularization_exponent"] <= 1.0
        assert 0.05 <= row["row_penalty"] <= 5.0
        assert 2 <= row["iterations"] <= 6 and isinstance(row["iterations"], int)
        assert ("eps" in row) == (row["confidence"] == "log")
    assert len({row["confidence"] for row in result.trials}) > 1  # it does vary


def test_row_penalty_and_median_confidence(data: Any) -> None:
    train, _ = data
    mean_row = train.nnz / train.shape[0]
    median = float(np.median(train.data))
    assert median > 1  # play counts: the scaling of alpha matters
    result = run(data, max_trials=9, random_state=2)
    for row in result.trials:
        weight = mean_row + row["unobserved_weight"] * train.shape[1]
        expected = row["row_penalty"] / weight ** row["regularization_exponent"]
        assert row["regularization"] == pytest.approx(expected, rel=1e-12)
        # the median stored value gets confidence median_confidence (above 1 for linear / log)
        if row["confidence"] == "log":
            given = row["alpha"] * math.log1p(median / row["eps"])
        else:
            given = row["alpha"] * median
        assert given == pytest.approx(row["median_confidence"], rel=1e-12)
    assert {row["confidence"] for row in result.trials} == {"raw", "linear", "log"}


def test_fixed_values_and_binary_data_defaults(data: Any) -> None:
    train, validation = data
    binary = (train != 0).astype(np.float32)
    result = search(
        binary,
        validation,
        factors=4,
        max_trials=3,
        budget_seconds=None,
        random_state=0,
        show_progress=False,
        space={"iterations": 3, "regularization_exponent": 0.0},
    )
    for row in result.trials:
        assert row["confidence"] == "raw" and row["alpha"] == 1.0  # binary: fixed by default
        assert row["median_confidence"] == 1.0
        assert row["iterations"] == 3
        assert row["regularization"] == row["row_penalty"]  # nu = 0: no scaling
    counts = run(data, space=None, max_trials=6, random_state=0)
    assert {row["confidence"] for row in counts.trials} != {"raw"}


def test_best_is_the_best_row(data: Any) -> None:
    result = run(data, max_trials=5)
    scores = [row["score"] for row in result.trials]
    assert result.best_score == max(scores)
    assert result.best in result.trials
    assert result.best["ndcg"] == result.best_score
    low = run(data, max_trials=5, metric="epr")
    assert low.best_score == min(row["epr"] for row in low.trials)
    table = result.to_markdown().splitlines()
    assert table[0].startswith("| trial |") and "ndcg@20" in table[0]
    assert len(table) == 2 + len(result.trials)
    assert table[2].startswith(f"| {result.best['trial']} |")  # sorted, best first
    assert len(result.to_markdown(limit=2).splitlines()) == 4


def test_max_trials_and_budget(data: Any) -> None:
    result = run(data, max_trials=4)
    assert [row["trial"] for row in result.trials] == [0, 1, 2, 3]
    assert result.stopped == "max_trials"
    # A budget already spent: only the first trial, which always runs.
    tiny = run(data, max_trials=None, budget_seconds=1e-9)
    assert len(tiny.trials) == 1 and tiny.stopped == "budget"
    # Nothing to vary: one setting.
    fixed = {name: value for name, value in SMALL_SPACE.items() if name != "confidence"}
    fixed.update(alpha=2.0, unobserved_weight=0.1, regularization_exponent=0.5)
    fixed.update(regularization=0.3, iterations=3)
    once = run(data, space={**fixed, "confidence": "linear"}, max_trials=5)
    assert len(once.trials) == 1 and once.stopped == "space"


def test_best_settings_refit_reproduce_the_score(data: Any) -> None:
    for method in ("random", "halving"):
        result = run(data, method=method, max_trials=5, random_state=4)
        model = result.make_model(num_threads=1)
        assert isinstance(model, AlternatingLeastSquares)
        assert model.factors == 6 and model.iterations == result.best["iterations"]
        if result.confidence != "raw":
            assert model.alpha == 1.0
        train, validation = data
        model.fit(result.transform(train), show_progress=False)
        metrics = ranking_metrics_at_k(model, train, validation, K=20, show_progress=False)
        assert metrics["ndcg"] == pytest.approx(result.best_score, rel=1e-6)


def test_successive_halving(data: Any) -> None:
    # iterations 2..18 with eta 3: rungs at 2, 6 and 18 sweeps, brackets of 27 settings.
    space = {**SMALL_SPACE, "iterations": IntRange(2, 18)}
    result = run(data, method="halving", space=space, max_trials=9, reduction_factor=3)
    rungs: dict[int, list[dict[str, Any]]] = {}
    for row in result.trials:
        rungs.setdefault(row["rung"], []).append(row)
    assert sorted(rungs) == [0, 1, 2]
    assert [len(rungs[r]) for r in (0, 1, 2)] == [9, 3, 1]
    assert {row["iterations"] for row in rungs[0]} == {2}
    assert {row["iterations"] for row in rungs[1]} == {6}
    assert {row["iterations"] for row in rungs[2]} == {18}
    assert len({row["trial"] for row in result.trials}) == 9  # max_trials counts settings
    best_first = sorted(rungs[0], key=lambda row: -row["score"])
    assert {row["trial"] for row in rungs[1]} == {row["trial"] for row in best_first[:3]}
    best_second = max(rungs[1], key=lambda row: row["score"])
    assert rungs[2][0]["trial"] == best_second["trial"]
    for row in rungs[1] + rungs[2]:  # a surviving setting keeps its sampled values
        first = next(r for r in rungs[0] if r["trial"] == row["trial"])
        assert all(row[name] == first[name] for name in SETTINGS if name != "iterations")


class Spy:
    """A model factory recording every constructor call and every matrix fitted."""

    def __init__(self) -> None:
        self.arguments: list[dict[str, Any]] = []
        self.fitted: list[sp.csr_matrix] = []

    def __call__(self, **arguments: Any) -> AlternatingLeastSquares:
        self.arguments.append(arguments)
        model = AlternatingLeastSquares(**arguments)
        original = model.fit

        def fit(user_items: Any, show_progress: bool = True, callback: Any = None) -> None:
            self.fitted.append(sp.csr_matrix(user_items, copy=True))
            original(user_items, show_progress=show_progress, callback=callback)

        model.fit = fit  # type: ignore[method-assign]
        return model


def test_only_train_is_fitted(data: Any) -> None:
    train, validation = data
    spy = Spy()
    run(data, model=spy, method="halving", max_trials=6)
    assert spy.fitted
    pattern = (train != 0).astype(np.int8)
    for fitted in spy.fitted:
        assert fitted.shape == train.shape
        assert ((fitted != 0).astype(np.int8) != pattern).nnz == 0  # exactly train's cells
        assert fitted.multiply(validation).nnz == 0  # no validation cell
    # A key set to None is not passed to the model at all.
    spy = Spy()
    run(data, model=spy, space={**SMALL_SPACE, "regularization_exponent": None}, max_trials=2)
    assert all("regularization_exponent" not in a for a in spy.arguments)
    assert all(a["factors"] == 6 and a["num_threads"] == 1 for a in spy.arguments)


@pytest.fixture
def implicit_als() -> Iterator[Any]:
    # implicit warns (RuntimeWarning) when its BLAS runs several threads: limit the BLAS
    # libraries after importing it, so that every one it loaded is limited.
    module = pytest.importorskip("implicit.cpu.als")
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        yield module


def test_implicit_model(data: Any, implicit_als: Any) -> None:
    space = {
        "confidence": Choice(("raw", "log")),
        "alpha": LogUniform(0.5, 20.0),
        "regularization": LogUniform(0.01, 1.0),
        "iterations": IntRange(2, 6),
        "regularization_exponent": None,
        "unobserved_weight": None,
    }
    result = run(data, model=implicit_als.AlternatingLeastSquares, space=space, max_trials=3)
    assert len(result.trials) == 3
    assert all("unobserved_weight" not in row for row in result.trials)
    assert all(0.0 <= row["ndcg"] <= 1.0 for row in result.trials)
    assert isinstance(result.make_model(), implicit_als.AlternatingLeastSquares)


# ---------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    ("kwargs", "error", "fragments"),
    [
        ({"factors": 0}, ValueError, ("factors", "0")),
        ({"factors": 2.5}, TypeError, ("factors", "2.5")),
        ({"K": 0}, ValueError, ("K", "0")),
        ({"metric": "hits"}, ValueError, ("metric", "'hits'")),
        ({"method": "grid"}, ValueError, ("method", "'grid'")),
        ({"budget_seconds": 0}, ValueError, ("budget_seconds", "0")),
        ({"budget_seconds": float("nan")}, ValueError, ("budget_seconds", "nan")),
        ({"budget_seconds": "10"}, TypeError, ("budget_seconds", "'10'")),
        ({"max_trials": 0}, ValueError, ("max_trials", "0")),
        (
            {"max_trials": None, "budget_seconds": None},
            ValueError,
            ("budget_seconds", "max_trials"),
        ),
        ({"num_threads": -1}, ValueError, ("num_threads", "-1")),
        ({"reduction_factor": 1}, ValueError, ("reduction_factor", "1")),
        ({"random_state": "seed"}, TypeError, ("random_state", "'seed'")),
        ({"random_state": -3}, ValueError, ("random_state", "-3")),
        ({"model": 42}, TypeError, ("model", "42")),
        ({"space": [("alpha", 1.0)]}, TypeError, ("space", "list")),
        ({"space": {"lambda": 1.0}}, ValueError, ("space", "'lambda'")),
        ({"space": {"factors": 32}}, ValueError, ("factors",)),
        ({"space": {"confidence": "sqrt"}}, ValueError, ("confidence", "'sqrt'")),
        ({"space": {"alpha": -1.0}}, ValueError, ("alpha", "-1.0")),
        ({"space": {"iterations": 0}}, ValueError, ("iterations", "0")),
        ({"space": {"iterations": Uniform(1, 5)}}, TypeError, ("iterations",)),
        ({"space": {"regularization": IntRange(1, 5)}}, TypeError, ("regularization",)),
        ({"space": {"iterations": None}}, ValueError, ("iterations", "None")),
        ({"space": {"use_cg": Choice((True, False))}}, TypeError, ("use_cg",)),
    ],
)
def test_bad_arguments(
    data: Any, kwargs: dict[str, Any], error: type[Exception], fragments: tuple[str, ...]
) -> None:
    with pytest.raises(error) as caught:
        run(data, **kwargs)
    for fragment in fragments:
        assert fragment in str(caught.value), str(caught.value)


def test_bad_distributions_and_matrices(data: Any) -> None:
    train, validation = data
    with pytest.raises(ValueError, match=r"LogUniform.*low=0\.0"):
        LogUniform(0.0, 1.0)
    with pytest.raises(ValueError, match=r"low=5.*high=1"):
        Uniform(5.0, 1.0)
    with pytest.raises(TypeError, match=r"IntRange low.*1.5"):
        IntRange(1.5, 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        Choice(())
    with pytest.raises(TypeError, match=r"train.*ndarray"):
        search(train.toarray(), validation, max_trials=1)
    with pytest.raises(TypeError, match=r"validation.*list"):
        search(train, [[1]], max_trials=1)
    with pytest.raises(ValueError, match=r"train \(300, 120\).*validation \(300, 119\)"):
        search(train, validation[:, :119], max_trials=1)
    with pytest.raises(ValueError, match="no interaction that is not also in train"):
        search(train, train, max_trials=1)
    negative = train.copy()
    negative.data[0] = -1.0
    with pytest.raises(ValueError, match="negative values"):
        search(negative, validation, max_trials=1)
    result = run((negative, validation), space={**SMALL_SPACE, "confidence": "raw"}, max_trials=1)
    assert result.confidence == "raw"


# ---------------------------------------------------------------------------------------------
# command line


@pytest.fixture(scope="module")
def log_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_play_log(tmp_path_factory.mktemp("tune") / "plays.tsv")


def test_cli_json(log_file: Path) -> None:
    result = ials(
        "tune", str(log_file), "--weight-col", "plays", "--trials", "3", "--factors", "4",
        "--k", "5", "--seed", "1", "--json", "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # --quiet
    report = json.loads(result.stdout)
    assert report["users"] == 60 and report["items"] == 30
    assert (
        report["train_interactions"] + report["validation_interactions"] == report["interactions"]
    )
    assert len(report["trials"]) == 3 and report["stopped"] == "max_trials"
    assert report["best_score"] == max(row["score"] for row in report["trials"])
    assert report["best"]["trial"] in {row["trial"] for row in report["trials"]}
    assert report["params"]["iterations"] == report["best"]["iterations"]
    again = json.loads(ials(
        "tune", str(log_file), "--weight-col", "plays", "--trials", "3", "--factors", "4",
        "--k", "5", "--seed", "1", "--json", "--quiet",
    ).stdout)  # fmt: skip
    strip = ("seconds",)
    for one, two in zip(report["trials"], again["trials"], strict=True):
        assert {k: v for k, v in one.items() if k not in strip} == {
            k: v for k, v in two.items() if k not in strip
        }


def test_cli_text_and_progress(log_file: Path) -> None:
    result = ials("tune", str(log_file), "--trials", "2", "--factors", "4", "--method", "halving")
    assert result.returncode == 0, result.stderr
    assert "| trial | rung |" in result.stdout
    assert "AlternatingLeastSquares(factors=4" in result.stdout
    assert "trial 0 rung 0:" in result.stderr  # one progress line per evaluation


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--trials", "3", "--weight-col", "count"), "count"),
        (("--trials", "3", "--user-col", "nobody"), "nobody"),
    ],
)
def test_cli_bad_input(log_file: Path, args: tuple[str, ...], fragment: str) -> None:
    result = ials("tune", str(log_file), *args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], result.stderr


@pytest.mark.parametrize(
    "args", [("--budget", "0"), ("--budget", "soon"), ("--trials", "0"), ("--metric", "hits")]
)
def test_cli_bad_arguments(log_file: Path, args: tuple[str, ...]) -> None:
    result = ials("tune", str(log_file), *args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert args[0] in result.stderr


def test_cli_missing_file(tmp_path: Path) -> None:
    result = ials("tune", str(tmp_path / "none.tsv"), "--trials", "1")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "none.tsv" in result.stderr
