"""ials: implicit-feedback ALS recommendations with a parallel Rust core.

``ials.AlternatingLeastSquares`` is a drop-in for ``implicit.als.AlternatingLeastSquares``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from . import confidence, datasets
from ._core import simd_level
from ._validation import ParameterWarning
from .als import AlternatingLeastSquares
from .solver import calculate_loss, gram, solve_rows

try:
    __version__ = version("ials")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "AlternatingLeastSquares",
    "ParameterWarning",
    "__version__",
    "calculate_loss",
    "confidence",
    "datasets",
    "gram",
    "simd_level",
    "solve_rows",
]
