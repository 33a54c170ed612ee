"""Tests of ials.datasets.synthetic: shape, format, planted structure, seeding, validation."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from ials import datasets
from ials.datasets import SyntheticGroups, synthetic


@pytest.fixture(scope="module")
def default_data() -> tuple[sp.csr_matrix, SyntheticGroups]:
    return synthetic(random_state=12345)


def _rows(R: sp.csr_matrix) -> np.ndarray:
    return np.repeat(np.arange(R.shape[0]), np.diff(R.indptr))


def _assert_canonical_csr(R: Any, shape: tuple[int, int]) -> None:
    assert isinstance(R, sp.csr_matrix)
    assert R.shape == shape
    assert R.dtype == np.float32
    assert R.indices.dtype == np.int32
    assert R.indptr.dtype == np.int32
    assert R.indptr[0] == 0
    assert R.indptr[-1] == R.nnz == R.indices.size == R.data.size
    assert np.all(np.diff(R.indptr) >= 0)
    assert np.all((R.indices >= 0) & (R.indices < shape[1]))
    # Strictly increasing columns within each row: sorted, no duplicates.
    step = np.diff(R.indices.astype(np.int64))
    same_row = np.diff(_rows(R)) == 0
    assert np.all(step[same_row] > 0)
    assert R.has_canonical_format
    # Play counts: no explicit zeros, integers >= 1.
    assert np.all(R.data >= 1.0)
    assert np.all(R.data == np.floor(R.data))
    assert np.all(np.isfinite(R.data))


# --- shape and format ---------------------------------------------------------------------------


def test_default_shape_and_format(default_data: tuple[sp.csr_matrix, SyntheticGroups]) -> None:
    R, groups = default_data
    _assert_canonical_csr(R, (2000, 1000))
    assert isinstance(groups, SyntheticGroups)
    assert groups.user_group.shape == (2000,)
    assert groups.item_group.shape == (1000,)


@pytest.mark.parametrize(
    ("n_users", "n_items", "n_groups", "ipu"),
    [(1, 1, 1, 1), (7, 3, 3, 2), (50, 400, 1, 20), (300, 50, 50, 4.5), (1000, 5000, 40, 3)],
)
def test_other_shapes(n_users: int, n_items: int, n_groups: int, ipu: float) -> None:
    R, groups = synthetic(n_users, n_items, n_groups, ipu, random_state=3)
    _assert_canonical_csr(R, (n_users, n_items))
    per_user = np.diff(R.indptr)
    assert per_user.min() >= 1
    assert per_user.max() <= n_items
    assert groups.user_group.shape == (n_users,)
    assert groups.item_group.shape == (n_items,)


def test_single_item_catalogue() -> None:
    R, groups = synthetic(5, 1, 1, 1, random_state=0)
    assert R.toarray().shape == (5, 1)
    assert np.all(R.toarray() >= 1)
    assert groups.item_group.tolist() == [0]
    assert groups.user_group.tolist() == [0] * 5


def test_every_user_has_interactions(default_data: tuple[sp.csr_matrix, SyntheticGroups]) -> None:
    R, _ = default_data
    assert np.diff(R.indptr).min() >= 1


# --- size -----------------------------------------------------------------------------------------


def test_nnz_close_to_requested(default_data: tuple[sp.csr_matrix, SyntheticGroups]) -> None:
    R, _ = default_data
    assert 0.95 * 2000 * 30 <= R.nnz <= 1.05 * 2000 * 30


@pytest.mark.parametrize("nnz", [10_000, 37_500, 123_456])
def test_float_interactions_per_user_targets_total_nnz(nnz: int) -> None:
    n_users = 5000
    R, _ = synthetic(n_users, 4000, 10, nnz / n_users, random_state=nnz)
    assert 0.95 * nnz <= R.nnz <= 1.05 * nnz


def test_interactions_per_user_one_means_one_each() -> None:
    R, _ = synthetic(500, 100, 4, 1, random_state=1)
    assert np.all(np.diff(R.indptr) == 1)


def test_per_user_counts_vary(default_data: tuple[sp.csr_matrix, SyntheticGroups]) -> None:
    R, _ = default_data
    per_user = np.diff(R.indptr)
    assert per_user.std() / per_user.mean() > 0.3
    assert per_user.max() > 3 * np.median(per_user)


def test_interactions_per_user_up_to_n_items() -> None:
    R, _ = synthetic(20, 10, 2, 10, random_state=5)
    per_user = np.diff(R.indptr)
    assert per_user.max() <= 10
    assert per_user.mean() > 5


# --- planted structure ------------------------------------------------------------------------


def test_groups_are_valid(default_data: tuple[sp.csr_matrix, SyntheticGroups]) -> None:
    _, groups = default_data
    for arr in (groups.user_group, groups.item_group):
        assert np.issubdtype(arr.dtype, np.integer)
        assert arr.min() >= 0
        assert arr.max() < 8
    sizes = np.bincount(groups.item_group, minlength=8)
    assert sizes.max() - sizes.min() <= 1  # equal sizes, so every group is represented
    assert np.all(np.bincount(groups.user_group, minlength=8) > 0)


def test_groups_are_frozen_and_read_only(default_data: tuple[sp.csr_matrix, Any]) -> None:
    _, groups = default_data
    with pytest.raises(dataclasses.FrozenInstanceError):
        groups.user_group = np.zeros(3)
    with pytest.raises(ValueError, match="read-only"):
        groups.item_group[0] = 1


def test_most_interactions_are_in_the_users_group(
    default_data: tuple[sp.csr_matrix, SyntheticGroups],
) -> None:
    R, groups = default_data
    in_group = groups.item_group[R.indices] == groups.user_group[_rows(R)]
    assert in_group.mean() > 0.6
    per_user = np.bincount(_rows(R), weights=in_group, minlength=R.shape[0]) / np.diff(R.indptr)
    assert np.median(per_user) > 0.6
    # Chance level: how often an interaction would land in the user's group if users were
    # reassigned to random groups.
    shuffled = np.random.default_rng(0).permutation(groups.user_group)
    chance = (groups.item_group[R.indices] == shuffled[_rows(R)]).mean()
    assert chance < 0.35
    assert in_group.mean() > chance + 0.3


def test_same_group_users_share_more_items() -> None:
    R, groups = synthetic(1000, 800, 4, 20, random_state=9)
    B = (R > 0).astype(np.float64)
    overlap = (B @ B.T).toarray()
    np.fill_diagonal(overlap, np.nan)
    same = groups.user_group[:, None] == groups.user_group[None, :]
    assert np.nanmean(overlap[same]) > 2 * np.nanmean(overlap[~same])


def test_item_popularity_is_skewed(default_data: tuple[sp.csr_matrix, SyntheticGroups]) -> None:
    R, _ = default_data
    per_item = np.sort(np.bincount(R.indices, minlength=R.shape[1]))[::-1]
    top_decile_share = per_item[: R.shape[1] // 10].sum() / per_item.sum()
    assert top_decile_share > 0.3  # uniform popularity would give about 0.1
    bottom_half_share = per_item[R.shape[1] // 2 :].sum() / per_item.sum()
    assert bottom_half_share < 0.3  # uniform: about 0.5


def test_group_popularity_is_skewed() -> None:
    R, groups = synthetic(20_000, 2000, 10, 10, random_state=4)
    users_per_group = np.bincount(groups.user_group, minlength=10)
    assert users_per_group.max() > 2 * users_per_group.min()
    # Groups have equal numbers of items but unequal numbers of interactions.
    per_group = np.bincount(groups.item_group[R.indices], minlength=10)
    assert per_group.max() > 2 * per_group.min()


def test_play_counts_are_heavy_tailed(default_data: tuple[sp.csr_matrix, SyntheticGroups]) -> None:
    R, _ = default_data
    median = np.median(R.data)
    assert R.data.max() > 100 * median
    assert np.mean(R.data > 10 * median) > 0.03  # an exponential tail would give ~1e-4
    assert np.mean(R.data == 1.0) < 0.5


def test_repeated_draws_add_up_plays(default_data: tuple[sp.csr_matrix, SyntheticGroups]) -> None:
    # Users draw popular items repeatedly, and repeats are summed: popular items carry more
    # plays per interaction than the rest.
    R, _ = default_data
    popular = np.argsort(-np.bincount(R.indices, minlength=R.shape[1]))[:100]
    is_popular = np.isin(R.indices, popular)
    assert R.data[is_popular].mean() > 1.7 * R.data[~is_popular].mean()


@pytest.mark.parametrize("n", [1, 2, 7, 1000])
@pytest.mark.parametrize("seed", [0, 1])
def test_fast_inverse_cdf_matches_searchsorted(n: int, seed: int) -> None:
    # The private sampler replaces np.searchsorted(cdf, x, side="right") for speed.
    rng = np.random.default_rng(seed)
    weights = rng.pareto(1.0, n)
    weights[rng.random(n) < 0.2] = 0.0  # zero-probability items: repeated cdf values
    weights[-1] += 1.0
    cdf = np.cumsum(weights)
    x = np.concatenate([rng.random(20_000) * cdf[-1], cdf[:-1], [0.0], np.nextafter(cdf[:-1], 0)])
    sampler = datasets._Sampler(cdf)
    np.testing.assert_array_equal(sampler(x), np.searchsorted(cdf, x, side="right"))


# --- seeding ------------------------------------------------------------------------------------


def _same(
    a: tuple[sp.csr_matrix, SyntheticGroups], b: tuple[sp.csr_matrix, SyntheticGroups]
) -> bool:
    (Ra, ga), (Rb, gb) = a, b
    return (
        Ra.shape == Rb.shape
        and np.array_equal(Ra.indptr, Rb.indptr)
        and np.array_equal(Ra.indices, Rb.indices)
        and np.array_equal(Ra.data, Rb.data)
        and np.array_equal(ga.user_group, gb.user_group)
        and np.array_equal(ga.item_group, gb.item_group)
    )


def test_same_seed_same_data() -> None:
    assert _same(synthetic(500, 300, random_state=7), synthetic(500, 300, random_state=7))


def test_different_seed_different_data() -> None:
    a = synthetic(500, 300, random_state=7)
    b = synthetic(500, 300, random_state=8)
    assert not _same(a, b)
    assert not np.array_equal(a[1].item_group, b[1].item_group)


def test_generator_is_accepted_and_advanced() -> None:
    a = synthetic(500, 300, random_state=np.random.default_rng(11))
    b = synthetic(500, 300, random_state=np.random.default_rng(11))
    assert _same(a, b)
    rng = np.random.default_rng(11)
    first = synthetic(500, 300, random_state=rng)
    second = synthetic(500, 300, random_state=rng)
    assert _same(first, a)
    assert not _same(first, second)


def test_no_seed_gives_fresh_data() -> None:
    assert not _same(synthetic(500, 300), synthetic(500, 300))


def test_blocks_are_seamless(monkeypatch: pytest.MonkeyPatch) -> None:
    # Draw in many small blocks (the default block is millions of draws): the result must still
    # be one valid matrix, reproducible, with the planted structure.
    monkeypatch.setattr(datasets, "_BLOCK_DRAWS", 997)
    a = synthetic(3000, 1000, 8, 20, random_state=2)
    b = synthetic(3000, 1000, 8, 20, random_state=2)
    assert _same(a, b)
    R, groups = a
    _assert_canonical_csr(R, (3000, 1000))
    assert np.diff(R.indptr).min() >= 1
    assert 0.95 * 3000 * 20 <= R.nnz <= 1.05 * 3000 * 20
    assert (groups.item_group[R.indices] == groups.user_group[_rows(R)]).mean() > 0.6


# --- large, sparse --------------------------------------------------------------------------------


def test_large_shape_is_never_densified() -> None:
    # A dense 200k x 50k float32 array would need 40 GB; this must stay linear in nnz.
    n_users, n_items, ipu = 200_000, 50_000, 5
    R, groups = synthetic(n_users, n_items, 50, ipu, random_state=0)
    assert R.shape == (n_users, n_items)
    assert 0.95 * n_users * ipu <= R.nnz <= 1.05 * n_users * ipu
    assert R.indices.dtype == np.int32
    assert R.has_canonical_format
    assert groups.item_group.shape == (n_items,)


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_users": 0}, "n_users"),
        ({"n_users": -3}, "n_users"),
        ({"n_items": 0}, "n_items"),
        ({"n_groups": 0}, "n_groups"),
        ({"n_items": 5, "n_groups": 6, "interactions_per_user": 2}, "n_groups"),
        ({"interactions_per_user": 0.5}, "interactions_per_user"),
        ({"interactions_per_user": 0}, "interactions_per_user"),
        ({"interactions_per_user": float("nan")}, "interactions_per_user"),
        ({"interactions_per_user": float("inf")}, "interactions_per_user"),
        ({"n_items": 10, "interactions_per_user": 11}, "interactions_per_user"),
        ({"random_state": -1}, "random_state"),
        ({"n_items": 2**31}, "n_items"),
    ],
)
def test_bad_values_raise_value_error(kwargs: dict[str, Any], name: str) -> None:
    value = kwargs[name]
    with pytest.raises(ValueError, match=rf"{name}.*{value}"):
        synthetic(**kwargs)


def test_huge_product_is_rejected() -> None:
    with pytest.raises(ValueError, match="n_users"):
        synthetic(2**40, 2**30, random_state=0)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_users": 2.5}, "n_users"),
        ({"n_users": True}, "n_users"),
        ({"n_items": "100"}, "n_items"),
        ({"n_groups": None}, "n_groups"),
        ({"interactions_per_user": "30"}, "interactions_per_user"),
        ({"interactions_per_user": True}, "interactions_per_user"),
        ({"random_state": "seed"}, "random_state"),
        ({"random_state": 1.5}, "random_state"),
        ({"random_state": np.random.RandomState(0)}, "random_state"),
    ],
)
def test_bad_types_raise_type_error(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(TypeError, match=name):
        synthetic(**kwargs)


def test_random_state_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        synthetic(10, 10, 2, 2, 0)  # type: ignore[call-arg]


def test_numpy_integer_arguments_are_accepted() -> None:
    R, _ = synthetic(
        np.int64(30), np.int32(20), np.int16(2), np.float32(3), random_state=np.int64(1)
    )
    assert R.shape == (30, 20)


def test_module_does_not_import_the_extension() -> None:
    source = Path(datasets.__file__).read_text(encoding="utf-8")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            assert not any("_core" in a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert "_core" not in (node.module or "")
            assert not any("_core" in a.name for a in node.names)
