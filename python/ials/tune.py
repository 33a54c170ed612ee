"""Hyperparameter search on a validation split: random search or successive halving.

::

    from ials.splits import per_user_split
    from ials.tune import search

    fit_part, validation = per_user_split(train, 0.2, random_state=0)  # never the test set
    result = search(fit_part, validation, factors=64, budget_seconds=600, random_state=0)
    print(result.to_markdown(limit=10))
    model = result.make_model()                  # AlternatingLeastSquares with the best settings
    model.fit(result.transform(train))           # refit on all of train, then evaluate on test

:func:`search` only ever sees the two matrices it is given: every model is fitted on ``train``
and ranked on ``validation`` (``train``'s items excluded from each user's ranking), so carving
``validation`` out of the training data keeps the test set untouched until the end.

What is searched (the *space*, a dict from name to a distribution or a fixed value) are the
settings that do not depend on the number of factors, which stays fixed (``factors``):

``regularization``
    The L2 penalty *of a row with the average number of interactions*: with
    ``regularization_exponent`` nu > 0 the model's ``regularization`` is this value divided by
    ``(nnz / n_users + unobserved_weight * n_items) ** nu``, so that one range serves every nu
    (with nu = 0 it is the model's value). Trials record both (``row_penalty`` and
    ``regularization``).
``regularization_exponent``
    nu, the frequency scaling of the penalty (Rendle et al., RecSys 2022).
``unobserved_weight``
    alpha0, the confidence of every cell that is not stored.
``confidence`` and ``alpha``
    ``"raw"`` fits the data as it is with the model's ``alpha``; ``"linear"`` and ``"log"`` fit
    :func:`ials.confidence.linear` / :func:`ials.confidence.log` of the data (with ``alpha`` and,
    for log, ``eps``) with the model's alpha 1. ``alpha`` in the space is the confidence given to
    the *median stored value* m (above the 1 that linear and log add): the ``alpha`` applied is
    this value divided by m for raw and linear, by ``log(1 + m / eps)`` for log, so that one range
    serves play counts and binary data alike (on binary data m = 1 and raw is unchanged). Trials
    record both (``median_confidence`` and ``alpha``).
``iterations``
    ALS sweeps; with ``method="halving"`` it is the resource that successive halving allocates
    instead of a sampled setting.

plus ``eps`` (of the log transform, 1 unless set), ``cg_steps``, the row solver's ``solver``
(None, ``"cg"``, ``"cholesky"`` or ``"block"``: a fixed value or a :class:`Choice`),
``block_size`` and ``block_sweeps`` (integers or :class:`IntRange`), and, as fixed values only,
``use_cg`` and ``dtype``. A distribution is :class:`LogUniform`, :class:`Uniform`,
:class:`IntRange` or :class:`Choice`; a list or tuple is a :class:`Choice`; anything else is a
fixed value.

On binary data (every stored value equal), unless ``space`` sets ``confidence`` or ``alpha``,
the confidence transform is fixed to ``"raw"`` and ``alpha`` to 1: there they (nearly) only
rescale what ``unobserved_weight`` and ``regularization`` already cover. A partial ``space``
updates the default one (a key set to None removes it: the model's default applies and it is not
passed to the model at all, which is how a model class without that argument is tuned).

The same ``random_state`` gives the same sequence of settings and, as the models' seed is drawn
from it too, the same scores.

:func:`scale_dimension` scales the embedding as Rendle et al. (RecSys 2022) do: a search at a
starting number of factors (nu = 1 by default), then one per doubling, re-tuning the penalty and
the unobserved weight around the previous size's best, while the best validation score improves
and a total budget lasts; its :class:`ScalingResult` shows quality against dimension and time.
"""

from __future__ import annotations

import math
import numbers
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from ._validation import check_int, check_random_state
from .evaluation import METRICS, metric_label
from .solver import SOLVERS

__all__ = [
    "DEFAULT_SPACE",
    "SCALING_SPACE",
    "Choice",
    "IntRange",
    "LogUniform",
    "ScalingResult",
    "TuneResult",
    "Uniform",
    "scale_dimension",
    "search",
]

CONFIDENCES = ("raw", "linear", "log")
"""The confidence transforms a trial may apply to the training data."""

# Sampled or fixed model settings, in the order they are drawn (so a seed gives the same trials
# whatever the order of the caller's dict).
_SEARCHED = (
    "confidence",
    "alpha",
    "unobserved_weight",
    "regularization_exponent",
    "regularization",
    "iterations",
)
# Drawn after the others, so that adding them kept the trials of a seed unchanged.
_FIXED_ONLY = ("eps", "cg_steps", "use_cg", "dtype", "solver", "block_size", "block_sweeps")
_KEYS = _SEARCHED + _FIXED_ONLY
_MODEL_KEYS = (
    "alpha",
    "unobserved_weight",
    "regularization_exponent",
    "regularization",
    "iterations",
    "cg_steps",
    "use_cg",
    "dtype",
    "solver",
    "block_size",
    "block_sweeps",
)


# ---------------------------------------------------------------------------------------------
# distributions


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return number


@dataclass(frozen=True)
class _Interval:
    """The bounds ``low <= high`` of a real distribution, both finite; a subclass draws."""

    low: float
    high: float

    # LogUniform draws between the logarithms of the bounds, which needs low > 0.
    _positive: ClassVar[bool] = False

    def __post_init__(self) -> None:
        kind = type(self).__name__
        low, high = _real(f"{kind} low", self.low), _real(f"{kind} high", self.high)
        if not low <= high or (self._positive and not low > 0.0):
            need = "0 < low <= high" if self._positive else "low <= high"
            raise ValueError(f"{kind} needs {need}, got low={low!r}, high={high!r}")


@dataclass(frozen=True)
class LogUniform(_Interval):
    """A real number whose logarithm is uniform between ``log(low)`` and ``log(high)``."""

    _positive: ClassVar[bool] = True

    def sample(self, rng: np.random.Generator) -> float:
        return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))


@dataclass(frozen=True)
class Uniform(_Interval):
    """A real number uniform between ``low`` and ``high``."""

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))


@dataclass(frozen=True)
class IntRange:
    """An integer uniform between ``low`` and ``high``, both included."""

    low: int
    high: int

    def __post_init__(self) -> None:
        for name, value in (("IntRange low", self.low), ("IntRange high", self.high)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"{name} must be an integer, got {value!r}")
        if not self.low <= self.high:
            raise ValueError(
                f"IntRange needs low <= high, got low={self.low!r}, high={self.high!r}"
            )

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.low, self.high + 1))


@dataclass(frozen=True)
class Choice:
    """One of ``options``, each with the same probability."""

    options: tuple[Any, ...]

    def __post_init__(self) -> None:
        if isinstance(self.options, str | bytes) or not isinstance(self.options, Sequence):
            raise TypeError(f"Choice options must be a sequence, got {self.options!r}")
        if len(self.options) == 0:
            raise ValueError("Choice needs at least one option")
        object.__setattr__(self, "options", tuple(self.options))

    def sample(self, rng: np.random.Generator) -> Any:
        return self.options[int(rng.integers(len(self.options)))]


DEFAULT_SPACE: dict[str, Any] = {
    "confidence": Choice(CONFIDENCES),
    "alpha": LogUniform(0.1, 100.0),
    "unobserved_weight": LogUniform(1e-3, 1.0),
    "regularization_exponent": Uniform(0.0, 1.0),
    "regularization": LogUniform(1e-3, 10.0),
    "iterations": IntRange(8, 32),
}
"""The space searched when ``space`` is None (see the module docstring)."""


def _check_value(name: str, value: Any) -> None:
    """Checks one fixed value or one distribution's bounds against what the model accepts."""
    if name == "confidence":
        options = value.options if isinstance(value, Choice) else (value,)
        for option in options:
            if option not in CONFIDENCES:
                raise ValueError(
                    f"space['confidence'] must be among {', '.join(CONFIDENCES)}, got {option!r}"
                )
        return
    if name == "solver":
        for option in value.options if isinstance(value, Choice) else (value,):
            if option is not None and option not in SOLVERS:
                raise ValueError(
                    f"space['solver'] must be None or among {', '.join(SOLVERS)}, got {option!r}"
                )
        return
    if name in ("use_cg", "dtype"):
        if isinstance(value, LogUniform | Uniform | IntRange | Choice):
            raise TypeError(f"space[{name!r}] must be a fixed value, got {value!r}")
        return
    bounds: tuple[Any, ...]
    if isinstance(value, LogUniform | Uniform | IntRange):
        bounds = (value.low, value.high)
    elif isinstance(value, Choice):
        bounds = value.options
    else:
        bounds = (value,)
    if name in ("iterations", "cg_steps", "block_size", "block_sweeps"):
        if isinstance(value, LogUniform | Uniform):
            raise TypeError(f"space[{name!r}] must be an integer or an IntRange, got {value!r}")
        for bound in bounds:
            if isinstance(bound, bool) or not isinstance(bound, numbers.Integral):
                raise TypeError(f"space[{name!r}] must hold integers, got {bound!r}")
            if bound < 1:
                raise ValueError(f"space[{name!r}] must be >= 1, got {bound!r}")
        return
    # real settings: alpha, unobserved_weight, regularization_exponent, regularization, eps
    if isinstance(value, IntRange):
        raise TypeError(f"space[{name!r}] must be a real number or a real distribution")
    for bound in bounds:
        number = _real(f"space[{name!r}]", bound)
        if number < 0 or (name == "eps" and number == 0):
            relation = "> 0" if name == "eps" else ">= 0"
            raise ValueError(f"space[{name!r}] must be {relation}, got {bound!r}")


def _resolve_space(space: Any, binary: bool) -> dict[str, Any]:
    if space is not None and not isinstance(space, Mapping):
        raise TypeError(f"space must be a dict of settings, got {type(space).__name__}")
    resolved = dict(DEFAULT_SPACE)
    given = space or {}
    if binary and "confidence" not in given and "alpha" not in given:
        resolved["confidence"] = "raw"
        resolved["alpha"] = 1.0
    for name, value in given.items():
        if name == "factors":
            raise ValueError("space must not hold 'factors': it is the factors argument")
        if name not in _KEYS:
            raise ValueError(f"space holds an unknown setting {name!r}; known: {', '.join(_KEYS)}")
        if value is None:
            if name in ("confidence", "iterations"):
                raise ValueError(f"space[{name!r}] cannot be None")
            resolved.pop(name, None)
            continue
        if isinstance(value, list | tuple):
            value = Choice(tuple(value))
        resolved[name] = value
    for name, value in resolved.items():
        _check_value(name, value)
    return resolved


def _draw(space: Mapping[str, Any], rng: np.random.Generator, skip: str | None) -> dict[str, Any]:
    """One setting of every key of ``space``, in a fixed order."""
    settings: dict[str, Any] = {}
    for name in _KEYS:
        if name not in space or name == skip:
            continue
        value = space[name]
        if isinstance(value, LogUniform | Uniform | IntRange | Choice):
            value = value.sample(rng)
        settings[name] = value
    if settings.get("confidence") != "log":
        settings.pop("eps", None)
    elif "eps" not in settings:
        settings["eps"] = 1.0
    return settings


# ---------------------------------------------------------------------------------------------
# the result


_PARAMETER_COLUMNS = (
    "confidence",
    "median_confidence",
    "alpha",
    "eps",
    "row_penalty",
    "regularization",
    "regularization_exponent",
    "unobserved_weight",
    "iterations",
    "solver",
    "block_size",
    "block_sweeps",
)


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        number = float(value)
        if number != 0 and (abs(number) < 1e-3 or abs(number) >= 1e4):
            return f"{number:.3g}"
        return f"{number:.4g}"
    return str(value)


def _model_params(row: Mapping[str, Any]) -> dict[str, Any]:
    params = {name: row[name] for name in _MODEL_KEYS if name in row}
    if row.get("confidence", "raw") != "raw":
        params["alpha"] = 1.0  # the transform carries alpha
    return params


def _transform(user_items: Any, confidence: str, alpha: float, eps: float) -> Any:
    from . import confidence as transforms

    if confidence == "linear":
        return transforms.linear(user_items, alpha)
    if confidence == "log":
        return transforms.log(user_items, alpha, eps)
    return user_items


@dataclass
class TuneResult:
    """What :func:`search` found.

    Attributes
    ----------
    trials : list of dict
        One row per evaluated setting, in order: ``trial`` (the setting's number), ``rung``
        (successive halving: 0 for the first evaluation of a setting; always 0 for random
        search), the settings (``confidence``, ``median_confidence`` (the sampled alpha),
        ``alpha`` (the transform's or model's), ``eps`` for log, ``row_penalty`` (the sampled
        regularization), ``regularization`` (the model's),
        ``regularization_exponent``, ``unobserved_weight``, ``iterations`` (sweeps trained so
        far), fixed extras), ``score`` (the selection metric), every metric of
        :func:`ials.evaluation.ranking_metrics_at_k` (NaN when the model diverged), and
        ``seconds`` (fit and evaluation of this row).
    best : dict
        The row with the best score (the highest, or the lowest for ``"epr"``).
    metric, K, factors, method
        What was searched and how.
    seconds : float
        Wall time of the whole search.
    stopped : str
        Why it ended: ``"max_trials"``, ``"budget"`` or ``"space"`` (nothing left to try: a
        space without any distribution has one setting).
    random_state : int
        The seed of every trial's initial factors (drawn from the search's ``random_state``):
        :meth:`make_model` uses it, so refitting :meth:`transform` of the same training data
        reproduces the best trial exactly.
    """

    trials: list[dict[str, Any]]
    best: dict[str, Any]
    metric: str
    K: int
    factors: int
    method: str
    seconds: float
    stopped: str
    random_state: int
    model_factory: Callable[..., Any] | None = field(default=None, repr=False)

    @property
    def best_score(self) -> float:
        return float(self.best["score"])

    @property
    def params(self) -> dict[str, Any]:
        """The best model settings: keyword arguments of ``AlternatingLeastSquares`` (without
        ``factors``). Fit them on :meth:`transform` of the data."""
        return _model_params(self.best)

    @property
    def confidence(self) -> str:
        """The best confidence transform: ``"raw"``, ``"linear"`` or ``"log"``."""
        return str(self.best.get("confidence", "raw"))

    def transform(self, user_items: Any) -> Any:
        """``user_items`` with the best confidence transform applied (itself for ``"raw"``)."""
        return _transform(
            user_items,
            self.confidence,
            float(self.best.get("alpha", 1.0)),
            float(self.best.get("eps", 1.0)),
        )

    def make_model(self, factors: int | None = None, **overrides: Any) -> Any:
        """A new, unfitted model with the best settings (by default of the class searched, with
        the number of factors and the seed of the search); ``overrides`` replace or add
        constructor arguments."""
        arguments: dict[str, Any] = {
            "factors": self.factors if factors is None else factors,
            "random_state": self.random_state,
        }
        arguments.update(self.params)
        arguments.update(overrides)
        if self.model_factory is not None:
            return self.model_factory(**arguments)
        from .als import AlternatingLeastSquares

        return AlternatingLeastSquares(**arguments)

    def to_markdown(
        self,
        columns: Sequence[str] | None = None,
        sort: bool = True,
        limit: int | None = None,
    ) -> str:
        """The trials as a markdown table, best first when ``sort`` (otherwise in order),
        ``limit`` rows at most. The default columns are the trial, rung (halving), the settings,
        the selection metric, recall and seconds."""
        label = metric_label(self.metric, self.K)
        if columns is None:
            present = {key for row in self.trials for key in row}
            chosen = ["trial"] + (["rung"] if self.method == "halving" else [])
            chosen += [name for name in _PARAMETER_COLUMNS if name in present]
            chosen += ["score"] + (["recall"] if self.metric != "recall" else []) + ["seconds"]
        else:
            chosen = list(columns)
        rows = list(self.trials)
        if sort:
            sign = 1.0 if METRICS[self.metric] else -1.0
            rows.sort(
                key=lambda row: -sign * row["score"] if math.isfinite(row["score"]) else 1e300
            )
        if limit is not None:
            rows = rows[: max(int(limit), 0)]
        names = [label if name == "score" else name for name in chosen]
        lines = [
            "| " + " | ".join(names) + " |",
            "|" + "|".join("---" for _ in names) + "|",
        ]
        for row in rows:
            lines.append("| " + " | ".join(_cell(row.get(name, "")) for name in chosen) + " |")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# the search


class _Reporter:
    """A tqdm bar over the evaluations (when installed and wanted) and one line per
    evaluation on stderr."""

    def __init__(self, enabled: bool, total: int | None, label: str) -> None:
        self.enabled = enabled
        self.label = label
        self.bar: Any = None
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                return
            self.bar = tqdm(total=total, desc="tune", file=sys.stderr)

    def report(self, row: Mapping[str, Any], best: float) -> None:
        if not self.enabled:
            return
        settings = " ".join(
            f"{name}={_cell(row[name])}" for name in _PARAMETER_COLUMNS if name in row
        )
        line = (
            f"trial {row['trial']} rung {row['rung']}: {settings} -> "
            f"{self.label} {row['score']:.4f} ({row['seconds']:.1f} s)"
        )
        if self.bar is None:
            print(line, file=sys.stderr)
            return
        self.bar.write(line, file=sys.stderr)
        self.bar.set_postfix(best=f"{best:.4f}", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@dataclass
class _Candidate:
    """A setting being trained (kept between the rungs of successive halving)."""

    number: int
    settings: dict[str, Any]
    model: Any = None
    trained: int = 0


@dataclass(eq=False)
class _Search:
    """What one search trains on and ranks by, and its results so far."""

    train: sp.csr_matrix
    validation: sp.csr_matrix
    factors: int
    space: dict[str, Any]
    metric: str
    K: int
    num_threads: int
    model_seed: int
    model_factory: Callable[..., Any] | None
    budget_seconds: float | None
    reporter: _Reporter
    start: float = field(init=False, default_factory=time.perf_counter)
    rows: list[dict[str, Any]] = field(init=False, default_factory=list)
    best_score: float = field(init=False, default=-math.inf)  # signed: higher is better
    sign: float = field(init=False)
    mean_row: float = field(init=False)
    median: float = field(init=False)

    def __post_init__(self) -> None:
        self.sign = 1.0 if METRICS[self.metric] else -1.0
        self.mean_row = self.train.nnz / max(self.train.shape[0], 1)
        positive = self.train.data[self.train.data > 0]
        self.median = float(np.median(positive)) if positive.size else 1.0

    def out_of_time(self) -> bool:
        if self.budget_seconds is None:
            return False
        return time.perf_counter() - self.start >= self.budget_seconds

    def prepare(self, settings: dict[str, Any]) -> dict[str, Any]:
        """The setting with the model's alpha and regularization derived from the median
        confidence and the row penalty."""
        prepared = dict(settings)
        if "alpha" in prepared:
            scale = float(prepared["alpha"])
            if prepared.get("confidence", "raw") == "log":
                unit = math.log1p(self.median / float(prepared.get("eps", 1.0)))
            else:
                unit = self.median
            prepared["median_confidence"] = scale
            prepared["alpha"] = scale / unit
        if "regularization" in prepared:
            nu = float(prepared.get("regularization_exponent", 0.0))
            alpha0 = float(prepared.get("unobserved_weight", 1.0))
            weight = self.mean_row + alpha0 * self.train.shape[1]
            penalty = float(prepared["regularization"])
            prepared["row_penalty"] = penalty
            prepared["regularization"] = penalty / weight**nu if nu else penalty
        return prepared

    def new_model(self, params: dict[str, Any]) -> Any:
        arguments: dict[str, Any] = {
            "factors": self.factors,
            "random_state": self.model_seed,
            "num_threads": self.num_threads,
        }
        arguments.update(params)
        if self.model_factory is not None:
            return self.model_factory(**arguments)
        from .als import AlternatingLeastSquares

        return AlternatingLeastSquares(**arguments)

    def train_to(self, candidate: _Candidate, iterations: int, rung: int) -> dict[str, Any]:
        """Trains ``candidate`` up to ``iterations`` sweeps (continuing from where it is),
        evaluates it on the validation set and records the row."""
        from .evaluation import ranking_metrics_at_k

        started = time.perf_counter()
        prepared = self.prepare(candidate.settings)
        params = _model_params(prepared)
        params["iterations"] = iterations - candidate.trained
        if candidate.model is None:
            candidate.model = self.new_model(params)
        else:
            candidate.model.iterations = params["iterations"]
        data = _transform(
            self.train,
            str(prepared.get("confidence", "raw")),
            float(prepared.get("alpha", 1.0)),
            float(prepared.get("eps", 1.0)),
        )
        if params["iterations"] > 0:
            candidate.model.fit(data, show_progress=False)
        candidate.trained = iterations
        model = candidate.model
        finite = all(
            isinstance(f, np.ndarray) and bool(np.isfinite(f).all())
            for f in (model.user_factors, model.item_factors)
        )
        if finite:
            metrics: dict[str, Any] = ranking_metrics_at_k(
                model,
                self.train,
                self.validation,
                K=self.K,
                show_progress=False,
                num_threads=self.num_threads,
            )
        else:
            metrics = {name: math.nan for name in METRICS}
        row: dict[str, Any] = {"trial": candidate.number, "rung": rung}
        row.update(prepared)
        row["iterations"] = iterations
        row["score"] = float(metrics[self.metric])
        row.update(metrics)
        row["seconds"] = time.perf_counter() - started
        self.rows.append(row)
        if math.isfinite(row["score"]):
            self.best_score = max(self.best_score, self.sign * row["score"])
        self.reporter.report(row, self.sign * self.best_score)
        return row

    def signed(self, row: Mapping[str, Any]) -> float:
        score = float(row["score"])
        return self.sign * score if math.isfinite(score) else -math.inf


def _has_distribution(space: Mapping[str, Any], skip: str | None) -> bool:
    return any(
        isinstance(value, LogUniform | Uniform | IntRange | Choice)
        and not (isinstance(value, Choice) and len(value.options) == 1)
        for name, value in space.items()
        if name != skip
    )


def _stopped(search: _Search, number: int, max_trials: int | None, varied: bool) -> str | None:
    """Why the search ends before its trial ``number`` (None: it goes on)."""
    if max_trials is not None and number >= max_trials:
        return "max_trials"
    if number > 0 and search.out_of_time():
        return "budget"
    if number > 0 and not varied:
        return "space"
    return None


def _random(search: _Search, rng: np.random.Generator, max_trials: int | None) -> str:
    varied = _has_distribution(search.space, None)
    number = 0
    while (stopped := _stopped(search, number, max_trials, varied)) is None:
        settings = _draw(search.space, rng, None)
        candidate = _Candidate(number, settings)
        search.train_to(candidate, int(settings["iterations"]), 0)
        candidate.model = None  # free the factors
        number += 1
    return stopped


def _rungs(space: Mapping[str, Any], eta: int) -> list[int]:
    """Iterations of each rung: geometric with ratio ``eta`` up to the largest count."""
    value = space["iterations"]
    if isinstance(value, IntRange):
        low, high = value.low, value.high
    elif isinstance(value, Choice):
        low, high = min(value.options), max(value.options)
    else:
        low = high = int(value)
    steps = math.floor(math.log(high / low) / math.log(eta) + 1e-9) if high > low else 0
    rungs = sorted({max(low, round(high / eta ** (steps - i))) for i in range(steps + 1)})
    return [int(r) for r in rungs]


def _halving(search: _Search, rng: np.random.Generator, max_trials: int | None, eta: int) -> str:
    rungs = _rungs(search.space, eta)
    varied = _has_distribution(search.space, "iterations")
    bracket_size = eta ** len(rungs)
    number = 0
    while (stopped := _stopped(search, number, max_trials, varied)) is None:
        size = bracket_size if max_trials is None else min(bracket_size, max_trials - number)
        if not varied:
            size = 1
        candidates = [
            _Candidate(number + j, _draw(search.space, rng, "iterations")) for j in range(size)
        ]
        number += size
        for rung, iterations in enumerate(rungs):
            scored: list[tuple[float, int, _Candidate]] = []
            for candidate in candidates:
                if search.out_of_time() and search.rows:
                    return "budget"
                row = search.train_to(candidate, iterations, rung)
                scored.append((search.signed(row), -candidate.number, candidate))
            if rung + 1 == len(rungs):
                break
            keep = max(1, math.ceil(len(candidates) / eta))
            scored.sort(key=lambda entry: (entry[0], entry[1]), reverse=True)
            for _, _, dropped in scored[keep:]:
                dropped.model = None
            candidates = [candidate for _, _, candidate in scored[:keep]]
        for candidate in candidates:
            candidate.model = None
    return stopped


def _check_budget(budget_seconds: Any, max_trials: Any) -> tuple[float | None, int | None]:
    """The wall-time and trial budgets, checked: at least one of them ends the search."""
    if budget_seconds is not None:
        budget = _real("budget_seconds", budget_seconds)
        if budget <= 0:
            raise ValueError(f"budget_seconds must be > 0, got {budget_seconds!r}")
        budget_seconds = budget
    if max_trials is not None:
        max_trials = check_int("max_trials", max_trials, 1)
    if budget_seconds is None and max_trials is None:
        raise ValueError("budget_seconds and max_trials cannot both be None: the search must end")
    return budget_seconds, max_trials


def _generator(random_state: Any) -> np.random.Generator:
    rng = check_random_state(random_state)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"random_state must be None, an int or a numpy.random.Generator, got {random_state!r}"
        )
    return rng


def _binary(matrix: sp.csr_matrix) -> bool:
    """Whether every stored value is the same (where the confidence transform and alpha are not
    searched by default)."""
    values = matrix.data
    return values.size > 0 and bool(np.all(values == values[0]))


def _check_sparse(name: str, value: Any) -> sp.csr_matrix:
    from ._validation import as_csr

    if not sp.issparse(value):
        raise TypeError(f"{name} must be a scipy.sparse matrix, got {type(value).__name__}")
    if value.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got {value.ndim} dimensions")
    return as_csr(value, name, warn=False)


def search(
    train: Any,
    validation: Any,
    *,
    factors: int = 64,
    space: Mapping[str, Any] | None = None,
    budget_seconds: float | None = 600.0,
    max_trials: int | None = None,
    method: str = "random",
    K: int = 20,
    metric: str = "ndcg",
    random_state: Any = None,
    show_progress: bool = True,
    num_threads: int = 0,
    reduction_factor: int = 3,
    model: Callable[..., Any] | None = None,
) -> TuneResult:
    """Searches the settings of ``AlternatingLeastSquares(factors=factors)`` that rank
    ``validation`` best after training on ``train`` (see the module docstring).

    Parameters
    ----------
    train : scipy.sparse matrix, users x items
        What every model is fitted on (raw values: the confidence transform is searched).
    validation : scipy.sparse matrix, same shape
        Held-out interactions, carved from the training data (never the test set).
    factors : int
        Number of latent factors, fixed during the search.
    space : dict or None
        Settings to search (see the module docstring); None for :data:`DEFAULT_SPACE`.
    budget_seconds : float > 0 or None
        No new evaluation starts once this much wall time has passed (the first always runs;
        one that has started runs to its end).
    max_trials : int >= 1 or None
        At most this many settings are tried (random search: trials; halving: settings entering
        the first rung). ``budget_seconds`` and ``max_trials`` cannot both be None.
    method : "random" or "halving"
        Random search (each trial trains its sampled ``iterations`` from scratch) or successive
        halving by iterations: brackets of ``reduction_factor ** n_rungs`` settings are trained
        for the first rung's iterations, the best ``1 / reduction_factor`` continue training
        (warm: from their factors) to the next rung's, up to the largest ``iterations`` of the
        space; brackets repeat until the budget or ``max_trials`` is reached.
    K : int >= 1
        Cut-off of the metrics.
    metric : str
        Selection metric of :func:`ials.evaluation.ranking_metrics_at_k`: "ndcg", "recall",
        "precision", "map", "auc" or "epr" (the last is better when lower).
    random_state : None, int >= 0 or numpy.random.Generator
        Seeds the settings drawn and the models' initial factors.
    show_progress : bool
        A progress bar (tqdm, when installed) and one line per evaluation on stderr.
    num_threads : int >= 0
        Threads of fitting and evaluation, 0 for every core.
    reduction_factor : int >= 2
        eta of successive halving.
    model : callable or None
        Builds the model from keyword arguments (``factors``, ``random_state``,
        ``num_threads`` and the space's model settings); None for
        ``ials.AlternatingLeastSquares``. Anything with ``fit(user_items, show_progress=...)``,
        ``iterations`` and ``user_factors`` / ``item_factors`` works (e.g. implicit's model, with
        a space that leaves out ``regularization_exponent`` and ``unobserved_weight``).

    Returns
    -------
    TuneResult
    """
    factors = check_int("factors", factors, 1)
    K = check_int("K", K, 1)
    num_threads = check_int("num_threads", num_threads, 0)
    eta = check_int("reduction_factor", reduction_factor, 2)
    if not isinstance(metric, str) or metric.lower() not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    metric = metric.lower()
    if method not in ("random", "halving"):
        raise ValueError(f"method must be 'random' or 'halving', got {method!r}")
    budget_seconds, max_trials = _check_budget(budget_seconds, max_trials)
    if model is not None and not callable(model):
        raise TypeError(f"model must be a callable that builds a model, got {model!r}")
    rng = _generator(random_state)

    train_csr = _check_sparse("train", train)
    validation_csr = _check_sparse("validation", validation)
    if train_csr.shape != validation_csr.shape:
        raise ValueError(
            f"train {train_csr.shape} and validation {validation_csr.shape} must have the same "
            "shape"
        )
    held_out = validation_csr - validation_csr.multiply(train_csr != 0)
    held_out.eliminate_zeros()
    if held_out.nnz == 0:
        raise ValueError("validation holds no interaction that is not also in train")
    values = train_csr.data
    resolved = _resolve_space(space, _binary(train_csr))
    transforms = resolved["confidence"]
    transforms = transforms.options if isinstance(transforms, Choice) else (transforms,)
    if bool((values < 0).any()) and any(option != "raw" for option in transforms):
        raise ValueError(
            "train holds negative values (explicit negative feedback): only space['confidence'] "
            "= 'raw' applies to them"
        )
    if "iterations" not in resolved:
        raise ValueError("space must hold 'iterations'")

    model_seed = int(rng.integers(2**31 - 1))
    label = metric_label(metric, K)
    total = max_trials if method == "random" else None
    reporter = _Reporter(bool(show_progress), total, label)
    runner = _Search(
        train_csr,
        validation_csr,
        factors,
        resolved,
        metric,
        K,
        num_threads,
        model_seed,
        model,
        budget_seconds,
        reporter,
    )
    try:
        if method == "random":
            stopped = _random(runner, rng, max_trials)
        else:
            stopped = _halving(runner, rng, max_trials, eta)
    finally:
        reporter.close()
    finite = [row for row in runner.rows if math.isfinite(row["score"])]
    if not finite:
        raise RuntimeError("every trial diverged (non-finite factors): narrow the space")
    best = max(finite, key=runner.signed)  # the first of equal scores
    return TuneResult(
        trials=runner.rows,
        best=dict(best),
        metric=metric,
        K=K,
        factors=factors,
        method=method,
        seconds=time.perf_counter() - runner.start,
        stopped=stopped,
        random_state=model_seed,
        model_factory=model,
    )


# ---------------------------------------------------------------------------------------------
# scaling the embedding


SCALING_SPACE: dict[str, Any] = {"regularization_exponent": 1.0, "iterations": 16}
"""What :func:`scale_dimension` changes in :data:`DEFAULT_SPACE` before the caller's ``space``:
the frequency-scaled penalty (nu = 1) and a fixed number of sweeps, as Rendle et al. (2022) do;
``regularization`` and ``unobserved_weight`` stay searched."""

# Re-tuned around the previous size's best at every doubling (the other settings stay fixed to
# it): the penalty and the unobserved weight are what moves with the dimension.
_RETUNED = ("regularization", "unobserved_weight")


@dataclass
class ScalingResult:
    """What :func:`scale_dimension` found: one :class:`TuneResult` per size tried.

    Attributes
    ----------
    searches : list of TuneResult
        The search at each size, in order (``factors`` doubling from the first).
    chosen : TuneResult
        The search of the size whose best score is the best of all (the first of equal scores):
        :attr:`params`, :attr:`factors`, :meth:`make_model` and :meth:`transform` are its.
    stopped : str
        Why the doubling ended: ``"no_improvement"`` (the last size did not beat the best by
        more than ``min_improvement``), ``"max_factors"`` (the next size would exceed it),
        ``"budget"`` or ``"max_trials"`` (the total budget is spent).
    seconds : float
        Wall time of all the searches.
    metric, K
        The selection metric and its cut-off.
    """

    searches: list[TuneResult]
    chosen: TuneResult
    stopped: str
    seconds: float
    metric: str
    K: int

    @property
    def factors(self) -> int:
        return self.chosen.factors

    @property
    def best(self) -> dict[str, Any]:
        return self.chosen.best

    @property
    def best_score(self) -> float:
        return self.chosen.best_score

    @property
    def params(self) -> dict[str, Any]:
        """The chosen size's best model settings (without ``factors``: see :attr:`factors`)."""
        return self.chosen.params

    @property
    def confidence(self) -> str:
        return self.chosen.confidence

    @property
    def random_state(self) -> int:
        return self.chosen.random_state

    @property
    def trials(self) -> list[dict[str, Any]]:
        """Every evaluation of every size, each row with its ``factors``."""
        return [
            {"factors": result.factors, **row} for result in self.searches for row in result.trials
        ]

    def transform(self, user_items: Any) -> Any:
        return self.chosen.transform(user_items)

    def make_model(self, factors: int | None = None, **overrides: Any) -> Any:
        return self.chosen.make_model(factors, **overrides)

    @property
    def curve(self) -> list[dict[str, Any]]:
        """Validation quality against dimension and time: per size tried, ``factors``, the best
        row's settings and metrics, ``trials`` (settings tried), ``evaluations``, ``seconds``
        (that size's search), ``elapsed`` (since the start, at the end of that size) and
        ``chosen``."""
        rows: list[dict[str, Any]] = []
        elapsed = 0.0
        for result in self.searches:
            elapsed += result.seconds
            row: dict[str, Any] = {"factors": result.factors}
            row.update({k: v for k, v in result.best.items() if k not in ("trial", "rung")})
            row["trials"] = len({trial["trial"] for trial in result.trials})
            row["evaluations"] = len(result.trials)
            row["seconds"] = result.seconds
            row["elapsed"] = elapsed
            row["chosen"] = result is self.chosen
            rows.append(row)
        return rows

    def to_markdown(self) -> str:
        """:attr:`curve` as a markdown table, one row per size in order."""
        label = metric_label(self.metric, self.K)
        rows = self.curve
        present = {key for row in rows for key in row}
        columns = ["factors", "score"] + (["recall"] if self.metric != "recall" else [])
        columns += ["row_penalty", "regularization", "unobserved_weight"]
        columns = [name for name in columns if name in present]
        columns += ["trials", "seconds", "elapsed", "chosen"]
        names = [label if name == "score" else name for name in columns]
        lines = ["| " + " | ".join(names) + " |", "|" + "|".join("---" for _ in names) + "|"]
        for row in rows:
            lines.append("| " + " | ".join(_cell(row.get(name, "")) for name in columns) + " |")
        return "\n".join(lines)


def _around(best: Mapping[str, Any], space: Mapping[str, Any], width: float) -> dict[str, Any]:
    """The space of the next size: the re-tuned settings searched log-uniformly within a factor
    ``width`` of ``best``'s (when ``space`` searched them), every other one fixed to ``best``'s."""
    sampled = {"regularization": "row_penalty", "alpha": "median_confidence"}
    narrowed: dict[str, Any] = {}
    for name in _KEYS:
        if name not in space:
            narrowed[name] = None  # stays out of the model's arguments
            continue
        value = best.get(sampled.get(name, name), space[name])  # eps: only drawn for log
        searched = isinstance(space[name], LogUniform | Uniform | Choice)
        if name in _RETUNED and searched and value > 0:
            narrowed[name] = LogUniform(value / width, value * width)
        else:
            narrowed[name] = value
    return narrowed


def scale_dimension(
    train: Any,
    validation: Any,
    *,
    factors: int = 128,
    max_factors: int | None = None,
    space: Mapping[str, Any] | None = None,
    trials_per_size: int = 8,
    budget_seconds: float | None = 3600.0,
    max_trials: int | None = None,
    search_width: float = 4.0,
    min_improvement: float = 0.0,
    method: str = "random",
    K: int = 20,
    metric: str = "ndcg",
    random_state: Any = None,
    show_progress: bool = True,
    num_threads: int = 0,
    reduction_factor: int = 3,
    model: Callable[..., Any] | None = None,
) -> ScalingResult:
    """Rendle et al.'s protocol ("Revisiting the Performance of iALS on Item Recommendation
    Benchmarks", RecSys 2022): :func:`search` the settings at ``factors``, then double the
    factors while the best validation score improves, re-tuning the penalty and the unobserved
    weight at each size around the previous size's best (log-uniformly within a factor
    ``search_width``; every other setting stays the previous best's).

    Every model is fitted on ``train`` and ranked on ``validation`` only, as in :func:`search`.

    Parameters
    ----------
    train, validation : scipy.sparse matrices, users x items
        As in :func:`search` (validation carved from the training data, never the test set).
    factors : int >= 1
        The starting size.
    max_factors : int or None
        No size above it is tried (None: no limit but the budget and the scores).
    space : dict or None
        The settings searched at the starting size: :data:`DEFAULT_SPACE` updated with
        :data:`SCALING_SPACE` (nu = 1, 16 sweeps), then with ``space``.
    trials_per_size : int >= 1
        Settings tried at each size (``max_trials`` of each :func:`search`).
    budget_seconds : float > 0 or None
        Total wall time: no evaluation starts once it is spent (the first always runs).
    max_trials : int >= 1 or None
        Total settings tried over all sizes. ``budget_seconds`` and ``max_trials`` cannot both be
        None.
    search_width : float > 1
        The re-tuned settings are searched between the previous best / width and * width.
    min_improvement : float >= 0
        A size counts as better when its best score beats the best so far by more than this.
    method, K, metric, random_state, show_progress, num_threads, reduction_factor, model
        As in :func:`search`; ``random_state`` seeds every size's search.

    Returns
    -------
    ScalingResult
    """
    factors = check_int("factors", factors, 1)
    if max_factors is not None:
        max_factors = check_int("max_factors", max_factors, factors)
    trials_per_size = check_int("trials_per_size", trials_per_size, 1)
    width = _real("search_width", search_width)
    if not width > 1.0:
        raise ValueError(f"search_width must be > 1, got {search_width!r}")
    threshold = _real("min_improvement", min_improvement)
    if threshold < 0:
        raise ValueError(f"min_improvement must be >= 0, got {min_improvement!r}")
    budget_seconds, max_trials = _check_budget(budget_seconds, max_trials)
    if space is not None and not isinstance(space, Mapping):
        raise TypeError(f"space must be a dict of settings, got {type(space).__name__}")
    rng = _generator(random_state)
    if not isinstance(metric, str) or metric.lower() not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    sign = 1.0 if METRICS[metric.lower()] else -1.0

    given: dict[str, Any] = {**SCALING_SPACE, **(space or {})}
    # Resolved the way search resolves it, to know what the later sizes narrow or fix.
    resolved = _resolve_space(given, _binary(_check_sparse("train", train)))
    size_space = given
    start = time.perf_counter()
    searches: list[TuneResult] = []
    chosen: TuneResult | None = None
    size = factors
    tried = 0
    while True:
        remaining: float | None = None
        if budget_seconds is not None:
            remaining = max(budget_seconds - (time.perf_counter() - start), 1e-9)
        trials = trials_per_size if max_trials is None else min(trials_per_size, max_trials - tried)
        result = search(
            train,
            validation,
            factors=size,
            space=size_space,
            budget_seconds=remaining,
            max_trials=trials,
            method=method,
            K=K,
            metric=metric,
            random_state=int(rng.integers(2**31 - 1)),
            show_progress=show_progress,
            num_threads=num_threads,
            reduction_factor=reduction_factor,
            model=model,
        )
        searches.append(result)
        tried += len({row["trial"] for row in result.trials})
        if show_progress:
            print(
                f"factors {size}: best {metric_label(result.metric, result.K)} "
                f"{result.best_score:.4f} ({result.seconds:.1f} s)",
                file=sys.stderr,
            )
        improved = chosen is None or sign * (result.best_score - chosen.best_score) > threshold
        if improved:
            chosen = result
        if not improved:
            stopped = "no_improvement"
        elif max_factors is not None and 2 * size > max_factors:
            stopped = "max_factors"
        elif max_trials is not None and tried >= max_trials:
            stopped = "max_trials"
        elif budget_seconds is not None and time.perf_counter() - start >= budget_seconds:
            stopped = "budget"
        else:
            size_space = _around(result.best, resolved, width)
            size *= 2
            continue
        break
    assert chosen is not None  # the first size always improves on nothing
    return ScalingResult(
        searches=searches,
        chosen=chosen,
        stopped=stopped,
        seconds=time.perf_counter() - start,
        metric=metric.lower(),
        K=K,
    )
