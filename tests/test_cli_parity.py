"""The CLI's model settings, --params / tune -o, --force, and recommend --all exports."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import ials
import numpy as np
import pytest
from ials.cli import main


@pytest.fixture
def log(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    path = tmp_path / "plays.csv"
    lines = ["listener,artist,plays"]
    for user in range(30):
        for item in rng.choice(20, size=6, replace=False):
            lines.append(f"fan-{user},{100 + item},{int(rng.integers(1, 50))}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _fit(log: Path, out: Path, *flags: str) -> int:
    return main(["fit", str(log), "-o", str(out), "--weight-col", "plays", "--quiet", *flags])


FIT_DEFAULTS = [
    ("--factors", "100"),
    ("--iterations", "15"),
    ("--regularization", "0.01"),
    ("--alpha", "1.0"),
    ("--regularization-exponent", "0.0"),
    ("--unobserved-weight", "1.0"),
    ("--cg-steps", "3"),
    ("--use-cg", "True"),
    ("--dtype", "float32"),
    ("--confidence", "raw"),
    ("--confidence-alpha", "1.0"),
    ("--confidence-eps", "1.0"),
    ("--force", "False"),
]


@pytest.mark.parametrize(
    ("command", "defaults"),
    [
        ("fit", FIT_DEFAULTS),
        ("evaluate", [*FIT_DEFAULTS[:-1], ("--test-fraction", "0.2"), ("--k", "20")]),
        ("tune", [("--factors", "64"), ("--method", "random"), ("--validation-fraction", "0.2")]),
        ("demo", [("--users", "2000"), ("--factors", "32"), ("--iterations", "10")]),
        ("recommend", [("-n", "10"), ("--block-users", "4096")]),
        ("serve", [("--host", "127.0.0.1"), ("--port", "8000"), ("--max-body-bytes", "1048576")]),
    ],
)
def test_help_shows_every_setting_with_its_default(
    capsys: pytest.CaptureFixture[str], command: str, defaults: list[tuple[str, str]]
) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    text = text[text.index("options:") :]  # past the usage line
    for flag, default in defaults:
        found = re.search(re.escape(flag) + r"(, | [A-Z{]| [a-z])", text)
        assert found is not None, flag
        first = text[text.index("(default:", found.start()) :]
        assert first.startswith(f"(default: {default})"), (flag, first[:40])


def test_fit_flags_reach_the_bundle(log: Path, tmp_path: Path) -> None:
    flags = ["--factors", "5", "--iterations", "3", "--regularization", "0.2"]
    flags += ["--regularization-exponent", "0.5", "--unobserved-weight", "0.5", "--cg-steps", "2"]
    flags += ["--no-use-cg", "--dtype", "float64", "--seed", "7"]
    flags += ["--confidence", "log", "--confidence-alpha", "3", "--confidence-eps", "2"]
    assert _fit(log, tmp_path / "m", *flags) == 0
    bundle = ials.Recommender.load(tmp_path / "m.npz")
    model = bundle.model
    assert (model.factors, model.iterations, model.regularization) == (5, 3, 0.2)
    assert (model.regularization_exponent, model.unobserved_weight) == (0.5, 0.5)
    assert (model.cg_steps, model.use_cg, np.dtype(model.dtype)) == (2, False, np.float64)
    assert bundle.confidence == ials.Confidence("log", 3.0, 2.0)
    data = ials.Interactions.read(log, weight_col="plays")
    expected = ials.Recommender.fit(
        data,
        ials.AlternatingLeastSquares(
            factors=5,
            iterations=3,
            regularization=0.2,
            regularization_exponent=0.5,
            unobserved_weight=0.5,
            cg_steps=2,
            use_cg=False,
            dtype=np.float64,
            random_state=7,
        ),
        ials.Confidence("log", 3.0, 2.0),
    )
    np.testing.assert_array_equal(model.item_factors, expected.model.item_factors)
    np.testing.assert_array_equal(bundle.user_ids, data.user_ids)


def test_fit_refuses_to_overwrite_without_force(
    log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m.npz"
    out.write_bytes(b"precious")
    assert _fit(log, out, "--factors", "3", "--iterations", "1") == 2
    assert "m.npz exists: pass --force to overwrite it" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"
    assert _fit(log, tmp_path / "m", "--factors", "3", "--iterations", "1", "--force") == 0
    assert ials.Recommender.load(out).model.factors == 3


def test_params_file_sets_defaults_and_flags_win(log: Path, tmp_path: Path) -> None:
    params = tmp_path / "best.json"
    settings = {"factors": 6, "iterations": 2, "confidence": "linear", "confidence_alpha": 4}
    params.write_text(json.dumps({**settings, "use_cg": False, "dtype": "float64"}))
    assert _fit(log, tmp_path / "m", "--params", str(params), "--iterations", "4") == 0
    bundle = ials.Recommender.load(tmp_path / "m.npz")
    assert (bundle.model.factors, bundle.model.iterations, bundle.model.use_cg) == (6, 4, False)
    assert bundle.confidence == ials.Confidence("linear", 4.0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"factors": 0}', "factors (--factors): expected an integer >= 1"),
        ('{"factors": true}', "factors must be a number"),
        ('{"use_cg": 1}', "use_cg must be true or false"),
        ('{"dtype": "float16"}', "dtype must be one of float32, float64"),
        ('{"learning_rate": 1}', "unknown setting 'learning_rate'"),
        ("[1, 2]", "must hold a JSON object"),
        ("{factors", "is not valid JSON"),
    ],
)
def test_bad_params_files(
    log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    params = tmp_path / "bad.json"
    params.write_text(content)
    assert _fit(log, tmp_path / "m", "--params", str(params)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "m.npz").exists()


def test_tune_writes_settings_that_fit_accepts(
    log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    best, refit = tmp_path / "best.json", tmp_path / "tuned"
    code = main(
        [
            "tune",
            str(log),
            "--weight-col",
            "plays",
            "--trials",
            "3",
            "--factors",
            "4",
            "--quiet",
            "-o",
            str(best),
            "--model-output",
            str(refit),
        ]
    )
    assert code == 0
    assert f"saved settings file: {best}" in capsys.readouterr().out
    settings = json.loads(best.read_text())
    assert settings["factors"] == 4
    assert settings["confidence"] in ("raw", "linear", "log")
    assert _fit(log, tmp_path / "again", "--params", str(best)) == 0
    tuned = ials.Recommender.load(tmp_path / "tuned.npz")
    again = ials.Recommender.load(tmp_path / "again.npz")
    assert tuned.confidence == again.confidence
    np.testing.assert_array_equal(tuned.model.user_factors, again.model.user_factors)
    # The outputs now exist: a second run is refused before searching.
    assert main(["tune", str(log), "--trials", "1", "--quiet", "-o", str(best)]) == 2
    assert "best.json exists" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_recommend_all_exports_raw_ids(log: Path, tmp_path: Path, suffix: str) -> None:
    assert _fit(log, tmp_path / "m", "--factors", "4", "--iterations", "3") == 0
    names = tmp_path / "artists.csv"
    names.write_text("artist,name\n" + "".join(f"{100 + i},Band {i}\n" for i in range(0, 20, 2)))
    out = tmp_path / f"recs{suffix}"
    args = ["recommend", str(tmp_path / "m.npz"), "--all", "-o", str(out), "-n", "4"]
    assert main([*args, "--item-names", str(names), "--block-users", "7", "--quiet"]) == 0
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(out).to_pylist()
    else:
        with open(out, newline="") as handle:
            rows = list(csv.DictReader(handle))
    bundle = ials.Recommender.load(tmp_path / "m.npz")
    expected = [
        (user, rank, item, score)
        for user, results in zip(
            bundle.user_ids.tolist(), bundle.recommend_batch(bundle.user_ids, N=4), strict=True
        )
        for rank, (item, score) in enumerate(results, start=1)
    ]
    assert len(rows) == len(expected) == 4 * bundle.n_users
    for row, (user, rank, item, score) in zip(rows, expected, strict=True):
        assert (str(row["user"]), int(row["rank"]), int(row["item"])) == (user, rank, item)
        assert float(row["score"]) == pytest.approx(score, rel=1e-6)
        assert row["name"] == (f"Band {item - 100}" if item % 2 == 0 else "")
    assert main(args) == 2  # exists: --force needed


def test_recommend_needs_user_or_all(
    log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _fit(log, tmp_path / "m", "--factors", "3", "--iterations", "1") == 0
    assert main(["recommend", str(tmp_path / "m.npz")]) == 2
    assert "give --user ID, or --all with -o FILE" in capsys.readouterr().err
    assert main(["recommend", str(tmp_path / "m.npz"), "--all"]) == 2
    assert "--all needs -o FILE" in capsys.readouterr().err
    assert main(["recommend", str(tmp_path / "m.npz"), "--all", "-o", "x.json"]) == 2
    assert "must end in .parquet" in capsys.readouterr().err


def test_evaluate_fits_the_transformed_training_split(
    log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ials.evaluation import ranking_metrics_at_k
    from ials.splits import per_user_split

    flags = ["--factors", "4", "--iterations", "3", "--seed", "2", "--k", "5"]
    flags += ["--confidence", "log", "--confidence-alpha", "2", "--json", "--quiet"]
    assert main(["evaluate", str(log), "--weight-col", "plays", *flags]) == 0
    report = json.loads(capsys.readouterr().out)
    data = ials.Interactions.read(log, weight_col="plays")
    train, test = per_user_split(data.matrix, test_fraction=0.2, random_state=2)
    train = ials.confidence.log(train, 2.0)
    model = ials.AlternatingLeastSquares(factors=4, iterations=3, random_state=2)
    model.fit(train, show_progress=False)
    expected = ranking_metrics_at_k(model, train, test, K=5, show_progress=False)
    for name in ("precision", "recall", "map", "ndcg"):
        assert report["metrics"][name] == pytest.approx(float(expected[name]))
