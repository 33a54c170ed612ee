"""Tests of ials.splits: every split is a partition of the input's entries (disjoint, complete,
values kept), has the documented sizes, is reproducible from random_state, and draws uniformly."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st
from ials.splits import leave_k_out_split, per_user_split, train_test_split

Split = Callable[..., tuple[sp.csr_matrix, sp.csr_matrix]]
SPLITS: dict[str, Split] = {
    "train_test_split": lambda m, seed: train_test_split(m, 0.7, random_state=seed),
    "leave_k_out_split": lambda m, seed: leave_k_out_split(m, K=2, random_state=seed),
    "leave_k_out_split_train_only": lambda m, seed: leave_k_out_split(
        m, K=1, train_only_size=0.4, random_state=seed
    ),
    "per_user_split": lambda m, seed: per_user_split(m, 0.3, random_state=seed),
}


def ragged(seed: int, n_users: int = 60, n_items: int = 40, duplicates: bool = True) -> Any:
    """A COO matrix with users of very different sizes (some empty), distinct values, and (with
    ``duplicates``) repeated coordinates."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for user in range(n_users):
        size = int(rng.integers(0, n_items + 1)) if user % 7 else 0
        rows.extend([user] * size)
        cols.extend(rng.choice(n_items, size=size, replace=False).tolist())
    values = rng.permutation(len(rows)).astype(np.float64) + 1.0
    if duplicates and rows:
        extra = min(5, len(rows))
        rows += rows[:extra]
        cols += cols[:extra]
        values = np.concatenate([values, np.full(extra, 0.5)])
    return sp.coo_matrix((values, (rows, cols)), shape=(n_users, n_items))


def entries(m: sp.spmatrix) -> dict[tuple[int, int], float]:
    coo = sp.coo_matrix(m)
    return {(int(r), int(c)): float(v) for r, c, v in zip(coo.row, coo.col, coo.data, strict=True)}


def summed(m: sp.spmatrix) -> dict[tuple[int, int], float]:
    out: dict[tuple[int, int], float] = {}
    coo = sp.coo_matrix(m)
    for r, c, v in zip(coo.row, coo.col, coo.data, strict=True):
        out[(int(r), int(c))] = out.get((int(r), int(c)), 0.0) + float(v)
    return out


def assert_partition(original: Any, train: sp.csr_matrix, test: sp.csr_matrix) -> None:
    for part in (train, test):
        assert isinstance(part, sp.csr_matrix)
        assert part.shape == original.shape
        assert part.dtype == original.dtype
        assert part.has_canonical_format
        part.check_format(full_check=True)
    a, b = entries(train), entries(test)
    assert len(a) == train.nnz and len(b) == test.nnz  # no duplicate coordinates inside a part
    assert not set(a) & set(b)  # disjoint
    assert {**a, **b} == summed(original)  # complete, with the original (summed) values


def per_user(m: sp.csr_matrix) -> np.ndarray:
    return np.diff(sp.csr_matrix(m).indptr)


# --- partition, shape, reproducibility -----------------------------------------------------------


@pytest.mark.parametrize("name", SPLITS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_parts_are_disjoint_and_cover_the_input(name: str, seed: int) -> None:
    original = ragged(seed)
    before = entries(original)
    train, test = SPLITS[name](original, seed)
    assert_partition(original, train, test)
    assert entries(original) == before  # the input is not modified
    assert test.nnz > 0 and train.nnz > 0


@given(
    seed=st.integers(0, 2**32 - 1),
    n_users=st.integers(1, 12),
    n_items=st.integers(1, 12),
    name=st.sampled_from(sorted(SPLITS)),
)
def test_partition_property(seed: int, n_users: int, n_items: int, name: str) -> None:
    original = ragged(seed, n_users, n_items, duplicates=seed % 2 == 0)
    train, test = SPLITS[name](original, seed)
    assert_partition(original, train, test)


@pytest.mark.parametrize("name", SPLITS)
def test_same_seed_same_split_other_seed_other_split(name: str) -> None:
    original = ragged(5)
    first = SPLITS[name](original, 123)
    again = SPLITS[name](original, 123)
    other = SPLITS[name](original, 124)
    assert entries(first[1]) == entries(again[1]) and entries(first[0]) == entries(again[0])
    assert entries(first[1]) != entries(other[1])


@pytest.mark.parametrize("name", SPLITS)
def test_generator_and_random_state_are_accepted_and_advanced(name: str) -> None:
    original = ragged(6)
    a = SPLITS[name](original, np.random.default_rng(9))
    b = SPLITS[name](original, np.random.default_rng(9))
    assert entries(a[1]) == entries(b[1])
    rng = np.random.default_rng(9)
    first = SPLITS[name](original, rng)
    second = SPLITS[name](original, rng)  # the generator moved on
    assert entries(first[1]) != entries(second[1])
    legacy = SPLITS[name](original, np.random.RandomState(3))
    assert entries(legacy[1]) == entries(SPLITS[name](original, np.random.RandomState(3))[1])
    assert_partition(original, *legacy)


@pytest.mark.parametrize("name", SPLITS)
def test_every_sparse_format_without_warnings(name: str) -> None:
    original = sp.csr_matrix(ragged(7, duplicates=False))
    expected = SPLITS[name](original, 4)
    for form in (sp.coo_matrix, sp.csc_matrix, sp.csr_array, sp.coo_array, sp.lil_matrix):
        got = SPLITS[name](form(original), 4)
        assert entries(got[0]) == entries(expected[0])
        assert entries(got[1]) == entries(expected[1])


def test_float32_and_integer_values_keep_their_dtype() -> None:
    for dtype in (np.float32, np.int64):
        original = sp.csr_matrix(ragged(8, duplicates=False), dtype=dtype)
        for split in SPLITS.values():
            train, test = split(original, 0)
            assert train.dtype == test.dtype == dtype
            assert_partition(original, train, test)


def test_empty_matrix() -> None:
    empty = sp.csr_matrix((4, 3), dtype=np.float32)
    for split in SPLITS.values():
        train, test = split(empty, 0)
        assert train.shape == test.shape == (4, 3)
        assert train.nnz == test.nnz == 0


# --- sizes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.8, 0.93, 1.0])
def test_train_test_split_sizes(fraction: float) -> None:
    original = sp.csr_matrix(ragged(10, duplicates=False))
    train, test = train_test_split(original, fraction, random_state=1)
    assert train.nnz == math.floor(fraction * original.nnz + 0.5)
    assert train.nnz + test.nnz == original.nnz


@pytest.mark.parametrize("k", [1, 2, 5])
@pytest.mark.parametrize("share", [0.0, 0.25, 0.5])
def test_leave_k_out_sizes(k: int, share: float) -> None:
    original = sp.csr_matrix(ragged(11, n_users=80, n_items=12, duplicates=False))
    counts = per_user(original)
    train, test = leave_k_out_split(original, K=k, train_only_size=share, random_state=2)
    held = per_user(test)
    eligible = counts > k + 1  # implicit's rule: at least two interactions stay in training
    assert set(held[~eligible]) <= {0}
    assert set(held[eligible]) <= {0, k}
    n_eligible = int(eligible.sum())
    assert n_eligible > 10
    assert (held == k).sum() == n_eligible - math.floor(share * n_eligible + 0.5)
    np.testing.assert_array_equal(per_user(train), counts - held)


def test_leave_k_out_train_only_users_vary_with_the_seed() -> None:
    original = sp.csr_matrix(ragged(12, n_users=80, n_items=12, duplicates=False))
    tested = [
        frozenset(np.flatnonzero(per_user(leave_k_out_split(original, 1, 0.5, s)[1])))
        for s in range(5)
    ]
    assert len(set(tested)) > 1


@pytest.mark.parametrize("fraction", [0.0, 0.2, 0.29, 0.5, 1.0])
@pytest.mark.parametrize("min_train", [0, 1, 3])
def test_per_user_split_sizes(fraction: float, min_train: int) -> None:
    original = sp.csr_matrix(ragged(13, duplicates=False))
    counts = per_user(original)
    train, test = per_user_split(
        original, test_fraction=fraction, random_state=3, min_train=min_train
    )
    # floor(fraction * n) written with integers: 0.29 * 100 must give 29, not 28.
    numerator = round(fraction * 100)
    expected = np.maximum(np.minimum(counts * numerator // 100, counts - min_train), 0)
    np.testing.assert_array_equal(per_user(test), expected)
    np.testing.assert_array_equal(per_user(train), counts - expected)


def test_per_user_split_is_the_liang_protocol() -> None:
    # 20% of each user's items, rounded down: users with fewer than 5 items keep them all.
    counts = [1, 4, 5, 9, 10, 14, 15, 100]
    rows = np.repeat(np.arange(len(counts)), counts)
    cols = np.concatenate([np.arange(c) for c in counts])
    original = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(counts), 100))
    _, test = per_user_split(original, random_state=0)
    assert per_user(test).tolist() == [0, 0, 1, 1, 2, 2, 3, 20]


# --- uniformity ----------------------------------------------------------------------------------


def test_train_test_split_draws_each_interaction_equally() -> None:
    original = sp.csr_matrix(np.ones((5, 8)))
    counts = np.zeros((5, 8))
    runs = 400
    for seed in range(runs):
        counts += train_test_split(original, 0.75, random_state=seed)[1].toarray()
    share = counts / runs  # each entry is in test with probability 0.25: sd ~ 0.022
    assert np.all(np.abs(share - 0.25) < 0.1)


def test_per_user_draws_each_interaction_of_a_user_equally() -> None:
    original = sp.csr_matrix(np.ones((3, 10)))
    counts = np.zeros((3, 10))
    runs = 400
    for seed in range(runs):
        counts += per_user_split(original, 0.3, random_state=seed)[1].toarray()
    assert np.all(np.abs(counts / runs - 0.3) < 0.1)


def test_leave_k_out_draws_each_interaction_of_a_user_equally() -> None:
    original = sp.csr_matrix(np.ones((3, 6)))
    counts = np.zeros((3, 6))
    runs = 600
    for seed in range(runs):
        counts += leave_k_out_split(original, K=2, random_state=seed)[1].toarray()
    assert np.all(np.abs(counts / runs - 2 / 6) < 0.1)


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "pattern"),
    [
        (lambda m: train_test_split(m, 1.5), ValueError, r"train_percentage.*1\.5"),
        (lambda m: train_test_split(m, -0.1), ValueError, r"train_percentage.*-0\.1"),
        (lambda m: train_test_split(m, "0.8"), TypeError, r"train_percentage.*'0\.8'"),
        (lambda m: train_test_split(m, float("nan")), ValueError, r"train_percentage.*nan"),
        (lambda m: leave_k_out_split(m, K=0), ValueError, r"K.*0"),
        (lambda m: leave_k_out_split(m, K=1.0), TypeError, r"K.*1\.0"),
        (lambda m: leave_k_out_split(m, K=True), TypeError, r"K.*True"),
        (lambda m: leave_k_out_split(m, train_only_size=1.0), ValueError, r"train_only_size"),
        (lambda m: per_user_split(m, test_fraction=1.2), ValueError, r"test_fraction.*1\.2"),
        (lambda m: per_user_split(m, min_train=-1), ValueError, r"min_train.*-1"),
        (lambda m: per_user_split(m, random_state="x"), TypeError, r"random_state.*'x'"),
        (lambda m: per_user_split(m, random_state=-3), ValueError, r"random_state.*-3"),
        (lambda m: per_user_split(m, random_state=1.5), TypeError, r"random_state.*1\.5"),
        (lambda m: per_user_split(m.toarray()), TypeError, r"ratings.*ndarray"),
    ],
)
def test_bad_arguments_are_named(call: Callable[[Any], Any], error: type, pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        call(sp.csr_matrix(ragged(0)))


def test_non_numeric_matrix_is_refused() -> None:
    with pytest.raises(TypeError, match="ratings"):
        train_test_split(sp.csr_matrix(np.ones((2, 2), dtype=np.complex64)))
