"""Tests of ials.confidence: the paper's confidence transforms (Hu et al. 2008, section 4)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from ials import confidence

SPARSE_CLASSES: list[Any] = [
    sp.csr_matrix,
    sp.csr_array,
    sp.csc_matrix,
    sp.csc_array,
    sp.coo_matrix,
    sp.coo_array,
    sp.bsr_matrix,
    sp.bsr_array,
    sp.dia_matrix,
    sp.dia_array,
    sp.lil_matrix,
    sp.lil_array,
    sp.dok_matrix,
    sp.dok_array,
]
CLASS_IDS = [cls.__name__ for cls in SPARSE_CLASSES]

# A small play-count matrix with empty rows/columns and a range of magnitudes.
DENSE = np.array(
    [
        [0.0, 2.0, 0.0, 3.0, 0.0],
        [1.0, 0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 250.0, 0.0, 0.5],
    ],
    dtype=np.float32,
)


def _expected_linear(dense: np.ndarray, alpha: float) -> np.ndarray:
    out = np.zeros(dense.shape)
    nz = dense != 0
    out[nz] = 1.0 + alpha * dense[nz].astype(np.float64)
    return out


def _expected_log(dense: np.ndarray, alpha: float, eps: float) -> np.ndarray:
    out = np.zeros(dense.shape)
    nz = dense != 0
    out[nz] = 1.0 + alpha * np.log(1.0 + dense[nz].astype(np.float64) / eps)
    return out


def _stored_values(m: Any) -> np.ndarray:
    """Values of the stored cells, whatever the format (dia padding dropped by tocoo)."""
    return np.asarray(m.tocoo().data)


# --- values -------------------------------------------------------------------------------------


def test_linear_known_values() -> None:
    R = sp.csr_matrix(np.array([[2.0, 0.0], [0.0, 0.25]], dtype=np.float32))
    out = confidence.linear(R, 40.0)
    # 1 + 40 * 2 = 81 and 1 + 40 * 0.25 = 11, exact in float32.
    assert out.toarray().tolist() == [[81.0, 0.0], [0.0, 11.0]]


def test_log_known_values() -> None:
    # r / eps = e - 1 gives log(1 + r / eps) = 1, so c = 1 + alpha.
    r = 2.0 * (math.e - 1.0)
    R = sp.csr_matrix(np.array([[r, 0.0, 2.0]]))
    out = confidence.log(R, 3.0, eps=2.0)
    np.testing.assert_allclose(out.toarray(), [[4.0, 0.0, 1.0 + 3.0 * math.log(2.0)]], rtol=1e-14)


def test_log_default_eps_is_one() -> None:
    R = sp.csr_matrix(np.array([[math.e - 1.0, 0.0]]))
    out = confidence.log(R, 5.0)
    np.testing.assert_allclose(out.toarray(), [[6.0, 0.0]], rtol=1e-14)


@pytest.mark.parametrize("cls", SPARSE_CLASSES, ids=CLASS_IDS)
def test_linear_every_format(cls: Any) -> None:
    R = cls(DENSE)
    out = confidence.linear(R, 3.5)
    assert type(out) is cls
    assert out.shape == DENSE.shape
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.toarray(), _expected_linear(DENSE, 3.5), rtol=1e-6)
    stored = _stored_values(out)
    assert stored.size == np.count_nonzero(DENSE)
    assert np.all(stored >= 1.0)


@pytest.mark.parametrize("cls", SPARSE_CLASSES, ids=CLASS_IDS)
def test_log_every_format(cls: Any) -> None:
    R = cls(DENSE)
    out = confidence.log(R, 2.0, eps=0.5)
    assert type(out) is cls
    assert out.shape == DENSE.shape
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.toarray(), _expected_log(DENSE, 2.0, 0.5), rtol=1e-6)
    stored = _stored_values(out)
    assert stored.size == np.count_nonzero(DENSE)
    assert np.all(stored >= 1.0)


@pytest.mark.parametrize("cls", [sp.csr_matrix, sp.csc_array, sp.coo_matrix], ids=str)
def test_result_is_canonical(cls: Any) -> None:
    out = confidence.log(cls(DENSE), 1.0)
    assert out.has_canonical_format


def test_bsr_result_stores_no_padding() -> None:
    # Block-diagonal 2x2 blocks with one hole: a blocked format would store the hole as a
    # zero, which the model reads as "remove this cell" rather than "unobserved".
    dense = np.kron(np.eye(4), np.ones((2, 2))) * 3.0
    dense[0, 1] = 0.0
    R = sp.bsr_matrix(dense, blocksize=(2, 2))
    assert np.count_nonzero(R.data == 0) == 1
    out = confidence.linear(R, 1.0)
    assert type(out) is sp.bsr_matrix
    assert out.nnz == np.count_nonzero(dense) == 15
    assert np.all(out.data >= 1.0)
    np.testing.assert_allclose(out.toarray(), _expected_linear(dense, 1.0))


def test_duplicates_are_summed_before_the_transform() -> None:
    R = sp.coo_matrix(([1.0, 2.0, 4.0], ([0, 0, 1], [1, 1, 0])), shape=(2, 2))
    lin = confidence.linear(R, 1.0)
    # The cell (0, 1) holds 1 + 2 = 3: 1 + 3 = 4, not (1 + 1) + (1 + 2) = 5.
    np.testing.assert_allclose(lin.toarray(), [[0.0, 4.0], [5.0, 0.0]])
    assert lin.nnz == 2
    lg = confidence.log(sp.csr_matrix(R), 1.0)
    np.testing.assert_allclose(lg.toarray(), [[0.0, 1.0 + math.log(4.0)], [1.0 + math.log(5.0), 0]])
    assert lg.nnz == 2


@pytest.mark.parametrize("cls", [sp.csr_matrix, sp.csc_array, sp.coo_array, sp.lil_matrix])
def test_explicit_zeros_are_dropped(cls: Any) -> None:
    R = sp.csr_matrix(([0.0, 3.0, 0.0], [0, 1, 2], [0, 2, 3]), shape=(2, 3))
    assert R.nnz == 3  # two explicit zeros
    out = confidence.linear(cls(R) if cls is not sp.csr_matrix else R, 2.0)
    np.testing.assert_allclose(out.toarray(), [[0.0, 7.0, 0.0], [0.0, 0.0, 0.0]])
    assert _stored_values(out).tolist() == [7.0]


def test_alpha_zero_gives_all_ones() -> None:
    for f in (confidence.linear, confidence.log):
        out = f(sp.csr_matrix(DENSE), 0.0)
        assert out.nnz == np.count_nonzero(DENSE)
        assert np.all(out.data == 1.0)


def test_empty_matrix() -> None:
    R = sp.csr_array((3, 4), dtype=np.float32)
    out = confidence.log(R, 1.0)
    assert type(out) is sp.csr_array
    assert out.shape == (3, 4)
    assert out.nnz == 0


def test_log_grows_slower_than_linear() -> None:
    R = sp.csr_matrix(np.array([[1.0, 10.0, 100.0, 1000.0]]))
    lin = confidence.linear(R, 1.0).toarray()[0]
    lg = confidence.log(R, 1.0).toarray()[0]
    assert np.all(np.diff(lg) > 0)
    assert np.all(lg < lin)
    # log(1 + 1000) is under 7: the top cell is not 1000x the bottom one.
    assert lg[-1] < 8.0


@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, max_side=6),
        elements=st.one_of(st.just(0.0), st.floats(0.0, 1e6)),
    ),
    st.floats(0.0, 100.0),
    st.floats(1e-3, 1e3),
)
def test_transforms_match_formula(dense: np.ndarray, alpha: float, eps: float) -> None:
    R = sp.csr_array(dense)
    lin = confidence.linear(R, alpha)
    lg = confidence.log(R, alpha, eps)
    assert lin.dtype == np.float64
    np.testing.assert_allclose(lin.toarray(), _expected_linear(dense, alpha), rtol=1e-12)
    np.testing.assert_allclose(lg.toarray(), _expected_log(dense, alpha, eps), rtol=1e-12)
    assert lin.nnz == lg.nnz == np.count_nonzero(dense)


# --- dtypes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        (np.float64, np.float64),
        (np.float32, np.float32),
        (np.longdouble, np.float32),
        (np.int64, np.float32),
        (np.int32, np.float32),
        (np.uint8, np.float32),
        (np.bool_, np.float32),
    ],
)
def test_output_dtype(dtype: Any, expected: Any) -> None:
    R = sp.csr_matrix(np.array([[0, 1], [1, 0]], dtype=dtype))
    for out in (confidence.linear(R, 2.0), confidence.log(R, 2.0)):
        assert out.dtype == expected
    np.testing.assert_allclose(confidence.linear(R, 2.0).toarray(), [[0, 3], [3, 0]])


def test_integer_duplicates_do_not_overflow() -> None:
    R = sp.coo_matrix((np.array([200, 100], dtype=np.uint8), ([0, 0], [0, 0])), shape=(1, 1))
    out = confidence.linear(R, 1.0)
    assert out.toarray()[0, 0] == 301.0


# --- the input is left alone ---------------------------------------------------------------------


@pytest.mark.parametrize("cls", SPARSE_CLASSES, ids=CLASS_IDS)
@pytest.mark.parametrize("transform", ["linear", "log"])
def test_input_not_mutated(cls: Any, transform: str) -> None:
    # Non-canonical on purpose: duplicates and an explicit zero, which the transform resolves.
    base = sp.coo_matrix(
        ([1.0, 2.0, 0.0, 5.0], ([0, 0, 1, 2], [1, 1, 0, 2])), shape=(3, 3), dtype=np.float32
    )
    R = base if cls is sp.coo_matrix else cls(base)
    before = R.copy()
    snapshot = {
        name: np.array(getattr(R, name), copy=True)
        for name in ("data", "indices", "indptr", "row", "col", "offsets")
        if isinstance(getattr(R, name, None), np.ndarray)
    }
    out = getattr(confidence, transform)(R, 2.0)
    assert out is not R
    assert type(R) is cls
    assert R.dtype == np.float32
    assert R.nnz == before.nnz
    np.testing.assert_array_equal(R.toarray(), before.toarray())
    for name, arr in snapshot.items():
        np.testing.assert_array_equal(getattr(R, name), arr, err_msg=name)
    for name in ("data", "indices", "indptr", "row", "col"):
        a, b = getattr(R, name, None), getattr(out, name, None)
        if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
            assert not np.shares_memory(a, b), name
    # And writing into the result leaves the input alone.
    out_dense_before = R.toarray()
    out_csr = out.tocsr()
    out_csr.data[:] = -7.0
    np.testing.assert_array_equal(R.toarray(), out_dense_before)


def test_output_shares_no_memory_even_when_canonical() -> None:
    R = sp.csr_matrix(DENSE)
    assert R.has_canonical_format
    out = confidence.linear(R, 0.0)
    for name in ("data", "indices", "indptr"):
        assert not np.shares_memory(getattr(R, name), getattr(out, name)), name


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [DENSE, DENSE.tolist(), np.asmatrix(DENSE), None, 3.0])
@pytest.mark.parametrize("transform", ["linear", "log"])
def test_non_sparse_is_a_type_error(bad: Any, transform: str) -> None:
    with pytest.raises(TypeError, match=r"\bR\b"):
        getattr(confidence, transform)(bad, 1.0)


@pytest.mark.parametrize(
    ("value", "shown"), [(np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf"), (-1.5, "-1.5")]
)
@pytest.mark.parametrize("transform", ["linear", "log"])
@pytest.mark.parametrize("cls", [sp.csr_matrix, sp.csc_matrix, sp.coo_array, sp.dok_array])
def test_bad_values_are_a_value_error(value: float, shown: str, transform: str, cls: Any) -> None:
    dense = DENSE.astype(np.float64)
    dense[3, 1] = value
    with pytest.raises(ValueError, match=rf"\bR\b.*{shown}.*\(3, 1\)"):
        getattr(confidence, transform)(cls(dense), 1.0)


def test_negative_cell_after_summing_duplicates_is_rejected() -> None:
    R = sp.coo_matrix(([1.0, -3.0], ([0, 0], [0, 0])), shape=(1, 1))
    with pytest.raises(ValueError, match=r"\bR\b.*-2"):
        confidence.log(R, 1.0)


def test_complex_values_are_a_type_error() -> None:
    R = sp.csr_matrix(np.array([[1 + 1j, 0]]))
    with pytest.raises(TypeError, match=r"\bR\b.*complex"):
        confidence.linear(R, 1.0)


def test_one_dimensional_sparse_array_is_rejected() -> None:
    try:
        R = sp.coo_array(np.array([1.0, 0.0, 2.0]))
    except (TypeError, ValueError):  # scipy without 1-d sparse arrays
        pytest.skip("this scipy has no 1-d sparse arrays")
    with pytest.raises(ValueError, match=r"\bR\b.*2-dimensional"):
        confidence.linear(R, 1.0)


@pytest.mark.parametrize("alpha", [-1.0, -1e-9, np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("transform", ["linear", "log"])
def test_bad_alpha_is_a_value_error(alpha: float, transform: str) -> None:
    with pytest.raises(ValueError, match=r"alpha.*" + str(alpha).replace("-", r"\-")):
        getattr(confidence, transform)(sp.csr_matrix(DENSE), alpha)


@pytest.mark.parametrize("alpha", ["1", None, True, 1j])
@pytest.mark.parametrize("transform", ["linear", "log"])
def test_non_number_alpha_is_a_type_error(alpha: Any, transform: str) -> None:
    with pytest.raises(TypeError, match="alpha"):
        getattr(confidence, transform)(sp.csr_matrix(DENSE), alpha)


@pytest.mark.parametrize("eps", [0.0, -2.0, np.nan, np.inf])
def test_bad_eps_is_a_value_error(eps: float) -> None:
    with pytest.raises(ValueError, match=r"eps.*" + str(eps).replace("-", r"\-")):
        confidence.log(sp.csr_matrix(DENSE), 1.0, eps)


@pytest.mark.parametrize("eps", ["1", None, False])
def test_non_number_eps_is_a_type_error(eps: Any) -> None:
    with pytest.raises(TypeError, match="eps"):
        confidence.log(sp.csr_matrix(DENSE), 1.0, eps)


def test_numpy_scalars_are_accepted() -> None:
    out = confidence.log(sp.csr_matrix(DENSE), np.float32(2.0), eps=np.int64(1))
    np.testing.assert_allclose(out.toarray(), _expected_log(DENSE, 2.0, 1.0), rtol=1e-6)


def test_module_does_not_import_the_extension() -> None:
    import ast
    from pathlib import Path

    source = Path(confidence.__file__).read_text(encoding="utf-8")
    names = {
        alias.name if isinstance(node, ast.Import) else f"{node.module}"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert not any("_core" in (name or "") for name in names), names
