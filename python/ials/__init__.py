"""ials: implicit-feedback ALS recommendations with a parallel Rust core.

``ials.AlternatingLeastSquares`` is a drop-in for ``implicit.als.AlternatingLeastSquares``.
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
