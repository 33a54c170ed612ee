"""What implicit users rely on beyond the model's own methods: rows narrower than the model
(users or items added since the data was built), id errors implicit reports as IndexError.

implicit 0.7.3 reads a row matrix with fewer columns than the model as if the missing columns
were empty (its vendored test_incremental_retrain depends on it); ials widens such rows with
empty columns, so every result must equal the one for the explicitly widened matrix.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ials
import implicit.als  # noqa: F401  (its BLAS must be loaded before threadpool_limits below)
import numpy as np
import pytest
import scipy.sparse as sp
import threadpoolctl

N_USERS, N_ITEMS = 9, 7


def fitted() -> ials.AlternatingLeastSquares:
    rng = np.random.default_rng(3)
    R = sp.random(N_USERS, N_ITEMS, density=0.5, random_state=rng, format="csr", dtype=np.float32)
    model = ials.AlternatingLeastSquares(factors=3, iterations=3, random_state=0, num_threads=1)
    model.fit(R, show_progress=False)
    return model


def narrow(rng: np.random.Generator, n_rows: int, n_cols: int) -> sp.csr_matrix:
    return sp.random(n_rows, n_cols, density=0.6, random_state=rng, format="csr", dtype=np.float32)


def widened(rows: sp.csr_matrix, n_cols: int) -> sp.csr_matrix:
    extra = sp.csr_matrix((rows.shape[0], n_cols - rows.shape[1]), dtype=rows.dtype)
    return sp.hstack([rows, extra], format="csr")


# (call taking the model and a row matrix, number of rows, the model's column count)
CALLS: dict[str, tuple[Callable[[Any, sp.csr_matrix], Any], int, int]] = {
    "recommend": (lambda m, r: m.recommend(np.array([0, 4]), r, N=5), 2, N_ITEMS),
    "recommend single": (lambda m, r: m.recommend(3, r, N=N_ITEMS), 1, N_ITEMS),
    "recommend items=": (lambda m, r: m.recommend(3, r, items=[0, 2, 3, 6]), 1, N_ITEMS),
    "recommend recalculate_user": (
        lambda m, r: m.recommend(np.array([1, 20]), r, N=4, recalculate_user=True),
        2,
        N_ITEMS,
    ),
    "recalculate_user": (lambda m, r: m.recalculate_user(np.array([0, 1]), r), 2, N_ITEMS),
    "recalculate_item": (lambda m, r: m.recalculate_item(np.array([0, 1]), r), 2, N_USERS),
    "similar_items recalculate_item": (
        lambda m, r: m.similar_items(2, N=4, recalculate_item=True, item_users=r),
        1,
        N_USERS,
    ),
    "partial_fit_users": (
        lambda m, r: (m.partial_fit_users(np.array([2, 12]), r), m.user_factors)[1],
        2,
        N_ITEMS,
    ),
    "partial_fit_items": (
        lambda m, r: (m.partial_fit_items(np.array([1, 10]), r), m.item_factors)[1],
        2,
        N_USERS,
    ),
}


@pytest.mark.parametrize("name", list(CALLS))
@pytest.mark.parametrize("missing", [1, 3])
def test_rows_narrower_than_the_model_read_as_empty_columns(name: str, missing: int) -> None:
    call, n_rows, n_cols = CALLS[name]
    rows = narrow(np.random.default_rng(missing), n_rows, n_cols - missing)
    assert rows.nnz > 0
    got = call(fitted(), rows)
    want = call(fitted(), widened(rows, n_cols))
    if not isinstance(got, tuple):
        got, want = (got,), (want,)
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", list(CALLS))
def test_rows_wider_than_the_model_are_refused(name: str) -> None:
    call, n_rows, n_cols = CALLS[name]
    argument = "item_users" if n_cols == N_USERS else "user_items"
    what = "users" if n_cols == N_USERS else "items"
    model = fitted()
    before = (model.user_factors.copy(), model.item_factors.copy())
    rows = narrow(np.random.default_rng(0), n_rows, n_cols + 1)
    message = f"{argument} must have .* at most {n_cols} columns .* has {n_cols} {what}"
    with pytest.raises(ValueError, match=message):
        call(model, rows)
    np.testing.assert_array_equal(model.user_factors, before[0])
    np.testing.assert_array_equal(model.item_factors, before[1])


def test_items_added_by_partial_fit_items_are_served_with_old_user_rows() -> None:
    """The incremental workflow: a new item folded in from existing users' interactions is then
    ranked for users whose rows predate it (as in implicit's test_incremental_retrain)."""
    model = fitted()
    R_user = narrow(np.random.default_rng(5), 1, N_ITEMS)
    new_item_users = sp.csr_matrix(np.ones((1, N_USERS), dtype=np.float32))
    model.partial_fit_items([N_ITEMS], new_item_users)
    assert model.item_factors.shape[0] == N_ITEMS + 1
    ids, scores = model.recommend(0, R_user, N=N_ITEMS + 1, filter_already_liked_items=False)
    assert sorted(ids) == list(range(N_ITEMS + 1))
    np.testing.assert_allclose(
        scores, model.user_factors[0] @ model.item_factors[ids].T, rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.recommend(0, None, filter_already_liked_items=False, items=[1, N_ITEMS]),
        lambda m: m.recommend(0, None, filter_already_liked_items=False, items=[-1]),
        lambda m: m.recommend(0, None, filter_already_liked_items=False, filter_items=[99]),
        lambda m: m.recommend(N_USERS, None, filter_already_liked_items=False),
        lambda m: m.similar_items(N_ITEMS),
        lambda m: m.similar_users(-1),
    ],
)
def test_ids_out_of_range_are_value_and_index_errors(call: Any) -> None:
    """ials reports a bad id as a ValueError like any bad argument; implicit raises IndexError
    (its tests check for it), so the error is both."""
    with pytest.raises(ValueError, match="out of range") as info:
        call(fitted())
    assert isinstance(info.value, IndexError)


def test_all_41_in_scope_upstream_tests_are_collected() -> None:
    """tests/implicit_upstream (implicit's own ALS tests) runs its 41 in-scope tests and leaves
    out only the 7 GPU-only ones (its README lists both)."""
    here = Path(__file__).resolve().parent
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    result = subprocess.run(
        [*command, str(here / "implicit_upstream")],
        capture_output=True,
        text=True,
        cwd=here.parent,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    collected = [line for line in result.stdout.splitlines() if "::" in line]
    assert len(collected) == 41, collected
    assert len([c for c in collected if "::ALSTest::" in c]) == 22
    gpu_only = ("GPUALSTest", "test_gpu_loss", "test_recalculate_after_cpu_conversion")
    assert not [c for c in collected if any(name in c for name in gpu_only)]
    assert "41/48 tests collected (7 deselected)" in result.stdout


# A typical implicit 0.7.3 script (after implicit's Last.fm tutorial): BM25-weighted plays,
# a seeded split, a seeded model, recommendations, similar items, an evaluation. The ials
# version is this text with "from implicit." replaced by "from ials." and nothing else.
IMPLICIT_SCRIPT = """
import numpy as np
import scipy.sparse as sp
from implicit.als import AlternatingLeastSquares
from implicit.evaluation import ndcg_at_k, train_test_split
from implicit.nearest_neighbours import bm25_weight
from implicit.utils import nonzeros

table = np.loadtxt(DATA, skiprows=1, dtype=np.int64)
users = np.unique(table[:, 0], return_inverse=True)[1]
artists = np.unique(table[:, 1], return_inverse=True)[1]
plays = sp.csr_matrix((table[:, 2].astype(np.float32), (users, artists)))

user_plays = bm25_weight(plays, K1=100, B=0.8).tocsr()
train, test = train_test_split(user_plays, train_percentage=0.8, random_state=7)
model = AlternatingLeastSquares(
    factors=32, regularization=0.05, alpha=2.0, iterations=10, random_state=1, num_threads=1
)
model.fit(train, show_progress=False)
ids, scores = model.recommend(0, train[0], N=10)
batch_ids, batch_scores = model.recommend(np.arange(5), train[:5], N=10)
similar, similarity = model.similar_items(10, N=5)
liked = [int(item) for item, _ in nonzeros(train, 0)]
ndcg = ndcg_at_k(model, train, test, K=10, show_progress=False)
"""

LASTFM = Path(__file__).resolve().parents[2] / "shared" / "data" / "lastfm-2k"


@pytest.mark.skipif(not LASTFM.is_dir(), reason="../shared/data is not present")
def test_a_typical_implicit_script_runs_with_only_the_imports_changed() -> None:
    ials_script = IMPLICIT_SCRIPT.replace("from implicit.", "from ials.")
    changed = [
        (old, new)
        for old, new in zip(IMPLICIT_SCRIPT.splitlines(), ials_script.splitlines(), strict=True)
        if old != new
    ]
    assert len(changed) == 4 and all(new.startswith("from ials.") for _, new in changed)
    results = []
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):  # implicit warns otherwise
        for script in (IMPLICIT_SCRIPT, ials_script):
            namespace: dict[str, Any] = {"DATA": LASTFM / "user_artists.dat"}
            exec(script, namespace)
            results.append(namespace)
    theirs, ours = results
    for name in ("user_plays", "train", "test"):  # the same matrices, bit for bit
        assert type(ours[name]) is type(theirs[name]) and ours[name].dtype == theirs[name].dtype
        assert (ours[name] != theirs[name]).nnz == 0, name
    assert ours["liked"] == theirs["liked"]
    # the same seed gives the same start; float32 CG then drifts a little
    for name in ("ids", "scores", "batch_ids", "batch_scores", "similar", "similarity"):
        assert ours[name].shape == theirs[name].shape and ours[name].dtype == theirs[name].dtype
    assert len(set(ours["ids"]) & set(theirs["ids"])) >= 8
    np.testing.assert_allclose(ours["scores"], theirs["scores"], rtol=0.02)
    assert ours["similar"][0] == theirs["similar"][0] == 10
    assert ours["ndcg"] == pytest.approx(theirs["ndcg"], rel=0.05)


def test_raw_id_apis_leave_out_the_users_items_that_items_lists() -> None:
    """The model ranks the user's own items last at -inf when ``items=`` lists them (implicit's
    behaviour); ials.Interactions and ials.Recommender, which answer in raw ids (and over HTTP),
    return recommendations only."""
    rng = np.random.default_rng(0)
    users = [f"u{u}" for u in rng.integers(0, 20, 300)]
    items = [int(i) for i in rng.integers(100, 130, 300)]
    data = ials.Interactions.from_arrays(users, items)
    model = ials.AlternatingLeastSquares(factors=4, iterations=3, random_state=0)
    bundle = ials.Recommender.fit(data, model)
    row = data.user_index("u3")
    seen = set(data.to_raw_items(data.matrix[row].indices).tolist())
    listed = data.item_ids.tolist()
    assert seen and set(listed) - seen
    expected = set(listed) - seen
    for got in (
        data.recommend(model, "u3", N=40, items=listed),
        bundle.recommend("u3", N=40, items=listed),
        bundle.recommend_batch(["u3"], N=40, items=listed)[0],
    ):
        assert {item for item, _ in got} == expected
        assert all(np.isfinite(score) for _, score in got)
    ids, scores = model.recommend(row, data.matrix[row], N=40, items=data.item_indices(listed))
    assert len(ids) == len(listed) and np.isneginf(scores[-len(seen) :]).all()
