"""Parity with implicit 0.7.3 (`implicit.cpu.als`), run side by side on small problems.

Every expected value here comes from implicit itself or from an independent dense float64
computation; nothing is compared with ials' own earlier output.

Facts about implicit 0.7.3 these tests rely on (checked by running it):

- `fit` casts the matrix to float32, multiplies it by `alpha` (in float32), and alternates
  users-then-items; rows without stored entries become zero vectors.
- The native CG solver takes `regularization` as a C `float`, so with float64 factors it uses
  `float32(regularization)`; the exact solver uses the float64 value. The float64 CG comparison
  therefore gives both libraries a float32-exact regularization. Alphas are powers of two and
  values integers, so implicit's float32 `alpha * R` is exact.
- Initial factors are `default_rng(seed).random((n_users, k), dtype) * 0.01`, then items likewise.
- `calculate_loss` is the true objective for positive values and stored zeros, but adds the
  constant |c| for every stored negative value (the p=0 term has no constant), so its loss is too
  high by sum|c_neg| / total_weight there. For negative values we test against the dense objective.
- Duplicate entries in a non-canonical CSR are used one by one by implicit (each adds c - 1 to the
  system); ials sums them first, so the duplicate test compares with implicit on the summed matrix.

Tolerances (relative Frobenius error, max over user and item factors):

- float64: 1e-9. Two float64 implementations of the same steps differ by rounding amplified by at
  most ~1e5 in the first, badly conditioned sweeps (measured: implicit against an independent NumPy
  CG, worst 1.1e-11).
- float32, cold start (the usual 0.01-scale random factors): the first sweeps are badly conditioned
  (A ~ reg*I, x ~ b/reg), so CG in float32 is rounding-sensitive: implicit float32 itself is up to
  ~6e-3 away from implicit float64 on these problems, and how far a given float32 implementation
  lands varies several-fold from case to case (an independent NumPy float32 CG: 0.3x..1.6x
  implicit's distance; ials: up to 4.7x here, while ials is closer than implicit at warm start).
  The bound is max(1e-4, 10 * implicit's own float32-to-float64 distance), measured per case. The
  tight checks of the arithmetic are the float64 and warm-start tests.
- float32, warm start (factors near an ALS fixed point): implicit float32 is within ~2e-6 of
  implicit float64 (measured); bound 1e-4.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import ials
import implicit.cpu.als as implicit_als
import implicit.utils as implicit_utils
import numpy as np
import numpy.typing as npt
import pytest
import scipy.sparse as sp
import threadpoolctl

FloatArray = npt.NDArray[np.floating[Any]]
Factors = tuple[FloatArray, FloatArray]

N_USERS = 120
N_ITEMS = 90
DENSITY = 0.08
ITERATIONS = 3

TOL_F64 = 1e-9
TOL_F32_FLOOR = 1e-4
TOL_F32_COLD_FACTOR = 10.0
TOL_F32_WARM = 1e-4

# (regularization, alpha); the first three are float32-exact, 0.01 and 0.05 are not.
REG_ALPHA = [(0.5, 1.0), (0.125, 1.0), (0.0625, 2.0), (0.01, 4.0), (0.05, 0.5)]
FACTORS = [8, 17, 32]
FIT_CASES = list(itertools.product(FACTORS, REG_ALPHA, [True, False], ["positive", "signed"]))
FIT_IDS = [
    f"k{k}-reg{reg}-alpha{alpha}-{'cg' if cg else 'exact'}-{kind}"
    for k, (reg, alpha), cg, kind in FIT_CASES
]


@pytest.fixture(scope="module", autouse=True)
def _single_threaded_blas() -> Iterator[None]:
    # implicit warns (RuntimeWarning) at construction when OpenBLAS runs several threads, and its
    # own docs ask for one BLAS thread; this also keeps the comparison single-threaded.
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        yield


def make_matrix(seed: int, kind: str) -> sp.csr_matrix:
    """Canonical float32 CSR with geometric counts; user 0 and item 0 are empty.

    kind "signed" also negates ~15% of the values, stores ~5% explicit zeros, and gives user 1 a
    single stored zero as its only entry.
    """
    rng = np.random.default_rng(seed)
    mask = rng.random((N_USERS, N_ITEMS)) < DENSITY
    mask[0, :] = False
    mask[:, 0] = False
    if kind == "signed":
        mask[1, :] = False
    rows, cols = np.nonzero(mask)
    values = rng.geometric(0.3, size=rows.size).astype(np.float32)
    if kind == "signed":
        values[rng.random(values.size) < 0.15] *= -1
        values[rng.random(values.size) < 0.05] = 0
        rows = np.append(rows, 1)
        cols = np.append(cols, 2)
        values = np.append(values, np.float32(0))
    elif kind != "positive":
        raise AssertionError(kind)
    matrix = sp.csr_matrix((values, (rows, cols)), shape=(N_USERS, N_ITEMS), dtype=np.float32)
    matrix.sum_duplicates()
    matrix.sort_indices()
    if kind == "signed":
        assert (matrix.data == 0).any()
        assert (matrix.data < 0).any()
    return matrix


def cold_start(seed: int, factors: int, dtype: type[np.floating[Any]]) -> Factors:
    rng = np.random.default_rng(seed)
    return (
        rng.random((N_USERS, factors), dtype=dtype) * 0.01,
        rng.random((N_ITEMS, factors), dtype=dtype) * 0.01,
    )


def implicit_fit(
    matrix: sp.spmatrix,
    start: Factors,
    *,
    dtype: type[np.floating[Any]],
    iterations: int = ITERATIONS,
    cg_steps: int = 3,
    callback: Callable[[int, float, float | None], None] | None = None,
    **params: Any,
) -> Factors:
    model = implicit_als.AlternatingLeastSquares(
        factors=start[0].shape[1],
        dtype=dtype,
        iterations=iterations,
        num_threads=1,
        **params,
    )
    model.cg_steps = cg_steps
    model.user_factors = np.array(start[0], dtype=dtype, order="C")
    model.item_factors = np.array(start[1], dtype=dtype, order="C")
    model.fit(matrix, show_progress=False, callback=callback)
    return model.user_factors, model.item_factors


def ials_fit(
    matrix: sp.spmatrix,
    start: Factors,
    *,
    dtype: type[np.floating[Any]],
    iterations: int = ITERATIONS,
    cg_steps: int = 3,
    callback: Callable[[int, float, float | None], None] | None = None,
    **params: Any,
) -> Factors:
    model = ials.AlternatingLeastSquares(
        factors=start[0].shape[1],
        dtype=dtype,
        iterations=iterations,
        num_threads=1,
        cg_steps=cg_steps,
        **params,
    )
    model.user_factors = np.array(start[0], dtype=dtype, order="C")
    model.item_factors = np.array(start[1], dtype=dtype, order="C")
    model.fit(matrix, show_progress=False, callback=callback)
    assert model.user_factors is not None
    assert model.item_factors is not None
    assert model.user_factors.dtype == dtype
    assert model.item_factors.dtype == dtype
    return model.user_factors, model.item_factors


def rel_err(got: Factors, expected: Factors) -> float:
    """Largest relative Frobenius error of the two factor matrices, computed in float64."""
    errors = []
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape
        g64 = np.asarray(g, dtype=np.float64)
        e64 = np.asarray(e, dtype=np.float64)
        errors.append(float(np.linalg.norm(g64 - e64) / np.linalg.norm(e64)))
    return max(errors)


def assert_same_zero_rows(got: Factors, expected: Factors) -> None:
    for g, e in zip(got, expected, strict=True):
        zero_rows = np.flatnonzero(~e.any(axis=1))
        np.testing.assert_array_equal(g[zero_rows], 0)


@pytest.mark.parametrize(("factors", "reg_alpha", "use_cg", "kind"), FIT_CASES, ids=FIT_IDS)
def test_fit_float64_matches_implicit(
    factors: int, reg_alpha: tuple[float, float], use_cg: bool, kind: str
) -> None:
    reg, alpha = reg_alpha
    if use_cg:
        # implicit's CG rounds the regularization to float32 (a C float argument), which moves
        # its float64 result by ~1e-8 when reg is not float32-exact (0.01, 0.05); give both
        # libraries the float32 value so that the comparison can be tight.
        reg = float(np.float32(reg))
    matrix = make_matrix(factors, kind)
    start = cold_start(factors + 1, factors, np.float64)
    params: dict[str, Any] = {"regularization": reg, "alpha": alpha, "use_cg": use_cg}

    expected = implicit_fit(matrix, start, dtype=np.float64, **params)
    got = ials_fit(matrix, start, dtype=np.float64, **params)
    err = rel_err(got, expected)
    assert err < TOL_F64, f"relative error {err:.3e}"
    assert_same_zero_rows(got, expected)
    # empty user 0 and empty item 0 (the zero-row fact itself, from implicit)
    assert not expected[0][0].any()
    assert not expected[1][0].any()


@pytest.mark.parametrize(("factors", "reg_alpha", "use_cg", "kind"), FIT_CASES, ids=FIT_IDS)
def test_fit_float32_cold_start_matches_implicit(
    factors: int, reg_alpha: tuple[float, float], use_cg: bool, kind: str
) -> None:
    reg, alpha = reg_alpha
    matrix = make_matrix(factors, kind)
    start = cold_start(factors + 1, factors, np.float32)
    params: dict[str, Any] = {"regularization": reg, "alpha": alpha, "use_cg": use_cg}

    expected32 = implicit_fit(matrix, start, dtype=np.float32, **params)
    expected64 = implicit_fit(matrix, start, dtype=np.float64, **params)
    tol = max(TOL_F32_FLOOR, TOL_F32_COLD_FACTOR * rel_err(expected32, expected64))
    got = ials_fit(matrix, start, dtype=np.float32, **params)
    err32 = rel_err(got, expected32)
    err64 = rel_err(got, expected64)
    detail = f"vs implicit float32 {err32:.3e}, vs implicit float64 {err64:.3e}, bound {tol:.3e}"
    assert err32 < tol, detail
    assert err64 < tol, detail
    assert_same_zero_rows(got, expected32)


@pytest.mark.parametrize(("factors", "reg_alpha", "use_cg", "kind"), FIT_CASES, ids=FIT_IDS)
def test_fit_float32_warm_start_matches_implicit(
    factors: int, reg_alpha: tuple[float, float], use_cg: bool, kind: str
) -> None:
    reg, alpha = reg_alpha
    matrix = make_matrix(factors, kind)
    params: dict[str, Any] = {"regularization": reg, "alpha": alpha, "use_cg": use_cg}
    # a start near an ALS fixed point: 15 exact float64 sweeps of implicit
    warm = implicit_fit(
        matrix,
        cold_start(factors + 1, factors, np.float64),
        dtype=np.float64,
        iterations=15,
        regularization=reg,
        alpha=alpha,
        use_cg=False,
    )
    start = (warm[0].astype(np.float32), warm[1].astype(np.float32))

    expected32 = implicit_fit(matrix, start, dtype=np.float32, **params)
    expected64 = implicit_fit(matrix, start, dtype=np.float64, **params)
    got = ials_fit(matrix, start, dtype=np.float32, **params)
    err32 = rel_err(got, expected32)
    err64 = rel_err(got, expected64)
    detail = f"vs implicit float32 {err32:.3e}, vs implicit float64 {err64:.3e}"
    assert err32 < TOL_F32_WARM, detail
    assert err64 < TOL_F32_WARM, detail


@pytest.mark.parametrize("cg_steps", [1, 2])
@pytest.mark.parametrize("kind", ["positive", "signed"])
def test_fit_cg_steps_match_implicit(cg_steps: int, kind: str) -> None:
    # Only few steps: once CG has nearly converged (|r|^2 just above implicit's 1e-20 stop),
    # further steps divide rounding noise by rounding noise, and any two float64 implementations
    # drift apart (measured implicit vs an independent NumPy CG: 1e-7 at 5 steps, 1e-3 at 8).
    matrix = make_matrix(7, kind)
    start = cold_start(8, 16, np.float64)
    params: dict[str, Any] = {"regularization": 0.125, "alpha": 2.0, "use_cg": True}
    expected = implicit_fit(matrix, start, dtype=np.float64, cg_steps=cg_steps, **params)
    got = ials_fit(matrix, start, dtype=np.float64, cg_steps=cg_steps, **params)
    assert rel_err(got, expected) < TOL_F64


@pytest.mark.parametrize("factors", [8, 16])
@pytest.mark.parametrize("kind", ["positive", "signed"])
def test_fit_converged_cg_matches_implicit_exact(factors: int, kind: str) -> None:
    # With 4k steps CG runs until |r|^2 < 1e-20, i.e. it solves each row system exactly up to
    # |r| ~ 1e-10; implicit's Cholesky solver is the reference (measured gap 3e-10 for both
    # implicit's CG and ials' CG).
    matrix = make_matrix(7, kind)
    start = cold_start(8, factors, np.float64)
    params: dict[str, Any] = {"regularization": 0.125, "alpha": 2.0}
    expected = implicit_fit(matrix, start, dtype=np.float64, use_cg=False, **params)
    got = ials_fit(matrix, start, dtype=np.float64, use_cg=True, cg_steps=4 * factors, **params)
    assert rel_err(got, expected) < 1e-7


@pytest.mark.parametrize("use_cg", [True, False])
def test_duplicates_are_summed(use_cg: bool) -> None:
    canonical = make_matrix(3, "positive")
    # split every value v into v - 1 and 1 (dropping zeros): same sum, duplicate entries
    coo = canonical.tocoo()
    first = coo.data - 1
    keep = first != 0
    rows = np.concatenate([coo.row[keep], coo.row])
    cols = np.concatenate([coo.col[keep], coo.col])
    data = np.concatenate([first[keep], np.ones_like(coo.data)])
    order = np.argsort(rows, kind="stable")
    indptr = np.zeros(N_USERS + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=N_USERS), out=indptr[1:])
    duplicated = sp.csr_matrix(
        (data[order], cols[order].astype(np.int32), indptr), shape=canonical.shape
    )
    assert not duplicated.has_canonical_format
    assert duplicated.nnz > canonical.nnz
    np.testing.assert_array_equal(duplicated.toarray(), canonical.toarray())

    start = cold_start(4, 12, np.float64)
    params: dict[str, Any] = {"regularization": 0.125, "alpha": 2.0, "use_cg": use_cg}
    expected = implicit_fit(canonical, start, dtype=np.float64, **params)
    got = ials_fit(duplicated, start, dtype=np.float64, **params)
    assert rel_err(got, expected) < TOL_F64


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", [0, 42, 2**40 + 3])
@pytest.mark.parametrize("as_generator", [False, True])
def test_same_seed_same_initial_factors(
    dtype: type[np.floating[Any]], seed: int, as_generator: bool
) -> None:
    matrix = make_matrix(5, "positive")
    k = 11

    def state() -> int | np.random.Generator:
        return np.random.default_rng(seed) if as_generator else seed

    reference = implicit_als.AlternatingLeastSquares(
        factors=k, dtype=dtype, iterations=0, random_state=state(), num_threads=1
    )
    reference.fit(matrix, show_progress=False)
    model = ials.AlternatingLeastSquares(
        factors=k, dtype=dtype, iterations=0, random_state=state(), num_threads=1
    )
    model.fit(matrix, show_progress=False)

    rng = np.random.default_rng(seed)
    users = rng.random((N_USERS, k), dtype=dtype) * 0.01
    items = rng.random((N_ITEMS, k), dtype=dtype) * 0.01
    # the documented formula is what implicit does ...
    np.testing.assert_array_equal(reference.user_factors, users)
    np.testing.assert_array_equal(reference.item_factors, items)
    # ... and ials reproduces it bit for bit
    assert model.user_factors is not None
    assert model.item_factors is not None
    assert model.user_factors.dtype == dtype
    assert model.item_factors.dtype == dtype
    np.testing.assert_array_equal(model.user_factors, users)
    np.testing.assert_array_equal(model.item_factors, items)


def random_factors(seed: int, k: int, scale: float, dtype: type[np.floating[Any]]) -> Factors:
    rng = np.random.default_rng(seed)
    return (
        (rng.standard_normal((N_USERS, k)) * scale).astype(dtype),
        (rng.standard_normal((N_ITEMS, k)) * scale).astype(dtype),
    )


def implicit_scaled(matrix: sp.csr_matrix, alpha: float) -> sp.csr_matrix:
    """What implicit's fit passes to its loss: float32 values times alpha, stored zeros kept."""
    scaled = matrix.astype(np.float32)
    return scaled if alpha == 1.0 else alpha * scaled


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["positive", "positive_with_zeros"])
@pytest.mark.parametrize(("reg", "alpha"), [(0.5, 1.0), (0.0625, 4.0), (2.0, 0.5)])
@pytest.mark.parametrize("scale", [0.01, 0.5])
def test_calculate_loss_matches_implicit(
    dtype: type[np.floating[Any]], kind: str, reg: float, alpha: float, scale: float
) -> None:
    matrix = make_matrix(11, "positive")
    if kind == "positive_with_zeros":
        matrix.data[::7] = 0  # stored zeros: implicit's loss handles them exactly (weight 0)
    x, y = random_factors(12, 9, scale, dtype)
    expected = implicit_als.calculate_loss(implicit_scaled(matrix, alpha), x, y, reg, num_threads=1)
    got = ials.calculate_loss(matrix, x, y, reg, alpha=alpha, num_threads=1)
    # implicit accumulates in double; float32 factors only round the dot products (measured
    # worst 4e-8 against a dense float64 objective)
    tol = 1e-5 if dtype == np.float32 else 1e-10
    assert got == pytest.approx(expected, rel=tol)
    assert got == pytest.approx(dense_objective(matrix, x, y, reg, alpha=alpha), rel=tol)


def dense_objective(
    matrix: sp.csr_matrix,
    x: FloatArray,
    y: FloatArray,
    reg: float,
    *,
    alpha: float = 1.0,
    unobserved_weight: float = 1.0,
    regularization_exponent: float = 0.0,
) -> float:
    """The objective of API_SPEC / DESIGN section 1, every cell spelled out, in float64."""
    values = np.zeros(matrix.shape)
    stored = np.zeros(matrix.shape, dtype=bool)
    coo = matrix.tocoo()
    values[coo.row, coo.col] = alpha * coo.data.astype(np.float64)
    stored[coo.row, coo.col] = True
    preference = (values > 0).astype(np.float64)
    weight = np.where(stored, np.abs(values), unobserved_weight)
    x64 = np.asarray(x, dtype=np.float64)
    y64 = np.asarray(y, dtype=np.float64)
    n_users, n_items = matrix.shape
    lam_u = reg * (stored.sum(axis=1) + unobserved_weight * n_items) ** regularization_exponent
    lam_i = reg * (stored.sum(axis=0) + unobserved_weight * n_users) ** regularization_exponent
    numerator = (
        (weight * (preference - x64 @ y64.T) ** 2).sum()
        + (lam_u * (x64**2).sum(axis=1)).sum()
        + (lam_i * (y64**2).sum(axis=1)).sum()
    )
    denominator = np.abs(values[stored]).sum() + unobserved_weight * (
        n_users * n_items - stored.sum()
    )
    return float(numerator / denominator)


@pytest.mark.parametrize(("reg", "alpha"), [(0.5, 1.0), (0.01, 3.0)])
@pytest.mark.parametrize("scale", [0.01, 0.5])
def test_calculate_loss_negative_values_is_the_true_objective(
    reg: float, alpha: float, scale: float
) -> None:
    matrix = make_matrix(13, "signed")
    x, y = random_factors(14, 10, scale, np.float64)
    expected = dense_objective(matrix, x, y, reg, alpha=alpha)
    got = ials.calculate_loss(matrix, x, y, reg, alpha=alpha, num_threads=1)
    assert got == pytest.approx(expected, rel=1e-10)

    # Why this is not a parity test: implicit adds |c| for each stored negative value.
    scaled = implicit_scaled(matrix, alpha)
    theirs = implicit_als.calculate_loss(scaled, x, y, float(np.float32(reg)), num_threads=1)
    negative = -scaled.data[scaled.data < 0].astype(np.float64).sum()
    weight = np.abs(scaled.data.astype(np.float64)).sum() + (
        matrix.shape[0] * matrix.shape[1] - matrix.nnz
    )
    expected_f32_reg = dense_objective(matrix, x, y, float(np.float32(reg)), alpha=alpha)
    assert theirs == pytest.approx(expected_f32_reg + negative / weight, rel=1e-10)
    assert negative > 0


@pytest.mark.parametrize(
    ("unobserved_weight", "regularization_exponent"), [(0.25, 0.0), (1.0, 1.0), (0.5, 0.5)]
)
def test_calculate_loss_weighted_variants_are_the_objective(
    unobserved_weight: float, regularization_exponent: float
) -> None:
    matrix = make_matrix(15, "signed")
    x, y = random_factors(16, 6, 0.3, np.float64)
    kwargs: dict[str, float] = {
        "alpha": 2.0,
        "unobserved_weight": unobserved_weight,
        "regularization_exponent": regularization_exponent,
    }
    expected = dense_objective(matrix, x, y, 0.05, **kwargs)
    got = ials.calculate_loss(matrix, x, y, 0.05, num_threads=1, **kwargs)
    assert got == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("use_cg", [True, False])
def test_training_loss_callback_matches_implicit(use_cg: bool) -> None:
    matrix = make_matrix(17, "positive")
    start = cold_start(18, 10, np.float64)
    params: dict[str, Any] = {
        "regularization": 0.125,
        "alpha": 2.0,
        "use_cg": use_cg,
        "calculate_training_loss": True,
    }
    theirs: list[tuple[int, float | None]] = []
    ours: list[tuple[int, float | None]] = []
    implicit_fit(
        matrix,
        start,
        dtype=np.float64,
        iterations=4,
        callback=lambda it, _elapsed, loss: theirs.append((it, loss)),
        **params,
    )
    ials_fit(
        matrix,
        start,
        dtype=np.float64,
        iterations=4,
        callback=lambda it, _elapsed, loss: ours.append((it, loss)),
        **params,
    )
    assert [it for it, _ in ours] == [it for it, _ in theirs] == [0, 1, 2, 3]
    for (_, got), (_, expected) in zip(ours, theirs, strict=True):
        assert got is not None
        assert expected is not None
        assert got == pytest.approx(expected, rel=1e-9)


NON_CSR: list[Callable[[sp.csr_matrix], sp.spmatrix]] = [
    sp.coo_matrix,
    sp.csc_matrix,
    sp.lil_matrix,
    sp.dok_matrix,
]


@pytest.mark.parametrize("convert", NON_CSR, ids=lambda f: f.__name__)
def test_non_csr_input_warns_like_implicit(
    convert: Callable[[sp.csr_matrix], sp.spmatrix],
) -> None:
    assert issubclass(ials.ParameterWarning, UserWarning)
    matrix = make_matrix(19, "positive")
    start = cold_start(20, 8, np.float64)
    other = convert(matrix)
    params: dict[str, Any] = {"regularization": 0.125, "alpha": 2.0, "use_cg": True}

    with pytest.warns(implicit_utils.ParameterWarning):
        expected = implicit_fit(other, start, dtype=np.float64, **params)
    with pytest.warns(ials.ParameterWarning):
        got = ials_fit(other, start, dtype=np.float64, **params)
    assert rel_err(got, expected) < TOL_F64


def test_csr_input_does_not_warn() -> None:
    matrix = make_matrix(21, "positive")
    start = cold_start(22, 8, np.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        implicit_fit(matrix, start, dtype=np.float64)
        ials_fit(matrix, start, dtype=np.float64)
    categories = [w.category for w in caught]
    assert not any(
        issubclass(c, (implicit_utils.ParameterWarning, ials.ParameterWarning)) for c in categories
    ), categories
