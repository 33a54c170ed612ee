"""The training loop both fits share: the sweep order, progress, loss reports and callbacks.

:meth:`ials.AlternatingLeastSquares.fit` runs it with half-sweeps computed in this process,
:func:`ials.distributed.fit` with half-sweeps computed on a cluster (:class:`HalfSweeps` is what
differs), so a callback, an early stop or the progress bar behaves the same in both.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from . import _native
from ._basis import Basis
from ._progress import Progress
from ._validation import CoreRows
from .callbacks import run_callback
from .solver import Objective, RowSolver, half_sweep, loss

if TYPE_CHECKING:
    from .als import AlternatingLeastSquares

log = logging.getLogger(__name__)

Callback = Callable[[int, float, "float | None"], Any]
"""``callback(iteration, seconds, loss)``, called after each sweep."""


@dataclass(frozen=True)
class FitSettings:
    """The model's parameters as a fit uses them, each checked
    (:meth:`ials.AlternatingLeastSquares.fit_settings`)."""

    objective: Objective
    dtype: np.dtype[Any]
    solver: RowSolver
    num_threads: int
    iterations: int
    calculate_training_loss: bool

    # implicit's names for the row solver.
    @property
    def use_cg(self) -> bool:
        return self.solver.kind == "cg"

    @property
    def cg_steps(self) -> int:
        return self.solver.cg_steps


class HalfSweeps(Protocol):
    """How one fit computes its steps; each solves the model's factors in place."""

    def solve_users(self) -> None:
        """Solves every user against the current item factors."""

    def solve_items(self) -> None:
        """Solves every item against the current user factors."""

    def loss(self) -> float:
        """The training objective at the current factors, as :func:`ials.calculate_loss`."""

    def restore_basis(self) -> None:
        """Turns the factors back to the basis the fit started in (see :mod:`ials._basis`)."""


class LocalHalfSweeps:
    """The half-sweeps of a fit in this process, by the core on all the rows at once."""

    def __init__(
        self,
        user_rows: CoreRows,
        item_rows: CoreRows,
        x: np.ndarray,
        y: np.ndarray,
        settings: FitSettings,
    ) -> None:
        self._user_rows = user_rows
        self._item_rows = item_rows
        self._x = x
        self._y = y
        self._settings = settings
        self._basis = Basis(settings.num_threads)

    def solve_users(self) -> None:
        self._solve(self._user_rows, self._x, self._y)

    def solve_items(self) -> None:
        self._solve(self._item_rows, self._y, self._x)

    def _solve(self, rows: CoreRows, x: np.ndarray, y: np.ndarray) -> None:
        s = self._settings
        gram_y = _native.gram(y, s.num_threads)
        if self._basis.pays(s.solver, len(x), len(y), x.shape[1]):
            gram_y = self._basis.reduce(gram_y, x, y)
        half_sweep(rows, x, y, gram_y, s.objective, s.solver, s.num_threads)

    def loss(self) -> float:
        s = self._settings
        return loss(self._user_rows, self._x, self._y, s.objective, s.num_threads)

    def restore_basis(self) -> None:
        self._basis.restore(self._x, self._y)


def train(
    model: AlternatingLeastSquares,
    sweeps: HalfSweeps,
    settings: FitSettings,
    show_progress: bool,
    callback: Callback | None,
) -> None:
    """Runs up to ``settings.iterations`` sweeps (users, then items) on the factors ``model``
    holds, which ``sweeps`` solve in place; the loss after each sweep when
    ``settings.calculate_training_loss``; ``callback`` after each sweep, which may end the fit by
    raising :class:`ials.callbacks.StopFitting`."""
    x, y = model.user_factors, model.item_factors
    current_loss: float | None = None
    try:
        with Progress(settings.iterations, show_progress) as progress:
            for iteration in range(settings.iterations):
                start = time.perf_counter()
                sweeps.solve_users()
                sweeps.solve_items()
                if settings.calculate_training_loss:
                    current_loss = sweeps.loss()
                    if not show_progress:
                        log.info("iteration %d: loss %.6g", iteration, current_loss)
                progress.update(current_loss)
                if not run_callback(callback, iteration, time.perf_counter() - start, current_loss):
                    break
    finally:
        sweeps.restore_basis()
        # Solved in place: whatever a callback derived from the factors mid-fit is stale.
        model.user_factors, model.item_factors = x, y
