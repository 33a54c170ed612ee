"""Top-N recommendations as a table in raw ids: one row per (user, rank), written to Parquet or
CSV. ``ials recommend --all`` and :func:`ials.distributed.write_recommendations` both build their
rows here, so their files have the same columns.

Columns: ``user`` (raw user id), ``rank`` (int32, 1 = best), ``item`` (raw item id), ``score``
(the factor dtype), and ``name`` when item names are given. Raw ids are int64 or strings; rows
are sorted by user then rank, and the -1 / -inf padding of a user with fewer than N eligible
items is left out.
"""

from __future__ import annotations

import contextlib
import csv
import os
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["read_names", "recommendation_columns", "write_table"]

Columns = dict[str, np.ndarray]


def recommendation_columns(
    users: np.ndarray,
    ids: np.ndarray,
    scores: np.ndarray,
    item_ids: np.ndarray | None = None,
    names: Mapping[str, str] | None = None,
) -> Columns:
    """The rows of ``(ids, scores)`` as returned by a batch ``model.recommend`` (2-D, one row
    per user), for the users whose raw ids are ``users`` (one per row). ``item_ids`` maps item
    columns to raw ids (the columns themselves when None); ``names`` maps a raw item id, as
    text, to its name (empty when absent)."""
    # Rows are padded with -1 / -inf, and with items= the model ranks a user's own items last at
    # -inf: neither is a recommendation (as in ials.Recommender's answers).
    kept = scores > -np.inf
    counts = kept.sum(axis=1)
    columns: Columns = {
        "user": np.repeat(np.asarray(users), counts),
        "rank": np.broadcast_to(np.arange(1, ids.shape[1] + 1, dtype=np.int32), ids.shape)[kept],
        "item": (ids[kept].astype(np.int64) if item_ids is None else item_ids[ids[kept]]),
        "score": scores[kept],
    }
    if names is not None:
        columns["name"] = np.array([names.get(str(i), "") for i in columns["item"].tolist()], str)
    return columns


def read_names(
    path: str | os.PathLike[str], id_col: str | None, name_col: str | None
) -> dict[str, str]:
    """{item id as text: name} from a CSV or TSV file with a header (by default the first
    column holds the id, the second the name; the separator comes from the suffix as in
    :meth:`ials.Interactions.read`)."""
    from .interactions import _separator

    file = Path(path)
    with open(file, encoding="utf-8-sig", newline="") as handle:
        first = handle.readline()
        handle.seek(0)
        sep = _separator(file, first)
        reader = (
            csv.reader(handle, delimiter=sep)
            if len(sep) == 1
            else (line.rstrip("\r\n").split(sep) for line in handle)
        )
        header = [name.strip() for name in next(reader, [])]
        if not header:
            raise ValueError(f"{file} is empty")
        positions = []
        for role, wanted, default in (("id", id_col, 0), ("name", name_col, 1)):
            if wanted is None:
                if default >= len(header):
                    raise ValueError(f"{file} has no {role} column (one column only)")
                positions.append(default)
            elif wanted in header:
                positions.append(header.index(wanted))
            else:
                raise ValueError(
                    f"column {wanted!r} not found in {file}; its columns are: {', '.join(header)}"
                )
        at_id, at_name = positions
        names: dict[str, str] = {}
        for row in reader:
            if len(row) > max(at_id, at_name):
                names[row[at_id].strip()] = row[at_name].strip()
    return names


def write_table(path: str | os.PathLike[str], parts: Iterable[Columns]) -> int:
    """Writes blocks of rows to ``path`` (``.parquet``/``.pq``: Parquet, needs pyarrow;
    ``.csv``/``.tsv``: text) through a temporary file renamed over the target, so that an
    interrupted export leaves no half file. Returns the number of rows."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in (".parquet", ".pq", ".csv", ".tsv"):
        raise ValueError(f"the output must end in .parquet, .pq, .csv or .tsv, got {target.name!r}")
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    rows = 0
    try:
        if suffix in (".parquet", ".pq"):
            rows = _write_parquet(temporary, parts)
        else:
            rows = _write_text(temporary, parts, "\t" if suffix == ".tsv" else ",")
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return rows


def arrow_table(columns: Columns) -> Any:
    """The columns as a pyarrow Table (ids as int64 or string)."""
    import pyarrow as pa

    return pa.table({name: pa.array(values) for name, values in columns.items()})


def _write_parquet(path: Path, parts: Iterable[Columns]) -> int:
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise ImportError("writing Parquet needs pyarrow: pip install pyarrow") from err
    writer = None
    rows = 0
    try:
        for columns in parts:
            table = arrow_table(columns)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
            rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        raise ValueError("there are no rows to write")
    return rows


def _write_text(path: Path, parts: Iterable[Columns], sep: str) -> int:
    rows = 0
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=sep)
        header = False
        for columns in parts:
            if not header:
                writer.writerow(columns)
                header = True
            values = [array.tolist() for array in columns.values()]
            writer.writerows(zip(*values, strict=True))
            rows += len(values[0])
    return rows
