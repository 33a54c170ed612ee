"""Tests of ials.Interactions: building the matrix from raw ids (arrays, files, DataFrames), the
mapping between raw ids and rows / columns, and results translated back to raw ids."""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from ials import AlternatingLeastSquares, Interactions
from ials.interactions import UnknownIdError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def expected_cells(users: list[Any], items: list[Any], weights: list[float]) -> dict:
    cells: dict[tuple[Any, Any], float] = defaultdict(float)
    for u, i, w in zip(users, items, weights, strict=True):
        cells[(u, i)] += w
    return dict(cells)


def cells_of(data: Interactions) -> dict[tuple[Any, Any], float]:
    coo = data.matrix.tocoo()
    return {
        (data.user_ids[r].item(), data.item_ids[c].item()): float(v)
        for r, c, v in zip(coo.row, coo.col, coo.data, strict=True)
    }


LOG = {
    "users": ["ann", "bob", "ann", "cid", "bob", "ann", "dee"],
    "items": [10, 20, 10, 30, 40, 20, 10],
    "weights": [1.0, 2.0, 3.0, 4.0, 0.5, 6.0, 7.0],
}


@pytest.fixture
def data() -> Interactions:
    return Interactions.from_arrays(LOG["users"], LOG["items"], LOG["weights"])


# --- building from arrays ------------------------------------------------------------------------


def test_from_arrays_sums_duplicates_and_maps_ids(data: Interactions) -> None:
    assert data.shape == (4, 4)
    assert data.nnz == 6
    assert isinstance(data.matrix, sp.csr_matrix)
    assert data.matrix.dtype == np.float32
    assert data.matrix.has_canonical_format
    assert cells_of(data) == expected_cells(LOG["users"], LOG["items"], LOG["weights"])
    assert data.user_ids.tolist() == ["ann", "bob", "cid", "dee"]  # ascending
    assert data.item_ids.tolist() == [10, 20, 30, 40]
    assert data.user_ids.dtype.kind == "U" and data.item_ids.dtype == np.int64
    assert data.matrix[data.user_index("ann"), data.item_index(10)] == 4.0
    assert "4 users x 4 items, 6 interactions" in repr(data)


def test_without_weights_each_row_counts_one() -> None:
    data = Interactions.from_arrays([1, 1, 2, 1], ["x", "x", "y", "z"])
    assert cells_of(data) == {(1, "x"): 2.0, (2, "y"): 1.0, (1, "z"): 1.0}


def test_random_log_round_trips_through_the_mapping() -> None:
    rng = np.random.default_rng(0)
    users = rng.integers(-50, 1000, size=3000) * 7
    items = np.array([f"item-{i}" for i in rng.integers(0, 300, size=3000)])
    weights = rng.random(3000)
    data = Interactions.from_arrays(users, items, weights)
    expected = expected_cells(users.tolist(), items.tolist(), weights.tolist())
    got = cells_of(data)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-6)
    np.testing.assert_array_equal(data.user_indices(data.user_ids), np.arange(data.n_users))
    np.testing.assert_array_equal(data.item_indices(data.item_ids), np.arange(data.n_items))
    rows = rng.integers(0, data.n_users, size=50)
    np.testing.assert_array_equal(data.user_indices(data.to_raw_users(rows)), rows)


def test_id_types() -> None:
    floats = Interactions.from_arrays(np.array([3.0, 1.0]), np.array([2, 2], dtype=np.uint8))
    assert floats.user_ids.dtype == np.int64 and floats.user_ids.tolist() == [1, 3]
    assert floats.item_ids.dtype == np.int64
    objects = Interactions.from_arrays(np.array(["b", "a"], dtype=object), [1, 2])
    assert objects.user_ids.tolist() == ["a", "b"]
    assert Interactions.from_arrays([], []).shape == (0, 0)


@pytest.mark.parametrize(
    ("users", "error", "pattern"),
    [
        ([1, "a"], TypeError, "mixes integers and strings"),
        (np.array([1, "a"], dtype=object), TypeError, "mixes"),
        (np.array([1, None], dtype=object), ValueError, "missing value at position 1"),
        ([1.0, 2.5], ValueError, r"2\.5 at position 1"),
        ([1.0, np.nan], ValueError, "missing value at position 1"),
        ([True, False], TypeError, "users"),
        ([[1, 2]], ValueError, "1-D"),
    ],
)
def test_bad_ids(users: Any, error: type, pattern: str) -> None:
    items = list(range(np.asarray(users, dtype=object).reshape(-1).size))
    with pytest.raises(error, match=pattern):
        Interactions.from_arrays(users, items[: len(users)])


def test_bad_weights_and_lengths() -> None:
    with pytest.raises(ValueError, match="same length"):
        Interactions.from_arrays([1, 2], [1])
    with pytest.raises(ValueError, match=r"weights\[1\] is not finite"):
        Interactions.from_arrays([1, 2], [1, 1], [1.0, np.inf])
    with pytest.raises(ValueError, match="weights must be 1-D with 2"):
        Interactions.from_arrays([1, 2], [1, 1], [1.0])
    with pytest.raises(TypeError, match="weights must be numbers"):
        Interactions.from_arrays([1, 2], [1, 1], ["a", "b"])
    with pytest.raises(ValueError, match="float32"):
        Interactions.from_arrays([1, 1], [1, 1], [3e38, 3e38])


def test_constructor_from_a_matrix() -> None:
    matrix = sp.coo_matrix(([1.0, 2.0, 5.0], ([0, 1, 0], [1, 0, 1])), shape=(2, 3))
    data = Interactions(matrix, ["u1", "u0"], [30, 10, 20])  # ids need not be sorted
    assert data.matrix[0, 1] == 6.0  # duplicates summed
    assert data.user_index("u0") == 1 and data.item_index(20) == 2
    assert Interactions(matrix).user_ids.tolist() == [0, 1]
    with pytest.raises(ValueError, match="user_ids must be unique, 'u1'"):
        Interactions(matrix, ["u1", "u1"])
    with pytest.raises(ValueError, match="item_ids has 2 ids for 3 columns"):
        Interactions(matrix, None, [1, 2])
    with pytest.raises(TypeError, match=r"matrix must be a scipy.sparse"):
        Interactions(matrix.toarray())


def test_ids_are_read_only(data: Interactions) -> None:
    with pytest.raises(ValueError, match="read-only"):
        data.user_ids[0] = "zed"
    assert data.user_index("ann") == 0


# --- looking ids up ------------------------------------------------------------------------------


def test_unknown_ids_raise_key_and_value_errors(data: Interactions) -> None:
    with pytest.raises(KeyError, match="unknown user id 'zoe'"):
        data.user_index("zoe")
    with pytest.raises(ValueError, match="unknown item id 99"):
        data.item_index(99)
    with pytest.raises(UnknownIdError, match="2 unknown item ids, the first 98"):
        data.item_indices([10, 98, 97])
    with pytest.raises(ValueError, match="unknown item id 'abc'"):
        data.item_index("abc")
    empty = Interactions.from_arrays([], [])
    with pytest.raises(KeyError, match="unknown user id 1"):
        empty.user_index(1)


def test_ids_given_as_text_or_numbers(data: Interactions) -> None:
    # The command line hands every id over as text.
    assert data.item_index("20") == data.item_index(20) == 1
    assert data.item_indices(["40", 30]).tolist() == [3, 2]
    with pytest.raises(KeyError):
        data.item_index("020")  # not the canonical spelling of 20
    numeric_text = Interactions.from_arrays(["7", "x"], [1, 1])
    assert numeric_text.user_index(7) == numeric_text.user_index("7")


def test_to_raw(data: Interactions) -> None:
    assert data.to_raw_items([3, 0]).tolist() == [40, 10]
    assert data.to_raw_users(np.array([[1], [2]])).tolist() == [["bob"], ["cid"]]
    with pytest.raises(ValueError, match="item index -1 is out of range"):
        data.to_raw_items([-1])
    with pytest.raises(ValueError, match=r"user index 4 is out of range 0..3"):
        data.to_raw_users([4])
    with pytest.raises(TypeError, match="integers"):
        data.to_raw_items([1.5])


# --- files ---------------------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_read_tsv_with_named_columns(tmp_path: Path) -> None:
    path = write(
        tmp_path / "plays.tsv",
        "listener\tartist\tplays\textra\n"
        "u1\tA\t3\tx\n"
        "u2\tB\t1\tx\n"
        "\n"
        "u1\tA\t4\tx\n"
        " u3 \t B\t2.5\tx\n",
    )
    data = Interactions.read(path, user_col="listener", item_col="artist", weight_col="plays")
    assert cells_of(data) == {("u1", "A"): 7.0, ("u2", "B"): 1.0, ("u3", "B"): 2.5}
    by_position = Interactions.read(path, user_col=0, item_col=1, weight_col=2)
    assert cells_of(by_position) == cells_of(data)
    counted = Interactions.read(path)  # first two columns, one per line
    assert cells_of(counted) == {("u1", "A"): 2.0, ("u2", "B"): 1.0, ("u3", "B"): 1.0}


def test_read_csv_quotes_bom_and_canonical_integers(tmp_path: Path) -> None:
    path = write(
        tmp_path / "log.csv",
        '\ufeffuser,item,w\n1,"a, b",1\n2,007,2\n2,7,3\n10,"a, b",4\n',
    )
    data = Interactions.read(path, "user", "item", "w")
    assert data.user_ids.dtype == np.int64 and data.user_ids.tolist() == [1, 2, 10]
    assert data.item_ids.dtype.kind == "U"  # "007" is not an integer spelled canonically
    assert cells_of(data) == {(1, "a, b"): 1.0, (2, "007"): 2.0, (2, "7"): 3.0, (10, "a, b"): 4.0}


def test_read_separators(tmp_path: Path) -> None:
    rows = [("1", "5", "2"), ("1", "6", "1"), ("2", "5", "3")]
    expected = {(1, 5): 2.0, (1, 6): 1.0, (2, 5): 3.0}
    dat = write(tmp_path / "r.dat", "u\ti\tw\n" + "".join("\t".join(r) + "\n" for r in rows))
    assert cells_of(Interactions.read(dat, weight_col="w")) == expected
    guessed = write(tmp_path / "r.txt", "u,i,w\n" + "".join(",".join(r) + "\n" for r in rows))
    assert cells_of(Interactions.read(guessed, weight_col=2)) == expected
    movielens_1m = write(tmp_path / "ratings", "".join("::".join(r) + "::0\n" for r in rows))
    data = Interactions.read(movielens_1m, 0, 1, 2, sep="::", header=False)
    assert cells_of(data) == expected
    single = write(tmp_path / "r.log", "u i\n1 5\n")
    with pytest.raises(ValueError, match=r"separator.*sep="):
        Interactions.read(single)
    assert cells_of(Interactions.read(single, sep=" ")) == {(1, 5): 1.0}


@pytest.mark.parametrize(
    ("text", "kwargs", "pattern"),
    [
        ("u\ti\n1\t2\n", {"weight_col": "w"}, r"column 'w' \(weight_col\) not found.*u, i"),
        ("u\ti\n1\t2\n", {"user_col": "user"}, r"'user'.*its columns are: u, i"),
        ("u\ti\n1\t2\n", {"item_col": 5}, "item_col 5 is not a column position"),
        ("u\ti\tw\n1\t2\t3\n4\t5\n", {"weight_col": "w"}, r"line 3: 2 fields, expected at least 3"),
        ("u\ti\tw\n1\t2\tlots\n", {"weight_col": "w"}, r"line 2: weight 'lots' is not a number"),
        ("u\ti\n1\t2\n\t3\n", {}, r"line 3: the user id is empty"),
        ("u\ti\n", {}, "holds no interactions"),
        ("", {}, "is empty"),
        ("u\ti\n1\t2\n", {"user_col": "u", "header": False}, "read without a header"),
        ("u\ti\n1\t2\n", {"user_col": 1.5}, "user_col must be a column name or position"),
    ],
)
def test_read_errors_name_the_problem(
    tmp_path: Path, text: str, kwargs: dict[str, Any], pattern: str
) -> None:
    path = write(tmp_path / "bad.tsv", text)
    with pytest.raises((ValueError, TypeError), match=pattern):
        Interactions.read(path, **kwargs)


def test_read_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        Interactions.read(tmp_path / "absent.csv")


def test_parquet_needs_pyarrow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "log.parquet"
    path.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ImportError, match="pip install pyarrow"):
        Interactions.read(path)


def test_read_parquet(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"user": ["u2", "u1", "u2"], "item": [5, 6, 5], "n": [1.5, 2.0, 3.0]})
    path = tmp_path / "log.parquet"
    pq.write_table(table, path)
    data = Interactions.read(path, "user", "item", "n")
    assert cells_of(data) == {("u2", 5): 4.5, ("u1", 6): 2.0}
    with pytest.raises(ValueError, match=r"'x'.*its columns are: user, item, n"):
        Interactions.read(path, "x")


def test_from_dataframe() -> None:
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(
        {"user": ["b", "a", "b"], "item": [3, 4, 3], "plays": [1, 2, 5], "other": [0, 0, 0]}
    )
    data = Interactions.from_dataframe(df, "user", "item", "plays")
    assert cells_of(data) == {("b", 3): 6.0, ("a", 4): 2.0}
    df["cat"] = df["user"].astype("category")
    assert cells_of(Interactions.from_dataframe(df, "cat", "item")) == {
        ("b", 3): 2.0,
        ("a", 4): 1.0,
    }
    with pytest.raises(ValueError, match=r"'plays2' \(weight_col\) not found"):
        Interactions.from_dataframe(df, "user", "item", "plays2")
    df["nullable"] = pd.array([1, None, 3], dtype="Int64")
    with pytest.raises(ValueError, match="column 'nullable' has a missing value at position 1"):
        Interactions.from_dataframe(df, "nullable", "item")


# --- the data sets of ../shared/data -------------------------------------------------------------


def reference_rows(path: Path, delimiter: str, columns: tuple[str, str, str]) -> list[tuple]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        return [(int(r[columns[0]]), int(r[columns[1]]), float(r[columns[2]])) for r in reader]


@pytest.mark.skipif(not (DATA / "lastfm-2k").is_dir(), reason="../shared/data is not present")
def test_lastfm_user_artists() -> None:
    path = DATA / "lastfm-2k" / "user_artists.dat"
    data = Interactions.read(path, weight_col="weight")
    # Sizes as documented in ../shared/data/README.md.
    assert data.shape == (1892, 17632)
    assert data.nnz == 92834
    rows = reference_rows(path, "\t", ("userID", "artistID", "weight"))
    total = sum(w for _, _, w in rows)
    assert float(data.matrix.astype(np.float64).sum()) == pytest.approx(total, rel=1e-6)
    for user, artist, weight in rows[:: len(rows) // 50]:
        assert data.matrix[data.user_index(user), data.item_index(artist)] == weight


@pytest.mark.skipif(not (DATA / "ml-latest-small").is_dir(), reason="../shared/data is absent")
def test_movielens_ratings() -> None:
    path = DATA / "ml-latest-small" / "ratings.csv"
    data = Interactions.read(path, "userId", "movieId", "rating")
    assert data.shape == (610, 9724)
    assert data.nnz == 100836
    rows = reference_rows(path, ",", ("userId", "movieId", "rating"))
    for user, movie, rating in rows[:: len(rows) // 50]:
        assert data.matrix[data.user_index(str(user)), data.item_index(movie)] == rating


# --- results in raw ids --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted() -> tuple[Interactions, AlternatingLeastSquares]:
    rng = np.random.default_rng(1)
    users = np.array([f"user{u}" for u in rng.integers(0, 60, size=900)])
    items = rng.integers(100, 180, size=900) * 3
    data = Interactions.from_arrays(users, items, rng.integers(1, 5, size=900))
    model = AlternatingLeastSquares(factors=8, iterations=4, random_state=0)
    model.fit(data.matrix, show_progress=False)
    return data, model


def test_recommend_by_raw_user_id(fitted: tuple[Interactions, AlternatingLeastSquares]) -> None:
    data, model = fitted
    user = data.user_ids[7].item()
    seen = set(data.to_raw_items(data.matrix[7].indices).tolist())
    result = data.recommend(model, user, N=5)
    assert len(result) == 5
    assert all(isinstance(item, int) and isinstance(score, float) for item, score in result)
    assert not seen & {item for item, _ in result}
    scores = [score for _, score in result]
    assert scores == sorted(scores, reverse=True)
    for item, score in result:  # the score is the dot product of the two raw ids' factors
        dot = model.user_factors[7] @ model.item_factors[data.item_index(item)]
        assert score == pytest.approx(float(dot), rel=1e-5)
    best = result[0][0]
    assert best not in [i for i, _ in data.recommend(model, user, N=5, filter_items=[best])]
    allowed = data.item_ids[:10].tolist()
    only = data.recommend(model, user, N=20, items=allowed)
    assert {i for i, _ in only} <= set(allowed) - seen
    with_seen = data.recommend(model, user, N=data.n_items, filter_already_liked_items=False)
    assert len(with_seen) == data.n_items


def test_similar_by_raw_id(fitted: tuple[Interactions, AlternatingLeastSquares]) -> None:
    data, model = fitted
    item = data.item_ids[3].item()
    result = data.similar_items(model, item, N=4)
    assert result[0][0] == item and result[0][1] == pytest.approx(1.0, abs=1e-5)
    assert all(-1.0 - 1e-5 <= score <= 1.0 + 1e-5 for _, score in result)
    user = data.user_ids[2].item()
    users = data.similar_users(model, user, N=3)
    assert users[0][0] == user and isinstance(users[1][0], str)
    with pytest.raises(KeyError, match="unknown user id 'nobody'"):
        data.recommend(model, "nobody")
    with pytest.raises(KeyError, match="unknown item id 1"):
        data.similar_items(model, 1)


def test_model_must_fit_the_data(fitted: tuple[Interactions, AlternatingLeastSquares]) -> None:
    data, _ = fitted
    other = AlternatingLeastSquares(factors=2, iterations=1, random_state=0)
    other.fit(sp.csr_matrix(np.ones((3, 4), dtype=np.float32)), show_progress=False)
    with pytest.raises(ValueError, match=r"3 users x 4 items.*fit it on this data"):
        data.recommend(other, data.user_ids[0].item())
    with pytest.raises(ValueError, match="not fitted"):
        data.recommend(AlternatingLeastSquares(), data.user_ids[0].item())
