"""The basis the factors are held in while CG trains them.

The model ``X @ Y.T`` and its objective do not change when both factor matrices are multiplied by
one orthogonal matrix ``Q``, and conjugate gradient commutes with that change: CG on the turned
system steps through the turned iterates. Turning both to the basis that makes the fixed side's
Gram matrix tridiagonal (a Householder reduction, once per half-sweep) lets each CG step apply it
in ``3k`` operations instead of ``k^2``: a half-sweep over ``n`` rows against ``m`` fixed ones
does ``(steps + 1) n k^2`` less work for ``(n + m) k^2`` spent turning both sides. The product
of the bases is kept, so that the factors go back to the caller's basis when the fit ends; the
trained model is the one plain CG computes, up to rounding.
"""

from __future__ import annotations

import numpy as np

from . import _native
from .solver import RowSolver


def turning_pays(solver: RowSolver, n_rows: int, n_fixed: int, k: int) -> bool:
    """Whether a CG half-sweep over ``n_rows`` rows against ``n_fixed`` fixed ones saves more
    Gram products than turning both sides costs (the core's rule, which its own fit follows)."""
    return _native.turning_pays(solver.native(), n_rows, n_fixed, k)


class Basis:
    """The product of the bases a fit has turned its factors to (none yet: the caller's)."""

    def __init__(self, num_threads: int) -> None:
        self._num_threads = num_threads
        self._turned = _native.TurnedBasis()

    def pays(self, solver: RowSolver, n_rows: int, n_fixed: int, k: int) -> bool:
        """:func:`turning_pays`."""
        return turning_pays(solver, n_rows, n_fixed, k)

    def reduce(self, gram: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Turns ``x`` and ``y`` (in place) to the basis in which ``gram``, the Gram matrix of
        ``y``, is tridiagonal; returns that tridiagonal matrix, the Gram matrix to solve with."""
        return self._turned.reduce(gram, x, y, self._num_threads)

    def restore(self, x: np.ndarray, y: np.ndarray) -> None:
        """Turns ``x`` and ``y`` back to the caller's basis."""
        self._turned.restore(x, y, self._num_threads)
