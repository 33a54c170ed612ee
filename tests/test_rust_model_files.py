"""Model files cross the language boundary: a model the Rust crate saves loads in Python with the
same recommendations, and one Python saves is served by a Rust program (the crate's examples,
built and run with cargo)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import ials
import numpy as np
import scipy.sparse as sp

_ROOT = Path(__file__).resolve().parent.parent


def _run_example(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["cargo", "run", "--quiet", "-p", "ials-core", "--example", name, "--", *args],
        cwd=_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )


def _cargo_example(name: str, *args: str) -> str:
    done = _run_example(name, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _quickstart_plays() -> sp.csr_matrix:
    """The data of examples/quickstart.rs, built the same way."""
    users, items = 200, 60
    rows, cols, plays = [], [], []
    for user in range(users):
        first = 0 if user < users // 2 else items // 2
        for offset in range(items // 2):
            if offset not in (user % 7, user % 5):
                rows.append(user)
                cols.append(first + offset)
                plays.append(1.0 + user * offset % 4)
    return sp.csr_matrix((plays, (rows, cols)), shape=(users, items), dtype=np.float32)


def test_a_model_saved_by_rust_loads_in_python(tmp_path: Path) -> None:
    path = tmp_path / "from_rust.npz"
    lines = _cargo_example("quickstart", str(path)).splitlines()
    rust = {entry["user"]: entry["items"] for entry in map(json.loads, lines)}
    model = ials.AlternatingLeastSquares.load(path)
    assert (model.factors, model.regularization, model.iterations) == (4, 10.0, 10)
    assert model.user_factors.shape == (200, 4) and model.item_factors.shape == (60, 4)
    plays = _quickstart_plays()
    ids, _ = model.recommend(np.arange(200), plays, N=2)
    assert {user: list(row) for user, row in enumerate(ids.tolist())} == rust


def test_a_model_saved_by_python_is_served_by_rust(tmp_path: Path) -> None:
    plays = _quickstart_plays()
    model = ials.AlternatingLeastSquares(factors=6, iterations=4, random_state=1)
    model.fit(plays, show_progress=False)
    path = tmp_path / "from_python.npz"
    model.save(path)
    for user in (0, 57, 150):
        liked = [str(i) for i in plays[user].indices]
        out = _cargo_example("recommend_from_file", str(path), str(user), "5", *liked)
        rust_ids = [int(line.split()[0]) for line in out.splitlines()]
        ids, _ = model.recommend(user, plays[user], N=5)
        assert rust_ids == ids.tolist()


def test_rust_refuses_an_edited_file(tmp_path: Path) -> None:
    plays = _quickstart_plays()
    model = ials.AlternatingLeastSquares(factors=3, iterations=1, random_state=2)
    model.fit(plays, show_progress=False)
    model.item_factors = model.item_factors + np.float32(1.0)
    path = tmp_path / "edited.npz"
    model.save(path)
    raw = bytearray(path.read_bytes())
    # Change one factor value in place: the CRC and the checksum no longer match the data.
    marker = raw.find(b"item_factors.npy")
    raw[marker + 200] ^= 0x01
    path.write_bytes(bytes(raw))
    done = _run_example("recommend_from_file", str(path), "0", "3")
    assert done.returncode == 1
    assert "not a valid model file" in done.stderr
