"""ials.distributed on a real multi-process Dask cluster (LocalCluster, 2 worker processes).

Every expected value comes from the single-machine ``AlternatingLeastSquares`` (fit, loss,
recommend_all) or from ``ials.gram``; the distributed results must match them bitwise. One
cluster serves the module; tests that kill a worker let its nanny start a new one and wait for
it. The fixture checks that every worker process it saw, and every child process the cluster
started, is gone after the cluster closes.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask.dataframe as dd
import ials
import ials.distributed as dist
import numpy as np
import pandas as pd
import psutil
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp
import turning
from distributed import Client, LocalCluster
from distributed.core import Status
from ials.callbacks import StopFitting

N_USERS, N_ITEMS = 13_000, 9_000  # 4 and 3 chunks of 4096 rows: up to 4 user / 3 item blocks


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Cluster:
    """The client, plus every process id the cluster ever had (to check none is left)."""

    def __init__(self, cluster: LocalCluster, client: Client) -> None:
        self.cluster = cluster
        self.client = client
        self.pids: set[int] = set()
        self.record_pids()

    def record_pids(self) -> dict[str, int]:
        # (LocalCluster's nannies live in this process; each worker is a process of its own.)
        workers: dict[str, int] = self.client.run(os.getpid)
        self.pids.update(workers.values())
        return workers

    def kill_one_worker(self) -> int:
        """SIGKILLs the worker process with the lowest address (as a crash would); its nanny
        starts a new one."""
        workers = self.record_pids()
        pid = workers[min(workers)]
        os.kill(pid, signal.SIGKILL)
        return pid

    def restore(self) -> None:
        self.client.wait_for_workers(2, timeout=60)
        deadline = time.monotonic() + 60
        while len(self.client.nthreads()) != 2:  # the dead worker may still be listed briefly
            assert time.monotonic() < deadline, "the killed worker was not replaced"
            time.sleep(0.1)
        self.record_pids()


def _children() -> set[int]:
    """Child processes of this one, except multiprocessing's resource tracker (started once per
    interpreter, on first use, and kept until it exits)."""
    out = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if _alive(child.pid) and "resource_tracker" not in " ".join(child.cmdline()):
                out.add(child.pid)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    before = _children()
    with (
        LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
        ) as local,
        Client(local) as client,
    ):
        handle = Cluster(local, client)
        yield handle
        handle.restore()
    assert local.status == Status.closed
    assert handle.pids
    deadline = time.monotonic() + 30
    while (_children() - before or any(map(_alive, handle.pids))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in handle.pids if _alive(pid)], "worker processes left behind"
    assert not _children() - before, "processes left behind"


@pytest.fixture
def client(cluster: Cluster) -> Client:
    return cluster.client


def interactions(seed: int = 0, negative: bool = False) -> sp.csr_matrix:
    """13000 x 9000 play counts with skewed row sizes (so blocks differ in rows), with empty
    users and items, optionally some negative (explicit dislike) values."""
    rng = np.random.default_rng(seed)
    nnz = 120_000
    users = (rng.pareto(1.5, nnz) * 900).astype(np.int64) % N_USERS
    items = rng.integers(0, N_ITEMS - 5, nnz)
    items[items >= 100] += 5  # items 100-104 stay empty
    users[0], items[0] = N_USERS - 1, N_ITEMS - 1  # so a DataFrame's largest ids give the shape
    values = rng.integers(1, 6, nnz).astype(np.float32)
    if negative:
        values[rng.random(nnz) < 0.05] *= -1
    matrix = sp.csr_matrix((values, (users, items)), shape=(N_USERS, N_ITEMS))
    matrix.sum_duplicates()
    return matrix


def as_frame(matrix: sp.csr_matrix, npartitions: int = 3) -> Any:
    coo = matrix.tocoo()
    order = np.random.default_rng(1).permutation(coo.nnz)  # partitions mix users and items
    frame = pd.DataFrame(
        {
            "user": coo.row[order].astype(np.int64),
            "item": coo.col[order].astype(np.int64),
            "weight": coo.data[order],
        }
    )
    return dd.from_pandas(frame, npartitions=npartitions, sort=False)


PARAMS: dict[str, Any] = dict(factors=8, iterations=3, random_state=0, num_threads=1)


def single_machine(matrix: sp.csr_matrix, **params: Any) -> ials.AlternatingLeastSquares:
    model = ials.AlternatingLeastSquares(**{**PARAMS, **params})
    model.fit(matrix, show_progress=False)
    return model


def assert_same_factors(got: ials.AlternatingLeastSquares, want: ials.AlternatingLeastSquares):
    assert got.user_factors is not None and want.user_factors is not None
    assert got.user_factors.dtype == want.user_factors.dtype
    np.testing.assert_array_equal(got.user_factors, want.user_factors)
    np.testing.assert_array_equal(got.item_factors, want.item_factors)


# --------------------------------------------------------------------------------------------
# Blocks


def test_block_bounds_are_aligned_and_balanced() -> None:
    rows = 5 * 4096 + 100
    counts = np.ones(rows, dtype=np.int64)
    counts[:4096] = 40  # the first chunk alone carries as much as the other five together
    bounds = dist.block_bounds(counts, 2)
    np.testing.assert_array_equal(bounds, [0, 4096, rows])
    # Equal rows: thirds of 20580 are 6860 and 13720, nearest chunk boundaries 8192 and 12288.
    np.testing.assert_array_equal(
        dist.block_bounds(np.zeros(rows, np.int64), 3), [0, 2 * 4096, 3 * 4096, rows]
    )
    # More blocks than 4096-row chunks: one chunk each.
    np.testing.assert_array_equal(
        dist.block_bounds(np.zeros(9000, np.int64), 10), [0, 4096, 8192, 9000]
    )
    np.testing.assert_array_equal(dist.block_bounds(np.zeros(0, np.int64), 4), [0, 0])


def test_gram_pieces_add_up_to_the_core_gram() -> None:
    """The assumption behind bitwise identity: the core's Gram matrix is the in-order sum of the
    Gram matrices of its 4096-row chunks (fails if the core's block size changes)."""
    y = np.random.default_rng(3).standard_normal((3 * 4096 + 17, 12)).astype(np.float32)
    total = np.zeros((12, 12))
    for start in range(0, len(y), dist.GRAM_BLOCK_ROWS):
        total += ials.gram(y[start : start + dist.GRAM_BLOCK_ROWS])
    np.testing.assert_array_equal(total, ials.gram(y))
    # ... while a sum over chunks of another size rounds differently.
    other = np.zeros((12, 12))
    for start in range(0, len(y), 3000):
        other += ials.gram(y[start : start + 3000])
    assert not np.array_equal(other, ials.gram(y))


def test_interactions_from_a_matrix(client: Client) -> None:
    matrix = interactions()
    with dist.DistributedInteractions(client, matrix, n_blocks=4) as data:
        assert data.shape == matrix.shape and data.nnz == matrix.nnz
        assert data.n_user_blocks == 4 and data.n_item_blocks == 3
        blocks = client.gather([s.future() for s in data._user_blocks])
        for lo, hi, block in zip(data.user_bounds[:-1], data.user_bounds[1:], blocks, strict=True):
            assert (block != matrix[lo:hi]).nnz == 0 and block.shape == (hi - lo, N_ITEMS)


# --------------------------------------------------------------------------------------------
# Training: same factors as one machine


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_blocks", [1, 2, 4])
def test_fit_matches_single_machine(client: Client, n_blocks: int, dtype: type) -> None:
    """(float64 factors also catch a Gram matrix summed in another order: float32 ones often
    round such a difference away.)"""
    matrix = interactions()
    model = ials.AlternatingLeastSquares(**PARAMS, dtype=dtype)
    dist.fit(client, matrix, model, n_blocks=n_blocks, show_progress=False)
    assert_same_factors(model, single_machine(matrix, dtype=dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fit_in_a_turned_basis_matches_single_machine(
    client: Client, dtype: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With CG in the basis that makes the fixed side's Gram matrix tridiagonal (ials._basis),
    turned at every half-sweep here, the cluster turns the factors as one process does."""
    turns = turning.turn_always(monkeypatch)
    matrix = interactions()
    model = ials.AlternatingLeastSquares(**PARAMS, dtype=dtype)
    dist.fit(client, matrix, model, n_blocks=2, show_progress=False)
    assert turns == [8] * 6, "every half-sweep turned"
    assert_same_factors(model, single_machine(matrix, dtype=dtype))
    with monkeypatch.context() as plain:
        turning.never_turn(plain)
        unturned = single_machine(matrix, dtype=dtype)
    assert model.user_factors is not None and unturned.user_factors is not None
    difference = np.linalg.norm(model.user_factors - unturned.user_factors)
    tolerance = 1e-4 if dtype == np.float32 else 1e-10
    assert difference < tolerance * np.linalg.norm(unturned.user_factors), "the caller's basis"


@pytest.mark.parametrize(
    "params",
    [
        dict(
            dtype=np.float64,
            use_cg=False,
            alpha=2.0,
            regularization=0.1,
            regularization_exponent=0.5,
            unobserved_weight=0.3,
        ),
        dict(cg_steps=2, alpha=0.5, regularization=1.0, unobserved_weight=0.0, random_state=7),
    ],
)
def test_fit_honours_every_parameter(client: Client, params: dict[str, Any]) -> None:
    matrix = interactions(seed=1, negative=True)
    want = single_machine(matrix, **params)
    model = ials.AlternatingLeastSquares(**{**PARAMS, **params})
    dist.fit(client, matrix, model, n_blocks=3, show_progress=False)
    assert_same_factors(model, want)
    assert not np.array_equal(want.user_factors, single_machine(matrix).user_factors)


def test_training_loss_and_callback(client: Client) -> None:
    matrix = interactions()
    params = dict(calculate_training_loss=True, regularization_exponent=1.0, alpha=3.0)
    want_calls: list[tuple[int, float]] = []
    want = ials.AlternatingLeastSquares(**{**PARAMS, **params})
    want.fit(matrix, show_progress=False, callback=lambda i, _s, loss: want_calls.append((i, loss)))
    calls: list[tuple[int, float]] = []
    model = ials.AlternatingLeastSquares(**{**PARAMS, **params})
    dist.fit(
        client,
        matrix,
        model,
        n_blocks=2,
        show_progress=False,
        callback=lambda i, _s, loss: calls.append((i, loss)),
    )
    assert_same_factors(model, want)
    assert [i for i, _ in calls] == [0, 1, 2]
    np.testing.assert_allclose([x for _, x in calls], [x for _, x in want_calls], rtol=1e-9)


def test_callback_can_stop_the_fit(client: Client) -> None:
    matrix = interactions()

    def stop_after_second(iteration: int, _seconds: float, _loss: float | None) -> None:
        if iteration == 1:
            raise StopFitting

    want = ials.AlternatingLeastSquares(**{**PARAMS, "iterations": 5})
    want.fit(matrix, show_progress=False, callback=stop_after_second)
    model = ials.AlternatingLeastSquares(**{**PARAMS, "iterations": 5})
    dist.fit(client, matrix, model, show_progress=False, callback=stop_after_second)
    assert_same_factors(model, want)
    assert not np.array_equal(model.user_factors, single_machine(matrix, iterations=5).user_factors)


def test_fit_continues_from_existing_factors(client: Client, tmp_path: Path) -> None:
    matrix = interactions()
    rng = np.random.default_rng(5)
    start = (
        rng.standard_normal((N_USERS, 8)).astype(np.float32),
        rng.standard_normal((N_ITEMS, 8)).astype(np.float32),
    )
    want = ials.AlternatingLeastSquares(**PARAMS)
    want.user_factors, want.item_factors = (f.copy() for f in start)
    want.fit(matrix, show_progress=False)
    model = ials.AlternatingLeastSquares(**PARAMS)
    model.user_factors, model.item_factors = (f.copy() for f in start)
    with dist.DistributedInteractions(client, matrix, n_blocks=2) as data:
        dist.fit(client, data, model, show_progress=False)
        paths = dist.write_recommendations(client, data, model, tmp_path, N=3)  # blocks reused
    assert_same_factors(model, want)
    assert len(paths) == 2
    pd.testing.assert_frame_equal(
        read_recommendations(paths), expected_rows(*want.recommend_all(matrix, N=3))
    )


def test_fit_from_a_dask_dataframe(client: Client) -> None:
    matrix = interactions()
    model = ials.AlternatingLeastSquares(**PARAMS)
    dist.fit(client, as_frame(matrix), model, n_blocks=3, show_progress=False)
    assert_same_factors(model, single_machine(matrix))


def test_dataframe_shape_and_column_names(client: Client) -> None:
    matrix = interactions()
    frame = as_frame(matrix).rename(columns={"user": "u", "item": "i", "weight": "plays"})
    shape = (N_USERS + 5000, N_ITEMS + 10)  # trailing users and items without interactions
    with dist.DistributedInteractions(
        client, frame, shape=shape, user="u", item="i", weight="plays", n_blocks=3
    ) as data:
        assert data.shape == shape and data.nnz == matrix.nnz
        model = ials.AlternatingLeastSquares(**PARAMS)
        dist.fit(client, data, model, show_progress=False)
    bigger = sp.csr_matrix((matrix.data, matrix.indices, matrix.indptr), shape=matrix.shape)
    bigger.resize(shape)
    assert_same_factors(model, single_machine(bigger))


def test_bad_input_is_refused(client: Client) -> None:
    model = ials.AlternatingLeastSquares(**PARAMS)
    with pytest.raises(TypeError, match="user_items must be"):
        dist.fit(client, np.ones((3, 3)), model)
    frame = dd.from_pandas(pd.DataFrame({"user": [0, -1], "item": [0, 1], "weight": [1.0, 1.0]}))
    with pytest.raises(ValueError, match="negative id"):
        dist.fit(client, frame, model)
    with pytest.raises(ValueError, match="no column 'weight'"):
        dist.DistributedInteractions(client, frame[["user", "item"]])
    with (
        dist.DistributedInteractions(client, interactions(), items_side=False) as users_only,
        pytest.raises(ValueError, match="item blocks"),
    ):
        dist.fit(client, users_only, model)


# --------------------------------------------------------------------------------------------
# Faults


@pytest.mark.parametrize("source", ["matrix", "dataframe"])
def test_fit_survives_a_killed_worker(
    cluster: Cluster, source: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker process is SIGKILLed after the first sweep, with half of the blocks on it; the
    fit recreates them (re-scattered from the client's matrix, or recomputed by the scheduler
    from the DataFrame's graph) and ends with the single-machine factors."""
    matrix = interactions()
    killed: list[int] = []

    def kill(iteration: int, _seconds: float, _loss: float | None) -> None:
        if iteration == 0:
            killed.append(cluster.kill_one_worker())

    model = ials.AlternatingLeastSquares(**{**PARAMS, "iterations": 4})
    user_items = matrix if source == "matrix" else as_frame(matrix)
    with caplog.at_level(logging.WARNING, logger="ials.distributed"):
        dist.fit(cluster.client, user_items, model, n_blocks=4, show_progress=False, callback=kill)
    assert len(killed) == 1 and not _alive(killed[0])
    assert_same_factors(model, single_machine(matrix, iterations=4))
    if source == "matrix":  # scattered blocks cannot be recomputed by Dask: ials sent them again
        retries = [r for r in caplog.records if r.name == "ials.distributed"]
        assert retries and all("again" in r.getMessage() for r in retries)
    cluster.restore()
    assert killed[0] not in cluster.client.run(os.getpid).values()


# --------------------------------------------------------------------------------------------
# Batch recommendations


def read_recommendations(paths: list[str]) -> pd.DataFrame:
    return pd.concat([pq.read_table(p).to_pandas() for p in paths], ignore_index=True)


def expected_rows(ids: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    kept = ids >= 0
    users, ranks = np.nonzero(kept)
    return pd.DataFrame(
        {
            "user": users.astype(np.int64),
            "rank": (ranks + 1).astype(np.int32),
            "item": ids[kept].astype(np.int64),
            "score": scores[kept],
        }
    )


def test_write_recommendations_matches_recommend_all(client: Client, tmp_path: Path) -> None:
    matrix = interactions()
    model = single_machine(matrix)
    paths = dist.write_recommendations(client, matrix, model, tmp_path / "recs", N=7, n_blocks=3)
    assert paths == [str(tmp_path / "recs" / f"part-{b:05d}.parquet") for b in range(3)]
    assert sorted(os.listdir(tmp_path / "recs")) == [Path(p).name for p in paths]
    got = read_recommendations(paths)
    want = expected_rows(*model.recommend_all(matrix, N=7))
    assert list(got.columns) == ["user", "rank", "item", "score"]
    assert [str(t) for t in got.dtypes] == ["int64", "int32", "int64", "float32"]
    pd.testing.assert_frame_equal(got, want)
    # Users with interactions never get their own items back.
    liked = set(zip(*matrix.nonzero(), strict=True))
    assert not any((u, i) in liked for u, i in zip(got.user, got.item, strict=True))


def test_write_recommendations_without_interactions(client: Client, tmp_path: Path) -> None:
    matrix = interactions()
    model = single_machine(matrix)
    only = np.arange(0, N_ITEMS, 3)
    paths = dist.write_recommendations(
        client,
        None,
        model,
        tmp_path,
        N=4,
        filter_already_liked_items=False,
        filter_items=[0, 3, 6],
        items=only,
    )
    want = model.recommend_all(
        None, N=4, filter_already_liked_items=False, filter_items=[0, 3, 6], items=only
    )
    pd.testing.assert_frame_equal(read_recommendations(paths), expected_rows(*want))
    with pytest.raises(FileExistsError):
        dist.write_recommendations(client, None, model, tmp_path, filter_already_liked_items=False)
    again = dist.write_recommendations(
        client, as_frame(matrix), model, tmp_path, N=2, overwrite=True, n_blocks=2
    )
    assert sorted(os.listdir(tmp_path)) == [Path(p).name for p in again]
    pd.testing.assert_frame_equal(
        read_recommendations(again), expected_rows(*model.recommend_all(matrix, N=2))
    )
