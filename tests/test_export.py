"""Raw-id recommendation tables: ``ials.export`` and Dask's ``write_recommendations`` agree."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import ials
import numpy as np
import pytest
from distributed import Client, LocalCluster
from ials import distributed as dist


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with (
        LocalCluster(
            n_workers=1, processes=False, threads_per_worker=1, dashboard_address=None
        ) as local,
        Client(local) as connected,
    ):
        yield connected


def test_dask_writer_writes_raw_ids_like_the_cli(client: Client, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    rng = np.random.default_rng(5)
    users = [f"listener-{u}" for u in rng.integers(0, 40, 600)]
    items = [f"artist-{i}" for i in rng.integers(0, 50, 600)]
    data = ials.Interactions.from_arrays(users, items)
    bundle = ials.Recommender.fit(data, ials.AlternatingLeastSquares(factors=4, random_state=0))
    paths = dist.write_recommendations(
        client,
        data.matrix,
        bundle.model,
        tmp_path / "recs",
        N=5,
        n_blocks=3,
        user_ids=data.user_ids,
        item_ids=data.item_ids,
    )
    rows = [row for path in paths for row in pq.read_table(path).to_pylist()]
    expected = [
        {"user": user, "rank": rank, "item": item, "score": pytest.approx(score, rel=1e-6)}
        for user, results in zip(
            data.user_ids.tolist(), bundle.recommend_batch(data.user_ids, N=5), strict=True
        )
        for rank, (item, score) in enumerate(results, start=1)
    ]
    assert rows == expected
    # With items= a user's own items are ranked last at -inf by the model: left out, as the
    # Recommender leaves them out.
    only = data.item_ids[:8]
    paths = dist.write_recommendations(
        client,
        data.matrix,
        bundle.model,
        tmp_path / "only",
        N=8,
        items=np.arange(8),
        user_ids=data.user_ids,
        item_ids=data.item_ids,
    )
    rows = [row for path in paths for row in pq.read_table(path).to_pylist()]
    expected_only = bundle.recommend_batch(data.user_ids, N=8, items=only)
    assert [(row["user"], row["item"]) for row in rows] == [
        (user, item)
        for user, results in zip(data.user_ids.tolist(), expected_only, strict=True)
        for item, _ in results
    ]
    assert len(rows) < 8 * len(data.user_ids)  # some users' own items were among the eight
    with pytest.raises(ValueError, match="user_ids has 3 ids but the model has 40"):
        dist.write_recommendations(
            client, data.matrix, bundle.model, tmp_path / "x", user_ids=["a", "b", "c"]
        )
