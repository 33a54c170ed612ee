"""Interaction logs with real ids: (user id, item id, weight) rows to a users x items matrix and
back.

:class:`Interactions` keeps the users x items ``matrix`` that the model trains on together with
the raw ids of its rows (``user_ids``) and columns (``item_ids``), so that results can be asked
for and reported in those ids::

    data = ials.Interactions.read("lastfm-2k/user_artists.dat", weight_col="weight")
    model = ials.AlternatingLeastSquares(factors=64, random_state=0)
    model.fit(data.matrix)
    data.recommend(model, 2, N=5)          # [(artist id, score), ...] for user id 2
    model.save("lastfm.npz", interactions=data)
    data = ials.Interactions.load("lastfm.npz")

Raw ids are integers (kept as int64) or strings (kept as a numpy unicode array); rows and columns
are in ascending order of their ids. Repeated (user, item) pairs are summed.
"""

from __future__ import annotations

import csv
import numbers
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._validation import check_sparse

__all__ = ["Interactions", "UnknownIdError"]

Column = str | int | None
_TAB_SUFFIXES = {".tsv", ".tab", ".dat"}
_PARQUET_SUFFIXES = {".parquet", ".pq"}


class UnknownIdError(KeyError, ValueError):
    """A raw user or item id that the data does not hold (a ``KeyError`` and a ``ValueError``)."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


# ---------------------------------------------------------------------------------------------
# Raw ids


def _ints_from_objects(name: str, values: np.ndarray, mixed: bool) -> np.ndarray | None:
    """The int64 ids of an object array holding only ints, None if it holds only strings (or,
    when ``mixed`` is allowed, both)."""
    kinds = set()
    for position, value in enumerate(values.tolist()):
        if isinstance(value, str):
            kinds.add("str")
        elif isinstance(value, numbers.Integral) and not isinstance(value, bool):
            kinds.add("int")
        elif value is None or (isinstance(value, float) and value != value):
            raise ValueError(f"{name} has a missing value at position {position}")
        elif isinstance(value, float) and value.is_integer():
            kinds.add("int")
        else:
            raise TypeError(
                f"{name} must hold integers or strings, got {value!r} at position {position}"
            )
        if len(kinds) > 1 and not mixed:
            raise TypeError(
                f"{name} mixes integers and strings (at position {position}: {value!r}); "
                "convert the ids to one type"
            )
    if "str" in kinds:
        return None
    ints = [int(value) for value in values.tolist()]
    limits = np.iinfo(np.int64)
    for position, value in enumerate(ints):
        if not limits.min <= value <= limits.max:
            raise ValueError(f"{name} holds an id outside the int64 range at position {position}")
    return np.array(ints, dtype=np.int64)


def as_raw_ids(name: str, values: Any, mixed: bool = False) -> np.ndarray:
    """``values`` as a 1-D array of raw ids: int64, or numpy unicode for strings. Integers and
    strings together are an error, unless ``mixed`` (look-ups), which makes them all strings."""
    if hasattr(values, "to_numpy"):  # pandas / polars series
        values = values.to_numpy()
    # A list is read element by element: numpy would silently turn [1, "a"] into strings.
    array = np.asarray(values)
    if isinstance(values, list | tuple) and array.dtype.kind in "UO":
        array = np.asarray(values, dtype=object)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    kind = array.dtype.kind
    if kind == "i":
        return array.astype(np.int64, copy=False)
    if kind == "u":
        if array.size and array.max() > np.iinfo(np.int64).max:
            raise ValueError(f"{name} holds an id above the int64 range: {array.max()}")
        return array.astype(np.int64)
    if kind == "f":
        missing = np.isnan(array)
        if missing.any():
            raise ValueError(
                f"{name} has a missing value at position {int(np.flatnonzero(missing)[0])}"
            )
        bad = ~np.isfinite(array) | (array != np.round(array))
        if bad.any():
            position = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{name} must hold integers or strings, got {array[position].item()!r} at position "
                f"{position}"
            )
        return array.astype(np.int64)
    if kind == "U":
        return array
    if kind == "O":
        ints = _ints_from_objects(name, array, mixed)
        if ints is not None:
            return ints
        return np.array([str(value) for value in array.tolist()], dtype=str)
    raise TypeError(f"{name} must hold integers or strings, got dtype {array.dtype}")


def _ids_from_text(name: str, values: list[str], lines: list[int], path: Path) -> np.ndarray:
    """Ids read as text: int64 when every one is an integer written canonically ("7", not "07"
    or "+7"), strings otherwise."""
    if "" in values:
        raise ValueError(f"{path}, line {lines[values.index('')]}: the {name} is empty")
    try:
        numbers_ = list(map(int, values))
    except ValueError:
        return np.array(values, dtype=str)
    if list(map(str, numbers_)) != values:
        return np.array(values, dtype=str)
    try:
        return np.array(numbers_, dtype=np.int64)
    except OverflowError:
        return np.array(values, dtype=str)


def _coerce_query(values: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Queries in the type of ``ids`` (ints written as text match int ids and vice versa), and a
    mask of the queries that could be converted."""
    if ids.dtype.kind == "U" and values.dtype.kind == "U":
        # A cast to the ids' width would cut a longer query, which could then match another id.
        return values, np.ones(values.shape, dtype=bool)
    if ids.dtype.kind == values.dtype.kind or values.size == 0:
        return values.astype(ids.dtype, copy=False), np.ones(values.shape, dtype=bool)
    if ids.dtype.kind == "U":  # int queries against string ids
        return values.astype(str), np.ones(values.shape, dtype=bool)
    converted = np.zeros(values.shape, dtype=np.int64)
    ok = np.zeros(values.shape, dtype=bool)
    for position, text in enumerate(values.tolist()):
        stripped = text.strip()
        try:
            number = int(stripped)
        except ValueError:
            continue
        if str(number) == stripped and np.iinfo(np.int64).min <= number <= np.iinfo(np.int64).max:
            converted[position], ok[position] = number, True
    return converted, ok


class _Index:
    """Raw ids in row order, with a sorted view for vectorised look-ups."""

    def __init__(self, kind: str, ids: np.ndarray) -> None:
        self.kind = kind
        self.ids = np.array(ids)  # a private copy
        self.ids.flags.writeable = False
        order = np.argsort(self.ids, kind="stable")
        self.sorted = self.ids[order]
        if len(self.sorted) > 1:
            same = self.sorted[1:] == self.sorted[:-1]
            if same.any():
                duplicate = self.sorted[1:][same][0].item()
                raise ValueError(f"{kind}_ids must be unique, {duplicate!r} appears twice")
        self.order = order

    def positions(self, raw: Any) -> np.ndarray:
        if not isinstance(raw, list | tuple):
            raw = np.atleast_1d(np.asarray(raw))
        values = as_raw_ids(f"{self.kind} ids", raw, mixed=True)
        query, ok = _coerce_query(values, self.ids)
        found = np.zeros(len(query), dtype=np.int64)
        if len(self.sorted):
            slot = np.clip(np.searchsorted(self.sorted, query), 0, len(self.sorted) - 1)
            ok &= self.sorted[slot] == query
            found = self.order[slot]
        else:
            ok[:] = False
        if not ok.all():
            missing = values[~ok]
            first = missing[0].item() if hasattr(missing[0], "item") else missing[0]
            if len(missing) == 1:
                raise UnknownIdError(f"unknown {self.kind} id {first!r}")
            raise UnknownIdError(f"{len(missing)} unknown {self.kind} ids, the first {first!r}")
        return found.astype(np.int64)

    def raw(self, indices: Any) -> np.ndarray:
        array = np.asarray(indices)
        if array.dtype.kind not in "iu" and array.size:
            raise TypeError(f"{self.kind} indices must be integers, got dtype {array.dtype}")
        array = array.astype(np.int64)
        bad = (array < 0) | (array >= len(self.ids))
        if bad.any():
            raise ValueError(
                f"{self.kind} index {array[bad].flat[0]} is out of range 0..{len(self.ids) - 1}"
            )
        return self.ids[array]


def _results(ids: np.ndarray, scores: np.ndarray) -> list[tuple[Any, float]]:
    # With items=, the model ranks the user's own items last at score -inf: not recommendations.
    kept = scores > -np.inf
    return list(zip(ids[kept].tolist(), scores[kept].astype(np.float64).tolist(), strict=True))


# ---------------------------------------------------------------------------------------------
# Files


def _separator(path: Path, first_line: str) -> str:
    suffix = path.suffix.lower()
    if suffix in _TAB_SUFFIXES:
        return "\t"
    if suffix == ".csv":
        return ","
    if "\t" in first_line:
        return "\t"
    if "," in first_line:
        return ","
    raise ValueError(f"cannot tell the column separator of {path}: pass sep=")


def _rows(handle: Any, sep: str) -> Iterator[list[str]]:
    if len(sep) == 1:
        return csv.reader(handle, delimiter=sep)
    return (line.rstrip("\r\n").split(sep) for line in handle)


def _position(spec: Column, default: int, header: list[str] | None, role: str, path: Path) -> int:
    if spec is None:
        return default
    if isinstance(spec, bool) or not isinstance(spec, str | numbers.Integral):
        raise TypeError(f"{role}_col must be a column name or position, got {spec!r}")
    if isinstance(spec, numbers.Integral):
        width = len(header) if header is not None else None
        if spec < 0 or (width is not None and spec >= width):
            raise ValueError(f"{role}_col {spec} is not a column position of {path}")
        return int(spec)
    if header is None:
        raise ValueError(f"{role}_col={spec!r} names a column but {path} is read without a header")
    if spec not in header:
        raise ValueError(
            f"column {spec!r} ({role}_col) not found in {path}; its columns are: "
            + ", ".join(header)
        )
    return header.index(spec)


def _read_text(
    path: Path,
    user_col: Column,
    item_col: Column,
    weight_col: Column,
    sep: str | None,
    header: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        first_line = handle.readline()
        handle.seek(0)
        if sep is None:
            sep = _separator(path, first_line)
        if not isinstance(sep, str) or not sep:
            raise ValueError(f"sep must be a non-empty string, got {sep!r}")
        reader = _rows(handle, sep)
        names = None
        if header:
            first = next(reader, None)
            if first is None:
                raise ValueError(f"{path} is empty")
            names = [name.strip() for name in first]
        rows = list(reader)
    columns = [
        _position(user_col, 0, names, "user", path),
        _position(item_col, 1, names, "item", path),
    ]
    if weight_col is not None:
        columns.append(_position(weight_col, 2, names, "weight", path))
    offset = 2 if header else 1  # line number of rows[0]
    lines = [i + offset for i, row in enumerate(rows) if row and row != [""]]
    if len(lines) != len(rows):
        rows = [row for row in rows if row and row != [""]]
    if not rows:
        raise ValueError(f"{path} holds no interactions")
    width = max(columns) + 1
    if min(map(len, rows)) < width:
        short = next(i for i, row in enumerate(rows) if len(row) < width)
        raise ValueError(
            f"{path}, line {lines[short]}: {len(rows[short])} fields, expected at least {width}"
        )
    values = [[row[column].strip() for row in rows] for column in columns]
    users = _ids_from_text("user id", values[0], lines, path)
    items = _ids_from_text("item id", values[1], lines, path)
    weights = None
    if weight_col is not None:
        try:
            weights = np.array(list(map(float, values[2])), dtype=np.float64)
        except ValueError:
            for position, value in enumerate(values[2]):
                try:
                    float(value)
                except ValueError:
                    raise ValueError(
                        f"{path}, line {lines[position]}: weight {value!r} is not a number"
                    ) from None
            raise
    return users, items, weights


def _read_parquet(
    path: Path, user_col: Column, item_col: Column, weight_col: Column
) -> tuple[Any, Any, Any]:
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise ImportError("reading Parquet files needs pyarrow: pip install pyarrow") from err
    names = list(pq.read_schema(path).names)
    picked = [
        names[_position(user_col, 0, names, "user", path)],
        names[_position(item_col, 1, names, "item", path)],
    ]
    if weight_col is not None:
        picked.append(names[_position(weight_col, 2, names, "weight", path)])
    table = pq.read_table(path, columns=picked)
    arrays = [table.column(name).to_numpy() for name in picked]
    return arrays[0], arrays[1], arrays[2] if weight_col is not None else None


# ---------------------------------------------------------------------------------------------


class Interactions:
    """A users x items matrix of interaction strengths with the raw ids of its rows and columns.

    Build one with :meth:`from_arrays`, :meth:`from_dataframe` or :meth:`read` (CSV, TSV and
    Parquet files), or directly from a matrix and its ids.

    Attributes
    ----------
    matrix : scipy.sparse.csr_matrix of float32, users x items
        Summed weights of each (user, item) pair; what ``model.fit`` takes.
    user_ids, item_ids : numpy arrays (int64 or unicode), read-only
        The raw id of each row and of each column.

    Parameters
    ----------
    matrix : scipy.sparse matrix or array, users x items
    user_ids, item_ids : array-like of ints or strings, optional
        Unique ids, one per row / column (default ``0..n-1``).
    """

    def __init__(self, matrix: Any, user_ids: Any = None, item_ids: Any = None) -> None:
        check_sparse("matrix", matrix)
        with np.errstate(over="ignore"):  # reported below
            csr = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
        csr.sum_duplicates()
        if not np.isfinite(csr.data).all():
            raise ValueError("matrix holds a value that is not finite in float32")
        n_users, n_items = csr.shape
        users = np.arange(n_users) if user_ids is None else as_raw_ids("user_ids", user_ids)
        items = np.arange(n_items) if item_ids is None else as_raw_ids("item_ids", item_ids)
        if len(users) != n_users:
            raise ValueError(f"user_ids has {len(users)} ids for {n_users} rows")
        if len(items) != n_items:
            raise ValueError(f"item_ids has {len(items)} ids for {n_items} columns")
        self.matrix: sp.csr_matrix = csr
        self._users = _Index("user", users.astype(np.int64) if users.dtype.kind == "i" else users)
        self._items = _Index("item", items.astype(np.int64) if items.dtype.kind == "i" else items)

    # --- construction ------------------------------------------------------------------------

    @classmethod
    def from_arrays(cls, users: Any, items: Any, weights: Any = None) -> Interactions:
        """One interaction per position: ``users[j]`` with ``items[j]``, of strength
        ``weights[j]`` (1 when omitted). Repeated pairs are summed."""
        user_ids = as_raw_ids("users", users)
        item_ids = as_raw_ids("items", items)
        if len(user_ids) != len(item_ids):
            raise ValueError(
                f"users and items must have the same length, got {len(user_ids)} and "
                f"{len(item_ids)}"
            )
        if weights is None:
            values = np.ones(len(user_ids), dtype=np.float64)
        else:
            if hasattr(weights, "to_numpy"):
                weights = weights.to_numpy()
            raw = np.asarray(weights)
            if raw.ndim != 1 or len(raw) != len(user_ids):
                raise ValueError(
                    f"weights must be 1-D with {len(user_ids)} values, got shape {raw.shape}"
                )
            if raw.dtype.kind not in "biuf":
                raise TypeError(f"weights must be numbers, got dtype {raw.dtype}")
            values = raw.astype(np.float64)
            bad = ~np.isfinite(values)
            if bad.any():
                position = int(np.flatnonzero(bad)[0])
                raise ValueError(f"weights[{position}] is not finite: {values[position]}")
        unique_users, rows = np.unique(user_ids, return_inverse=True)
        unique_items, cols = np.unique(item_ids, return_inverse=True)
        summed = sp.csr_matrix(
            (values, (rows.reshape(-1), cols.reshape(-1))),
            shape=(len(unique_users), len(unique_items)),
        )
        summed.sum_duplicates()
        with np.errstate(over="ignore"):  # reported below
            matrix = summed.astype(np.float32)
        if not np.isfinite(matrix.data).all():
            raise ValueError("a summed weight does not fit in float32")
        return cls._trusted(matrix, unique_users, unique_items)

    @classmethod
    def _trusted(cls, matrix: sp.csr_matrix, users: np.ndarray, items: np.ndarray) -> Interactions:
        """Wraps a canonical float32 CSR matrix built here (no copy, no re-checks)."""
        data = cls.__new__(cls)
        data.matrix = matrix
        data._users = _Index("user", users)
        data._items = _Index("item", items)
        return data

    @classmethod
    def from_dataframe(
        cls, df: Any, user_col: str, item_col: str, weight_col: str | None = None
    ) -> Interactions:
        """From the columns of a pandas (or any ``df[column].to_numpy()``) DataFrame."""
        columns = [str(c) for c in getattr(df, "columns", [])]
        for role, name in (
            ("user_col", user_col),
            ("item_col", item_col),
            ("weight_col", weight_col),
        ):
            if name is not None and name not in columns:
                raise ValueError(
                    f"column {name!r} ({role}) not found in the DataFrame; its columns are: "
                    + ", ".join(columns)
                )
        weights = None if weight_col is None else df[weight_col]
        return cls.from_arrays(
            as_raw_ids(f"column {user_col!r}", df[user_col]),
            as_raw_ids(f"column {item_col!r}", df[item_col]),
            weights,
        )

    @classmethod
    def read(
        cls,
        path: str | os.PathLike[str],
        user_col: Column = None,
        item_col: Column = None,
        weight_col: Column = None,
        sep: str | None = None,
        header: bool = True,
    ) -> Interactions:
        """Reads a CSV, TSV or Parquet file of one interaction per line.

        Columns are given by header name or by 0-based position; by default the user id is the
        first column, the item id the second, and every line counts 1 (``weight_col`` names the
        strength column, e.g. a play count). ``sep`` is taken from the suffix when omitted
        (``.csv``: comma; ``.tsv``, ``.tab``, ``.dat``: tab; otherwise guessed from the first
        line); a multi-character ``sep`` such as ``"::"`` splits plainly, without quoting.
        Text files are read with the standard library (no extra needed); ids that are all
        canonical integers become int64, any other ids stay strings. ``.parquet`` files need
        pyarrow (``pip install pyarrow``, the ``parquet`` extra).

        Examples: Last.fm ``read("user_artists.dat", weight_col="weight")``; MovieLens
        ``read("ratings.csv", "userId", "movieId")`` (every rating as one interaction).
        """
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"no such file: {file}")
        if file.suffix.lower() in _PARQUET_SUFFIXES:
            users, items, weights = _read_parquet(file, user_col, item_col, weight_col)
        else:
            users, items, weights = _read_text(file, user_col, item_col, weight_col, sep, header)
        return cls.from_arrays(users, items, weights)

    @classmethod
    def load(cls, fileobj_or_path: Any) -> Interactions:
        """The interactions saved in a model file by ``model.save(path, interactions=...)``;
        ``ValueError`` if that file holds none."""
        from ._persistence import load_interactions

        matrix, user_ids, item_ids = load_interactions(fileobj_or_path)
        return cls(matrix, user_ids, item_ids)

    # --- shape and ids -----------------------------------------------------------------------

    @property
    def user_ids(self) -> np.ndarray:
        return self._users.ids

    @property
    def item_ids(self) -> np.ndarray:
        return self._items.ids

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.matrix.shape[0]), int(self.matrix.shape[1]))

    @property
    def n_users(self) -> int:
        return self.shape[0]

    @property
    def n_items(self) -> int:
        return self.shape[1]

    @property
    def nnz(self) -> int:
        return int(self.matrix.nnz)

    def __repr__(self) -> str:
        return f"Interactions({self.n_users} users x {self.n_items} items, {self.nnz} interactions)"

    def user_index(self, user_id: Any) -> int:
        """The row of a raw user id (``UnknownIdError``, a KeyError and ValueError, if absent).
        A string of digits matches an integer id and an int matches a string id."""
        return int(self._users.positions([user_id])[0])

    def item_index(self, item_id: Any) -> int:
        """The column of a raw item id (``UnknownIdError`` if absent)."""
        return int(self._items.positions([item_id])[0])

    def user_indices(self, user_ids: Any) -> np.ndarray:
        """The rows of several raw user ids (int64 array)."""
        return self._users.positions(user_ids)

    def item_indices(self, item_ids: Any) -> np.ndarray:
        """The columns of several raw item ids (int64 array)."""
        return self._items.positions(item_ids)

    def to_raw_users(self, indices: Any) -> np.ndarray:
        """The raw ids of these rows (any shape of ints in range)."""
        return self._users.raw(indices)

    def to_raw_items(self, indices: Any) -> np.ndarray:
        """The raw ids of these columns (any shape of ints in range)."""
        return self._items.raw(indices)

    # --- results in raw ids ------------------------------------------------------------------

    def _check_model(self, model: Any) -> None:
        users = getattr(model, "user_factors", None)
        items = getattr(model, "item_factors", None)
        if users is None or items is None:
            raise ValueError("the model is not fitted: call fit() first")
        if users.shape[0] != self.n_users or items.shape[0] != self.n_items:
            raise ValueError(
                f"the model has factors for {users.shape[0]} users x {items.shape[0]} items but "
                f"these interactions are {self.n_users} x {self.n_items}: fit it on this data"
            )

    def recommend(
        self,
        model: Any,
        user_id: Any,
        N: int = 10,
        filter_already_liked_items: bool = True,
        filter_items: Any = None,
        items: Any = None,
        recalculate_user: bool = False,
    ) -> list[tuple[Any, float]]:
        """``model.recommend`` for a raw user id: ``[(raw item id, score), ...]``, best first.

        The user's row of ``matrix`` is what is filtered out (and what a recalculated user is
        solved from); ``filter_items`` and ``items`` are raw item ids.
        """
        self._check_model(model)
        row = self.user_index(user_id)
        ids, scores = model.recommend(
            row,
            self.matrix[row],
            N=N,
            filter_already_liked_items=filter_already_liked_items,
            filter_items=None if filter_items is None else self.item_indices(filter_items),
            recalculate_user=recalculate_user,
            items=None if items is None else self.item_indices(items),
        )
        return _results(self.to_raw_items(ids), scores)

    def similar_items(
        self,
        model: Any,
        item_id: Any,
        N: int = 10,
        filter_items: Any = None,
        items: Any = None,
    ) -> list[tuple[Any, float]]:
        """``model.similar_items`` for a raw item id: ``[(raw item id, cosine), ...]``; the item
        itself comes first (as in implicit) unless filtered."""
        self._check_model(model)
        ids, scores = model.similar_items(
            self.item_index(item_id),
            N=N,
            filter_items=None if filter_items is None else self.item_indices(filter_items),
            items=None if items is None else self.item_indices(items),
        )
        return _results(self.to_raw_items(ids), scores)

    def similar_users(self, model: Any, user_id: Any, N: int = 10) -> list[tuple[Any, float]]:
        """``model.similar_users`` for a raw user id: ``[(raw user id, cosine), ...]``."""
        self._check_model(model)
        ids, scores = model.similar_users(self.user_index(user_id), N=N)
        return _results(self.to_raw_users(ids), scores)
