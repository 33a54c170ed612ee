"""Checks and normalisation of everything that crosses into the Rust core, done once per call.

Sparse input of any scipy format becomes CSR with float32 values, int64 row offsets, int32
column indices, sorted and without duplicates; the caller's matrix is never modified.
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp

FACTOR_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class ParameterWarning(UserWarning):
    """An argument was accepted but converted at a cost (a sparse matrix copied to CSR)."""


def check_int(name: str, value: Any, minimum: int) -> int:
    """An integer (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def check_float(name: str, value: Any, minimum: float = 0.0, *, exclusive: bool = False) -> float:
    """A finite real number >= ``minimum`` (> ``minimum`` when ``exclusive``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < minimum or (exclusive and number == minimum):
        bound = f"> {minimum}" if exclusive else f">= {minimum}"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return number


def physical_memory() -> int | None:
    """Bytes of physical memory of this machine, None where the platform does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name
        return None


def _bytes(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    units = ("KiB", "MiB", "GiB", "TiB", "PiB")
    power = min(int(math.log(n, 1024)), len(units))
    return f"{n / 1024**power:.1f} {units[power - 1]}"


def check_memory(subject: str, nbytes: int, purpose: str) -> None:
    """Raises ``MemoryError`` naming ``subject`` (the argument and its value) before a call
    allocates ``nbytes`` (at least) when that is more than the machine's physical memory: such an
    allocation either fails inside native code, which aborts the process, or swaps the machine
    to a halt."""
    limit = physical_memory()
    if limit is not None and nbytes > limit:
        raise MemoryError(
            f"{subject} needs at least {_bytes(nbytes)} for {purpose}, more than the "
            f"{_bytes(limit)} of physical memory"
        )


def check_random_state(value: Any) -> np.random.Generator | np.random.RandomState:
    """A random generator from None (fresh entropy), a non-negative int seed, a
    ``numpy.random.Generator`` or a legacy ``RandomState`` (used as given)."""
    if value is None:
        return np.random.default_rng()
    if isinstance(value, np.random.Generator | np.random.RandomState):
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"random_state must be a non-negative seed, got {value!r}")
        return np.random.default_rng(int(value))
    raise TypeError(
        "random_state must be None, an int, a numpy.random.Generator or a RandomState, "
        f"got {value!r}"
    )


def check_dtype(value: Any) -> np.dtype[Any]:
    """The factor dtype: float32 or float64."""
    try:
        dtype: np.dtype[Any] = np.dtype(value)
    except TypeError as err:
        raise TypeError(f"dtype must be float32 or float64, got {value!r}") from err
    if dtype not in FACTOR_DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {dtype.name}")
    return dtype


def check_sparse(name: str, matrix: Any) -> None:
    """``matrix`` is a 2-D scipy.sparse matrix or array of real (or boolean) numbers."""
    if not sp.issparse(matrix):
        raise TypeError(
            f"{name} must be a scipy.sparse matrix or array, got {type(matrix).__name__}"
        )
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be 2-dimensional, got shape {matrix.shape}")
    if matrix.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {matrix.dtype}")
    _check_structure(name, matrix)


def _check_structure(name: str, matrix: Any) -> None:
    """The index arrays of ``matrix`` are consistent and in range, whatever its format.

    scipy trusts them once constructed (its attributes can be reassigned, a dok's keys written
    as a dict's), and its C++ routines (conversion, transpose, sorting) read and write out of
    bounds when they are not; this check runs before any of them touches the data.
    """
    fmt = matrix.format
    if fmt == "lil":
        lengths = [(len(r), len(d)) for r, d in zip(matrix.rows, matrix.data, strict=False)]
        if not len(matrix.rows) == len(matrix.data) == matrix.shape[0] or any(
            n_indices != n_values for n_indices, n_values in lengths
        ):
            raise ValueError(f"{name}.rows and {name}.data must hold as many entries, row by row")
    if fmt in ("lil", "dok"):
        # Their conversion to COO copies entries in Python and Cython; the COO it gives is what
        # scipy's C++ reads next, so that is what is checked.
        try:
            coo = matrix.tocoo()
        except (OverflowError, IndexError, KeyError, ValueError) as err:  # garbage written in
            raise ValueError(f"{name} is not a valid {fmt} matrix: {err}") from None
        _check_structure(name, coo)
        return
    if fmt == "dia":
        offsets = _index_array(name, "offsets", matrix.offsets)
        diagonals = _data_array(name, matrix.data, 2)
        if len(offsets) != diagonals.shape[0]:
            raise ValueError(
                f"{name} has {len(offsets)} diagonal offsets but {diagonals.shape[0]} diagonals"
            )
        if len(np.unique(offsets)) != len(offsets):
            raise ValueError(f"{name}.offsets holds a diagonal twice")
        return
    if fmt == "coo":
        row, col = (_index_array(name, what, getattr(matrix, what)) for what in ("row", "col"))
        data = _data_array(name, matrix.data, 1)
        if not len(row) == len(col) == len(data):
            raise ValueError(
                f"{name} has {len(row)} row indices, {len(col)} column indices and {len(data)} "
                "values; they must be equally many"
            )
        _check_range(name, "row", row, matrix.shape[0])
        _check_range(name, "column", col, matrix.shape[1])
        return
    block = matrix.blocksize if fmt == "bsr" else (1, 1)
    rows, cols = matrix.shape[0] // block[0], matrix.shape[1] // block[1]
    major, minor = (cols, rows) if fmt == "csc" else (rows, cols)
    indptr = _index_array(name, "indptr", matrix.indptr)
    indices = _index_array(name, "indices", matrix.indices)
    data = _data_array(name, matrix.data, 3 if fmt == "bsr" else 1)
    if len(indptr) != major + 1:
        raise ValueError(
            f"{name}.indptr must have {major + 1} entries for {major} "
            f"{'columns' if fmt == 'csc' else 'rows'}, got {len(indptr)}"
        )
    if len(indices) != len(data):
        raise ValueError(
            f"{name} has {len(indices)} indices but {len(data)} values; they must be equally many"
        )
    if indptr[0] != 0:
        raise ValueError(f"{name}.indptr must start at 0, got {indptr[0]}")
    falls = indptr[1:] < indptr[:-1]  # not np.diff, which wraps around for unsigned types
    if falls.any():
        at = int(np.argmax(falls))
        raise ValueError(
            f"{name}.indptr must be non-decreasing, got {indptr[at]} then {indptr[at + 1]} "
            f"at positions {at} and {at + 1}"
        )
    if indptr[-1] > len(indices):
        raise ValueError(
            f"{name}.indptr ends at {indptr[-1]} but there are only {len(indices)} indices"
        )
    _check_range(name, "row" if fmt == "csc" else "column", indices[: indptr[-1]], minor)


def _index_array(name: str, what: str, value: Any) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.ndim != 1 or value.dtype.kind not in "iu":
        raise ValueError(f"{name}.{what} must be a 1-D integer array, got {value!r:.80}")
    return value


def _data_array(name: str, value: Any, ndim: int) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.ndim != ndim:
        raise ValueError(f"{name}.data must be a {ndim}-D numpy array, got {value!r:.80}")
    return value


def _check_range(name: str, what: str, indices: np.ndarray, size: int) -> None:
    if not len(indices):
        return
    low, high = indices.min(), indices.max()
    if low < 0 or high >= size:
        bad = low if low < 0 else high
        raise ValueError(f"{name} has {what} index {bad}, outside 0..{size - 1}")


def as_csr(matrix: Any, name: str, *, warn: bool = True) -> sp.csr_matrix:
    """``matrix`` as canonical CSR (float32 values, sorted, no duplicates), checked finite.

    Shares the caller's arrays when they already have that form, otherwise copies; a format
    other than CSR is converted with a ``ParameterWarning``, as implicit does, because the
    conversion copies the whole matrix.
    """
    check_sparse(name, matrix)
    if matrix.format != "csr":
        if warn:
            warnings.warn(
                f"{name} is a {type(matrix).__name__}, converting it to CSR copies it; "
                "pass a csr_matrix or csr_array to avoid the copy",
                ParameterWarning,
                stacklevel=3,
            )
        matrix = matrix.tocsr()
    if matrix.shape[1] > np.iinfo(np.int32).max:
        raise ValueError(
            f"{name} has {matrix.shape[1]} columns; at most {np.iinfo(np.int32).max} are supported"
        )
    result = sp.csr_matrix(matrix, dtype=np.float32, copy=False)
    finite = np.isfinite(result.data)
    if not finite.all():
        bad = np.asarray(matrix.data)[~finite][0]
        raise ValueError(
            f"{name} holds a value that is not finite in float32 ({bad}); every value must be"
        )
    if not result.has_canonical_format:
        # sum_duplicates sorts in place: it must run on a copy, never on the caller's arrays.
        result = result.copy()
        result.sum_duplicates()
    return result


class CoreRows(NamedTuple):
    """A canonical CSR matrix in the exact types the Rust core reads (``_native.Csr``)."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    shape: tuple[int, int]


def core_rows(csr: sp.csr_matrix) -> CoreRows:
    """``csr`` as int64 row offsets, int32 column indices and float32 values (scipy picks its own
    index types; only the short ``indptr`` is usually copied)."""
    return CoreRows(
        np.asarray(csr.indptr).astype(np.int64, copy=False),
        np.asarray(csr.indices).astype(np.int32, copy=False),
        np.asarray(csr.data).astype(np.float32, copy=False),
        (int(csr.shape[0]), int(csr.shape[1])),
    )


def transpose(csr: sp.csr_matrix) -> sp.csr_matrix:
    """The canonical CSR form of ``csr.T``."""
    transposed = csr.T.tocsr()
    transposed.sort_indices()
    return transposed


def check_factor_matrix(
    name: str, value: Any, rows: int | None = None, dtype: np.dtype[Any] | None = None
) -> np.ndarray:
    """A finite, C-contiguous, 2-D float32/float64 array, optionally of given rows and dtype."""
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(value).__name__}")
    if value.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {value.shape}")
    if value.dtype not in FACTOR_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {value.dtype}")
    if dtype is not None and value.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {value.dtype}")
    if rows is not None and value.shape[0] != rows:
        raise ValueError(f"{name} must have {rows} rows, got shape {value.shape}")
    if not (value.flags.c_contiguous and value.flags.aligned):
        # Arrays unpickled from a network buffer can be unaligned; the core reads whole values.
        raise ValueError(
            f"{name} must be C-contiguous and aligned (use np.require({name}, requirements='CA'))"
        )
    if value.size and not np.isfinite(value).all():
        raise ValueError(f"{name} holds a non-finite value")
    return value
