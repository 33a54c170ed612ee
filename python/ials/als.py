"""The model: implicit-feedback matrix factorisation trained by alternating least squares."""

from __future__ import annotations

import logging
from typing import Any, overload

import numpy as np

from . import _native, _ranking
from ._rwlock import lock_of, reads, writes
from ._training import Callback, FitSettings, LocalHalfSweeps, train
from ._validation import (
    as_csr,
    check_dtype,
    check_int,
    check_memory,
    check_random_state,
    check_sparse,
    core_rows,
    transpose,
)
from .solver import (
    EXACT,
    Objective,
    check_gram_memory,
    check_objective,
    check_penalty,
    check_solver,
    gram,
    half_sweep,
)

log = logging.getLogger(__name__)

RandomState = None | int | np.random.Generator | np.random.RandomState


def _random_factors(
    rng: np.random.Generator | np.random.RandomState, rows: int, k: int, dtype: np.dtype[Any]
) -> np.ndarray:
    # Generator.random with the factor dtype is what implicit 0.7.3 draws, so a seed gives the
    # same starting point in both libraries. Scaled in place: no second matrix at the peak.
    if isinstance(rng, np.random.Generator):
        factors = rng.random((rows, k), dtype=dtype)
    else:
        factors = rng.random_sample((rows, k)).astype(dtype)
    factors *= dtype.type(0.01)
    return factors


# partial_fit_* may grow a factor matrix of n rows by at most len(ids) + max(n, this) rows per
# call: new ids may leave gaps, but a stray id (10**7 for a 50-row model) must not silently
# allocate millions of zero rows.
GROWTH_SLACK = 1024


def _partial_fit_ids(name: str, value: Any, factors: np.ndarray) -> np.ndarray:
    """The ids of a partial fit: unique, and within the growth bound of ``factors``."""
    ids, _ = _ranking.as_ids(name, value, np.iinfo(np.int32).max)
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"{name} holds duplicate ids ({unique[counts > 1][0]} is repeated)")
    rows = factors.shape[0]
    limit = rows + len(ids) + max(rows, GROWTH_SLACK)
    if len(ids) and ids.max() >= limit:
        raise ValueError(
            f"{name} {ids.max()} would grow the factors from {rows} to {ids.max() + 1} rows; one "
            f"call may grow them to at most {limit} rows (current rows + number of ids + "
            f"max(current rows, {GROWTH_SLACK})): call again to grow further, or assign larger "
            "factor matrices"
        )
    if len(ids) and ids.max() >= rows:
        check_memory(
            f"{name} {ids.max()}",
            (int(ids.max()) + 1) * factors.shape[1] * factors.dtype.itemsize,
            "the grown factor matrix",
        )
    return ids


def _one_id(name: str, value: Any, upper: int) -> int:
    """One id (an int) in ``0..upper``, for the methods that explain a single user and item."""
    ids, single = _ranking.as_ids(name, value, upper)
    if not single:
        raise TypeError(f"{name} must be one int, got {value!r:.80}")
    return int(ids[0])


def _check_user_weights(value: Any, k: int) -> None:
    """``value`` is what :meth:`AlternatingLeastSquares.explain` returns as ``user_weights``:
    ``scipy.linalg.cho_factor``'s ``(factor, lower)`` of a k x k system."""
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise TypeError(
            "user_weights must be None or the (factor, lower) pair explain returned for this user "
            f"(scipy.linalg.cho_factor's result), got {value!r:.80}"
        )
    factor, lower = value
    if not isinstance(factor, np.ndarray) or factor.dtype.kind != "f" or factor.shape != (k, k):
        raise ValueError(
            f"user_weights[0] must be a {k} x {k} float array (a Cholesky factor of the user's "
            f"system), got {getattr(factor, 'shape', type(factor).__name__)}"
        )
    if not isinstance(lower, bool | np.bool_):
        raise TypeError(f"user_weights[1] must be a bool (lower), got {lower!r:.80}")
    if not np.isfinite(factor).all():
        raise ValueError("user_weights[0] holds a non-finite value")


def _store_rows(factors: np.ndarray, ids: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``factors`` with ``rows`` written at ``ids``, grown with zero rows to fit the largest id."""
    needed = int(ids.max()) + 1 if len(ids) else 0
    if needed > factors.shape[0]:
        grown = np.zeros((needed, factors.shape[1]), dtype=factors.dtype)
        grown[: factors.shape[0]] = factors
        factors = grown
    factors[ids] = rows
    return factors


class _Factors:
    """A factor matrix attribute of the model: a plain numpy array (None before a fit) whose
    assignment waits for the model's readers and drops the caches ``derived`` from it."""

    def __init__(self, *derived: str) -> None:
        self.derived = derived

    def __set_name__(self, owner: type, name: str) -> None:
        self.stored = "_" + name

    @overload
    def __get__(self, model: None, owner: type) -> _Factors: ...
    @overload
    def __get__(self, model: object, owner: type) -> np.ndarray | None: ...
    def __get__(self, model: object, owner: type) -> _Factors | np.ndarray | None:
        if model is None:
            return self
        factors: np.ndarray | None = getattr(model, self.stored)
        return factors

    def __set__(self, model: object, value: np.ndarray | None) -> None:
        with lock_of(model).writing():
            setattr(model, self.stored, value)
            for cache in self.derived:
                setattr(model, cache, None)


class AlternatingLeastSquares:
    """Weighted matrix factorisation for implicit feedback (Hu, Koren & Volinsky, ICDM 2008).

    Replaces ``implicit.als.AlternatingLeastSquares`` (implicit 0.7.3, CPU; the README lists the
    differences): same arguments, defaults and confidence convention, so the same data, parameters
    and starting factors give the same factors. Each least-squares step is ``cg_steps``
    warm-started conjugate-gradient iterations (Takacs, Pilaszy & Tikk, RecSys 2011), an exact
    Cholesky solve with ``use_cg=False``, or, with ``solver="block"``, block coordinate descent
    (iALS++: Rendle, Krichene, Zhang & Anil 2021), meant for large ``factors``.

    Parameters
    ----------
    factors : int
        Number of latent factors k.
    regularization : float
        lambda, the L2 penalty on every factor row.
    alpha : float
        Confidence of a stored value r is ``alpha * |r|``; r > 0 means preference 1, r < 0
        preference 0 (explicit negative feedback), a stored 0 removes the cell from the loss.
    dtype : float32 or float64
        Type of the factor matrices.
    use_cg : bool
        Conjugate gradient (default) or exact row solves in float64 (Cholesky; rows with few items
        through one factorisation all rows share, with ``regularization_exponent=0``).
    iterations : int
        Number of ALS sweeps (users then items) per ``fit``.
    calculate_training_loss : bool
        Compute the objective after each sweep (reported to the callback and progress bar).
    num_threads : int
        Threads to use, 0 for all cores. Factors are bitwise identical for any value.
    random_state : None, int, numpy.random.Generator or numpy.random.RandomState
        Seed of the initial factors.
    cg_steps : int
        Conjugate-gradient iterations per row and half-sweep.
    regularization_exponent : float
        nu >= 0: row u is penalised by ``regularization * (n_u + unobserved_weight * n_cols) ** nu``
        (frequency-scaled regularization, Rendle et al. 2022); 0 is plain lambda.
    unobserved_weight : float
        alpha0 >= 0, the confidence of every cell that is not stored (1 in the paper).
    solver : None, "cg", "cholesky" or "block"
        The row solver; None follows ``use_cg``. ``"block"`` makes ``block_sweeps`` passes over
        blocks of ``block_size`` consecutive factors per row and half-sweep, each block solved
        exactly with the other factors fixed, warm-started from the current row: per row
        ``O(n_u k b + k^2 + k b^2)`` for block size ``b`` instead of the exact solve's
        ``O(n_u k^2 + k^3)`` and CG's ``O(cg_steps (n_u k + k^2))``. No pass raises the
        objective; ``block_size >= factors`` makes one pass the exact solve. Fold-ins
        (``recalculate_*``, ``partial_fit_*``) solve exactly whatever the solver.
    block_size : int
        Factors per block of the block solver (iALS++ uses 32 to 128).
    block_sweeps : int
        Passes over the blocks per row and half-sweep of the block solver.
    use_native, use_gpu
        Accepted for compatibility with implicit; there is one native CPU implementation.

    Threads: one model may be shared by Python threads. Reads (``recommend``, ``recommend_all``,
    ``similar_*``, ``score``, ``explain``, ``recalculate_*``, ``save``) run in parallel; ``fit``,
    ``partial_fit_*`` and assigning ``user_factors`` / ``item_factors`` wait for them and then
    run alone (a readers-writer lock, ``ials._rwlock.ReadWriteLock``, writers first), so a read
    sees the factors of before or after a change, never a half-solved state. A ``fit``
    callback may read the model. Pickles and copies get a lock of their own.
    """

    def __init__(
        self,
        factors: int = 100,
        regularization: float = 0.01,
        alpha: float = 1.0,
        dtype: Any = np.float32,
        use_native: bool = True,
        use_cg: bool = True,
        use_gpu: bool = False,
        iterations: int = 15,
        calculate_training_loss: bool = False,
        num_threads: int = 0,
        random_state: RandomState = None,
        cg_steps: int = 3,
        regularization_exponent: float = 0.0,
        unobserved_weight: float = 1.0,
        solver: str | None = None,
        block_size: int = 64,
        block_sweeps: int = 1,
    ) -> None:
        if use_gpu:
            raise ValueError("use_gpu=True is not supported: ials runs on the CPU only")
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.dtype = dtype
        self.use_native = use_native
        self.use_cg = use_cg
        self.iterations = iterations
        self.calculate_training_loss = calculate_training_loss
        self.num_threads = num_threads
        self.random_state = random_state
        self.cg_steps = cg_steps
        self.regularization_exponent = regularization_exponent
        self.unobserved_weight = unobserved_weight
        self.solver = solver
        self.block_size = block_size
        self.block_sweeps = block_sweeps
        self.user_factors = None
        self.item_factors = None
        self.fit_settings()  # checks every parameter

    user_factors = _Factors("_user_norms")
    item_factors = _Factors("_item_norms", "_item_gram", "_item_index")
    _user_factors: np.ndarray | None
    _item_factors: np.ndarray | None
    # Derived from the factors, built on first use.
    _user_norms: np.ndarray | None
    _item_norms: np.ndarray | None
    _item_gram: np.ndarray | None
    _item_index: _native.ItemIndex[Any] | None

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without what is derived from the factors (rebuilt on use): the prepared item
        index is a native object, and the rest would only make the pickle larger."""
        state = self.__dict__.copy()
        for factors in (AlternatingLeastSquares.user_factors, AlternatingLeastSquares.item_factors):
            for derived in factors.derived:
                state[derived] = None
        return state

    def _prepared_items(self, items: np.ndarray) -> _native.ItemIndex[Any]:
        """``items`` checked, norm-ordered and packed once for every later ``recommend``: a call
        then costs only its scoring. Built on first use; assigning ``item_factors`` drops it
        (the factors are replaced, never written in place, by every method of the model)."""
        index = self._item_index
        if index is None:
            index = self._item_index = _native.ItemIndex(items, self._threads())
        return index

    def fit_settings(self) -> FitSettings:
        """Every parameter a fit uses, checked (they are plain attributes and may be changed after
        ``__init__``): with :meth:`starting_factors`, what a driver that trains this model by
        other means (:func:`ials.distributed.fit`) takes from it."""
        check_int("factors", self.factors, 1)
        dtype = check_dtype(self.dtype)
        iterations = check_int("iterations", self.iterations, 0)
        solver = check_solver(
            self.solver, self.use_cg, self.cg_steps, self.block_size, self.block_sweeps
        )
        num_threads = check_int("num_threads", self.num_threads, 0)
        objective = self._objective()
        if not isinstance(self.random_state, np.random.Generator | np.random.RandomState):
            check_random_state(self.random_state)  # raises for an unsupported type
        return FitSettings(
            objective=objective,
            dtype=dtype,
            solver=solver,
            num_threads=num_threads,
            iterations=iterations,
            calculate_training_loss=bool(self.calculate_training_loss),
        )

    def _objective(self) -> Objective:
        return check_objective(
            self.regularization, self.alpha, self.regularization_exponent, self.unobserved_weight
        )

    @writes
    def fit(
        self, user_items: Any, show_progress: bool = True, callback: Callback | None = None
    ) -> None:
        """Factorise ``user_items`` (users x items, any scipy.sparse format; CSR avoids a copy).

        Continues from ``user_factors`` / ``item_factors`` when they are set with shapes that fit
        the data (as implicit does); otherwise starts from random factors drawn from
        ``random_state``. ``callback(iteration, seconds, loss)`` runs after each sweep, with
        ``loss`` None unless ``calculate_training_loss`` is set; a callback that raises
        ``ials.callbacks.StopFitting`` ends training after that sweep (``ials.EarlyStopping``
        does).
        """
        settings = self.fit_settings()
        csr = as_csr(user_items, "user_items")
        n_users, n_items = csr.shape
        k = int(self.factors)
        check_memory(
            f"factors={k}",
            (n_users + n_items) * k * settings.dtype.itemsize + 2 * k * k * 8,
            f"{n_users} user and {n_items} item factor rows and the {k} x {k} Gram matrix",
        )
        user_rows, item_rows = core_rows(csr), core_rows(transpose(csr))
        for rows in (user_rows, item_rows):
            check_penalty(rows, settings.objective, settings.dtype)
        x, y = self.starting_factors(n_users, n_items)
        train(
            self,
            LocalHalfSweeps(user_rows, item_rows, x, y, settings),
            settings,
            show_progress,
            callback,
        )

    @writes
    def starting_factors(self, n_users: int, n_items: int) -> tuple[np.ndarray, np.ndarray]:
        """The user and item factors a fit on ``n_users x n_items`` data starts from, now held by
        the model: the current ones when their shapes fit (cast to ``dtype`` if needed),
        otherwise new ones drawn from ``random_state``."""
        dtype = check_dtype(self.dtype)
        k = check_int("factors", self.factors, 1)
        current = (self.user_factors, self.item_factors)
        if all(
            isinstance(f, np.ndarray) and f.ndim == 2 and f.shape == (rows, k)
            for f, rows in zip(current, (n_users, n_items), strict=True)
        ):
            users, items = (self._usable(f, dtype) for f in current)
            self.user_factors, self.item_factors = users, items
            return users, items
        if any(f is not None for f in current):
            log.info(
                "factor shapes do not fit %d x %d data with %d factors: re-initialising",
                n_users,
                n_items,
                k,
            )
        rng = check_random_state(self.random_state)
        users = _random_factors(rng, n_users, k, dtype)
        items = _random_factors(rng, n_items, k, dtype)
        self.user_factors, self.item_factors = users, items
        return users, items

    @staticmethod
    def _usable(factors: Any, dtype: np.dtype[Any]) -> np.ndarray:
        """A writeable C-contiguous ``dtype`` array of finite values (a copy only if needed)."""
        array = np.require(factors, dtype=dtype, requirements=["C", "W"])
        if not np.isfinite(array).all():
            raise ValueError(
                "the model's existing factors hold non-finite values; set them to None to restart"
            )
        return array

    # ----------------------------------------------------------------------------------------
    # Ranking

    def fitted_factors(self) -> tuple[np.ndarray, np.ndarray]:
        """The user and item factors as C-contiguous arrays of the same dtype (assigned factors may
        be views or Fortran-ordered; the Rust core reads rows); ValueError before a fit."""
        if self.user_factors is None or self.item_factors is None:
            raise ValueError("the model is not fitted: call fit() first")
        users, items = self.user_factors, self.item_factors
        if not (users.flags.c_contiguous and items.flags.c_contiguous):
            # Same values, so what was derived from them stays valid; set without the setters,
            # which wait for the readers this may run under.
            self._user_factors = users = np.ascontiguousarray(users)
            self._item_factors = items = np.ascontiguousarray(items)
        return users, items

    def _threads(self) -> int:
        return check_int("num_threads", self.num_threads, 0)

    def _solve_exact(
        self, rows: Any, name: str, fixed: np.ndarray, gram: np.ndarray | None
    ) -> np.ndarray:
        """Exact solve of each row of ``rows`` against ``fixed`` (fold-in), with the training
        objective."""
        check_gram_memory(f"factors={fixed.shape[1]}", fixed.shape[1])
        core = core_rows(as_csr(rows, name, warn=False))
        objective = self._objective()
        check_penalty(core, objective, fixed.dtype)
        solved = np.zeros((core.shape[0], fixed.shape[1]), dtype=fixed.dtype)
        half_sweep(core, solved, fixed, gram, objective, EXACT, self._threads())
        return solved

    def _item_side_gram(self) -> np.ndarray:
        _, items = self.fitted_factors()
        if self._item_gram is None:  # cached: every fold-in and explanation of a user needs it
            check_gram_memory(f"factors={items.shape[1]}", items.shape[1])
            self._item_gram = gram(items, self._threads())
        return self._item_gram

    @reads
    def recalculate_user(self, userid: Any, user_items: Any) -> np.ndarray:
        """The user vectors an exact solve of ``user_items`` (one row per id) gives against the
        current item factors, without storing them; works for users never seen in training."""
        _, items = self.fitted_factors()
        ids, single = _ranking.as_ids("userid", userid, np.iinfo(np.int32).max)
        rows = _ranking.rows_for("user_items", user_items, len(ids), items.shape[0])
        solved = self._solve_exact(rows, "user_items", items, self._item_side_gram())
        return solved[0] if single else solved

    @reads
    def recalculate_item(self, itemid: Any, item_users: Any) -> np.ndarray:
        """The item vectors an exact solve of ``item_users`` (one row per id, users as columns)
        gives against the current user factors, without storing them."""
        users, _ = self.fitted_factors()
        ids, single = _ranking.as_ids("itemid", itemid, np.iinfo(np.int32).max)
        rows = _ranking.rows_for("item_users", item_users, len(ids), users.shape[0])
        solved = self._solve_exact(rows, "item_users", users, None)
        return solved[0] if single else solved

    @writes
    def partial_fit_users(self, userids: Any, user_items: Any) -> None:
        """Solve these users exactly against the current item factors and store them (row j of
        ``user_items`` for ``userids[j]``); ids beyond the current range grow ``user_factors`` with
        zero rows. Item factors do not change. Ids must be unique, and one call grows a matrix of
        n rows by at most ``len(userids) + max(n, 1024)`` rows (``ValueError`` otherwise)."""
        users, items = self.fitted_factors()
        ids = _partial_fit_ids("userids", userids, users)
        rows = _ranking.rows_for("user_items", user_items, len(ids), items.shape[0])
        solved = self._solve_exact(rows, "user_items", items, self._item_side_gram())
        self.user_factors = _store_rows(users, ids, solved)

    @writes
    def partial_fit_items(self, itemids: Any, item_users: Any) -> None:
        """Solve these items exactly against the current user factors and store them (row j of
        ``item_users``, items x users, for ``itemids[j]``); ids beyond the current range grow
        ``item_factors``. User factors do not change. Ids are bounded as in
        :meth:`partial_fit_users`. ``item_users`` may have fewer columns than the model has users
        (users added since): the missing columns are read as empty, as implicit does."""
        users, items = self.fitted_factors()
        ids = _partial_fit_ids("itemids", itemids, items)
        rows = _ranking.rows_for("item_users", item_users, len(ids), users.shape[0])
        solved = self._solve_exact(rows, "item_users", users, None)
        self.item_factors = _store_rows(items, ids, solved)

    @reads
    def explain(
        self,
        userid: int,
        user_items: Any,
        itemid: int,
        user_weights: Any = None,
        N: int = 10,
    ) -> tuple[float, list[tuple[int, float]], Any]:
        """Why ``itemid`` scores as it does for ``userid`` (Hu, Koren & Volinsky, section 5).

        With ``A_u`` the user's system matrix, the score of item i under the exact solve
        ``x_u = A_u^-1 b_u`` is ``sum_j (y_i^T A_u^-1 y_j) c_uj p_uj`` over the user's items j.
        Returns ``(score, [(item, contribution), ...], user_weights)``: the score of that exact
        solve, the ``N`` largest contributions, and the Cholesky factor of ``A_u`` (as
        ``scipy.linalg.cho_factor`` returns it) to pass back for further items of the same user.
        ``user_items`` is the full users x items matrix or just this user's row; a user unseen in
        training is explained from their row. All contributions sum to the score.
        """
        from scipy.linalg import cho_factor, cho_solve

        _, items = self.fitted_factors()
        item = _one_id("itemid", itemid, items.shape[0])
        n = _ranking.check_n(N)
        row = self._user_row(userid, user_items, items.shape[0])
        indices, data = row.indices.astype(np.int32), row.data.astype(np.float32)
        a, b = _native.normal_equations(
            indices, data, items, self._item_side_gram(), self._objective()
        )
        if user_weights is None:
            user_weights = cho_factor(a, lower=True)
        else:
            _check_user_weights(user_weights, items.shape[1])
        x = cho_solve(user_weights, b)
        y_item = items[item].astype(np.float64)
        total = float(y_item @ x)
        confidence = np.abs(data.astype(np.float64)) * float(self.alpha)
        weight = np.where(data > 0, confidence, 0.0)  # c_uj p_uj: only positive items contribute
        similarity = items[indices].astype(np.float64) @ cho_solve(user_weights, y_item)
        contributions = similarity * weight
        listed = np.flatnonzero(weight > 0)  # only liked items explain a score
        order = listed[np.lexsort((indices[listed], -contributions[listed]))][:n]
        top = [(int(indices[j]), float(contributions[j])) for j in order]
        return total, top, user_weights

    def _user_row(self, userid: Any, user_items: Any, n_items: int) -> Any:
        """One user's row from the full matrix or from a single-row matrix."""
        csr = as_csr(user_items, "user_items", warn=False)
        if csr.shape[1] != n_items:
            raise ValueError(
                f"user_items must have {n_items} columns (one per item), got shape {csr.shape}"
            )
        if csr.shape[0] == 1:
            _one_id("userid", userid, np.iinfo(np.int32).max)
            return csr
        user = _one_id("userid", userid, csr.shape[0])
        return csr[user]

    @reads
    def recommend(
        self,
        userid: Any,
        user_items: Any,
        N: int = 10,
        filter_already_liked_items: bool = True,
        filter_items: Any = None,
        recalculate_user: bool = False,
        items: Any = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The best ``N`` items for a user (an int: 1-D ``(ids, scores)``) or for each of several
        users (an array of ids: 2-D arrays, one row per user).

        ``user_items`` holds one row per requested user (row j for ``userid[j]``), used to drop
        the items the user already has (``filter_already_liked_items``) and, with
        ``recalculate_user=True``, to compute the user's vector by an exact solve instead of using
        the stored one (so users who are new or changed since ``fit`` are served correctly).
        ``filter_items`` are never returned; with ``items`` only those ids are ranked, and all of
        them are (as implicit): the ones the user already has come after the others, by
        increasing id, with score -inf. Results are sorted by score, ties by lower item id. Fewer
        than ``N`` eligible items: the single form returns fewer, the batch form pads each row
        with id -1 and score -inf up to ``min(N, number of items)`` columns. Otherwise filtered
        items are never returned (implicit returns them with score -3.4e38). ``user_items`` with
        fewer columns than the model has items (items added by :meth:`partial_fit_items` since)
        is read as if the missing columns were empty.
        """
        users, item_factors = self.fitted_factors()
        n = _ranking.check_n(N)
        upper = np.iinfo(np.int32).max if recalculate_user else users.shape[0]
        ids, single = _ranking.as_ids("userid", userid, upper)
        rows = None
        if filter_already_liked_items or recalculate_user:
            rows = _ranking.rows_for("user_items", user_items, len(ids), item_factors.shape[0])
        blocked, candidates, eligible = _ranking.selection(
            "filter_items", filter_items, "items", items, item_factors.shape[0]
        )
        if recalculate_user:
            queries = self._solve_exact(rows, "user_items", item_factors, self._item_side_gram())
        else:
            queries = users[ids]
        liked = rows if filter_already_liked_items else None
        result = _ranking.top_k(
            queries,
            item_factors,
            n,
            liked,
            blocked,
            candidates,
            eligible,
            self._threads(),
            None if candidates is not None else self._prepared_items(item_factors),
        )
        if liked is not None and candidates is not None:
            _ranking.liked_last(*result, liked, candidates, blocked)
        return _ranking.single(*result) if single else result

    @reads
    def recommend_all(
        self,
        user_items: Any = None,
        N: int = 10,
        recalculate_user: bool = False,
        filter_already_liked_items: bool = True,
        filter_items: Any = None,
        users_items_offset: int = 0,
        items: Any = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``recommend`` for many users at once, with implicit's positional arguments: row j of
        ``user_items`` belongs to user ``users_items_offset + j`` (every user when
        ``user_items`` is None). Returns ``(ids, scores)`` of shape ``(n, min(N, n_items))``,
        padded with -1 / -inf (implicit returns the ids only). Users are scored in blocks against
        strips of items in parallel, each user only until no remaining item can enter its top N;
        the full users x items score matrix is never formed."""
        users, _ = self.fitted_factors()
        offset = check_int("users_items_offset", users_items_offset, 0)
        if user_items is not None:
            check_sparse("user_items", user_items)
        n_rows = users.shape[0] - offset if user_items is None else user_items.shape[0]
        return self.recommend(
            np.arange(offset, offset + max(n_rows, 0)),
            user_items,
            N=N,
            filter_already_liked_items=filter_already_liked_items,
            filter_items=filter_items,
            recalculate_user=recalculate_user,
            items=items,
        )

    @reads
    def similar_items(
        self,
        itemid: Any,
        N: int = 10,
        recalculate_item: bool = False,
        item_users: Any = None,
        filter_items: Any = None,
        items: Any = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``N`` items most similar to ``itemid`` (int or array) by cosine of their factors,
        the query item itself included (as implicit). With ``recalculate_item=True`` the query
        vectors are solved from ``item_users`` (one row per id, users as columns)."""
        users, item_factors = self.fitted_factors()
        if self._item_norms is None:
            self._item_norms = _ranking.normalized(item_factors)
        if recalculate_item:
            ids, single = _ranking.as_ids("itemid", itemid, np.iinfo(np.int32).max)
            rows = _ranking.rows_for("item_users", item_users, len(ids), users.shape[0])
            queries = _ranking.normalized(self._solve_exact(rows, "item_users", users, None))
        else:
            ids, single = _ranking.as_ids("itemid", itemid, item_factors.shape[0])
            queries = self._item_norms[ids]
        return self._similar(
            queries, self._item_norms, single, N, "filter_items", filter_items, "items", items
        )

    @reads
    def similar_users(
        self, userid: Any, N: int = 10, filter_users: Any = None, users: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``N`` users most similar to ``userid`` (int or array) by cosine of their factors,
        the query user included."""
        user_factors, _ = self.fitted_factors()
        if self._user_norms is None:
            self._user_norms = _ranking.normalized(user_factors)
        ids, single = _ranking.as_ids("userid", userid, user_factors.shape[0])
        return self._similar(
            self._user_norms[ids],
            self._user_norms,
            single,
            N,
            "filter_users",
            filter_users,
            "users",
            users,
        )

    def _similar(
        self,
        queries: np.ndarray,
        targets: np.ndarray,
        single: bool,
        N: int,
        filter_name: str,
        filter_ids: Any,
        only_name: str,
        only_ids: Any,
    ) -> tuple[np.ndarray, np.ndarray]:
        n = _ranking.check_n(N)
        blocked, candidates, eligible = _ranking.selection(
            filter_name, filter_ids, only_name, only_ids, targets.shape[0]
        )
        result = _ranking.top_k(
            queries, targets, n, None, blocked, candidates, eligible, self._threads()
        )
        return _ranking.single(*result) if single else result

    @reads
    def score(self, userids: Any, itemids: Any) -> np.ndarray:
        """Predicted preference ``x_u . y_i`` for each (user, item) pair; ``userids`` and
        ``itemids`` broadcast against each other (a scalar pair gives a numpy scalar)."""
        users, items = self.fitted_factors()
        u = np.asarray(userids)
        i = np.asarray(itemids)
        u_ids, _ = _ranking.as_ids("userids", u.reshape(-1), users.shape[0])
        i_ids, _ = _ranking.as_ids("itemids", i.reshape(-1), items.shape[0])
        try:
            u_ids, i_ids = np.broadcast_arrays(u_ids.reshape(u.shape), i_ids.reshape(i.shape))
        except ValueError as err:
            raise ValueError(
                f"userids {u.shape} and itemids {i.shape} do not broadcast together"
            ) from err
        return np.einsum("...k,...k->...", users[u_ids], items[i_ids])

    # ----------------------------------------------------------------------------------------
    # Files

    @reads
    def save(self, fileobj_or_path: Any, interactions: Any = None) -> None:
        """Writes the model to a numpy ``.npz`` file (``.npz`` is appended to a path without it).

        The file holds a format name and version, every constructor parameter, the factors and a
        SHA-256 checksum of all of them, and, with ``interactions`` (the
        :class:`ials.Interactions` the model was fitted on), that matrix with its raw user and
        item ids, read back by ``ials.Interactions.load(path)``. A path is written atomically:
        a temporary file in the same directory, flushed to disk, then renamed over the target,
        so an interrupted save never leaves a broken file where a good one was. A
        ``random_state`` that is a Generator or RandomState is not saved (it loads as None).
        implicit 0.7.3 can load the file too (it ignores what it does not know).
        """
        from ._persistence import save_model

        save_model(self, fileobj_or_path, interactions)

    @classmethod
    def load(cls, fileobj_or_path: Any) -> AlternatingLeastSquares:
        """The model in a file written by :meth:`save` or by implicit 0.7.3's ``save``.

        Reads with ``allow_pickle=False`` (loading never runs code; a file holding an object
        array is refused) and raises ``ValueError`` for a truncated, corrupted, hand-edited or
        unknown-version file, or one whose parameters and factors do not fit together.
        """
        from ._persistence import load_model

        model: AlternatingLeastSquares = load_model(cls, fileobj_or_path)
        return model
