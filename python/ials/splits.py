"""Train / test splits of a users x items interaction matrix, reproducible with ``random_state``.

Every function takes any scipy.sparse matrix or array (duplicates are summed first, the caller's
matrix is never modified) and returns ``(train, test)``: two ``csr_matrix`` of the input's shape
and dtype, in canonical form (sorted, no duplicates), whose stored entries are disjoint and add up
to exactly the input's entries (no interaction is lost or duplicated, values are kept).

``random_state`` is None (fresh entropy), an int seed, a ``numpy.random.Generator`` or a
``numpy.random.RandomState`` (advanced by the call). The same matrix and the same seed give the
same split on every platform and for any number of threads.

* :func:`train_test_split`: each interaction independently of its user (implicit's signature),
  exactly ``round(p * nnz)`` of them in ``train``.
* :func:`implicit_train_test_split`: implicit 0.7.3's ``train_test_split``, reproduced: the same
  ``(train, test)`` as implicit for the same input and seed. ``ials.evaluation.train_test_split``
  is this one, so that code written for ``implicit.evaluation`` splits as before.
* :func:`leave_k_out_split`: ``K`` interactions of each eligible user (implicit's signature; it
  honours ``random_state``, which implicit 0.7.3 ignores).
* :func:`per_user_split`: a fraction of each user's interactions, the protocol of Liang et al.
  (WWW 2018) and Rendle et al. (RecSys 2022).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._validation import check_int, check_random_state, check_sparse
from .utils import check_random_state as generator

__all__ = ["implicit_train_test_split", "leave_k_out_split", "per_user_split", "train_test_split"]

RandomState = None | int | np.random.Generator | np.random.RandomState
_EPS = 1e-9  # keeps floor(0.29 * 100) at 29 despite 0.29 * 100 == 28.999999999999996


def _canonical(ratings: Any) -> sp.csr_matrix:
    """A canonical CSR copy of ``ratings`` (duplicates summed, indices sorted)."""
    check_sparse("ratings", ratings)
    csr = sp.csr_matrix(ratings, copy=True)
    csr.sum_duplicates()
    return csr


def _uniform(rng: np.random.Generator | np.random.RandomState, size: int) -> np.ndarray:
    if isinstance(rng, np.random.Generator):
        return rng.random(size)
    return rng.random_sample(size)


def _fraction(name: str, value: Any, *, upper_open: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    number = float(value)
    inside = 0.0 <= number < 1.0 if upper_open else 0.0 <= number <= 1.0
    if not inside:
        interval = "[0, 1)" if upper_open else "[0, 1]"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return number


def _rows(csr: sp.csr_matrix) -> np.ndarray:
    return np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))


def _split(csr: sp.csr_matrix, test: np.ndarray) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """The entries of canonical ``csr`` where ``test`` is False, and where it is True."""
    rows = _rows(csr)

    def part(keep: np.ndarray) -> sp.csr_matrix:
        counts = np.bincount(rows[keep], minlength=csr.shape[0])
        indptr = np.zeros(csr.shape[0] + 1, dtype=csr.indptr.dtype)
        np.cumsum(counts, out=indptr[1:])
        return sp.csr_matrix(
            (csr.data[keep], csr.indices[keep], indptr), shape=csr.shape, copy=False
        )

    return part(~test), part(test)


def _take_per_row(
    csr: sp.csr_matrix, n_test: np.ndarray, rng: np.random.Generator | np.random.RandomState
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Moves ``n_test[u]`` entries of each row ``u``, chosen uniformly at random, to the test
    part."""
    rows = _rows(csr)
    keys = _uniform(rng, csr.nnz)
    order = np.lexsort((keys, rows))  # by row, then in random order within the row
    rank = np.arange(csr.nnz) - csr.indptr[rows]  # position within the row, in that order
    test = np.zeros(csr.nnz, dtype=bool)
    test[order[rank < n_test[rows]]] = True
    return _split(csr, test)


def train_test_split(
    ratings: Any, train_percentage: float = 0.8, random_state: RandomState = None
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Splits the interactions at random, independently of their users.

    Exactly ``floor(train_percentage * nnz + 0.5)`` stored entries, drawn uniformly without
    replacement, go to ``train``; the others to ``test``. (implicit draws each entry
    independently, so its sizes vary around the fraction and it accepts any number.)

    Parameters
    ----------
    ratings : scipy.sparse matrix or array, users x items
    train_percentage : float in [0, 1]
        Fraction of the interactions kept for training.
    random_state : None, int, numpy.random.Generator or numpy.random.RandomState

    Returns
    -------
    (train, test) : csr_matrix, csr_matrix
    """
    fraction = _fraction("train_percentage", train_percentage, upper_open=False)
    rng = check_random_state(random_state)
    csr = _canonical(ratings)
    n_train = min(math.floor(fraction * csr.nnz + 0.5), csr.nnz)
    test = np.ones(csr.nnz, dtype=bool)
    test[rng.permutation(csr.nnz)[:n_train]] = False
    return _split(csr, test)


def implicit_train_test_split(
    ratings: Any, train_percentage: float = 0.8, random_state: RandomState = None
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """implicit 0.7.3's ``implicit.evaluation.train_test_split``: for the same ``ratings`` and
    seed, the same ``(train, test)`` matrices as implicit.

    Each stored entry of ``ratings`` (in ``ratings.tocoo()`` order, duplicates and stored zeros
    included) goes to ``train`` when its draw of ``Generator.random`` is below
    ``train_percentage``, so the sizes vary around the fraction; duplicates that land on the same
    side are summed. ``test`` then loses its entries whose value is 0 or negative (implicit's
    rule: only positive interactions are to be found again). ``random_state`` is None, an int
    seed or a ``numpy.random.Generator`` as in implicit (``numpy.random.default_rng`` of it),
    or a ``RandomState``, which seeds a Generator (see :func:`ials.utils.check_random_state`;
    implicit raises there).

    Unlike the other splits here, ``train`` and ``test`` together do not always hold every
    entry of ``ratings`` (the dropped ones above); :func:`train_test_split` keeps them all and
    puts exactly ``round(train_percentage * nnz)`` in ``train``.

    Returns
    -------
    (train, test) : csr_matrix, csr_matrix, of the input's shape and dtype
    """
    fraction = _fraction("train_percentage", train_percentage, upper_open=False)
    check_sparse("ratings", ratings)
    coo = sp.coo_matrix(ratings)
    draws = generator(random_state).random(coo.nnz)

    def part(side: np.ndarray) -> sp.csr_matrix:
        entries = (coo.data[side], (coo.row[side], coo.col[side]))
        return sp.csr_matrix(entries, shape=coo.shape, dtype=coo.dtype)

    train, test = part(draws < fraction), part(draws >= fraction)
    test.data[test.data < 0] = 0
    test.eliminate_zeros()
    return train, test


def leave_k_out_split(
    ratings: Any, K: int = 1, train_only_size: float = 0.0, random_state: RandomState = None
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Holds out ``K`` random interactions of each eligible user.

    A user is eligible when they have more than ``K + 1`` interactions (implicit's rule, so at
    least two stay in training). A share ``train_only_size`` of the eligible users, drawn at
    random (``floor(train_only_size * n_eligible + 0.5)`` of them), keeps every interaction in
    ``train``; every other eligible user has exactly ``K`` interactions, drawn uniformly, moved to
    ``test``. Users who are not eligible are only in ``train``.

    Unlike implicit 0.7.3 (which uses the global numpy generator and ignores it), the split is
    fully determined by ``random_state``, and the held-out values are the input's values.

    Parameters
    ----------
    ratings : scipy.sparse matrix or array, users x items
    K : int >= 1
        Interactions held out per test user.
    train_only_size : float in [0, 1)
        Share of the eligible users that appear only in ``train``.
    random_state : None, int, numpy.random.Generator or numpy.random.RandomState

    Returns
    -------
    (train, test) : csr_matrix, csr_matrix
    """
    k = check_int("K", K, 1)
    share = _fraction("train_only_size", train_only_size, upper_open=True)
    rng = check_random_state(random_state)
    csr = _canonical(ratings)
    counts = np.diff(csr.indptr)
    eligible = np.flatnonzero(counts > k + 1)
    n_train_only = math.floor(share * len(eligible) + 0.5)
    train_only = rng.permutation(eligible)[:n_train_only]
    n_test = np.where(counts > k + 1, k, 0)
    n_test[train_only] = 0
    return _take_per_row(csr, n_test, rng)


def per_user_split(
    ratings: Any,
    test_fraction: float = 0.2,
    random_state: RandomState = None,
    min_train: int = 1,
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Holds out a fraction of every user's interactions (the "80/20 per user" protocol).

    User ``u`` with ``n_u`` interactions has ``min(floor(test_fraction * n_u), n_u - min_train)``
    of them (never fewer than 0), drawn uniformly, moved to ``test``; the rest stay in ``train``.
    With the default ``test_fraction=0.2`` this is the fold-out split of Liang et al. (Variational
    autoencoders for collaborative filtering, WWW 2018), used by Rendle et al. (Revisiting the
    performance of iALS on item recommendation benchmarks, RecSys 2022): users with fewer than 5
    interactions have none held out.

    Parameters
    ----------
    ratings : scipy.sparse matrix or array, users x items
    test_fraction : float in [0, 1]
        Share of each user's interactions held out (rounded down per user).
    random_state : None, int, numpy.random.Generator or numpy.random.RandomState
    min_train : int >= 0
        Interactions every user keeps in ``train`` (when they have that many).

    Returns
    -------
    (train, test) : csr_matrix, csr_matrix
    """
    fraction = _fraction("test_fraction", test_fraction, upper_open=False)
    keep = check_int("min_train", min_train, 0)
    rng = check_random_state(random_state)
    csr = _canonical(ratings)
    counts = np.diff(csr.indptr)
    n_test = np.floor(fraction * counts + _EPS).astype(np.int64)
    n_test = np.clip(np.minimum(n_test, counts - keep), 0, None)
    return _take_per_row(csr, n_test, rng)
