"""The block coordinate solver (iALS++, ``solver="block"``) against the NumPy reference: one pass
with the whole row as one block is the exact solve, one pass with smaller blocks is the
reference's block pass, passes never raise the objective and converge to the exact solution,
any thread count gives the same bytes; and the model, its files, fold-ins, the CLI and the
distributed fit carry the setting."""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ials
import ials.distributed as dist
import numpy as np
import pytest
import reference as ref
import scipy.sparse as sp
from closeness import EPS, assert_rows_close, row_conditions
from hypothesis import given
from hypothesis import strategies as st
from ials import _persistence
from ials.cli import main
from strategies import Problem, dtypes, problems

# float32 factors: the core rounds the result, and sums float32 Gram matrices in float32 within
# register tiles, an error that each row's conditioning amplifies (closeness.assert_rows_close).
TOL = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-9}


def block_solve(prob: Problem, dtype: Any, block_size: int, block_sweeps: int = 1) -> np.ndarray:
    x = prob.X.astype(dtype)
    ials.solve_rows(
        prob.R,
        x,
        prob.Y.astype(dtype),
        prob.regularization,
        solver="block",
        block_size=block_size,
        block_sweeps=block_sweeps,
        **prob.params(),
    )
    return x


def assert_close(got: np.ndarray, want: np.ndarray, tol: float) -> None:
    """Equal up to ``tol`` relative to each row's largest entry (at least 1)."""
    scale = np.maximum(np.abs(want).max(axis=1, keepdims=True), 1.0)
    assert np.all(np.abs(got - want) <= tol * scale), np.abs(got - want).max()


def loss(prob: Problem, x: np.ndarray) -> float:
    return ials.calculate_loss(
        prob.R, x, prob.Y.astype(x.dtype), prob.regularization, **prob.params()
    )


# --- the solver against the reference ---------------------------------------------------------


@given(problems(negatives=None, explicit_zeros=None, variants=True), dtypes, st.integers(0, 3))
def test_one_pass_with_the_whole_row_as_one_block_is_the_exact_half_sweep(
    prob: Problem, dtype: Any, extra: int
) -> None:
    got = block_solve(prob, dtype, block_size=prob.k + extra)
    want = ref.exact_solve_rows(prob.R, prob.Y, prob.regularization, **prob.params())
    dt = np.dtype(dtype)
    conds = row_conditions(prob)
    assert_rows_close(got, want, rtol=TOL[dt], scale=np.abs(want) + 1, conds=conds, eps=EPS[dt])
    exact = prob.X.astype(dtype)
    ials.solve_rows(
        prob.R, exact, prob.Y.astype(dtype), prob.regularization, solver="cholesky", **prob.params()
    )
    assert_close(got, exact, TOL[np.dtype(dtype)])


@given(
    problems(negatives=None, explicit_zeros=None, variants=True),
    dtypes,
    st.integers(1, 8),
    st.integers(1, 3),
)
def test_passes_with_smaller_blocks_are_the_reference_block_passes(
    prob: Problem, dtype: Any, block_size: int, sweeps: int
) -> None:
    got = block_solve(prob, dtype, block_size, sweeps)
    want = ref.block_solve_rows(
        prob.R,
        prob.X,
        prob.Y,
        prob.regularization,
        **prob.params(),
        block_size=block_size,
        block_sweeps=sweeps,
    )
    dt = np.dtype(dtype)
    conds = row_conditions(prob)
    assert_rows_close(got, want, rtol=TOL[dt], scale=np.abs(want) + 1, conds=conds, eps=EPS[dt])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_row_too_long_to_gather_whole_is_the_reference_block_pass(dtype: Any) -> None:
    # 9,000 items x 64 factors in float64 (4.6 MB) are far past the 64 KiB from which the core
    # gathers a row's items one block at a time; the short rows beside it are gathered whole.
    rng = np.random.default_rng(5)
    n_items, k = 9_000, 64
    long_row = np.ones(n_items, dtype=np.float32)
    short = sp.random(3, n_items, density=0.002, random_state=6, dtype=np.float32)
    R = sp.vstack([sp.csr_matrix(long_row), short.tocsr() * 3.0]).tocsr()
    Y = rng.normal(0.0, 0.1, (n_items, k))
    X = rng.normal(0.0, 0.1, (R.shape[0], k))
    params = {"alpha": 2.0, "regularization_exponent": 1.0, "unobserved_weight": 0.05}
    for block_size, sweeps in [(16, 1), (24, 2)]:
        got = X.astype(dtype)
        ials.solve_rows(
            R,
            got,
            Y.astype(dtype),
            0.01,
            solver="block",
            block_size=block_size,
            block_sweeps=sweeps,
            **params,
        )
        want = ref.block_solve_rows(
            R,
            X.astype(dtype),
            Y.astype(dtype),
            0.01,
            **params,
            block_size=block_size,
            block_sweeps=sweeps,
        )
        assert_close(got, want, TOL[np.dtype(dtype)])


@given(problems(negatives=None, explicit_zeros=None, variants=True), st.integers(1, 4))
def test_the_objective_never_increases_from_pass_to_pass(prob: Problem, block_size: int) -> None:
    # float64: float32 factors round each result, which may raise the objective by an ulp.
    losses = [loss(prob, prob.X)]
    for sweeps in range(1, 6):
        losses.append(loss(prob, block_solve(prob, np.float64, block_size, sweeps)))
    assert all(b <= a * (1 + 1e-12) + 1e-15 for a, b in itertools.pairwise(losses))
    # ... and the reference agrees on the value reached (the decrease is real, not a loss bug).
    reached = ref.block_solve_rows(
        prob.R,
        prob.X,
        prob.Y,
        prob.regularization,
        **prob.params(),
        block_size=block_size,
        block_sweeps=5,
    )
    want = ref.objective(prob.R, reached, prob.Y, prob.regularization, **prob.params())
    assert losses[-1] == pytest.approx(want, rel=1e-9, abs=1e-12)


@given(problems(negatives=None, explicit_zeros=None, variants=True), st.integers(1, 7))
def test_repeated_passes_converge_to_the_exact_solution(prob: Problem, block_size: int) -> None:
    want = ref.exact_solve_rows(prob.R, prob.Y, prob.regularization, **prob.params())
    assert_close(block_solve(prob, np.float64, block_size, block_sweeps=1000), want, 1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_any_thread_count_gives_the_same_bytes(dtype: Any) -> None:
    rng = np.random.default_rng(11)
    matrix = sp.random(6000, 400, density=0.02, format="csr", dtype=np.float32, random_state=rng)
    matrix.data = np.ceil(matrix.data * 5)
    x0 = rng.uniform(-0.1, 0.1, (6000, 24)).astype(dtype)
    y = rng.uniform(-0.1, 0.1, (400, 24)).astype(dtype)
    results = []
    for threads in (1, 2, 3, 0):
        x = x0.copy()
        ials.solve_rows(
            matrix, x, y, 0.1, solver="block", block_size=5, block_sweeps=2, num_threads=threads
        )
        results.append(x.tobytes())
    assert results[0] != x0.tobytes()
    assert len(set(results)) == 1
    fits = []
    for threads in (1, 2):
        model = ials.AlternatingLeastSquares(
            factors=12,
            solver="block",
            block_size=5,
            iterations=2,
            dtype=dtype,
            num_threads=threads,
            random_state=3,
        )
        model.fit(matrix, show_progress=False)
        assert model.user_factors is not None and model.item_factors is not None
        fits.append(model.user_factors.tobytes() + model.item_factors.tobytes())
    assert fits[0] == fits[1]


# --- the model's parameters ---------------------------------------------------------------


def small_matrix(seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    matrix = sp.random(60, 45, density=0.15, format="csr", dtype=np.float32, random_state=rng)
    matrix.data = np.ceil(matrix.data * 4)
    return matrix


@pytest.mark.parametrize(
    ("solver", "use_cg", "kind"),
    [(None, True, "cg"), (None, False, "cholesky"), ("block", True, "block"), ("cg", False, "cg")],
)
def test_solver_none_follows_use_cg_and_a_name_wins(
    solver: str | None, use_cg: bool, kind: str
) -> None:
    model = ials.AlternatingLeastSquares(solver=solver, use_cg=use_cg, block_size=3, cg_steps=2)
    chosen = model.fit_settings().solver
    assert chosen.kind == kind
    assert (chosen.cg_steps, chosen.block_size, chosen.block_sweeps) == (2, 3, 1)


def test_explicit_cg_and_cholesky_are_the_solvers_use_cg_selects() -> None:
    matrix = small_matrix()
    for solver, use_cg in (("cg", True), ("cholesky", False)):
        named = ials.AlternatingLeastSquares(factors=6, iterations=2, solver=solver, random_state=1)
        legacy = ials.AlternatingLeastSquares(
            factors=6, iterations=2, use_cg=use_cg, random_state=1
        )
        named.fit(matrix, show_progress=False)
        legacy.fit(matrix, show_progress=False)
        np.testing.assert_array_equal(named.user_factors, legacy.user_factors)
        np.testing.assert_array_equal(named.item_factors, legacy.item_factors)


def test_a_block_fit_is_the_local_half_sweeps_of_the_block_solver() -> None:
    matrix = small_matrix()
    model = ials.AlternatingLeastSquares(
        factors=7,
        iterations=2,
        solver="block",
        block_size=3,
        block_sweeps=2,
        dtype=np.float64,
        random_state=4,
    )
    x, y = model.starting_factors(*matrix.shape)
    x, y = x.copy(), y.copy()
    model.fit(matrix, show_progress=False)
    for _ in range(2):
        for rows, solved, fixed in ((matrix, x, y), (sp.csr_matrix(matrix.T), y, x)):
            ials.solve_rows(
                rows,
                solved,
                fixed,
                model.regularization,
                solver="block",
                block_size=3,
                block_sweeps=2,
            )
    np.testing.assert_array_equal(model.user_factors, x)
    np.testing.assert_array_equal(model.item_factors, y)
    cg = ials.AlternatingLeastSquares(factors=7, iterations=2, dtype=np.float64, random_state=4)
    cg.fit(matrix, show_progress=False)
    assert not np.array_equal(cg.user_factors, model.user_factors)


def test_a_block_fit_with_whole_rows_as_blocks_is_the_exact_fit() -> None:
    matrix = small_matrix(1)
    fits = []
    for params in (dict(solver="block", block_size=8), dict(use_cg=False)):
        model = ials.AlternatingLeastSquares(
            factors=8, iterations=3, dtype=np.float64, random_state=2, **params
        )
        model.fit(matrix, show_progress=False)
        fits.append(model)
    np.testing.assert_allclose(fits[0].user_factors, fits[1].user_factors, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fits[0].item_factors, fits[1].item_factors, rtol=1e-9, atol=1e-12)


def test_the_training_loss_of_a_block_fit_never_increases() -> None:
    matrix = small_matrix(2)
    model = ials.AlternatingLeastSquares(
        factors=16,
        iterations=6,
        solver="block",
        block_size=4,
        dtype=np.float64,
        calculate_training_loss=True,
        random_state=0,
        regularization=0.1,
    )
    losses: list[float] = []
    model.fit(matrix, show_progress=False, callback=lambda _i, _s, value: losses.append(value))
    assert len(losses) == 6
    assert all(b <= a for a, b in itertools.pairwise(losses))


def test_fold_ins_stay_exact_with_the_block_solver() -> None:
    matrix = small_matrix(3)
    block = ials.AlternatingLeastSquares(factors=6, solver="block", block_size=2, iterations=2)
    block.fit(matrix, show_progress=False)
    exact = ials.AlternatingLeastSquares(factors=6, use_cg=False)
    exact.user_factors, exact.item_factors = block.user_factors, block.item_factors
    rows = matrix[[3, 7]]
    np.testing.assert_array_equal(
        block.recalculate_user([3, 7], rows), exact.recalculate_user([3, 7], rows)
    )
    want = ref.exact_solve_rows(rows, block.item_factors, block.regularization)
    assert_close(block.recalculate_user([3, 7], rows).astype(np.float64), want, 1e-5)
    items = sp.csr_matrix(matrix.T)[[1, 2]]
    block.partial_fit_items([1, 2], items)
    exact.partial_fit_items([1, 2], items)
    np.testing.assert_array_equal(block.item_factors, exact.item_factors)


@pytest.mark.parametrize(
    ("name", "value", "error", "message"),
    [
        ("block_size", 0, ValueError, "block_size must be >= 1, got 0"),
        ("block_size", -64, ValueError, "block_size must be >= 1, got -64"),
        ("block_size", 2.5, TypeError, "block_size must be an integer, got 2.5"),
        ("block_size", True, TypeError, "block_size must be an integer, got True"),
        ("block_sweeps", 0, ValueError, "block_sweeps must be >= 1, got 0"),
        ("block_sweeps", None, TypeError, "block_sweeps must be an integer, got None"),
        ("solver", "blocks", ValueError, "solver must be None or one of cg, cholesky, block"),
        ("solver", "Block", ValueError, "got 'Block'"),
        ("solver", 1, ValueError, "solver must be None or one of"),
    ],
)
def test_bad_solver_settings_name_the_argument(
    name: str, value: object, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        ials.AlternatingLeastSquares(**{name: value})
    model = ials.AlternatingLeastSquares(factors=4)
    setattr(model, name, value)  # a plain attribute, checked when a fit uses it
    with pytest.raises(error, match=message):
        model.fit(small_matrix(), show_progress=False)
    assert model.user_factors is None
    x, y = np.zeros((60, 4), np.float32), np.ones((45, 4), np.float32)
    with pytest.raises(error, match=message):
        ials.solve_rows(small_matrix(), x, y, 0.1, **{name: value})
    assert not x.any()


# --- files and command line -------------------------------------------------------------------


def test_model_files_keep_the_solver_settings() -> None:
    model = ials.AlternatingLeastSquares(factors=4, solver="block", block_size=3, block_sweeps=2)
    model.fit(small_matrix(), show_progress=False)
    buffer = io.BytesIO()
    model.save(buffer)
    buffer.seek(0)
    loaded = ials.AlternatingLeastSquares.load(buffer)
    assert (loaded.solver, loaded.block_size, loaded.block_sweeps) == ("block", 3, 2)
    np.testing.assert_array_equal(loaded.user_factors, model.user_factors)


def test_files_without_the_solver_settings_load_with_the_defaults() -> None:
    """A file as ials wrote it before the block solver: no solver, block_size, block_sweeps."""
    model = ials.AlternatingLeastSquares(factors=4, solver="block", block_size=3, use_cg=False)
    model.fit(small_matrix(), show_progress=False)
    buffer = io.BytesIO()
    model.save(buffer)
    buffer.seek(0)
    with np.load(buffer) as saved:
        entries = {name: saved[name] for name in saved.files}
    for name in ("solver", "block_size", "block_sweeps"):
        del entries[name]
    entries["ials_checksum"] = np.array(_persistence._checksum(entries))
    older = io.BytesIO()
    np.savez(older, **entries)
    older.seek(0)
    loaded = ials.AlternatingLeastSquares.load(older)
    assert (loaded.solver, loaded.block_size, loaded.block_sweeps) == (None, 64, 1)
    assert loaded.fit_settings().solver.kind == "cholesky"  # from the saved use_cg


def test_the_cli_fits_with_the_block_solver(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    rows, cols = small_matrix().nonzero()
    log.write_text("user,item\n" + "".join(f"{u},{i}\n" for u, i in zip(rows, cols, strict=True)))
    out = tmp_path / "model"
    flags = ["--factors", "5", "--iterations", "2", "--quiet"]
    args = ["fit", str(log), "-o", str(out), *flags, "--solver", "block", "--block-size", "2"]
    assert main([*args, "--block-sweeps", "3"]) == 0
    bundle = ials.Recommender.load(str(out) + ".npz")
    model = bundle.model
    assert (model.solver, model.block_size, model.block_sweeps) == ("block", 2, 3)
    settings = bundle.info()["settings"]
    assert (settings["solver"], settings["block_size"], settings["block_sweeps"]) == ("block", 2, 3)
    with pytest.raises(SystemExit):
        main(["fit", str(log), "-o", str(out), "--solver", "blok"])
    with pytest.raises(SystemExit):
        main(["fit", str(log), "-o", str(out), "--block-size", "0"])


# --- distributed ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
        ) as local,
        Client(local) as client,
    ):
        yield client


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_distributed_fit_is_the_local_block_fit(client: Any, dtype: Any) -> None:
    rng = np.random.default_rng(5)
    # More than 4096 rows a side: several blocks, whose Gram pieces the driver adds.
    matrix = sp.random(9000, 5000, density=0.002, format="csr", dtype=np.float32, random_state=rng)
    matrix.data = np.ceil(matrix.data * 5)
    params: dict[str, Any] = dict(
        factors=10,
        iterations=2,
        solver="block",
        block_size=4,
        block_sweeps=2,
        dtype=dtype,
        random_state=0,
        num_threads=1,
        regularization_exponent=0.5,
        unobserved_weight=0.2,
    )
    local = ials.AlternatingLeastSquares(**params)
    local.fit(matrix, show_progress=False)
    model = ials.AlternatingLeastSquares(**params)
    dist.fit(client, matrix, model, n_blocks=2, show_progress=False)
    np.testing.assert_array_equal(model.user_factors, local.user_factors)
    np.testing.assert_array_equal(model.item_factors, local.item_factors)
    cg = ials.AlternatingLeastSquares(**{**params, "solver": "cg"})
    cg.fit(matrix, show_progress=False)
    assert not np.array_equal(cg.user_factors, local.user_factors)
