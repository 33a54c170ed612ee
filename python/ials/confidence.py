"""Confidence transforms of Hu, Koren and Volinsky (2008), section 4.

These functions turn a users x items matrix of raw interaction strengths (play
counts, clicks, minutes watched) into a matrix of *confidences*.  They are applied
to the data **before fitting**; the model itself has a single convention and knows
nothing about them.

The model's convention (the one of the ``implicit`` library): a stored value
``r > 0`` means preference ``p = 1`` with confidence ``c = alpha * r``, where
``alpha`` is the model's own ``alpha`` parameter, and a cell that is not stored
means ``p = 0`` with confidence ``c = 1`` (times ``unobserved_weight``).

The paper instead writes the confidence of every cell as a function of ``r``:

* linear: ``c = 1 + alpha * r``
* log:    ``c = 1 + alpha * log(1 + r / eps)``

Both give ``c = 1`` for ``r = 0``, which is what the model already uses for cells
that are not stored.  So fitting ``AlternatingLeastSquares(alpha=1.0)`` on
``linear(R, alpha)`` (or ``log(R, alpha, eps)``) reproduces the paper's model
exactly: stored cells get ``p = 1`` and the paper's ``c``, every other cell gets
``p = 0`` and ``c = 1``.  Keep the model's ``alpha`` at 1 when you use these
transforms, otherwise the two scalings multiply.

Details that make the result match the paper cell by cell:

* The input is never modified; a new matrix of the same class (``csr_array``
  stays ``csr_array``, ``coo_matrix`` stays ``coo_matrix``...) is returned.
* Duplicate entries are summed *before* the transform (the transform is applied
  to the value of each cell, not to each stored entry), and explicitly stored
  zeros are dropped: a zero interaction is an unobserved cell, whose paper
  confidence ``1`` is the model's default.  The result is in canonical form.
  A ``bsr`` result uses 1 x 1 blocks, so that no cell is stored as padding; a
  ``dia`` result holds zeros wherever its diagonals pass through unobserved
  cells (``dia`` cannot do otherwise; converting it to CSR drops them).
* The values must be finite and non-negative: a negative stored value means
  explicit negative feedback in the model, and ``1 + alpha * r`` would silently
  mix the two meanings.
* The result has dtype ``float64`` if the input has, ``float32`` otherwise
  (integer and boolean counts included).  Arithmetic is done in ``float64``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from ._validation import check_sparse

__all__ = ["linear", "log"]

_S = TypeVar("_S")


def linear(R: _S, alpha: float) -> _S:
    """Return a new matrix whose stored values are ``1 + alpha * R``.

    Parameters
    ----------
    R : scipy.sparse matrix or array, shape (n_users, n_items)
        Non-negative finite interaction strengths.  Not modified.
    alpha : float
        Finite, ``>= 0``.  The paper's confidence scale (it found 40 to work well
        on its TV data).

    Returns
    -------
    The transformed copy of ``R`` described in the module docstring; fit it with
    the model's ``alpha=1.0``.
    """
    a = _check_scalar("alpha", alpha, allow_zero=True)
    return _transform(R, lambda r: 1.0 + a * r)


def log(R: _S, alpha: float, eps: float = 1.0) -> _S:
    """Return a new matrix whose stored values are ``1 + alpha * log(1 + R / eps)``.

    Parameters
    ----------
    R : scipy.sparse matrix or array, shape (n_users, n_items)
        Non-negative finite interaction strengths.  Not modified.
    alpha : float
        Finite, ``>= 0``.
    eps : float, default 1.0
        Finite, ``> 0``.  Scale of ``R`` below which the confidence grows
        roughly linearly and above which it grows logarithmically.

    Returns
    -------
    The transformed copy of ``R`` described in the module docstring; fit it with
    the model's ``alpha=1.0``.
    """
    a = _check_scalar("alpha", alpha, allow_zero=True)
    e = _check_scalar("eps", eps, allow_zero=False)
    return _transform(R, lambda r: 1.0 + a * np.log1p(r / e))


def _check_scalar(name: str, value: object, *, allow_zero: bool) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    bound_ok = v >= 0.0 if allow_zero else v > 0.0
    if not (math.isfinite(v) and bound_ok):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}")
    return v


def _transform(R: _S, f: Callable[[NDArray[np.float64]], NDArray[np.float64]]) -> _S:
    check_sparse("R", R)
    mat: Any = R
    out_dtype = np.float64 if mat.dtype == np.float64 else np.float32
    fmt = mat.format

    # Work on a float64 copy that shares no memory with R, one cell per entry.
    if fmt in ("csr", "csc"):
        work = mat.astype(np.float64, copy=True)
    else:
        work = mat.tocoo().astype(np.float64, copy=True)
    work.sum_duplicates()
    work.eliminate_zeros()

    data = work.data
    bad = np.flatnonzero(~np.isfinite(data) | (data < 0))
    if bad.size:
        k = int(bad[0])
        row, col = _position(work, k)
        raise ValueError(
            f"R must hold finite, non-negative values; found {float(data[k])} at ({row}, {col})"
        )

    with np.errstate(over="ignore"):  # reported below
        transformed = f(data).astype(out_dtype)
    if not np.isfinite(transformed).all():
        raise ValueError(
            f"R's value {float(data[~np.isfinite(transformed)][0])} gives a confidence beyond "
            f"{np.dtype(out_dtype).name}: use a smaller alpha (or, for log, a larger eps)"
        )
    work.data = transformed
    if fmt == "bsr":
        work = work.tobsr(blocksize=(1, 1))
    elif fmt not in ("csr", "csc", "coo"):
        work = work.asformat(fmt)
    result: _S = work
    return result


def _position(work: sp.sparray | sp.spmatrix, k: int) -> tuple[int, int]:
    """(row, column) of the k-th stored entry of a csr, csc or coo matrix."""
    if work.format == "coo":
        return int(work.row[k]), int(work.col[k])
    major = int(np.searchsorted(work.indptr, k, side="right")) - 1
    minor = int(work.indices[k])
    return (major, minor) if work.format == "csr" else (minor, major)
