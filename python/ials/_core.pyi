"""Type stub of the Rust extension (rust/ials-py). Only :mod:`ials._native` imports it.

Callers pass values Python has already validated and normalised: canonical CSR matrices with
int64 ``indptr``, int32 ``indices`` and float32 ``data``; C-contiguous factor matrices, all
float32 or all float64 within one call. Errors: ``ValueError`` for bad values (shapes, CSR
invariants, non-finite numbers, parameters out of range, a singular system),
``TypeError`` for wrong types or mixed factor dtypes, ``RuntimeError`` when a thread pool cannot
start, ``KeyboardInterrupt`` when Ctrl-C stops a call (checked between blocks of rows).
"""

from typing import Generic, Protocol, TypeVar, final

import numpy as np
import numpy.typing as npt

_F = TypeVar("_F", np.float32, np.float64)

__all__ = [
    "GRAM_BLOCK_ROWS",
    "MAX_THREADS",
    "ItemIndex",
    "LossTerms",
    "Objective",
    "Solver",
    "TurnedBasis",
    "gram",
    "gram_blocks",
    "gram_sum",
    "loss_terms",
    "normal_equations",
    "penalty",
    "ranking_metrics",
    "simd_level",
    "solve_rows",
    "top_k",
    "turning_pays",
]

GRAM_BLOCK_ROWS: int
MAX_THREADS: int

class _Csr(Protocol):
    """What the core reads of a scipy CSR matrix."""

    @property
    def indptr(self) -> npt.NDArray[np.int64]: ...
    @property
    def indices(self) -> npt.NDArray[np.int32]: ...
    @property
    def data(self) -> npt.NDArray[np.float32]: ...
    @property
    def shape(self) -> tuple[int, int]: ...

@final
class Objective:
    def __new__(
        cls,
        regularization: float,
        alpha: float,
        regularization_exponent: float,
        unobserved_weight: float,
    ) -> Objective: ...
    @property
    def regularization(self) -> float: ...
    @property
    def alpha(self) -> float: ...
    @property
    def regularization_exponent(self) -> float: ...
    @property
    def unobserved_weight(self) -> float: ...
    def __reduce__(self) -> tuple[type[Objective], tuple[float, float, float, float]]: ...

@final
class LossTerms:
    def __new__(
        cls, error: float, weight: float, row_penalty: float, column_penalty: float
    ) -> LossTerms: ...
    def __reduce__(self) -> tuple[type[LossTerms], tuple[float, float, float, float]]: ...
    @property
    def error(self) -> float: ...
    @property
    def weight(self) -> float: ...
    @property
    def row_penalty(self) -> float: ...
    @property
    def column_penalty(self) -> float: ...
    def normalised(self) -> float: ...

@final
class ItemIndex(Generic[_F]):
    """Item factors prepared once for many top-K calls (checked, norm-ordered, packed): a copy,
    to be rebuilt when the factors change."""

    def __new__(cls, items: npt.NDArray[_F], num_threads: int) -> ItemIndex[_F]: ...
    @property
    def shape(self) -> tuple[int, int]: ...
    def top_k(
        self,
        queries: npt.NDArray[_F],
        n: int,
        liked: _Csr | None,
        blocked: npt.NDArray[np.bool_] | None,
        num_threads: int,
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[_F]]: ...

@final
class Solver:
    """How each row's least-squares problem is solved."""

    @staticmethod
    def cg(steps: int) -> Solver: ...
    @staticmethod
    def cholesky() -> Solver: ...
    @staticmethod
    def block(size: int, sweeps: int) -> Solver: ...

def solve_rows(
    rows: _Csr,
    x: npt.NDArray[_F],
    y: npt.NDArray[_F],
    gram: npt.NDArray[np.float64],
    objective: Objective,
    solver: Solver,
    num_threads: int,
) -> None: ...
def normal_equations(
    indices: npt.NDArray[np.int32],
    data: npt.NDArray[np.float32],
    y: npt.NDArray[_F],
    gram: npt.NDArray[np.float64],
    objective: Objective,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
def gram(y: npt.NDArray[_F], num_threads: int) -> npt.NDArray[np.float64]: ...
def gram_blocks(y: npt.NDArray[_F], num_threads: int) -> npt.NDArray[np.float64]: ...
def gram_sum(blocks: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]: ...

@final
class TurnedBasis:
    """The product of the bases a fit has turned its factors to."""

    def __init__(self) -> None: ...
    def reduce(
        self,
        gram: npt.NDArray[np.float64],
        x: npt.NDArray[_F],
        y: npt.NDArray[_F],
        num_threads: int,
    ) -> npt.NDArray[np.float64]: ...
    def restore(self, x: npt.NDArray[_F], y: npt.NDArray[_F], num_threads: int) -> None: ...

def turning_pays(solver: Solver, n_rows: int, n_fixed: int, k: int) -> bool: ...
def loss_terms(
    rows: _Csr,
    x: npt.NDArray[_F],
    y: npt.NDArray[_F],
    objective: Objective,
    num_threads: int,
) -> LossTerms: ...
def penalty(rows: _Csr, x: npt.NDArray[_F], objective: Objective) -> float: ...
def top_k(
    queries: npt.NDArray[_F],
    items: npt.NDArray[_F],
    n: int,
    liked: _Csr | None,
    blocked: npt.NDArray[np.bool_] | None,
    candidates: npt.NDArray[np.int32] | None,
    num_threads: int,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[_F]]: ...
def ranking_metrics(
    users: npt.NDArray[_F],
    items: npt.NDArray[_F],
    train: _Csr,
    test: _Csr,
    cutoff: int,
    full_ranking: bool,
    num_threads: int,
) -> npt.NDArray[np.float64]: ...
def simd_level() -> str: ...
