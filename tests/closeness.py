"""Closeness of computed factors to the NumPy reference, allowing for the conditioning of each
row's system: the forward error a backward-stable solve in a given precision may make."""

from __future__ import annotations

import numpy as np
import reference as ref
from strategies import Problem

EPS = {np.dtype(np.float32): float(np.finfo(np.float32).eps), np.dtype(np.float64): 2.2e-16}

# The cond factor for float32 CG against float64 CG (see `assert_rows_close`). 256 once failed by
# 3% (hypothesis, three steps at k = 3: the third step moved x by about 264 eps cond |x| on a
# residual of rounding noise).
CG_COND_FACTOR = 1024.0


def row_conditions(prob: Problem) -> np.ndarray:
    """2-norm condition number of every row system (1 for rows with nothing stored)."""
    conds = np.ones(prob.R.shape[0])
    for u in range(prob.R.shape[0]):
        s, e = prob.R.indptr[u], prob.R.indptr[u + 1]
        if s < e:
            A, _ = ref.row_system(
                prob.R.indices[s:e], prob.R.data[s:e], prob.Y, prob.regularization, **prob.params()
            )
            conds[u] = np.linalg.cond(A)
    return conds


def assert_rows_close(
    got: np.ndarray,
    want: np.ndarray,
    *,
    rtol: float,
    scale: np.ndarray | None = None,
    conds: np.ndarray | None = None,
    eps: float = 0.0,
    atol: float = 1e-12,
    cond_factor: float = 16.0,
) -> None:
    """Row-wise |got_u - want_u| <= rtol * s_u + cond_factor eps cond_u s_u + atol, with
    s_u = |scale_u|.

    The cond term is the forward error a backward-stable solve in precision eps may make; it is
    negligible for well conditioned rows. Float32 CG needs a larger factor: once it has converged
    (k small, or few distinct eigenvalues) its remaining steps act on a residual of rounding noise
    and move x by up to ~eps |A| |x| / lambda_min, where float64 CG stops (r.r < 1e-20).
    """
    got64 = np.asarray(got, dtype=np.float64)
    assert got64.shape == want.shape
    assert np.all(np.isfinite(got64))
    s = np.linalg.norm(want if scale is None else scale, axis=1)
    c = np.ones(len(s)) if conds is None else conds
    err = np.linalg.norm(got64 - want, axis=1)
    bound = rtol * s + cond_factor * eps * c * s + atol
    bad = np.flatnonzero(err > bound)
    assert bad.size == 0, (
        f"rows {bad[:5].tolist()} differ: err {err[bad[:5]].tolist()} > bound "
        f"{bound[bad[:5]].tolist()}; got {got64[bad[:1]].tolist()} want {want[bad[:1]].tolist()}"
    )
