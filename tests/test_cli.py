"""End-to-end tests of the command line, each run in a subprocess (``python -m ials ...``) on a
small log written to a temporary directory."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from cli_run import ials
from ials import AlternatingLeastSquares
from ials.cli import main


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def bad_input(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit code 2, nothing on stdout, one line on stderr holding every fragment."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# Two taste groups: the "rock" listeners play the r* artists, the "jazz" listeners the j* ones.
GROUPS = {"rock": [f"r{i}" for i in range(12)], "jazz": [f"j{i}" for i in range(12)]}


def make_log(path: Path) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    lines = ["listener\tartist\tplays"]
    seen: dict[str, set[str]] = defaultdict(set)
    group_of: dict[str, str] = {}
    for n in range(40):
        group = "rock" if n % 2 else "jazz"
        user = f"{group}-fan-{n}"
        group_of[user] = group
        for artist in rng.choice(GROUPS[group], size=int(rng.integers(5, 10)), replace=False):
            lines.append(f"{user}\t{artist}\t{int(rng.integers(1, 30))}")
            seen[user].add(str(artist))
    lines.append("rock-fan-1\tr0\t5")  # a repeated pair: summed, not a new interaction
    seen["rock-fan-1"].add("r0")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"seen": seen, "group_of": group_of}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("cli")
    log = directory / "plays.tsv"
    info = make_log(log)
    result = ials(
        "fit",
        str(log),
        "-o",
        str(directory / "model"),
        "--user-col",
        "listener",
        "--item-col",
        "artist",
        "--weight-col",
        "plays",
        "--factors",
        "4",
        "--iterations",
        "8",
        "--regularization",
        "0.1",
        "--json",
        "--quiet",
    )
    return {"dir": directory, "log": log, "fit": result, **info}


def test_fit(workspace: dict[str, Any]) -> None:
    result = workspace["fit"]
    report = json.loads(ok(result))
    assert result.stderr == ""  # --quiet: no progress bar
    assert report["users"] == len(workspace["seen"]) == 40
    assert report["items"] == 24
    assert report["interactions"] == sum(len(s) for s in workspace["seen"].values())
    assert report["model"].endswith("model.npz")
    assert Path(report["model"]).is_file()


def test_recommend(workspace: dict[str, Any]) -> None:
    model = str(workspace["dir"] / "model.npz")
    for user in ("rock-fan-1", "jazz-fan-2"):
        report = json.loads(ok(ials("recommend", model, "--user", user, "-n", "3", "--json")))
        assert report["user"] == user
        items = [entry["item"] for entry in report["results"]]
        scores = [entry["score"] for entry in report["results"]]
        assert len(items) == 3
        assert scores == sorted(scores, reverse=True)
        assert not set(items) & workspace["seen"][user]  # already played: never recommended
        group = workspace["group_of"][user]
        assert set(items) <= set(GROUPS[group])  # the planted taste is found
    text = ok(ials("recommend", model, "--user", "rock-fan-3", "-n", "4"))
    lines = text.strip().splitlines()
    assert lines[0].split() == ["rank", "item", "score"]
    assert [line.split()[0] for line in lines[1:]] == ["1", "2", "3", "4"]


def test_similar(workspace: dict[str, Any]) -> None:
    model = str(workspace["dir"] / "model")  # .npz is appended
    report = json.loads(ok(ials("similar", model, "--item", "j3", "-n", "4", "--json")))
    items = [entry["item"] for entry in report["results"]]
    assert items[0] == "j3"
    assert report["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert set(items) <= set(GROUPS["jazz"])


def test_unknown_ids_are_bad_input(workspace: dict[str, Any]) -> None:
    model = str(workspace["dir"] / "model.npz")
    bad_input(ials("recommend", model, "--user", "nobody"), "unknown user id 'nobody'")
    bad_input(ials("similar", model, "--item", "x9"), "unknown item id 'x9'")


def test_bad_files_and_columns(workspace: dict[str, Any], tmp_path: Path) -> None:
    log = str(workspace["log"])
    out = str(tmp_path / "m")
    bad_input(ials("fit", str(tmp_path / "absent.tsv"), "-o", out), "absent.tsv")
    bad_input(
        ials("fit", log, "-o", out, "--weight-col", "count"),
        "'count'",
        "listener, artist, plays",
    )
    bad_input(ials("recommend", str(tmp_path / "none.npz"), "--user", "a"), "none.npz")
    broken = tmp_path / "broken.npz"
    broken.write_bytes((workspace["dir"] / "model.npz").read_bytes()[:300])
    bad_input(ials("recommend", str(broken), "--user", "rock-fan-1"), "broken.npz")
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["fit", "x.tsv"],  # no -o
        ["recommend", "m.npz", "--user", "a", "-n", "0"],
        ["evaluate", "x.tsv", "--test-fraction", "1.5"],
        ["fit", "x.tsv", "-o", "m", "--factors", "many"],
    ],
)
def test_argument_errors_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:  # argparse's own exit, in process
        main(args)
    assert exit_info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_invalid_model_parameter_before_reading(
    workspace: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["fit", str(workspace["log"]), "-o", str(tmp_path / "m"), "--alpha", "-1"])
    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines() == [captured.err.strip()]
    assert "alpha" in captured.err


def test_headerless_csv_by_position(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    rows = [(u, i) for u in range(12) for i in range(8) if (u + i) % 3]
    log.write_text("".join(f"{u},{i}\n" for u, i in rows))
    report = json.loads(
        ok(
            ials(
                "fit",
                str(log),
                "-o",
                str(tmp_path / "m"),
                "--no-header",
                "--user-col",
                "0",
                "--item-col",
                "1",
                "--factors",
                "3",
                "--iterations",
                "2",
                "--json",
                "--quiet",
            )
        )
    )
    assert (report["users"], report["items"], report["interactions"]) == (12, 8, len(rows))
    got = json.loads(ok(ials("recommend", str(tmp_path / "m.npz"), "--user", "4", "--json")))
    assert got["user"] == 4  # integer ids stay integers
    assert {entry["item"] for entry in got["results"]} == {i for i in range(8) if (4 + i) % 3 == 0}


def test_evaluate(workspace: dict[str, Any]) -> None:
    result = ials(
        "evaluate",
        str(workspace["log"]),
        "--user-col",
        "listener",
        "--item-col",
        "artist",
        "--weight-col",
        "plays",
        "--factors",
        "4",
        "--iterations",
        "6",
        "--k",
        "5",
        "--seed",
        "3",
        "--json",
        "--quiet",
    )
    report = json.loads(ok(result))
    counts = [len(items) for items in workspace["seen"].values()]
    held_out = [n * 2 // 10 for n in counts]  # 20% of each user's interactions, rounded down
    assert report["test_interactions"] == sum(held_out)
    assert report["train_interactions"] == sum(counts) - sum(held_out)
    metrics = report["metrics"]
    assert metrics["users"] == sum(1 for h in held_out if h > 0)
    for name in ("precision", "recall", "map", "ndcg", "auc"):
        assert 0.0 <= metrics[name] <= 1.0
    # Held-out artists are in the user's group: far better than chance (AUC 0.5).
    assert metrics["auc"] > 0.8
    assert metrics["epr"] < 0.3
    again = json.loads(ok(ials(*result.args[3:])))
    assert again["metrics"] == metrics  # same seed, same numbers


def test_evaluate_text_output(workspace: dict[str, Any]) -> None:
    text = ok(ials("evaluate", str(workspace["log"]), "--iterations", "2", "--quiet"))
    assert "per-user split (seed 0)" in text
    assert "ndcg@20" in text and "test users" in text


def test_evaluate_plot(workspace: dict[str, Any], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    plot = tmp_path / "curves.png"
    report = json.loads(
        ok(
            ials(
                "evaluate",
                str(workspace["log"]),
                "--iterations",
                "3",
                "--plot",
                str(plot),
                "--json",
                "--quiet",
            )
        )
    )
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    history = report["history"]
    assert [entry["iteration"] for entry in history] == [0, 1, 2]
    assert all(entry["loss"] > 0 and 0 <= entry["ndcg"] <= 1 for entry in history)


def test_plot_without_matplotlib(workspace: dict[str, Any], tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['matplotlib'] = None; from ials.cli import main; "
        f"sys.exit(main(['evaluate', {str(workspace['log'])!r}, '--plot', 'x.png', '--quiet']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert result.returncode == 1
    assert "pip install matplotlib" in result.stderr
    assert result.stdout == ""  # refused before any work
    assert not (tmp_path / "x.png").exists()


def test_model_without_ids(tmp_path: Path) -> None:
    # A file saved without interactions (by the Python API): ids are indices.
    model = AlternatingLeastSquares(factors=2, iterations=2, random_state=0)
    model.fit(sp.csr_matrix(np.eye(5, 6, dtype=np.float32)), show_progress=False)
    model.save(tmp_path / "plain")
    result = ials("recommend", str(tmp_path / "plain.npz"), "--user", "2", "-n", "6", "--json")
    report = json.loads(ok(result))
    assert sorted(entry["item"] for entry in report["results"]) == list(range(6))
    assert "holds no interactions" in result.stderr
    bad_input(ials("recommend", str(tmp_path / "plain.npz"), "--user", "5"), "0..4")


def test_demo() -> None:
    text = ok(ials("demo", "--users", "300", "--items", "120", "--iterations", "3", "--quiet"))
    assert "held-out ranking: precision@20" in text
    assert "ndcg@20" in text
    assert "planted taste group" in text
