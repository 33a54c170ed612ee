"""The seam to the Rust core: the only module that imports :mod:`ials._core`.

Everything crossing into Rust goes through these names, typed by ``_core.pyi``, so mypy checks
every call at the seam. Arguments must already be validated and normalised (see
:mod:`ials._validation`); the core re-checks the invariants it relies on.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import numpy.typing as npt

from . import _core

# The seam passes on every name the extension exports (listed once, in its stub's __all__).
from ._core import *  # noqa: F403
from ._core import gram_blocks, gram_sum

_F = TypeVar("_F", np.float32, np.float64)

__all__ = ["gram"]
__all__ += _core.__all__


def gram(y: npt.NDArray[_F], num_threads: int) -> npt.NDArray[np.float64]:
    """``y.T @ y`` in float64: the Gram matrices of ``y``'s blocks of ``GRAM_BLOCK_ROWS`` rows,
    added in block order (bitwise what the core's solvers use, for any thread count)."""
    return gram_sum(gram_blocks(y, num_threads))
