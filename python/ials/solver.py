"""Low-level building blocks: one half-sweep, the Gram matrix and the training objective.

These are what :class:`ials.AlternatingLeastSquares` calls each iteration; they are public so that
other tools (and a distributed driver working on blocks of rows) can use the same solver.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _native
from ._validation import (
    CoreRows,
    as_csr,
    check_factor_matrix,
    check_float,
    check_int,
    check_memory,
    core_rows,
)

Objective = _native.Objective
"""The training objective's parameters, checked by the core when built."""


SOLVERS = ("cg", "cholesky", "block")
"""The row solvers a model can use (its ``solver`` parameter)."""


@dataclass(frozen=True)
class RowSolver:
    """How each row's least-squares problem is solved, checked (:func:`check_solver`); a plain
    value, so that distributed tasks can carry it.

    ``kind`` is ``"cg"`` (``cg_steps`` warm-started conjugate-gradient iterations),
    ``"cholesky"`` (the exact solve) or ``"block"`` (``block_sweeps`` passes of block coordinate
    descent over blocks of ``block_size`` coordinates, warm-started: iALS++)."""

    kind: str
    cg_steps: int
    block_size: int
    block_sweeps: int

    def native(self) -> _native.Solver:
        if self.kind == "cg":
            return _native.Solver.cg(self.cg_steps)
        if self.kind == "block":
            return _native.Solver.block(self.block_size, self.block_sweeps)
        return _native.Solver.cholesky()


EXACT = RowSolver("cholesky", cg_steps=1, block_size=1, block_sweeps=1)
"""The exact solve, which fold-ins use whatever the model trains with."""


def check_solver(
    solver: Any, use_cg: Any, cg_steps: Any, block_size: Any, block_sweeps: Any
) -> RowSolver:
    """The row solver the parameters select, each checked: ``solver`` None follows implicit's
    ``use_cg`` (``"cg"`` when true, ``"cholesky"`` otherwise); an explicit name wins."""
    if solver is None:
        kind = "cg" if use_cg else "cholesky"
    elif isinstance(solver, str) and solver in SOLVERS:
        kind = solver
    else:
        raise ValueError(f"solver must be None or one of {', '.join(SOLVERS)}, got {solver!r:.80}")
    return RowSolver(
        kind,
        cg_steps=check_int("cg_steps", cg_steps, 1),
        block_size=check_int("block_size", block_size, 1),
        block_sweeps=check_int("block_sweeps", block_sweeps, 1),
    )


def check_gram_memory(subject: str, k: int) -> None:
    """``MemoryError`` naming ``subject`` when a ``k x k`` float64 Gram matrix and one row system
    of that size (what every solve holds at least) cannot fit in memory."""
    check_memory(subject, 2 * k * k * 8, f"the {k} x {k} Gram matrix and row system")


def gram(y: np.ndarray, num_threads: int = 0) -> np.ndarray:
    """``y.T @ y`` as a float64 ``k x k`` array, summed in a fixed order (same bytes for any
    ``num_threads``)."""
    y = check_factor_matrix("y", y)
    check_gram_memory(f"y with {y.shape[1]} columns", y.shape[1])
    num_threads = check_int("num_threads", num_threads, 0)
    return _native.gram(y, num_threads)


def check_objective(
    regularization: Any, alpha: Any, regularization_exponent: Any, unobserved_weight: Any
) -> Objective:
    """The objective's parameters, checked. ``alpha`` must be > 0: with 0 every stored value has
    confidence 0, and the factors shrink to zero (implicit trains them to about 1e-9 silently).
    It must also be finite in float32, the type of the confidences."""
    positive_alpha = check_float("alpha", alpha, exclusive=True)
    if positive_alpha > float(np.finfo(np.float32).max):
        raise ValueError(f"alpha must be finite in float32 (at most 3.4e38), got {alpha!r}")
    return Objective(
        check_float("regularization", regularization),
        positive_alpha,
        check_float("regularization_exponent", regularization_exponent),
        check_float("unobserved_weight", unobserved_weight),
    )


def check_penalty(rows: CoreRows, objective: Objective, dtype: np.dtype[Any]) -> None:
    """``ValueError`` naming ``regularization_exponent`` when the penalty of the longest row,
    ``regularization * (n_u + unobserved_weight * n_cols) ** regularization_exponent``, is not
    finite in ``dtype``: conjugate gradient would keep its starting point and the exact solve
    would fail. Checked for both sides before a fit starts, so a refused fit changes nothing."""
    nu = objective.regularization_exponent
    n_rows, n_cols = rows.shape
    if nu == 0 or n_rows == 0:
        return
    longest = int(np.diff(rows.indptr).max())
    support = longest + objective.unobserved_weight * n_cols
    try:
        penalty = objective.regularization * support**nu
    except OverflowError:
        penalty = math.inf
    if not penalty <= float(np.finfo(dtype).max):  # also refuses NaN (0 * inf)
        raise ValueError(
            f"regularization_exponent={nu} makes the penalty of a row with {longest} of {n_cols} "
            f"entries, regularization * (n + unobserved_weight * {n_cols}) ** "
            f"regularization_exponent = {objective.regularization} * {support:g} ** {nu}, "
            f"which overflows {dtype}; lower regularization_exponent or regularization"
        )


def solve_rows(
    user_items: Any,
    x: np.ndarray,
    y: np.ndarray,
    regularization: float,
    *,
    alpha: float = 1.0,
    use_cg: bool = True,
    cg_steps: int = 3,
    regularization_exponent: float = 0.0,
    unobserved_weight: float = 1.0,
    gram: np.ndarray | None = None,
    num_threads: int = 0,
    solver: str | None = None,
    block_size: int = 64,
    block_sweeps: int = 1,
) -> None:
    """Solve every row of ``x`` against the fixed factors ``y``, in place (one ALS half-sweep).

    Row ``u`` minimises ``sum_i c_ui (p_ui - x_u . y_i)^2 + lambda_u |x_u|^2`` over all columns,
    where a stored value ``r`` gives ``p = 1, c = alpha * r`` when positive, ``p = 0,
    c = alpha * |r|`` when negative (and removes the cell when zero), an unstored cell gives
    ``p = 0, c = unobserved_weight``, and ``lambda_u = regularization * (n_u + unobserved_weight
    * n_cols) ** regularization_exponent``.

    Parameters
    ----------
    user_items : sparse (n_rows x n_cols)
        The interactions of the rows being solved; any scipy.sparse format (CSR avoids a copy).
    x : ndarray (n_rows x k), float32 or float64, C-contiguous, writeable
        The rows to solve; conjugate gradient and the block solver start from their current
        values.
    y : ndarray (n_cols x k), same dtype as ``x``
        The fixed side.
    use_cg, cg_steps
        ``cg_steps`` conjugate-gradient iterations (default), or an exact solve in float64 (a
        Cholesky factorisation of each row's system, or for rows with few items against
        ``factors``, with ``regularization_exponent=0``, of a smaller one through a factorisation
        all rows share: the Woodbury identity).
    solver, block_size, block_sweeps
        ``solver`` None follows ``use_cg``; ``"cg"`` or ``"cholesky"`` choose those explicitly, and
        ``"block"`` runs ``block_sweeps`` passes of block coordinate descent (iALS++) over blocks
        of ``block_size`` consecutive coordinates, each block solved exactly (in float64) with
        the others fixed. One pass costs ``O(n_u k b + k^2 + k b^2)`` per row for block size
        ``b`` instead of the exact solve's ``O(n_u k^2 + k^3)``; ``block_size >= k`` makes one
        pass the exact solve, and more passes approach it.
    gram : ndarray (k x k), optional
        ``y.T @ y`` if already known (for example summed over blocks); computed when omitted.
    num_threads : int
        Threads to use, 0 for all cores. The result is bitwise the same for any value.
    """
    csr = as_csr(user_items, "user_items")
    x = check_factor_matrix("x", x, rows=csr.shape[0])
    y = check_factor_matrix("y", y, rows=csr.shape[1], dtype=x.dtype)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x has {x.shape[1]} factors but y has {y.shape[1]}")
    if not x.flags.writeable:
        raise ValueError("x must be writeable: it is solved in place")
    check_gram_memory(f"x and y with {x.shape[1]} columns", x.shape[1])
    objective = check_objective(regularization, alpha, regularization_exponent, unobserved_weight)
    row_solver = check_solver(solver, use_cg, cg_steps, block_size, block_sweeps)
    num_threads = check_int("num_threads", num_threads, 0)
    k = y.shape[1]
    gram_matrix = None
    if gram is not None:
        gram_matrix = np.ascontiguousarray(gram, dtype=np.float64)
        if gram_matrix.shape != (k, k):
            raise ValueError(f"gram must have shape ({k}, {k}), got {gram_matrix.shape}")
    rows = core_rows(csr)
    check_penalty(rows, objective, x.dtype)
    half_sweep(rows, x, y, gram_matrix, objective, row_solver, num_threads)


def half_sweep(
    rows: CoreRows,
    x: np.ndarray,
    y: np.ndarray,
    gram_matrix: np.ndarray | None,
    objective: Objective,
    solver: RowSolver,
    num_threads: int,
) -> None:
    """:func:`solve_rows` on arguments that were already checked and normalised."""
    if gram_matrix is None:
        gram_matrix = _native.gram(y, num_threads)
    _native.solve_rows(rows, x, y, gram_matrix, objective, solver.native(), num_threads)


def loss(
    rows: CoreRows, x: np.ndarray, y: np.ndarray, objective: Objective, num_threads: int
) -> float:
    """:func:`calculate_loss` on arguments that were already checked and normalised."""
    return _native.loss_terms(rows, x, y, objective, num_threads).normalised()


def calculate_loss(
    user_items: Any,
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    regularization: float,
    *,
    alpha: float = 1.0,
    regularization_exponent: float = 0.0,
    unobserved_weight: float = 1.0,
    num_threads: int = 0,
) -> float:
    """The training objective, divided by the total confidence weight.

    ``[sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + sum_u lambda_u |x_u|^2 + sum_i lambda_i |y_i|^2] / W``
    over every cell, stored or not, with ``W = sum_stored c_ui + unobserved_weight * (n_users *
    n_items - nnz)``. With the default arguments this is the value implicit's
    ``implicit.cpu.als.calculate_loss`` reports for non-negative data (implicit adds ``|c|`` for
    each negative value, which is not part of its objective; this function does not).
    """
    csr = as_csr(user_items, "user_items")
    x = check_factor_matrix("user_factors", user_factors, rows=csr.shape[0])
    y = check_factor_matrix("item_factors", item_factors, rows=csr.shape[1], dtype=x.dtype)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"user_factors has {x.shape[1]} factors but item_factors has {y.shape[1]}")
    check_gram_memory(f"user_factors and item_factors with {x.shape[1]} columns", x.shape[1])
    objective = check_objective(regularization, alpha, regularization_exponent, unobserved_weight)
    num_threads = check_int("num_threads", num_threads, 0)
    return loss(core_rows(csr), x, y, objective, num_threads)
