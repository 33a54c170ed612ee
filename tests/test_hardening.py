"""Hardening: malformed input, impossible sizes, threads and interrupted saves end in a clear
Python exception (or the right answer), never in a crash, a hang or corrupted state.

Cases that could kill the interpreter (scipy's and the core's native code reading out of bounds)
run in a child process (tests/isolated.py), so a crash fails the test instead of the run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import ials
import numpy as np
import pytest
import scipy.sparse as sp
from ials import confidence, evaluation, solver, splits
from ials.callbacks import EarlyStopping
from isolated import assert_clean_exit, run_isolated

N_USERS, N_ITEMS = 6, 5


def _valid(shape: tuple[int, int]) -> sp.csr_matrix:
    """Every cell stored, values 1..n (so every row has entries to corrupt)."""
    dense = np.arange(1, shape[0] * shape[1] + 1, dtype=np.float32).reshape(shape)
    return sp.csr_matrix(dense)


def _set(array: np.ndarray, position: int, value: int) -> np.ndarray:
    array = array.astype(np.int64)
    array[position] = value
    return array


# Each builds, from scratch, a matrix of the given shape whose arrays scipy accepted at
# construction and that was then corrupted by reassigning an attribute (as a buggy caller can).
def _malformed(kind: str, shape: tuple[int, int]) -> Any:
    m = _valid(shape)
    n_rows, n_cols = shape
    if kind == "negative column":
        m.indices = _set(m.indices, 0, -1)
    elif kind == "column == n_cols":
        m.indices = _set(m.indices, 1, n_cols)
    elif kind == "int64 column past 2**32":
        m.indices = _set(m.indices, 0, 2**32 + 1)
    elif kind == "indptr decreasing":
        m.indptr = _set(m.indptr, 1, int(m.indptr[2]) + 1 if n_rows > 1 else -1)
    elif kind == "uint64 indptr past 2**32":  # np.diff of it wraps around instead of falling
        m.indptr = m.indptr.astype(np.uint64)
        m.indptr[1] = 2**32 + 1
    elif kind == "indptr too short":
        m.indptr = m.indptr[:-1].copy()
    elif kind == "indptr not from 0":
        m.indptr = _set(m.indptr, 0, 1)
    elif kind == "indptr past the indices":
        m.indptr = _set(m.indptr, n_rows, len(m.indices) + 3)
    elif kind == "fewer values than indices":
        m.data = m.data[:-1].copy()
    elif kind == "coo row out of range":
        coo = m.tocoo()
        coo.row = _set(coo.row, 0, n_rows + 7)
        return coo
    elif kind == "coo negative column":
        coo = m.tocoo()
        coo.col = _set(coo.col, 2, -3)
        return coo
    elif kind == "csc row out of range":
        csc = m.tocsc()
        csc.indices = _set(csc.indices, 0, n_rows)
        return csc
    elif kind == "dia offsets shorter than diagonals":
        dia = m.todia()
        dia.offsets = dia.offsets[:-1].copy()
        return dia
    elif kind == "lil column past n_cols":
        lil = m.tolil()
        lil.rows[0] = [*lil.rows[0][:-1], n_cols + 2]
        return lil
    elif kind == "lil row with fewer values":
        lil = m.tolil()
        lil.data[0] = lil.data[0][:-1]
        return lil
    elif kind == "nan value":
        m.data[0] = np.nan
    elif kind == "inf value":
        m.data[1] = np.inf
    else:
        raise AssertionError(kind)
    return m


STRUCTURAL = [
    "negative column",
    "column == n_cols",
    "int64 column past 2**32",
    "indptr decreasing",
    "uint64 indptr past 2**32",
    "indptr too short",
    "indptr not from 0",
    "indptr past the indices",
    "fewer values than indices",
    "coo row out of range",
    "coo negative column",
    "csc row out of range",
    "dia offsets shorter than diagonals",
    "lil column past n_cols",
    "lil row with fewer values",
]
NON_FINITE = ["nan value", "inf value"]


def _model() -> ials.AlternatingLeastSquares:
    model = ials.AlternatingLeastSquares(factors=2, iterations=1, random_state=0)
    model.fit(_valid((N_USERS, N_ITEMS)), show_progress=False)
    return model


def _entry_points() -> dict[str, tuple[str, Callable[[Callable[..., Any]], Any], bool]]:
    """name -> (argument named in the error, call given a malformed-matrix maker, whether the
    entry point must also refuse non-finite values)."""
    model = _model()
    good = _valid((N_USERS, N_ITEMS))
    x = np.zeros((N_USERS, 2), dtype=np.float32)
    y = np.full((N_ITEMS, 2), 0.1, dtype=np.float32)
    users_items, user_row, item_row = (N_USERS, N_ITEMS), (1, N_ITEMS), (1, N_USERS)
    return {
        "fit": (
            "user_items",
            lambda bad: _model().fit(bad(users_items), show_progress=False),
            True,
        ),
        "recommend": ("user_items", lambda bad: model.recommend(0, bad(user_row)), True),
        "recommend batch": (
            "user_items",
            lambda bad: model.recommend(np.arange(N_USERS), bad(users_items)),
            True,
        ),
        "recommend recalculate": (
            "user_items",
            lambda bad: model.recommend(0, bad(user_row), recalculate_user=True),
            True,
        ),
        "recommend_all": ("user_items", lambda bad: model.recommend_all(bad(users_items)), True),
        "recalculate_user": (
            "user_items",
            lambda bad: model.recalculate_user(0, bad(user_row)),
            True,
        ),
        "recalculate_item": (
            "item_users",
            lambda bad: model.recalculate_item(0, bad(item_row)),
            True,
        ),
        "partial_fit_users": (
            "user_items",
            lambda bad: model.partial_fit_users([0], bad(user_row)),
            True,
        ),
        "partial_fit_items": (
            "item_users",
            lambda bad: model.partial_fit_items([0], bad(item_row)),
            True,
        ),
        "explain": ("user_items", lambda bad: model.explain(0, bad(users_items), 1), True),
        "similar_items recalculate": (
            "item_users",
            lambda bad: model.similar_items(0, recalculate_item=True, item_users=bad(item_row)),
            True,
        ),
        "ranking_metrics_at_k train": (
            "train_user_items",
            lambda bad: evaluation.ranking_metrics_at_k(
                model, bad(users_items), good, show_progress=False
            ),
            True,
        ),
        "ndcg_at_k test": (
            "test_user_items",
            lambda bad: evaluation.ndcg_at_k(model, good, bad(users_items), show_progress=False),
            True,
        ),
        "EarlyStopping": (
            "validation",
            lambda bad: EarlyStopping(model, good, bad(users_items)),
            True,
        ),
        "solve_rows": (
            "user_items",
            lambda bad: solver.solve_rows(bad(users_items), x, y, 0.1),
            True,
        ),
        "calculate_loss": (
            "user_items",
            lambda bad: solver.calculate_loss(bad(users_items), x, y, 0.1),
            True,
        ),
        "train_test_split": (
            "ratings",
            lambda bad: splits.train_test_split(bad(users_items)),
            False,
        ),
        "leave_k_out_split": (
            "ratings",
            lambda bad: splits.leave_k_out_split(bad(users_items)),
            False,
        ),
        "per_user_split": ("ratings", lambda bad: splits.per_user_split(bad(users_items)), False),
        "Interactions": ("matrix", lambda bad: ials.Interactions(bad(users_items)), True),
        "confidence.linear": ("R", lambda bad: confidence.linear(bad(users_items), 2.0), True),
        "confidence.log": ("R", lambda bad: confidence.log(bad(users_items), 2.0), True),
    }


def malformed_child(kind: str) -> None:
    """Every entry point on one kind of malformed matrix; prints name -> [exception type,
    message] (None when the call returned) as JSON."""
    import warnings

    warnings.simplefilter("ignore")  # conversions from coo/csc warn, irrelevant here
    outcomes: dict[str, Any] = {}
    for name, (_, call, _) in _entry_points().items():
        try:
            call(lambda shape: _malformed(kind, shape))
            outcomes[name] = None
        except Exception as err:  # every outcome is recorded and judged by the parent
            outcomes[name] = [type(err).__name__, str(err)]
    print(json.dumps(outcomes))


@pytest.mark.parametrize("kind", STRUCTURAL + NON_FINITE)
def test_malformed_sparse_input_is_a_value_error_naming_the_argument(kind: str) -> None:
    outcomes = json.loads(
        assert_clean_exit(run_isolated("test_hardening", "malformed_child", kind))
    )
    failures = []
    for name, (argument, _, finite_only) in _entry_points().items():
        if kind in NON_FINITE and not finite_only:
            continue
        outcome = outcomes[name]
        if outcome is None or outcome[0] != "ValueError" or argument not in outcome[1]:
            failures.append(f"{name}: {outcome}")
    assert not failures, "\n".join(failures)


def test_malformed_matrix_is_refused_before_scipy_touches_it() -> None:
    """The check runs on the caller's arrays as given; the caller's matrix is left unchanged."""
    bad = _malformed("indptr decreasing", (N_USERS, N_ITEMS))
    before = [a.copy() for a in (bad.indptr, bad.indices, bad.data)]
    with pytest.raises(ValueError, match=r"user_items\.indptr must be non-decreasing"):
        _model().fit(bad, show_progress=False)
    for old, new in zip(before, (bad.indptr, bad.indices, bad.data), strict=True):
        np.testing.assert_array_equal(old, new)


def test_well_formed_matrices_with_spare_capacity_are_accepted() -> None:
    """scipy allows index and value arrays longer than indptr[-1]; only the used part counts."""
    m = _valid((N_USERS, N_ITEMS))
    m.indices = np.concatenate([m.indices, np.array([-9, 99], dtype=m.indices.dtype)])
    m.data = np.concatenate([m.data, np.array([np.nan, 1.0], dtype=m.data.dtype)])
    model = ials.AlternatingLeastSquares(factors=2, iterations=2, random_state=0)
    model.fit(m, show_progress=False)
    reference = ials.AlternatingLeastSquares(factors=2, iterations=2, random_state=0)
    reference.fit(_valid((N_USERS, N_ITEMS)), show_progress=False)
    np.testing.assert_array_equal(model.user_factors, reference.user_factors)


# --- sizes ------------------------------------------------------------------------------------

HUGE_K = 10**7  # a k x k float64 Gram matrix of 800 TB: more than any machine's memory


def huge_child(case: str) -> None:
    """One call that would allocate a huge k x k matrix; prints the exception it raised."""
    small = _valid((N_USERS, N_ITEMS))
    wide = np.zeros((N_ITEMS, HUGE_K), dtype=np.float32)
    try:
        if case == "fit":
            ials.AlternatingLeastSquares(factors=HUGE_K).fit(small, show_progress=False)
        elif case == "gram":
            solver.gram(wide[:1])
        elif case == "solve_rows":
            x = np.zeros((N_USERS, HUGE_K), dtype=np.float32)
            solver.solve_rows(small, x, wide, 0.1)
        elif case == "recalculate_user":
            model = _model()
            model.user_factors = np.zeros((N_USERS, HUGE_K), dtype=np.float32)
            model.item_factors = wide
            model.recalculate_user(0, small[:1])
        else:
            raise AssertionError(case)
    except Exception as err:
        print(f"{type(err).__name__}: {err}")


@pytest.mark.parametrize(
    ("case", "subject"),
    [
        ("fit", f"factors={HUGE_K}"),
        ("gram", f"y with {HUGE_K} columns"),
        ("solve_rows", f"x and y with {HUGE_K} columns"),
        ("recalculate_user", f"factors={HUGE_K}"),
    ],
)
def test_impossible_allocation_is_a_memory_error_naming_the_argument(
    case: str, subject: str
) -> None:
    out = assert_clean_exit(run_isolated("test_hardening", "huge_child", case))
    assert out.startswith(f"MemoryError: {subject} needs at least "), out
    assert "of physical memory" in out


def test_memory_check_uses_the_machine_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """A size that fits trains as before; the same call on a (pretended) smaller machine is
    refused before any factor is drawn."""
    from ials import _validation

    model = ials.AlternatingLeastSquares(factors=64, iterations=1, random_state=0)
    model.fit(_valid((N_USERS, N_ITEMS)), show_progress=False)
    assert model.user_factors is not None
    # 11 rows x 64 x 4 bytes + 2 x 64 x 64 x 8 bytes = 68,352 bytes
    monkeypatch.setattr(_validation, "physical_memory", lambda: 68_351)
    fresh = ials.AlternatingLeastSquares(factors=64, iterations=1, random_state=0)
    with pytest.raises(MemoryError, match=r"factors=64 needs at least 66\.8 KiB .* 66\.7 KiB"):
        fresh.fit(_valid((N_USERS, N_ITEMS)), show_progress=False)
    assert fresh.user_factors is None
    monkeypatch.setattr(_validation, "physical_memory", lambda: 68_352)
    fresh.fit(_valid((N_USERS, N_ITEMS)), show_progress=False)
    np.testing.assert_array_equal(fresh.user_factors, model.user_factors)


# --- N larger than the number of items ----------------------------------------------------------

HUGE_N = 10**12  # padded to N, one row of ids alone would be 4 TB


def test_huge_n_is_clamped_to_the_items_before_allocating() -> None:
    model = _model()
    rows = _valid((N_USERS, N_ITEMS))
    ids, _ = model.recommend(0, rows[0], N=HUGE_N, filter_already_liked_items=False)
    expected = np.argsort(-(model.item_factors @ model.user_factors[0]), kind="stable")
    np.testing.assert_array_equal(ids, expected)
    batch_ids, batch_scores = model.recommend(np.arange(3), rows[:3], N=HUGE_N)
    assert batch_ids.shape == batch_scores.shape == (3, N_ITEMS)  # every item liked: all padding
    assert (batch_ids == -1).all() and np.isneginf(batch_scores).all()
    all_ids, _ = model.recommend_all(rows, N=HUGE_N, filter_already_liked_items=False)
    assert all_ids.shape == (N_USERS, N_ITEMS)
    np.testing.assert_array_equal(all_ids[0], expected)
    similar, _ = model.similar_items(np.arange(2), N=HUGE_N, filter_items=[4])
    assert similar.shape == (2, N_ITEMS)  # 4 ranked items, then one -1 slot
    np.testing.assert_array_equal(similar[:, -1], -1)
    assert len(model.similar_users(1, N=HUGE_N)[0]) == N_USERS


def test_cli_recommend_with_huge_n_lists_every_item(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from ials.cli import main

    path = str(tmp_path / "model.npz")
    _model().save(path)
    assert main(["recommend", path, "--user", "1", "-n", str(HUGE_N), "--quiet", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert sorted(r["item"] for r in out["results"]) == list(range(N_ITEMS))


# --- partial_fit ids ------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "name"), [("users", "userids"), ("items", "itemids")])
def test_partial_fit_refuses_duplicate_ids(method: str, name: str) -> None:
    model = _model()
    before = model.user_factors.copy(), model.item_factors.copy()
    width = N_ITEMS if method == "users" else N_USERS
    rows = sp.csr_matrix(np.eye(2, width, dtype=np.float32))
    with pytest.raises(ValueError, match=rf"{name} holds duplicate ids \(3 is repeated\)"):
        getattr(model, f"partial_fit_{method}")([3, 3], rows)
    np.testing.assert_array_equal(model.user_factors, before[0])
    np.testing.assert_array_equal(model.item_factors, before[1])


@pytest.mark.parametrize(("method", "name"), [("users", "userids"), ("items", "itemids")])
def test_partial_fit_growth_is_bounded(method: str, name: str) -> None:
    """A model of n rows grows by at most len(ids) + max(n, 1024) rows per call."""
    model = _model()
    attribute = f"{method[:-1]}_factors"
    n = getattr(model, attribute).shape[0]
    width = N_ITEMS if method == "users" else N_USERS
    one = sp.csr_matrix(np.ones((1, width), dtype=np.float32))
    fit = getattr(model, f"partial_fit_{method}")
    limit = n + 1 + 1024
    with pytest.raises(ValueError, match=rf"{name} {10**7} would grow .* at most {limit} rows"):
        fit([10**7], one)
    with pytest.raises(ValueError, match=rf"{name} {limit} would grow"):
        fit([limit], one)
    assert getattr(model, attribute).shape[0] == n
    fit([limit - 1], one)  # the largest id allowed: zero rows in between
    grown = getattr(model, attribute)
    assert grown.shape[0] == limit
    assert not grown[n : limit - 1].any() and grown[limit - 1].any()
    # the bound follows the size: a matrix of `limit` rows may now double (plus the one id)
    fit([2 * limit], one)
    assert getattr(model, attribute).shape[0] == 2 * limit + 1


# --- model files --------------------------------------------------------------------------------


def _replace_member(path: Any, key: str, payload: bytes, **info: Any) -> None:
    """Rewrites the archive at ``path`` with member ``key`` holding ``payload``."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        members = [(m, archive.read(m)) for m in archive.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in members:
            if member.filename == f"{key}.npy":
                target = zipfile.ZipInfo(member.filename)
                target.compress_type = info.get("compress_type", zipfile.ZIP_STORED)
                archive.writestr(target, payload)
            else:
                archive.writestr(member, data)


def _npy_header(shape: tuple[int, ...], dtype: str) -> bytes:
    import io

    buffer = io.BytesIO()
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def test_npy_header_declaring_a_huge_shape_is_refused_before_allocating(tmp_path: Any) -> None:
    path = tmp_path / "model.npz"
    _model().save(path)
    huge = (10**7, 10**5)  # 4 TB of float32 declared, 40 bytes present
    _replace_member(path, "user_factors", _npy_header(huge, "<f4") + bytes(40))
    assert path.stat().st_size < 10_000
    with pytest.raises(ValueError, match=r"user_factors.*declares shape \(10000000, 100000\)"):
        ials.AlternatingLeastSquares.load(path)


def test_member_claiming_more_bytes_than_stored_is_refused(tmp_path: Any) -> None:
    """A zip directory that lies about a member's size (and a header that agrees with the lie)
    is refused by what deflate can expand, before numpy allocates the declared array."""
    import struct
    import zipfile

    path = tmp_path / "model.npz"
    _model().save(path)
    n = 2**28  # 1 GiB of float32
    header = _npy_header((n,), "<f4")
    _replace_member(path, "user_factors", header + bytes(64), compress_type=zipfile.ZIP_DEFLATED)
    raw = bytearray(path.read_bytes())
    name = b"user_factors.npy"
    claimed = len(header) + 4 * n
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = raw.find(signature + b"")
        while at >= 0:
            name_at = at + (30 if signature == b"PK\x03\x04" else 46)
            if raw[name_at : name_at + len(name)] == name:
                raw[at + offset : at + offset + 4] = struct.pack("<I", claimed)
            at = raw.find(signature, at + 4)
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"user_factors.*claims \d+ bytes from \d+ stored"):
        ials.AlternatingLeastSquares.load(path)


def killed_save_child(path: str) -> None:
    """Starts saving over ``path``, reports it, then waits to be killed mid-write."""
    import sys
    import time

    from ials import _persistence

    def stalled(handle: Any, entries: dict[str, np.ndarray]) -> None:
        handle.write(b"PK\x03\x04 the first bytes of an archive")
        handle.flush()
        print("writing", flush=True)
        time.sleep(60)

    _persistence._write_npz = stalled
    print("ready", file=sys.stderr, flush=True)
    ials.AlternatingLeastSquares(factors=3, iterations=1).save(path)


def test_save_killed_midway_leaves_the_old_file_and_the_next_save_removes_its_orphan(
    tmp_path: Any,
) -> None:
    import os
    import signal
    import subprocess
    import sys

    from isolated import HERE

    path = tmp_path / "model.npz"
    old = _model()
    old.save(path)
    before = path.read_bytes()
    code = (
        f"import sys; sys.path.insert(0, {str(HERE)!r}); import test_hardening; "
        f"test_hardening.killed_save_child({str(path)!r})"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as child:
        assert child.stdout is not None
        try:
            assert child.stdout.readline().strip() == "writing"
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert path.read_bytes() == before
    orphans = [p.name for p in tmp_path.iterdir() if p.name != "model.npz"]
    assert len(orphans) == 1 and orphans[0].startswith(f".model.npz.{child.pid}.")
    # a temporary file of a save still running (pid 1 always runs) is left alone
    live = tmp_path / ".model.npz.1.abcdef.tmp"
    live.write_bytes(b"in progress")
    _model().save(path)  # the next save of the same path
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "model.npz"]
    os.unlink(live)
    np.testing.assert_array_equal(
        ials.AlternatingLeastSquares.load(path).user_factors, old.user_factors
    )


# --- objectives that are not finite, or meaningless -----------------------------------------------


def _tall(n_users: int = 200, n_items: int = 3) -> sp.csr_matrix:
    rng = np.random.default_rng(1)
    return sp.csr_matrix((rng.random((n_users, n_items)) < 0.7).astype(np.float32))


@pytest.mark.parametrize("use_cg", [True, False])
def test_overflowing_penalty_of_either_side_is_refused_before_anything_changes(
    use_cg: bool,
) -> None:
    """In float32 with nu = 16 the users' penalty (at most 0.01 * 6 ** 16 = 2.8e10) is finite,
    the items' (up to 0.01 * 400 ** 16 = 4.3e39) is not: the fit must refuse before solving the
    users, so the factors it would continue from are left as they were."""
    data = _tall()
    model = ials.AlternatingLeastSquares(factors=2, iterations=1, random_state=0, use_cg=use_cg)
    model.fit(data, show_progress=False)
    before = model.user_factors.copy(), model.item_factors.copy()
    model.regularization_exponent = 16
    with pytest.raises(ValueError, match=r"regularization_exponent=16.* overflows float32"):
        model.fit(data, show_progress=False)
    np.testing.assert_array_equal(model.user_factors, before[0])
    np.testing.assert_array_equal(model.item_factors, before[1])
    model.dtype = np.float64  # 4.3e39 is finite in float64
    model.fit(data, show_progress=False)
    assert np.isfinite(model.user_factors).all()


def test_overflowing_penalty_is_refused_by_fold_in_and_solve_rows() -> None:
    model = _model()
    before = model.user_factors.copy()
    model.regularization_exponent = 1000
    row = _valid((1, N_ITEMS))
    with pytest.raises(ValueError, match=r"regularization_exponent=1000"):
        model.partial_fit_users([0], row)
    with pytest.raises(ValueError, match=r"regularization_exponent=1000"):
        model.recalculate_user(0, row)
    np.testing.assert_array_equal(model.user_factors, before)
    x = np.zeros((1, 2), dtype=np.float64)
    y = np.ones((N_ITEMS, 2), dtype=np.float64)
    with pytest.raises(ValueError, match=r"regularization_exponent=1000.* overflows float64"):
        solver.solve_rows(row, x, y, 0.1, regularization_exponent=1000)
    assert not x.any()


def test_alpha_zero_is_refused() -> None:
    """With alpha = 0 every stored value has confidence 0: the factors shrink to 0 (implicit 0.7.3
    trains them to about 1e-9 and ranks by ties of zeros without a word)."""
    with pytest.raises(ValueError, match=r"alpha must be a finite number > 0\.0, got 0"):
        ials.AlternatingLeastSquares(alpha=0)
    with pytest.raises(ValueError, match=r"alpha must be finite in float32 .*, got 1e\+39"):
        ials.AlternatingLeastSquares(alpha=1e39)
    model = ials.AlternatingLeastSquares(factors=2, iterations=1)
    model.alpha = 0.0
    with pytest.raises(ValueError, match=r"alpha must be a finite number > 0\.0, got 0\.0"):
        model.fit(_valid((N_USERS, N_ITEMS)), show_progress=False)
    assert model.user_factors is None
    x, y = np.zeros((N_USERS, 2)), np.ones((N_ITEMS, 2))
    with pytest.raises(ValueError, match=r"alpha must be a finite number > 0"):
        solver.solve_rows(_valid((N_USERS, N_ITEMS)), x, y, 0.1, alpha=0.0)


# --- explain's user_weights ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "error", "message"),
    [
        ("garbage", TypeError, r"user_weights must be None or the \(factor, lower\) pair"),
        (42, TypeError, r"user_weights must be None or the \(factor, lower\) pair"),
        ((np.eye(2), True, 3), TypeError, r"user_weights must be None"),
        ((np.eye(3), True), ValueError, r"user_weights\[0\] must be a 2 x 2 float array"),
        (("ab", True), ValueError, r"user_weights\[0\] must be a 2 x 2 float array"),
        ((np.eye(2), "yes"), TypeError, r"user_weights\[1\] must be a bool"),
        ((np.full((2, 2), np.nan), True), ValueError, r"user_weights\[0\] holds a non-finite"),
    ],
)
def test_explain_refuses_bad_user_weights(weights: Any, error: type, message: str) -> None:
    model = _model()
    with pytest.raises(error, match=message):
        model.explain(0, _valid((N_USERS, N_ITEMS)), 1, user_weights=weights)


def test_explain_reuses_its_own_user_weights() -> None:
    model = _model()
    rows = _valid((N_USERS, N_ITEMS))
    score, top, weights = model.explain(0, rows, 1)
    again = model.explain(0, rows, 1, user_weights=weights)
    assert again[0] == score and again[1] == top
    as_list = model.explain(0, rows, 1, user_weights=list(weights))
    assert as_list[0] == score


# --- the command line and the synthetic data at impossible sizes -------------------------------


def synthetic_child(n_users: str, n_items: str) -> None:
    from ials import datasets

    try:
        datasets.synthetic(int(n_users), int(n_items), random_state=0)
    except MemoryError as err:
        print(f"MemoryError: {err}")


@pytest.mark.parametrize(("n_users", "n_items"), [(10**9, 50), (50, 10**9)])
def test_synthetic_data_too_large_for_memory_is_refused_at_once(n_users: int, n_items: int) -> None:
    out = assert_clean_exit(
        run_isolated("test_hardening", "synthetic_child", str(n_users), str(n_items), timeout=60)
    )
    assert out.startswith(f"MemoryError: n_users={n_users}, n_items={n_items}"), out
    assert "of physical memory" in out


def test_cli_memory_error_is_one_line_and_exit_status_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ials.cli import main

    argv = ["demo", "--users", "50", "--items", "60", "--factors", str(HUGE_K), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"ials demo: factors={HUGE_K} needs at least ")
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(("userid", "itemid", "name"), [(0, [1, 2], "itemid"), ([0], 1, "userid")])
def test_explain_takes_one_user_and_one_item(userid: Any, itemid: Any, name: str) -> None:
    with pytest.raises(TypeError, match=rf"{name} must be one int, got \["):
        _model().explain(userid, _valid((N_USERS, N_ITEMS)), itemid)


def test_a_loss_beyond_float64_is_inf_not_nan() -> None:
    data = _valid((N_USERS, N_ITEMS))
    x = np.full((N_USERS, 1), 0.5)
    y = np.full((N_ITEMS, 1), 0.5)
    assert math.isfinite(solver.calculate_loss(data, x, y, 1.0))
    y[0, 0] = 1e200  # its square overflows
    assert solver.calculate_loss(data, x, y, 1.0) == math.inf


@pytest.mark.parametrize(("transform", "args"), [("linear", (1e308,)), ("log", (1.0, 1e-320))])
def test_a_confidence_beyond_float32_is_refused(transform: str, args: tuple[float, ...]) -> None:
    R = sp.csr_matrix(np.array([[1.0, 0.0, 3.0]], dtype=np.float32))
    with pytest.raises(ValueError, match=r"R's value 1\.0 gives a confidence beyond float32"):
        getattr(confidence, transform)(R, *args)
    assert np.isfinite(confidence.linear(R, 1e30).data).all()
