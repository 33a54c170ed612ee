"""Type stub of the Rust extension (rust/ials-py). Arguments are checked by the Python callers."""

import numpy as np
import numpy.typing as npt

__all__ = [
    "gram_f32",
    "gram_f64",
    "loss_f32",
    "loss_f64",
    "normal_equations_f32",
    "normal_equations_f64",
    "ranking_metrics_f32",
    "ranking_metrics_f64",
    "resolve_threads",
    "simd_level",
    "solve_rows_f32",
    "solve_rows_f64",
    "top_k_f32",
    "top_k_f64",
]

def solve_rows_f32(
    indptr: npt.NDArray[np.int64],
    indices: npt.NDArray[np.int32],
    data: npt.NDArray[np.float32],
    n_cols: int,
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.float32],
    gram: npt.NDArray[np.float64],
    regularization: float,
    alpha: float,
    regularization_exponent: float,
    unobserved_weight: float,
    use_cg: bool,
    cg_steps: int,
    num_threads: int,
) -> None: ...
def solve_rows_f64(
    indptr: npt.NDArray[np.int64],
    indices: npt.NDArray[np.int32],
    data: npt.NDArray[np.float32],
    n_cols: int,
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    gram: npt.NDArray[np.float64],
    regularization: float,
    alpha: float,
    regularization_exponent: float,
    unobserved_weight: float,
    use_cg: bool,
    cg_steps: int,
    num_threads: int,
) -> None: ...
def gram_f32(y: npt.NDArray[np.float32], num_threads: int) -> npt.NDArray[np.float64]: ...
def gram_f64(y: npt.NDArray[np.float64], num_threads: int) -> npt.NDArray[np.float64]: ...
def loss_f32(
    indptr: npt.NDArray[np.int64],
    indices: npt.NDArray[np.int32],
    data: npt.NDArray[np.float32],
    n_cols: int,
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.float32],
    regularization: float,
    alpha: float,
    regularization_exponent: float,
    unobserved_weight: float,
    num_threads: int,
) -> float: ...
def loss_f64(
    indptr: npt.NDArray[np.int64],
    indices: npt.NDArray[np.int32],
    data: npt.NDArray[np.float32],
    n_cols: int,
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    regularization: float,
    alpha: float,
    regularization_exponent: float,
    unobserved_weight: float,
    num_threads: int,
) -> float: ...
def simd_level() -> str: ...
def resolve_threads(num_threads: int) -> int: ...
def normal_equations_f32(
    indices: npt.NDArray[np.int32],
    data: npt.NDArray[np.float32],
    y: npt.NDArray[np.float32],
    gram: npt.NDArray[np.float64],
    regularization: float,
    alpha: float,
    regularization_exponent: float,
    unobserved_weight: float,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
def normal_equations_f64(
    indices: npt.NDArray[np.int32],
    data: npt.NDArray[np.float32],
    y: npt.NDArray[np.float64],
    gram: npt.NDArray[np.float64],
    regularization: float,
    alpha: float,
    regularization_exponent: float,
    unobserved_weight: float,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
def top_k_f32(
    queries: npt.NDArray[np.float32],
    items: npt.NDArray[np.float32],
    n: int,
    liked: tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.float32]] | None,
    blocked: npt.NDArray[np.bool_] | None,
    candidates: npt.NDArray[np.int32] | None,
    num_threads: int,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]: ...
def top_k_f64(
    queries: npt.NDArray[np.float64],
    items: npt.NDArray[np.float64],
    n: int,
    liked: tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.float32]] | None,
    blocked: npt.NDArray[np.bool_] | None,
    candidates: npt.NDArray[np.int32] | None,
    num_threads: int,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float64]]: ...
def ranking_metrics_f32(
    users: npt.NDArray[np.float32],
    items: npt.NDArray[np.float32],
    train: tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.float32]],
    test: tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.float32]],
    cutoff: int,
    full_ranking: bool,
    num_threads: int,
) -> npt.NDArray[np.float64]: ...
def ranking_metrics_f64(
    users: npt.NDArray[np.float64],
    items: npt.NDArray[np.float64],
    train: tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.float32]],
    test: tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.float32]],
    cutoff: int,
    full_ranking: bool,
    num_threads: int,
) -> npt.NDArray[np.float64]: ...
