"""Loaders for the shared benchmark data sets (read in place, never copied into the repo).

The data live in ``../shared/data`` beside the repository (override with ``IALS_DATA_DIR``);
see that folder's README for sources and terms.

- :func:`gowalla` -> ``(train, test)`` binary users x items CSR matrices (LightGCN/NGCF split).
- :func:`lastfm` -> users x artists play-count CSR matrix (HetRec 2011 Last.fm), with the
  original ids of rows and columns.
- :func:`citeulike` -> binary users x articles CSR matrix (CiteULike-a, Wang, Chen & Li 2013).
- :func:`synthetic` -> a seeded users x items play-count matrix with Zipf-like popularity.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

__all__ = ["LastFm", "citeulike", "data_dir", "gowalla", "lastfm", "synthetic"]


def data_dir() -> Path:
    """``$IALS_DATA_DIR``, else ``<repo>/../shared/data``."""
    env = os.environ.get("IALS_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def _count_lines(path: Path) -> int | None:
    """Number of data lines of a ``org_id remap_id`` list file (header excluded), if present."""
    if not path.exists():
        return None
    with path.open() as f:
        return sum(1 for line in f if line.strip()) - 1


def _read_adjacency(path: Path) -> tuple[NDArray[np.int64], NDArray[np.int32]]:
    """Lines ``user item item ...`` -> (row ids, column ids), one pair per item."""
    rows: list[NDArray[np.int64]] = []
    cols: list[NDArray[np.int32]] = []
    with path.open() as f:
        for line in f:
            ids = line.split()
            if len(ids) < 2:
                continue
            items = np.array(ids[1:], dtype=np.int32)
            rows.append(np.full(items.size, int(ids[0]), dtype=np.int64))
            cols.append(items)
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int32)
    return np.concatenate(rows), np.concatenate(cols)


def _binary_csr(
    rows: NDArray[np.int64], cols: NDArray[np.int32], shape: tuple[int, int]
) -> sp.csr_matrix:
    data = np.ones(rows.size, dtype=np.float32)
    matrix = sp.csr_matrix((data, (rows, cols)), shape=shape, dtype=np.float32)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0  # binary even if a pair were listed twice
    matrix.sort_indices()
    return matrix


def gowalla(root: Path | None = None) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """The Gowalla train/test split as binary float32 users x items CSR matrices.

    Both matrices have the same shape: the user and item counts of ``user_list.txt`` and
    ``item_list.txt`` when present, else one more than the largest id in either file.
    """
    folder = (root or data_dir()) / "gowalla"
    train_rc = _read_adjacency(folder / "train.txt")
    test_rc = _read_adjacency(folder / "test.txt")
    n_users = _count_lines(folder / "user_list.txt")
    n_items = _count_lines(folder / "item_list.txt")
    max_user = max((int(r.max()) for r, _ in (train_rc, test_rc) if r.size), default=-1)
    max_item = max((int(c.max()) for _, c in (train_rc, test_rc) if c.size), default=-1)
    shape = (
        max(n_users or 0, max_user + 1),
        max(n_items or 0, max_item + 1),
    )
    return _binary_csr(*train_rc, shape), _binary_csr(*test_rc, shape)


@dataclass(frozen=True)
class LastFm:
    """Last.fm play counts: ``plays[u, a]`` for ``user_ids[u]`` and ``artist_ids[a]``."""

    plays: sp.csr_matrix
    user_ids: NDArray[np.int64]
    artist_ids: NDArray[np.int64]


def lastfm(root: Path | None = None) -> LastFm:
    """``lastfm-2k/user_artists.dat`` as a float32 users x artists CSR of play counts.

    Rows and columns are the sorted distinct user and artist ids that occur in the file.
    """
    path = (root or data_dir()) / "lastfm-2k" / "user_artists.dat"
    table = np.loadtxt(path, delimiter="\t", skiprows=1, dtype=np.int64, ndmin=2)
    user_ids, rows = np.unique(table[:, 0], return_inverse=True)
    artist_ids, cols = np.unique(table[:, 1], return_inverse=True)
    plays = sp.csr_matrix(
        (table[:, 2].astype(np.float32), (rows, cols)),
        shape=(user_ids.size, artist_ids.size),
        dtype=np.float32,
    )
    plays.sum_duplicates()
    plays.sort_indices()
    return LastFm(plays=plays, user_ids=user_ids, artist_ids=artist_ids)


def citeulike(root: Path | None = None) -> sp.csr_matrix:
    """``citeulike-a/users.dat`` as a binary float32 users x articles CSR matrix.

    Line u of the file is ``count item item ...`` (0-based article ids): row u holds those
    articles. There are as many rows as lines and one column more than the largest article id.
    """
    path = (root or data_dir()) / "citeulike-a" / "users.dat"
    rows: list[NDArray[np.int64]] = []
    cols: list[NDArray[np.int32]] = []
    n_users = 0
    with path.open() as f:
        for user, line in enumerate(f):
            n_users = user + 1
            ids = line.split()
            if not ids:
                continue
            items = np.array(ids[1:], dtype=np.int32)
            if items.size != int(ids[0]):
                raise ValueError(
                    f"{path} line {user + 1}: count {ids[0]} but {items.size} article ids"
                )
            rows.append(np.full(items.size, user, dtype=np.int64))
            cols.append(items)
    row = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    col = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int32)
    n_items = int(col.max()) + 1 if col.size else 0
    return _binary_csr(row, col, (n_users, n_items))


def synthetic(
    n_users: int = 100_000,
    n_items: int = 20_000,
    nnz: int = 3_000_000,
    random_state: int = 0,
) -> sp.csr_matrix:
    """A seeded users x items float32 play-count CSR with about ``nnz`` stored entries.

    Uses ``ials.datasets.synthetic`` (planted taste groups, Zipf-like popularity) when ials is
    importable; otherwise a plain generator: items drawn with probability ~ 1 / (rank + 1),
    duplicates summed into counts.
    """
    per_user = max(1.0, min(float(n_items), nnz / n_users))
    try:
        from ials.datasets import synthetic as ials_synthetic
    except ImportError:
        pass
    else:
        matrix, _groups = ials_synthetic(
            n_users, n_items, interactions_per_user=per_user, random_state=random_state
        )
        return matrix
    rng = np.random.default_rng(random_state)
    popularity = 1.0 / np.arange(1, n_items + 1)
    popularity = popularity[rng.permutation(n_items)]
    popularity /= popularity.sum()
    draws = int(nnz * 1.3)  # some draws repeat a (user, item) pair and merge
    rows = rng.integers(0, n_users, size=draws)
    cols = rng.choice(n_items, size=draws, p=popularity).astype(np.int32)
    data = np.ones(draws, dtype=np.float32)
    matrix = sp.csr_matrix((data, (rows, cols)), shape=(n_users, n_items), dtype=np.float32)
    matrix.sum_duplicates()
    matrix.sort_indices()
    return matrix
