"""The model: implicit-feedback matrix factorisation trained by alternating least squares."""

from __future__ import annotations

import logging
import numbers
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ._progress import Progress
from ._validation import as_csr, check_dtype, check_float, check_int, core_rows, transpose
from .solver import Objective, half_sweep, loss

log = logging.getLogger(__name__)

RandomState = None | int | np.random.Generator | np.random.RandomState
Callback = Callable[[int, float, "float | None"], Any]


def _rng(random_state: Any) -> np.random.Generator | np.random.RandomState:
    if random_state is None:
        return np.random.default_rng()
    if isinstance(random_state, np.random.Generator | np.random.RandomState):
        return random_state
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return np.random.default_rng(int(random_state))
    raise TypeError(
        "random_state must be None, an int, a numpy.random.Generator or a RandomState, "
        f"got {random_state!r}"
    )


def _random_factors(
    rng: np.random.Generator | np.random.RandomState, rows: int, k: int, dtype: np.dtype[Any]
) -> np.ndarray:
    # Generator.random with the factor dtype is what implicit 0.7.3 draws, so a seed gives the
    # same starting point in both libraries.
    if isinstance(rng, np.random.Generator):
        return rng.random((rows, k), dtype=dtype) * dtype.type(0.01)
    return rng.random_sample((rows, k)).astype(dtype) * dtype.type(0.01)


class AlternatingLeastSquares:
    """Weighted matrix factorisation for implicit feedback (Hu, Koren & Volinsky, ICDM 2008).

    A drop-in for ``implicit.als.AlternatingLeastSquares`` (implicit 0.7.3, CPU): same arguments,
    defaults and confidence convention, so the same data, parameters and starting factors give the
    same factors. Each least-squares step is ``cg_steps`` warm-started conjugate-gradient
    iterations (Takacs, Pilaszy & Tikk, RecSys 2011), or an exact Cholesky solve with
    ``use_cg=False``.

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
        Conjugate gradient (default) or exact Cholesky row solves.
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
    use_native, use_gpu
        Accepted for compatibility with implicit; there is one native CPU implementation.
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
        self.user_factors: np.ndarray | None = None
        self.item_factors: np.ndarray | None = None
        self._check_parameters()

    def _check_parameters(self) -> None:
        """Checks every parameter (they are plain attributes and may be changed after __init__)."""
        check_int("factors", self.factors, 1)
        check_dtype(self.dtype)
        check_int("iterations", self.iterations, 0)
        check_int("cg_steps", self.cg_steps, 1)
        check_int("num_threads", self.num_threads, 0)
        self._objective()
        if not isinstance(self.random_state, np.random.Generator | np.random.RandomState):
            _rng(self.random_state)  # raises for an unsupported type

    def _objective(self) -> Objective:
        return (
            check_float("regularization", self.regularization),
            check_float("alpha", self.alpha),
            check_float("regularization_exponent", self.regularization_exponent),
            check_float("unobserved_weight", self.unobserved_weight),
        )

    def fit(
        self, user_items: Any, show_progress: bool = True, callback: Callback | None = None
    ) -> None:
        """Factorise ``user_items`` (users x items, any scipy.sparse format; CSR avoids a copy).

        Continues from ``user_factors`` / ``item_factors`` when they are set with shapes that fit
        the data (as implicit does); otherwise starts from random factors drawn from
        ``random_state``. ``callback(iteration, seconds, loss)`` runs after each sweep, with
        ``loss`` None unless ``calculate_training_loss`` is set.
        """
        self._check_parameters()
        objective = self._objective()
        dtype = check_dtype(self.dtype)
        cg_steps = int(self.cg_steps)
        threads = int(self.num_threads)
        csr = as_csr(user_items, "user_items")
        n_users, n_items = csr.shape
        user_rows, item_rows = core_rows(csr), core_rows(transpose(csr))
        self._initialise(n_users, n_items, dtype)
        x, y = self.user_factors, self.item_factors
        assert x is not None and y is not None

        current_loss: float | None = None
        with Progress(self.iterations, show_progress) as progress:
            for iteration in range(self.iterations):
                start = time.perf_counter()
                half_sweep(user_rows, x, y, None, objective, bool(self.use_cg), cg_steps, threads)
                half_sweep(item_rows, y, x, None, objective, bool(self.use_cg), cg_steps, threads)
                if self.calculate_training_loss:
                    current_loss = loss(user_rows, x, y, objective, threads)
                    if not show_progress:
                        log.info("iteration %d: loss %.6g", iteration, current_loss)
                progress.update(current_loss)
                if callback is not None:
                    callback(iteration, time.perf_counter() - start, current_loss)

    def _initialise(self, n_users: int, n_items: int, dtype: np.dtype[Any]) -> None:
        """Keeps factors that fit (cast to ``dtype`` if needed); draws new ones otherwise."""
        k = int(self.factors)
        current = (self.user_factors, self.item_factors)
        if all(
            isinstance(f, np.ndarray) and f.ndim == 2 and f.shape == (rows, k)
            for f, rows in zip(current, (n_users, n_items), strict=True)
        ):
            self.user_factors, self.item_factors = (self._usable(f, dtype) for f in current)
            return
        if any(f is not None for f in current):
            log.info(
                "factor shapes do not fit %d x %d data with %d factors: re-initialising",
                n_users,
                n_items,
                k,
            )
        rng = _rng(self.random_state)
        self.user_factors = _random_factors(rng, n_users, k, dtype)
        self.item_factors = _random_factors(rng, n_items, k, dtype)

    @staticmethod
    def _usable(factors: Any, dtype: np.dtype[Any]) -> np.ndarray:
        """A writeable C-contiguous ``dtype`` array of finite values (a copy only if needed)."""
        array = np.require(factors, dtype=dtype, requirements=["C", "W"])
        if not np.isfinite(array).all():
            raise ValueError(
                "the model's existing factors hold non-finite values; set them to None to restart"
            )
        return array
