"""The helpers implicit users import from ``implicit.utils`` (implicit 0.7.3), for ials.

``ParameterWarning``, ``nonzeros``, ``check_random_state`` and ``augment_inner_product_matrix``
behave as implicit's do. implicit's ``check_blas_config`` is not here: ials trains without BLAS,
so OpenBLAS / MKL thread settings do not affect it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._validation import ParameterWarning
from ._validation import check_random_state as _check_random_state

__all__ = [
    "ParameterWarning",
    "augment_inner_product_matrix",
    "check_random_state",
    "nonzeros",
]


def nonzeros(m: Any, row: int) -> Iterator[tuple[Any, Any]]:
    """The stored ``(column, value)`` pairs of row ``row`` of the CSR matrix ``m``, in storage
    order (as implicit's ``nonzeros``: numpy scalars, explicit zeros included)."""
    if not (sp.issparse(m) and m.format == "csr"):
        raise TypeError(f"m must be a scipy.sparse CSR matrix or array, got {type(m).__name__}")
    if isinstance(row, bool) or not isinstance(row, int | np.integer):
        raise TypeError(f"row must be an integer, got {row!r}")
    if not 0 <= row < m.shape[0]:
        raise ValueError(f"row {row} is out of range 0..{m.shape[0] - 1}")
    start, end = m.indptr[row], m.indptr[row + 1]
    return zip(m.indices[start:end], m.data[start:end], strict=True)


def check_random_state(random_state: Any) -> np.random.Generator:
    """A ``numpy.random.Generator`` from None, an int seed or a Generator (returned as is), as
    implicit's ``check_random_state``; a legacy ``RandomState`` seeds a new Generator with
    ``randint(2**31)`` (what implicit 0.7.3 means to do, but it raises AttributeError there)."""
    rng = _check_random_state(random_state)
    if isinstance(rng, np.random.RandomState):
        return np.random.default_rng(rng.randint(2**31))
    return rng


def augment_inner_product_matrix(factors: Any) -> tuple[Any, np.ndarray]:
    """``(max_norm, augmented)``: ``factors`` with one extra column that brings every row to the
    largest row norm, so that a cosine / Euclidean nearest-neighbour index over the augmented
    rows, queried with ``[x_u, 0]``, ranks items by the inner product ``x_u . y_i`` (Bachrach et
    al., "Speeding up the Xbox recommender system using a Euclidean transformation for
    inner-product spaces", RecSys 2014). Same result as implicit's function of that name."""
    array = np.asarray(factors)
    if array.ndim != 2 or array.shape[0] == 0 or array.dtype.kind != "f":
        raise ValueError(
            "factors must be a 2-D float array with at least one row, got "
            f"dtype {array.dtype} and shape {array.shape}"
        )
    norms = np.linalg.norm(array, axis=1)
    max_norm = norms.max()
    extra = np.sqrt(max_norm**2 - norms**2)
    return max_norm, np.append(array, extra.reshape(-1, 1), axis=1)
