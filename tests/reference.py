"""Plain float64 NumPy reference of the ials model (DESIGN.md section 1).

Obvious over fast: dense Python loops, no cleverness. Every function takes a scipy.sparse matrix
``R`` (any format; it is read through ``csr_matrix`` without summing duplicates or dropping explicit
zeros, so the caller controls exactly which entries are stored) and factor matrices as arrays; all
arithmetic is float64.

Convention for a cell (u, i):

- stored value r > 0:  p = 1, c = alpha * r
- stored value r < 0:  p = 0, c = alpha * |r|
- stored value r == 0: p = 0, c = 0 (the cell is removed from the loss)
- not stored:          p = 0, c = w0 (``unobserved_weight``)

lambda_u = regularization * (n_u + w0 * n_other) ** nu, with n_u the number of stored entries in
row u (explicit zeros included) and n_other the number of rows of the fixed factor matrix.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

CG_EPS = 1e-20


def _csr(R: sp.spmatrix | sp.sparray) -> sp.csr_matrix:
    # sp.csr_matrix(...) of a COO matrix would sum duplicates; we want the entries as given, so go
    # through COO triplets ourselves and keep them in input order per row (stable sort by row).
    coo = sp.coo_matrix(R)
    order = np.argsort(coo.row, kind="stable")
    rows = coo.row[order]
    cols = coo.col[order].astype(np.int64)
    vals = coo.data[order].astype(np.float64)
    indptr = np.zeros(coo.shape[0] + 1, dtype=np.int64)
    np.add.at(indptr, rows + 1, 1)
    indptr = np.cumsum(indptr)
    out = sp.csr_matrix((vals, cols, indptr), shape=coo.shape)
    return out


def preference_confidence(value: float, alpha: float) -> tuple[float, float]:
    """(p, c) of one stored value."""
    value = float(value)
    if value > 0:
        return 1.0, alpha * value
    if value < 0:
        return 0.0, alpha * -value
    return 0.0, 0.0


def row_lambda(
    regularization: float,
    n_stored: int,
    n_other: int,
    regularization_exponent: float = 0.0,
    unobserved_weight: float = 1.0,
) -> float:
    if regularization_exponent == 0.0:
        return float(regularization)
    base = n_stored + unobserved_weight * n_other
    return float(regularization) * float(base) ** regularization_exponent


def row_system(
    csr_row_indices: np.ndarray,
    csr_row_values: np.ndarray,
    Y: np.ndarray,
    regularization: float,
    alpha: float = 1.0,
    regularization_exponent: float = 0.0,
    unobserved_weight: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(A, b) of one row: A = w0 YtY + sum (c - w0) y y^T + lambda I, b = sum c p y."""
    Y = np.asarray(Y, dtype=np.float64)
    n_other, k = Y.shape
    w0 = float(unobserved_weight)
    A = np.zeros((k, k))
    for j in range(n_other):
        A += w0 * np.outer(Y[j], Y[j])
    b = np.zeros(k)
    for col, value in zip(csr_row_indices, csr_row_values, strict=True):
        p, c = preference_confidence(value, alpha)
        y = Y[int(col)]
        A += (c - w0) * np.outer(y, y)
        b += c * p * y
    lam = row_lambda(regularization, len(csr_row_indices), n_other, regularization_exponent, w0)
    A += lam * np.eye(k)
    return A, b


def _systems(
    R: sp.spmatrix | sp.sparray,
    Y: np.ndarray,
    regularization: float,
    alpha: float,
    regularization_exponent: float,
    unobserved_weight: float,
):
    R = _csr(R)
    Y = np.asarray(Y, dtype=np.float64)
    if R.shape[1] != Y.shape[0]:
        raise ValueError(f"R has {R.shape[1]} columns but Y has {Y.shape[0]} rows")
    for u in range(R.shape[0]):
        start, end = R.indptr[u], R.indptr[u + 1]
        idx = R.indices[start:end]
        val = R.data[start:end]
        if end == start:
            yield u, None, None
            continue
        A, b = row_system(
            idx,
            val,
            Y,
            regularization,
            alpha,
            regularization_exponent,
            unobserved_weight,
        )
        yield u, A, b


def exact_solve_rows(
    R: sp.spmatrix | sp.sparray,
    Y: np.ndarray,
    regularization: float,
    alpha: float = 1.0,
    regularization_exponent: float = 0.0,
    unobserved_weight: float = 1.0,
) -> np.ndarray:
    """X with X[u] = A_u^{-1} b_u, zero for rows with no stored entries."""
    Y = np.asarray(Y, dtype=np.float64)
    X = np.zeros((R.shape[0], Y.shape[1]))
    for u, A, b in _systems(
        R, Y, regularization, alpha, regularization_exponent, unobserved_weight
    ):
        if A is not None:
            X[u] = np.linalg.solve(A, b)
    return X


def cg_solve_rows(
    R: sp.spmatrix | sp.sparray,
    X0: np.ndarray,
    Y: np.ndarray,
    regularization: float,
    alpha: float = 1.0,
    regularization_exponent: float = 0.0,
    unobserved_weight: float = 1.0,
    cg_steps: int = 3,
) -> np.ndarray:
    """Unpreconditioned CG warm-started from X0, as implicit's least_squares_cg does."""
    X = np.array(X0, dtype=np.float64, copy=True)
    for u, A, b in _systems(
        R, Y, regularization, alpha, regularization_exponent, unobserved_weight
    ):
        if A is None:
            X[u] = 0.0
            continue
        x = X[u].copy()
        r = b - A @ x
        p = r.copy()
        rsold = float(r @ r)
        if rsold < CG_EPS:
            continue
        for _ in range(cg_steps):
            Ap = A @ p
            step = rsold / float(p @ Ap)
            x = x + step * p
            r = r - step * Ap
            rsnew = float(r @ r)
            if rsnew < CG_EPS:
                break
            p = r + (rsnew / rsold) * p
            rsold = rsnew
        X[u] = x
    return X


def block_solve_rows(
    R: sp.spmatrix | sp.sparray,
    X0: np.ndarray,
    Y: np.ndarray,
    regularization: float,
    alpha: float = 1.0,
    regularization_exponent: float = 0.0,
    unobserved_weight: float = 1.0,
    block_size: int = 64,
    block_sweeps: int = 1,
) -> np.ndarray:
    """Block coordinate descent warm-started from X0 (iALS++): ``block_sweeps`` passes over the
    blocks of ``block_size`` consecutive coordinates (the last one may be smaller), each set to
    the exact minimiser of the row's problem with every other coordinate fixed,
    ``x_S = A_SS^{-1} (b - A_{S,rest} x_rest)_S``; zero for rows with no stored entries."""
    X = np.array(X0, dtype=np.float64, copy=True)
    k = X.shape[1]
    for u, A, b in _systems(
        R, Y, regularization, alpha, regularization_exponent, unobserved_weight
    ):
        if A is None:
            X[u] = 0.0
            continue
        x = X[u].copy()
        for _ in range(block_sweeps):
            for first in range(0, k, block_size):
                S = np.arange(first, min(first + block_size, k))
                rest = np.setdiff1d(np.arange(k), S)
                x[S] = np.linalg.solve(A[np.ix_(S, S)], b[S] - A[np.ix_(S, rest)] @ x[rest])
        X[u] = x
    return X


def dense_preference_confidence(
    R: sp.spmatrix | sp.sparray, alpha: float = 1.0, unobserved_weight: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Full P and C matrices (n_rows x n_cols) of R under the convention."""
    R = _csr(R)
    P = np.zeros(R.shape)
    C = np.full(R.shape, float(unobserved_weight))
    for u in range(R.shape[0]):
        for pos in range(R.indptr[u], R.indptr[u + 1]):
            i = R.indices[pos]
            p, c = preference_confidence(R.data[pos], alpha)
            P[u, i] = p
            C[u, i] = c
    return P, C


def stored_counts(R: sp.spmatrix | sp.sparray) -> tuple[np.ndarray, np.ndarray]:
    """Number of stored entries per row and per column (explicit zeros included)."""
    R = _csr(R)
    rows = np.diff(R.indptr)
    cols = np.bincount(R.indices, minlength=R.shape[1])
    return rows, cols


def objective(
    R: sp.spmatrix | sp.sparray,
    X: np.ndarray,
    Y: np.ndarray,
    regularization: float,
    alpha: float = 1.0,
    regularization_exponent: float = 0.0,
    unobserved_weight: float = 1.0,
) -> float:
    """The training loss of the spec, a brute-force sum over all cells divided by total weight.

    NaN when the total weight is zero (every cell stored as an explicit zero, or w0 = 0 with
    nothing stored): the spec leaves that case undefined.
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    n_users, n_items = R.shape
    P, C = dense_preference_confidence(R, alpha, unobserved_weight)
    n_u, n_i = stored_counts(R)
    loss = 0.0
    for u in range(n_users):
        for i in range(n_items):
            loss += C[u, i] * (P[u, i] - float(X[u] @ Y[i])) ** 2
    for u in range(n_users):
        lam = row_lambda(
            regularization,
            int(n_u[u]),
            n_items,
            regularization_exponent,
            unobserved_weight,
        )
        loss += lam * float(X[u] @ X[u])
    for i in range(n_items):
        lam = row_lambda(
            regularization,
            int(n_i[i]),
            n_users,
            regularization_exponent,
            unobserved_weight,
        )
        loss += lam * float(Y[i] @ Y[i])
    R = _csr(R)
    stored_weight = sum(preference_confidence(v, alpha)[1] for v in R.data)
    total = stored_weight + unobserved_weight * (n_users * n_items - R.nnz)
    if total == 0:
        return float("nan")
    return loss / total
