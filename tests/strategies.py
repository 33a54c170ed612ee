"""Hypothesis strategies shared by the property tests.

Problems are small and well conditioned: every solved row (one with a stored entry) satisfies
A_u >= lambda_u I with lambda_u >= regularization >= 0.05 (n_u >= 1 makes the base of the
frequency scaling >= 1), while factor entries (|y| <= 0.5) and confidences (alpha * |r| <= 40) are
modest, so condition numbers stay below about 1e5.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from hypothesis import strategies as st

DTYPES = (np.float32, np.float64)


@dataclass
class Problem:
    """A sparse users x items matrix, both factor matrices and the model parameters."""

    R: sp.csr_matrix  # float32 data, sorted unique indices, no duplicates
    X: np.ndarray  # float64 (n_rows x k), values exactly representable in float32
    Y: np.ndarray  # float64 (n_cols x k), values exactly representable in float32
    regularization: float
    alpha: float
    regularization_exponent: float = 0.0
    unobserved_weight: float = 1.0
    seed: int = 0
    meta: dict = field(default_factory=dict)

    @property
    def k(self) -> int:
        return self.X.shape[1]

    def params(self) -> dict:
        """Keyword arguments shared by the reference and ials (besides regularization)."""
        return {
            "alpha": self.alpha,
            "regularization_exponent": self.regularization_exponent,
            "unobserved_weight": self.unobserved_weight,
        }

    def transposed(self) -> Problem:
        """The item-side problem: R^T with the roles of X and Y swapped."""
        return Problem(
            R=sp.csr_matrix(self.R.T),
            X=self.Y,
            Y=self.X,
            regularization=self.regularization,
            alpha=self.alpha,
            regularization_exponent=self.regularization_exponent,
            unobserved_weight=self.unobserved_weight,
            seed=self.seed,
            meta=dict(self.meta),
        )


def random_sparse(
    rng: np.random.Generator,
    n_rows: int,
    n_cols: int,
    density: float,
    negative_fraction: float = 0.0,
    zero_fraction: float = 0.0,
    integer_values: bool = True,
    empty_row_fraction: float = 0.0,
) -> sp.csr_matrix:
    """CSR float32 matrix with positive count-like values (some negated / zeroed on request).

    Explicit zeros are stored entries (the CSR is built from its arrays, never pruned).
    """
    mask = rng.random((n_rows, n_cols)) < density
    if empty_row_fraction > 0 and n_rows > 0:
        mask[rng.random(n_rows) < empty_row_fraction] = False
    rows, cols = np.nonzero(mask)
    nnz = rows.size
    if integer_values:
        values = rng.integers(1, 11, size=nnz).astype(np.float64)
    else:
        values = rng.integers(2, 41, size=nnz) / 8.0  # 0.25 .. 5 in steps of 1/8
    values[rng.random(nnz) < negative_fraction] *= -1.0
    values[rng.random(nnz) < zero_fraction] = 0.0
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.add.at(indptr, rows + 1, 1)
    indptr = np.cumsum(indptr)
    return sp.csr_matrix(
        (values.astype(np.float32), cols.astype(np.int32), indptr),
        shape=(n_rows, n_cols),
    )


def random_factors(rng: np.random.Generator, n: int, k: int, scale: float = 0.5) -> np.ndarray:
    """float64 factors with float32-representable entries in [-scale, scale]."""
    return rng.uniform(-scale, scale, size=(n, k)).astype(np.float32).astype(np.float64)


@st.composite
def problems(
    draw: st.DrawFn,
    *,
    min_rows: int = 1,
    max_rows: int = 30,
    min_cols: int = 1,
    max_cols: int = 25,
    min_k: int = 1,
    max_k: int = 8,
    negatives: bool | None = False,
    explicit_zeros: bool | None = False,
    variants: bool = False,
    empty_rows: bool = True,
) -> Problem:
    """A random, well conditioned problem.

    negatives / explicit_zeros: False never, True always some, None maybe.
    variants: also draw regularization_exponent in {0, 0.5, 1} and unobserved_weight in
    {0.1, 1, 3}; otherwise the defaults (0 and 1).
    """
    n_rows = draw(st.integers(min_rows, max_rows), label="n_rows")
    n_cols = draw(st.integers(min_cols, max_cols), label="n_cols")
    k = draw(st.integers(min_k, max_k), label="k")
    density = draw(st.floats(0.05, 1.0), label="density")
    seed = draw(st.integers(0, 2**32 - 1), label="seed")
    if negatives is None:
        negatives = draw(st.booleans(), label="negatives")
    if explicit_zeros is None:
        explicit_zeros = draw(st.booleans(), label="explicit_zeros")
    integer_values = draw(st.booleans(), label="integer_values")
    regularization = draw(st.floats(0.05, 2.0), label="regularization")
    # alpha and non-integer values are short dyadic fractions, so that c = alpha * |r| is exact
    # in float32 as well as float64: the properties then test the algorithm, not where the
    # confidence is rounded (test_solver_properties has a dedicated test for that).
    alpha = draw(st.integers(1, 64), label="alpha_sixteenths") / 16.0
    if variants:
        nu = draw(st.sampled_from([0.0, 0.5, 1.0]), label="regularization_exponent")
        w0 = draw(st.sampled_from([0.1, 1.0, 3.0]), label="unobserved_weight")
    else:
        nu, w0 = 0.0, 1.0
    rng = np.random.default_rng(seed)
    R = random_sparse(
        rng,
        n_rows,
        n_cols,
        density,
        negative_fraction=0.3 if negatives else 0.0,
        zero_fraction=0.15 if explicit_zeros else 0.0,
        integer_values=integer_values,
        empty_row_fraction=0.2 if empty_rows else 0.0,
    )
    if R.nnz == n_rows * n_cols and not np.any(R.data):
        R.data[0] = 1.0  # keep the total weight of the loss positive
    X = random_factors(rng, n_rows, k)
    Y = random_factors(rng, n_cols, k)
    return Problem(
        R=R,
        X=X,
        Y=Y,
        regularization=regularization,
        alpha=alpha,
        regularization_exponent=nu,
        unobserved_weight=w0,
        seed=seed,
    )


dtypes = st.sampled_from(DTYPES)
