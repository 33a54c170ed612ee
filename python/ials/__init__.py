"""ials: implicit-feedback ALS recommendations with a parallel Rust core.

``ials.AlternatingLeastSquares`` replaces ``implicit.als.AlternatingLeastSquares`` (implicit
0.7.3): code written for implicit runs with ``implicit`` changed to ``ials`` in its imports
(``ials.als``, ``ials.evaluation``, ``ials.nearest_neighbours``, ``ials.utils``), apart from the
differences the README lists.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from . import (
    callbacks,
    confidence,
    datasets,
    evaluation,
    nearest_neighbours,
    splits,
    tune,
    utils,
)
from ._native import simd_level
from ._validation import ParameterWarning
from .als import AlternatingLeastSquares
from .callbacks import EarlyStopping
from .interactions import Interactions
from .recommender import Confidence, Recommender
from .solver import calculate_loss, gram, solve_rows

try:
    __version__ = version("ials")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "AlternatingLeastSquares",
    "Confidence",
    "EarlyStopping",
    "Interactions",
    "ParameterWarning",
    "Recommender",
    "__version__",
    "calculate_loss",
    "callbacks",
    "confidence",
    "datasets",
    "evaluation",
    "gram",
    "nearest_neighbours",
    "simd_level",
    "solve_rows",
    "splits",
    "tune",
    "utils",
]
