"""Tests of model files: AlternatingLeastSquares.save / load and Interactions.load.

A saved model loads back identical; a file is replaced atomically (a failure midway leaves the
old file); a truncated, corrupted, hand-edited or unknown-version file raises ValueError; loading
never unpickles; the files of implicit 0.7.3 load and give implicit's recommendations."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import implicit.bpr as implicit_bpr
import implicit.cpu.als as implicit_als
import numpy as np
import pytest
import scipy.sparse as sp
import threadpoolctl
from ials import AlternatingLeastSquares, Interactions, _persistence


@pytest.fixture(scope="module", autouse=True)
def _single_threaded_blas() -> Iterator[None]:
    # implicit warns (RuntimeWarning) at construction when OpenBLAS runs several threads.
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        yield


def matrix(seed: int = 0, shape: tuple[int, int] = (40, 30)) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = (rng.random(shape) < 0.2) * rng.integers(1, 6, size=shape)
    return sp.csr_matrix(dense.astype(np.float32))


PARAMETERS: dict[str, Any] = {
    "factors": 6,
    "regularization": 0.125,
    "alpha": 2.5,
    "dtype": np.float64,
    "use_cg": False,
    "iterations": 3,
    "calculate_training_loss": True,
    "num_threads": 2,
    "random_state": 12345,
    "cg_steps": 4,
    "regularization_exponent": 0.5,
    "unobserved_weight": 0.75,
}


def fitted(**overrides: Any) -> AlternatingLeastSquares:
    model = AlternatingLeastSquares(**{**PARAMETERS, **overrides})
    model.fit(matrix(), show_progress=False)
    return model


def same_model(a: AlternatingLeastSquares, b: AlternatingLeastSquares) -> None:
    assert type(b) is AlternatingLeastSquares
    for name in [*PARAMETERS, "use_native"]:
        if name == "dtype":
            assert np.dtype(a.dtype) == np.dtype(b.dtype)
        else:
            assert getattr(a, name) == getattr(b, name), name
    for name in ("user_factors", "item_factors"):
        x, y = getattr(a, name), getattr(b, name)
        if x is None:
            assert y is None
        else:
            assert x.dtype == y.dtype
            np.testing.assert_array_equal(x, y)


def entries(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


# --- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip(tmp_path: Path, dtype: Any) -> None:
    model = fitted(dtype=dtype)
    model.save(tmp_path / "model.npz")
    loaded = AlternatingLeastSquares.load(tmp_path / "model.npz")
    same_model(model, loaded)
    data = matrix()
    for user in (0, 5, 39):
        ids, scores = model.recommend(user, data[user], N=7)
        got_ids, got_scores = loaded.recommend(user, data[user], N=7)
        np.testing.assert_array_equal(ids, got_ids)
        np.testing.assert_array_equal(scores, got_scores)
    # The loaded model trains on: a second fit continues from the saved factors.
    loaded.fit(data, show_progress=False)
    model.fit(data, show_progress=False)
    np.testing.assert_array_equal(model.user_factors, loaded.user_factors)


def test_npz_suffix_is_added_as_numpy_and_implicit_do(tmp_path: Path) -> None:
    model = fitted()
    model.save(str(tmp_path / "a"))
    model.save(tmp_path / "b")
    model.save(str(tmp_path / "c.npz"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "b.npz", "c.npz"]
    same_model(model, AlternatingLeastSquares.load(str(tmp_path / "a")))
    same_model(model, AlternatingLeastSquares.load(tmp_path / "b"))


def test_file_objects(tmp_path: Path) -> None:
    model = fitted()
    buffer = io.BytesIO()
    model.save(buffer)
    buffer.seek(0)
    same_model(model, AlternatingLeastSquares.load(buffer))


def test_unfitted_model(tmp_path: Path) -> None:
    model = AlternatingLeastSquares(factors=3, random_state=None)
    model.save(tmp_path / "empty")
    loaded = AlternatingLeastSquares.load(tmp_path / "empty")
    assert loaded.user_factors is None and loaded.item_factors is None
    assert loaded.factors == 3 and loaded.random_state is None


def test_generator_random_state_is_not_saved(tmp_path: Path) -> None:
    model = fitted(random_state=np.random.default_rng(3))
    model.save(tmp_path / "m")
    stored = entries(tmp_path / "m.npz")
    assert "random_state" not in stored
    assert "Generator" in str(stored["ials_note"])
    loaded = AlternatingLeastSquares.load(tmp_path / "m")
    assert loaded.random_state is None
    np.testing.assert_array_equal(model.item_factors, loaded.item_factors)


def test_saved_file_has_no_object_arrays_and_documented_entries(tmp_path: Path) -> None:
    fitted().save(tmp_path / "m")
    stored = entries(tmp_path / "m.npz")  # allow_pickle=False: fails on any object array
    assert str(stored["ials_format"]) == "ials.AlternatingLeastSquares"
    assert int(stored["ials_format_version"]) == 1
    assert len(str(stored["ials_checksum"])) == 64
    assert {"factors", "regularization", "user_factors", "item_factors"} <= set(stored)


# --- interactions saved alongside ----------------------------------------------------------------


@pytest.mark.parametrize("string_ids", [True, False])
def test_interactions_saved_with_the_model(tmp_path: Path, string_ids: bool) -> None:
    rng = np.random.default_rng(0)
    users = rng.integers(0, 30, size=300) * 11
    items = rng.integers(0, 25, size=300)
    data = Interactions.from_arrays(
        [f"user {u}" for u in users] if string_ids else users,
        [f"é{i}" for i in items] if string_ids else items,
        rng.random(300),
    )
    model = AlternatingLeastSquares(factors=4, iterations=2, random_state=0)
    model.fit(data.matrix, show_progress=False)
    model.save(tmp_path / "with_ids", interactions=data)
    loaded_model = AlternatingLeastSquares.load(tmp_path / "with_ids")
    loaded = Interactions.load(tmp_path / "with_ids")
    assert loaded.user_ids.tolist() == data.user_ids.tolist()
    assert loaded.item_ids.tolist() == data.item_ids.tolist()
    assert loaded.user_ids.dtype.kind == ("U" if string_ids else "i")
    assert (loaded.matrix != data.matrix).nnz == 0
    user = data.user_ids[3].item()
    assert loaded.recommend(loaded_model, user, N=5) == data.recommend(model, user, N=5)


def test_interactions_must_match_the_model(tmp_path: Path) -> None:
    model = fitted()
    other = Interactions.from_arrays([1, 2], [1, 2])
    with pytest.raises(ValueError, match="2 x 2 but the factors are for 40 users x 30 items"):
        model.save(tmp_path / "bad", interactions=other)
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="fitted"):
        AlternatingLeastSquares().save(tmp_path / "bad", interactions=other)
    model.save(tmp_path / "plain")
    with pytest.raises(ValueError, match="holds no interactions"):
        Interactions.load(tmp_path / "plain")


# --- atomic writes -------------------------------------------------------------------------------


class Crash(Exception):
    pass


def test_failed_write_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "model.npz"
    old = fitted()
    old.save(path)
    before = path.read_bytes()

    def half_written(handle: Any, arrays: dict[str, np.ndarray]) -> None:
        handle.write(b"PK\x03\x04 half of an archive")
        handle.flush()
        raise Crash("disk full")

    monkeypatch.setattr(_persistence, "_write_npz", half_written)
    with pytest.raises(Crash):
        fitted(factors=3).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # the temporary file is gone
    same_model(old, AlternatingLeastSquares.load(path))


def test_interrupted_write_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "model.npz"
    fitted().save(path)
    before = path.read_bytes()
    real = _persistence._write_npz

    def interrupted(handle: Any, arrays: dict[str, np.ndarray]) -> None:
        real(handle, arrays)
        raise KeyboardInterrupt

    monkeypatch.setattr(_persistence, "_write_npz", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fitted(factors=3).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]


def test_failed_rename_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "model.npz"
    fitted().save(path)
    before = path.read_bytes()

    def refuse(src: Any, dst: Any) -> None:
        raise PermissionError("rename refused")

    monkeypatch.setattr(_persistence.os, "replace", refuse)
    with pytest.raises(PermissionError):
        fitted(factors=3).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]


def test_data_is_flushed_to_disk_before_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync")
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        assert Path(src).parent == Path(dst).parent  # same directory: a rename, not a copy
        events.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(_persistence.os, "fsync", fsync)
    monkeypatch.setattr(_persistence.os, "replace", replace)
    fitted().save(tmp_path / "m")
    assert "replace" in events
    assert "fsync" in events[: events.index("replace")]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_replacing_keeps_the_permissions(tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    fitted().save(path)
    os.chmod(path, 0o600)
    fitted(factors=2).save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert AlternatingLeastSquares.load(path).factors == 2


# --- damaged and edited files --------------------------------------------------------------------


@pytest.fixture
def good_file(tmp_path: Path) -> tuple[Path, AlternatingLeastSquares]:
    model = fitted(factors=3, dtype=np.float32)
    path = tmp_path / "good.npz"
    model.save(path)
    return path, model


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        AlternatingLeastSquares.load(tmp_path / "absent.npz")


@pytest.mark.parametrize("keep", [0, 1, 10, 100, 0.5, 0.9, -1, -22])
def test_truncated_files(good_file: tuple[Path, AlternatingLeastSquares], keep: float) -> None:
    path, _ = good_file
    data = path.read_bytes()
    size = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    path.write_bytes(data[:size])
    with pytest.raises(ValueError, match=r"good.npz"):
        AlternatingLeastSquares.load(path)


def test_not_a_model_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.npz"
    path.write_text("just text")
    with pytest.raises(ValueError, match="not a valid model file"):
        AlternatingLeastSquares.load(path)
    with zipfile.ZipFile(tmp_path / "other.npz", "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match=r"unexpected member 'readme.txt'"):
        AlternatingLeastSquares.load(tmp_path / "other.npz")


def assert_flips_refused_or_harmless(data: bytes, model: Any, step: int) -> None:
    # A corrupted file must never load as a different model: each flipped byte either raises
    # ValueError or (zip bookkeeping that nothing reads) leaves the model unchanged.
    refused = tried = 0
    for position in range(0, len(data), step):
        damaged = bytearray(data)
        damaged[position] ^= 0x5A
        tried += 1
        try:
            loaded = AlternatingLeastSquares.load(io.BytesIO(bytes(damaged)))
        except ValueError:
            refused += 1
            continue
        same_model(model, loaded)
    assert refused > 0.5 * tried  # most bytes matter; zip bookkeeping (dates, ...) does not


def test_every_flipped_byte_is_refused_or_harmless(
    good_file: tuple[Path, AlternatingLeastSquares],
) -> None:
    path, model = good_file
    assert_flips_refused_or_harmless(path.read_bytes(), model, step=3)


def test_every_flipped_byte_of_an_implicit_file_is_refused_or_harmless(tmp_path: Path) -> None:
    # implicit's files have no checksum: the zip CRC-32 of every member is checked instead.
    implicit_model().save(str(tmp_path / "implicit"))
    model = AlternatingLeastSquares.load(tmp_path / "implicit.npz")
    assert_flips_refused_or_harmless((tmp_path / "implicit.npz").read_bytes(), model, step=2)


def rewrite(path: Path, stored: dict[str, np.ndarray]) -> None:
    arrays: dict[str, Any] = dict(stored)
    np.savez(path, **arrays)


@pytest.mark.parametrize(
    "edit",
    [
        lambda e: e.update(factors=np.array(4, dtype=np.int64)),
        lambda e: e.update(regularization=np.array(0.5)),
        lambda e: e.update(user_factors=e["user_factors"] * 2),
        lambda e: e["item_factors"].__setitem__((0, 0), 1.0),
        lambda e: e.update(extra=np.zeros(3)),
        lambda e: e.pop("random_state"),
        lambda e: e.update(ials_note=np.array("edited")),
    ],
    ids=["factors", "regularization", "user-factors", "one-value", "extra", "dropped", "note"],
)
def test_hand_edited_files_fail_the_checksum(
    good_file: tuple[Path, AlternatingLeastSquares], edit: Any
) -> None:
    path, _ = good_file
    stored = entries(path)
    edit(stored)
    rewrite(path, stored)
    with pytest.raises(ValueError, match="checksum"):
        AlternatingLeastSquares.load(path)


def test_removed_checksum(good_file: tuple[Path, AlternatingLeastSquares]) -> None:
    path, _ = good_file
    stored = entries(path)
    del stored["ials_checksum"]
    rewrite(path, stored)
    with pytest.raises(ValueError, match="ials_checksum"):
        AlternatingLeastSquares.load(path)


def resealed(path: Path, **changes: Any) -> None:
    """Rewrites the file with changes and a checksum that matches them."""
    stored = entries(path)
    stored.update({key: np.asarray(value) for key, value in changes.items()})
    stored["ials_checksum"] = np.array(_persistence._checksum(stored))
    rewrite(path, stored)


def test_other_format_version(good_file: tuple[Path, AlternatingLeastSquares]) -> None:
    path, _ = good_file
    resealed(path, ials_format_version=np.array(2, dtype=np.int64))
    with pytest.raises(ValueError, match=r"format version 2.*reads version 1.*newer"):
        AlternatingLeastSquares.load(path)
    resealed(path, ials_format_version=np.array(0, dtype=np.int64))
    with pytest.raises(ValueError, match="format version 0"):
        AlternatingLeastSquares.load(path)
    resealed(path, ials_format_version=np.array("1"))
    with pytest.raises(ValueError, match="ials_format_version"):
        AlternatingLeastSquares.load(path)


def test_other_format_name(good_file: tuple[Path, AlternatingLeastSquares]) -> None:
    path, _ = good_file
    resealed(path, ials_format=np.array("ials.SomethingElse"))
    with pytest.raises(ValueError, match=r"ials.SomethingElse"):
        AlternatingLeastSquares.load(path)


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        ({"factors": np.array(5, dtype=np.int64)}, "3 columns but factors=5"),
        ({"dtype": np.array("float64")}, "float64"),
        ({"dtype": np.array("int8")}, "dtype"),
        ({"factors": np.array(2.5)}, "'factors' must be a int"),
        ({"regularization": np.array(-1.0)}, "regularization"),
        ({"user_factors": np.full((40, 3), np.nan, dtype=np.float32)}, "non-finite"),
        ({"item_factors": np.zeros((30, 2), dtype=np.float32)}, "2 columns"),
        ({"use_cg": np.array([True, False])}, "scalar"),
    ],
)
def test_consistent_checksum_but_invalid_content(
    good_file: tuple[Path, AlternatingLeastSquares], changes: dict[str, Any], pattern: str
) -> None:
    path, _ = good_file
    resealed(path, **changes)
    with pytest.raises(ValueError, match=pattern):
        AlternatingLeastSquares.load(path)


class Payload:
    """Unpickling this creates a directory: proof that code ran."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.makedirs, (str(self.target),))


def pickled_entry(target: Path) -> np.ndarray:
    array = np.empty(1, dtype=object)
    array[0] = Payload(target)
    return array


def test_object_arrays_are_refused_unread(
    good_file: tuple[Path, AlternatingLeastSquares], tmp_path: Path
) -> None:
    path, _ = good_file
    target = tmp_path / "code-ran"
    stored: dict[str, Any] = entries(path)
    stored["user_factors"] = pickled_entry(target)
    np.savez(path, **stored)  # numpy pickles object arrays
    with pytest.raises(ValueError, match="'user_factors' is an object array"):
        AlternatingLeastSquares.load(path)
    implicit_style: dict[str, Any] = {"factors": np.array(3), "alpha": pickled_entry(target)}
    np.savez(tmp_path / "implicit_style.npz", **implicit_style)
    with pytest.raises(ValueError, match="'alpha' is an object array"):
        AlternatingLeastSquares.load(tmp_path / "implicit_style.npz")
    assert not target.exists()


# --- implicit's files ----------------------------------------------------------------------------


def implicit_model(**kwargs: Any) -> Any:
    model = implicit_als.AlternatingLeastSquares(
        factors=5, iterations=3, regularization=0.05, alpha=2.0, random_state=4, **kwargs
    )
    model.fit(matrix(1), show_progress=False)
    return model


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_implicit_files_load_and_recommend_the_same(tmp_path: Path, dtype: Any) -> None:
    theirs = implicit_model(dtype=dtype)
    theirs.save(str(tmp_path / "implicit_model"))  # implicit appends .npz, as we do
    ours = AlternatingLeastSquares.load(str(tmp_path / "implicit_model"))
    assert (ours.factors, ours.regularization, ours.alpha) == (5, 0.05, 2.0)
    assert (ours.iterations, ours.random_state, ours.cg_steps) == (3, 4, 3)
    assert np.dtype(ours.dtype) == np.dtype(dtype)
    np.testing.assert_array_equal(ours.user_factors, theirs.user_factors)
    np.testing.assert_array_equal(ours.item_factors, theirs.item_factors)
    data = matrix(1)
    for user in range(0, 40, 7):
        expected_ids, _ = theirs.recommend(user, data[user], N=6)
        got_ids, _ = ours.recommend(user, data[user], N=6)
        np.testing.assert_array_equal(got_ids, expected_ids)
    similar, _ = theirs.similar_items(2, N=4)
    np.testing.assert_array_equal(ours.similar_items(2, N=4)[0], similar)


def test_implicit_file_with_a_generator_seed(tmp_path: Path) -> None:
    # implicit pickles a Generator random_state (and cannot load the file itself); ials skips
    # that one entry without reading it.
    theirs = implicit_model_with_generator()
    theirs.save(str(tmp_path / "g"))
    ours = AlternatingLeastSquares.load(tmp_path / "g.npz")
    assert ours.random_state is None
    np.testing.assert_array_equal(ours.user_factors, theirs.user_factors)


def implicit_model_with_generator() -> Any:
    model = implicit_als.AlternatingLeastSquares(
        factors=3, iterations=1, random_state=np.random.default_rng(0)
    )
    model.fit(matrix(2), show_progress=False)
    return model


def test_skipped_random_state_is_never_unpickled(tmp_path: Path) -> None:
    target = tmp_path / "code-ran"
    theirs = implicit_model()
    theirs.save(str(tmp_path / "m"))
    stored: dict[str, Any] = entries(tmp_path / "m.npz")
    stored["random_state"] = pickled_entry(target)
    np.savez(tmp_path / "m.npz", **stored)
    loaded = AlternatingLeastSquares.load(tmp_path / "m.npz")
    assert loaded.random_state is None
    np.testing.assert_array_equal(loaded.user_factors, theirs.user_factors)
    assert not target.exists()


def test_incomplete_implicit_file(tmp_path: Path) -> None:
    implicit_model().save(str(tmp_path / "m"))
    stored = entries(tmp_path / "m.npz")
    del stored["cg_steps"]
    rewrite(tmp_path / "m.npz", stored)
    with pytest.raises(ValueError, match=r"not a complete implicit.*cg_steps"):
        AlternatingLeastSquares.load(tmp_path / "m.npz")


def test_ials_files_load_in_implicit(tmp_path: Path) -> None:
    ours = fitted(dtype=np.float32, regularization_exponent=0.0, unobserved_weight=1.0)
    ours.save(str(tmp_path / "ours"))
    theirs = implicit_als.AlternatingLeastSquares.load(str(tmp_path / "ours"))
    np.testing.assert_array_equal(theirs.item_factors, ours.item_factors)
    assert theirs.factors == ours.factors and theirs.regularization == ours.regularization


def test_other_implicit_models_are_refused(tmp_path: Path) -> None:
    bpr = implicit_bpr.BayesianPersonalizedRanking(factors=4, iterations=1, random_state=0)
    bpr.fit(matrix(3), show_progress=False)
    bpr.save(str(tmp_path / "bpr"))
    with pytest.raises(ValueError, match=r"unexpected entries.*learning_rate"):
        AlternatingLeastSquares.load(tmp_path / "bpr.npz")


def test_inconsistent_implicit_file(tmp_path: Path) -> None:
    theirs = implicit_model()
    theirs.factors = 9  # no checksum in implicit's files: the shapes are checked instead
    theirs.save(str(tmp_path / "odd"))
    with pytest.raises(ValueError, match="factors=9"):
        AlternatingLeastSquares.load(tmp_path / "odd.npz")
