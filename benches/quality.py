"""Ranking quality of tuned ials against published results (Recall@20 / NDCG@20).

The protocol, fixed and reproducible:

1. The data. ``gowalla``: the LightGCN/NGCF split in ``../shared/data/gowalla`` (train.txt /
   test.txt). ``citeulike`` (``citeulike-a/users.dat``, binary) and ``lastfm``
   (``lastfm-2k/user_artists.dat``, play counts): ``ials.splits.per_user_split`` holds out 20% of
   every user's interactions (seed ``--seed``) as the test set.
2. Validation is carved from the training data only: ``per_user_split(train, 0.2,
   random_state=seed + 1)``. The test set is not looked at until step 5.
3. ``ials.tune.search`` (``--method``, ``--budget`` seconds, NDCG@20 on validation) picks the
   factors-independent settings (confidence transform and alpha, regularization, its frequency
   exponent nu, the unobserved weight alpha0, iterations) at ``--factors`` (64).
4. The model is refitted on all of the training data with those settings.
5. It is evaluated once on the test set with ``ials.evaluation.ranking_metrics_at_k(model,
   train, test, K=20)``: every item except the user's training items is ranked; Recall@20 =
   hits / |test items of the user| (not truncated, as in the LightGCN papers); NDCG@20 with binary
   gains and the ideal DCG over min(20, |test items|) positions; both averaged over test users.
   That is the **validation-selected** row.

For parity with the papers, which report the best epoch on the test set, the refit of step 4
continues past the selected iterations and is evaluated on the test set every ``--test-every``
iterations; the best of these (by NDCG@20) is the **best-on-test** row, clearly an optimistic
number. The same is done at ``--large-factors`` with the settings found at ``--factors`` (or
re-tuning only the regularization there, ``--large-budget``); ``--test-every 0`` evaluates the
test set at the selected iteration only (no best-on-test row). ItemPop (rank by training
popularity) is a sanity row. implicit 0.7.3 is run at its defaults (with ``--factors``) and, with
``--implicit-budget``, tuned by the same helper (its model has no nu and no alpha0, so only the
transform, alpha, regularization and iterations are searched).

``--scale-to MAX`` adds ials at the dimension Rendle et al.'s protocol picks:
``ials.tune.scale_dimension`` on the same validation split (random search of
``--trials-per-size`` settings at ``--scale-from`` factors, then doubling while validation
NDCG@20 improves, up to MAX, re-tuning the penalty and the unobserved weight at each size, within
``--scale-budget`` seconds in all); the chosen size and settings are refitted and tested as above.
The report gives its validation quality against dimension and time, and every tuned row the wall
time of its tuning and of its final fit.

    python benches/quality.py                                 # gowalla, 10 minutes of search
    python benches/quality.py --dataset citeulike --budget 180 --implicit-budget 120
    python benches/quality.py --dataset lastfm --budget 180 --implicit-budget 120
    python benches/quality.py --dataset lastfm --budget 90 --implicit-budget 90 \
        --large-factors 0 --test-every 0 --scale-to 2048 --scale-budget 400
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ials
import implicit.cpu.als
import numpy as np
import scipy.sparse as sp
from ials.evaluation import ranking_metrics_at_k
from ials.splits import per_user_split
from ials.tune import (
    Choice,
    IntRange,
    LogUniform,
    ScalingResult,
    TuneResult,
    scale_dimension,
    search,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _data
from bench_fit import machine

K = 20
# Published Recall@20 / NDCG@20 on the gowalla split, embedding size 64 (../shared/data/README.md).
PUBLISHED = (
    ("LightGCN (He et al., SIGIR 2020)", 0.1830, 0.1554),
    ("EASE (Steck, WWW 2019), as reported by SimpleX", 0.1765, 0.1467),
    ("UltraGCN (Mao et al., CIKM 2021)", 0.1862, 0.1580),
    ("SimpleX (Mao et al., CIKM 2021)", 0.1872, 0.1557),
    ("ENMF (Chen et al., TOIS 2020), a weighted-MF objective", 0.1523, 0.1315),
)
TARGET = (0.1872, 0.1580)  # the best published Recall@20 and NDCG@20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("gowalla", "citeulike", "lastfm"), default="gowalla")
    parser.add_argument("--budget", type=float, default=600.0, help="seconds of search (ials)")
    parser.add_argument("--method", choices=("random", "halving"), default="halving")
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--large-factors", type=int, default=256, help="0: no larger size")
    parser.add_argument(
        "--large-budget",
        type=float,
        default=0.0,
        help="seconds re-tuning only the regularization at the larger size (0: reuse)",
    )
    parser.add_argument(
        "--implicit-budget",
        type=float,
        default=0.0,
        help="seconds tuning implicit 0.7.3 with the same helper (0: defaults only)",
    )
    parser.add_argument(
        "--test-every",
        type=int,
        default=1,
        help="test evaluations, iterations (0: at the selected iteration only)",
    )
    parser.add_argument(
        "--curve-iterations", type=int, default=32, help="refit at least this many iterations"
    )
    parser.add_argument(
        "--scale-to",
        type=int,
        default=0,
        help="largest size of Rendle's protocol (ials.tune.scale_dimension; 0: not run)",
    )
    parser.add_argument("--scale-from", type=int, default=128, help="its starting size")
    parser.add_argument("--trials-per-size", type=int, default=8, help="its settings per size")
    parser.add_argument(
        "--scale-budget", type=float, default=600.0, help="its seconds of tuning in all"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="0: every core")
    parser.add_argument("--output", help="also write the markdown report to this file")
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Data:
    name: str
    train: sp.csr_matrix
    test: sp.csr_matrix
    note: str


def load(dataset: str, seed: int) -> Data:
    if dataset == "gowalla":
        train, test = _data.gowalla()
        return Data("gowalla", train, test, "the LightGCN/NGCF train.txt / test.txt split")
    matrix = _data.citeulike() if dataset == "citeulike" else _data.lastfm().plays
    train, test = per_user_split(matrix, 0.2, random_state=seed)
    kind = "binary" if dataset == "citeulike" else "play counts"
    note = f"{kind}; test = per_user_split(data, 0.2, random_state={seed})"
    name = "citeulike-a" if dataset == "citeulike" else "lastfm-2k"
    return Data(name, train, test, note)


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """implicit runs its own threads; OpenBLAS threads on top only slow it (and it warns). Every
    BLAS library loaded so far is limited: implicit is imported at the top for that reason."""
    import threadpoolctl

    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        yield


def implicit_model(**arguments: Any) -> Any:
    return implicit.cpu.als.AlternatingLeastSquares(**arguments)


@dataclass
class Row:
    model: str
    factors: int | str
    selection: str
    iterations: int | str
    recall: float
    ndcg: float
    seconds: float | None = None
    tuning_seconds: float | None = None


@dataclass
class Curve:
    """Test metrics of one refit, every ``every`` iterations and at ``selected``."""

    points: dict[int, dict[str, float]] = field(default_factory=dict)
    fit_seconds: dict[int, float] = field(default_factory=dict)


def test_curve(
    model: Any,
    data: Any,
    train: sp.csr_matrix,
    test: sp.csr_matrix,
    total: int,
    selected: int,
    every: int,
    threads: int,
) -> Curve:
    """Fits ``model`` on ``data`` for ``total`` iterations, scoring the test set after the
    iterations in the schedule (the fit time excludes the evaluations)."""
    curve = Curve()
    clock = {"fit": 0.0, "since": time.perf_counter()}

    def callback(iteration: int, _seconds: float, _loss: float | None) -> None:
        now = time.perf_counter()
        clock["fit"] += now - clock["since"]
        done = iteration + 1
        curve.fit_seconds[done] = clock["fit"]
        if (every and done % every == 0) or done == selected or done == total:
            metrics = ranking_metrics_at_k(
                model, train, test, K=K, show_progress=False, num_threads=threads
            )
            curve.points[done] = metrics
            log(f"  iteration {done}: recall {metrics['recall']:.4f} ndcg {metrics['ndcg']:.4f}")
        clock["since"] = time.perf_counter()

    model.iterations = total
    model.fit(data, show_progress=False, callback=callback)
    return curve


def tuned_rows(
    label: str,
    result: TuneResult | ScalingResult,
    factors: int,
    data: Data,
    args: argparse.Namespace,
    tuning_seconds: float | None,
) -> tuple[list[Row], Curve]:
    """The validation-selected row (and, with a test curve, the best-on-test row) of ``result``'s
    settings refitted on all of the training data."""
    selected = int(result.params["iterations"])
    total = max(selected, args.curve_iterations) if args.test_every else selected
    overrides: dict[str, Any] = {"num_threads": args.threads}
    model = result.make_model(factors=factors, **overrides)
    log(f"{label}, {factors} factors: refit on train for {total} iterations (selected {selected})")
    curve = test_curve(
        model,
        result.transform(data.train),
        data.train,
        data.test,
        total,
        selected,
        args.test_every,
        args.threads,
    )
    chosen = curve.points[selected]
    best_iteration = max(curve.points, key=lambda i: curve.points[i]["ndcg"])
    best = curve.points[best_iteration]
    rows = [
        Row(
            label,
            factors,
            "validation",
            selected,
            chosen["recall"],
            chosen["ndcg"],
            curve.fit_seconds[selected],
            tuning_seconds,
        )
    ]
    if len(curve.points) > 1:
        rows.append(
            Row(
                label,
                factors,
                "**best on test** (optimistic)",
                best_iteration,
                best["recall"],
                best["ndcg"],
                curve.fit_seconds[best_iteration],
                tuning_seconds,
            )
        )
    return rows, curve


def item_pop(train: sp.csr_matrix) -> Any:
    class Popularity:
        user_factors = np.ones((train.shape[0], 1), dtype=np.float32)
        item_factors = np.asarray(train.getnnz(axis=0), dtype=np.float32)[:, None]

    return Popularity()


def settings_line(result: TuneResult) -> str:
    best = result.best
    parts = [f"confidence={result.confidence}"]
    if "median_confidence" in best:
        parts.append(
            f"alpha={best['alpha']:.4g} (median value's confidence {best['median_confidence']:.4g})"
        )
    if result.confidence == "log":
        parts.append(f"eps={best.get('eps', 1.0):g}")
    if "row_penalty" in best:
        parts.append(
            f"regularization={best['regularization']:.4g} (average row's penalty "
            f"{best['row_penalty']:.4g})"
        )
    for name in ("regularization_exponent", "unobserved_weight"):
        if name in best:
            parts.append(f"{name}={best[name]:.4g}")
    parts.append(f"iterations={best['iterations']}")
    return ", ".join(parts)


def search_line(result: TuneResult) -> str:
    settings = len({row["trial"] for row in result.trials})
    return (
        f"{result.method} search: {settings} settings, {len(result.trials)} evaluations in "
        f"{result.seconds:.0f} s (stopped by {result.stopped.replace('_', ' ')}); best "
        f"validation NDCG@{K} {result.best_score:.4f}"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = "python benches/quality.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    data = load(args.dataset, args.seed)
    fit_part, validation = per_user_split(data.train, 0.2, random_state=args.seed + 1)
    log(
        f"{data.name}: {data.train.shape[0]} users x {data.train.shape[1]} items, "
        f"{data.train.nnz} train / {data.test.nnz} test; validation {validation.nnz} of train"
    )
    rows: list[Row] = []
    notes: list[str] = []

    pop = ranking_metrics_at_k(
        item_pop(data.train),
        data.train,
        data.test,
        K=K,
        show_progress=False,
        num_threads=args.threads,
    )
    rows.append(Row("ItemPop (training popularity)", "-", "-", "-", pop["recall"], pop["ndcg"]))

    # implicit 0.7.3 at its defaults (regularization 0.01, alpha 1, 15 iterations).
    with single_threaded_blas():
        default = implicit_model(
            factors=args.factors, random_state=args.seed, num_threads=args.threads
        )
        start = time.perf_counter()
        default.fit(data.train, show_progress=False)
        seconds = time.perf_counter() - start
        metrics = ranking_metrics_at_k(
            default, data.train, data.test, K=K, show_progress=False, num_threads=args.threads
        )
    rows.append(
        Row(
            "implicit 0.7.3, defaults",
            args.factors,
            "-",
            default.iterations,
            metrics["recall"],
            metrics["ndcg"],
            seconds,
        )
    )
    log(f"implicit defaults: recall {metrics['recall']:.4f} ndcg {metrics['ndcg']:.4f}")

    if args.implicit_budget > 0:
        binary = bool(np.all(data.train.data == data.train.data[0]))
        space = {
            "confidence": "raw" if binary else Choice(("raw", "linear", "log")),
            "alpha": LogUniform(0.1, 1000.0),
            "regularization": LogUniform(1e-3, 10.0),
            "iterations": IntRange(8, 32),
            "regularization_exponent": None,
            "unobserved_weight": None,
        }
        log(f"tuning implicit for {args.implicit_budget:.0f} s")
        with single_threaded_blas():
            found = search(
                fit_part,
                validation,
                factors=args.factors,
                space=space,
                budget_seconds=args.implicit_budget,
                method=args.method,
                random_state=args.seed,
                num_threads=args.threads,
                model=implicit_model,
            )
            tuned, _ = tuned_rows(
                "implicit 0.7.3, tuned by ials.tune", found, args.factors, data, args, found.seconds
            )
        rows += tuned
        notes.append(f"implicit tuned: {settings_line(found)}; {search_line(found)}")

    log(f"tuning ials for {args.budget:.0f} s ({args.method})")
    result = search(
        fit_part,
        validation,
        factors=args.factors,
        budget_seconds=args.budget,
        method=args.method,
        random_state=args.seed,
        num_threads=args.threads,
    )
    ials_rows, curve = tuned_rows(
        "ials, tuned by ials.tune", result, args.factors, data, args, result.seconds
    )
    rows += ials_rows
    notes.append(f"ials at {args.factors} factors: {settings_line(result)}; {search_line(result)}")
    curves = [(args.factors, curve)]

    if args.large_factors > 0:
        large = result
        large_tuning: float | None = None
        if args.large_budget > 0:
            best = result.best
            penalty = float(best["row_penalty"])
            space: dict[str, Any] = {
                name: best[name]
                for name in ("confidence", "unobserved_weight", "regularization_exponent")
            }
            space["alpha"] = best["median_confidence"]
            space["regularization"] = LogUniform(penalty / 4, penalty * 4)
            space["iterations"] = best["iterations"]
            if "eps" in best:
                space["eps"] = best["eps"]
            log(f"re-tuning the regularization at {args.large_factors} factors")
            large = search(
                fit_part,
                validation,
                factors=args.large_factors,
                space=space,
                budget_seconds=args.large_budget,
                method="random",
                random_state=args.seed,
                num_threads=args.threads,
            )
            large_tuning = large.seconds
            notes.append(
                f"ials at {args.large_factors} factors (regularization re-tuned): "
                f"{settings_line(large)}; {search_line(large)}"
            )
        else:
            notes.append(
                f"ials at {args.large_factors} factors: the settings found at "
                f"{args.factors} factors, not re-tuned"
            )
        large_rows, large_curve = tuned_rows(
            "ials, tuned by ials.tune", large, args.large_factors, data, args, large_tuning
        )
        rows += large_rows
        curves.append((args.large_factors, large_curve))

    scaled: ScalingResult | None = None
    if args.scale_to > 0:
        log(
            f"Rendle's protocol: {args.scale_from} to {args.scale_to} factors, "
            f"{args.trials_per_size} settings per size, {args.scale_budget:.0f} s"
        )
        scaled = scale_dimension(
            fit_part,
            validation,
            factors=args.scale_from,
            max_factors=args.scale_to,
            trials_per_size=args.trials_per_size,
            budget_seconds=args.scale_budget,
            K=K,
            metric="ndcg",
            random_state=args.seed,
            show_progress=False,
            num_threads=args.threads,
        )
        log(f"validation against dimension (stopped by {scaled.stopped}):\n{scaled.to_markdown()}")
        scaled_rows, scaled_curve = tuned_rows(
            "ials, dimension by Rendle's protocol",
            scaled,
            scaled.factors,
            data,
            args,
            scaled.seconds,
        )
        rows += scaled_rows
        notes.append(
            f"ials at {scaled.factors} factors (scale_dimension's choice): "
            f"{settings_line(scaled.chosen)}; at that size, {search_line(scaled.chosen)}"
        )
        curves.append((scaled.factors, scaled_curve))

    elapsed = time.perf_counter() - started
    report = render(
        args, data, validation, rows, notes, curves, result, scaled, command, date, elapsed
    )
    print(report)
    if args.output:
        Path(args.output).write_text(report + "\n", encoding="utf-8")


def render(
    args: argparse.Namespace,
    data: Data,
    validation: sp.csr_matrix,
    rows: list[Row],
    notes: list[str],
    curves: list[tuple[int, Curve]],
    result: TuneResult,
    scaled: ScalingResult | None,
    command: str,
    date: str,
    elapsed: float,
) -> str:
    lines = [
        f"### {data.name}: Recall@{K} / NDCG@{K}",
        "",
        f"- command: `{command}`",
        f"- date: {date}; machine: {machine()}; ials {ials.__version__}, implicit "
        f"{implicit.__version__}, numpy {np.__version__}; threads {args.threads or 'all'}",
        f"- data: {data.train.shape[0]} users x {data.train.shape[1]} items, {data.train.nnz} "
        f"train / {data.test.nnz} test interactions ({data.note}); validation: "
        f"per_user_split(train, 0.2, random_state={args.seed + 1}), {validation.nnz} "
        "interactions",
        f"- run time: {elapsed / 60:.1f} min in all",
        "",
        f"| model | factors | selected on | iterations | Recall@{K} | NDCG@{K} | tuning s "
        "| fit s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    if args.dataset == "gowalla":
        for name, recall, ndcg in PUBLISHED:
            lines.append(f"| {name} | 64 | published | - | {recall:.4f} | {ndcg:.4f} | - | - |")
    for row in rows:
        tuning, seconds = (
            "-" if s is None else f"{s:.1f}" for s in (row.tuning_seconds, row.seconds)
        )
        lines.append(
            f"| {row.model} | {row.factors} | {row.selection} | {row.iterations} | "
            f"{row.recall:.4f} | {row.ndcg:.4f} | {tuning} | {seconds} |"
        )
    lines.append("")
    if args.dataset == "gowalla":
        chosen = next(r for r in rows if r.model.startswith("ials") and r.selection == "validation")
        lines.append(
            f"Target (best published, 64 factors): Recall@{K} {TARGET[0]:.4f}, NDCG@{K} "
            f"{TARGET[1]:.4f}; ials validation-selected at {chosen.factors} factors: "
            f"{chosen.recall - TARGET[0]:+.4f} / {chosen.ndcg - TARGET[1]:+.4f}."
        )
        lines.append("")
    lines += [f"- {note}" for note in notes]
    for factors, curve in curves:
        if len(curve.points) < 2:
            continue  # the table's row already
        points = ", ".join(
            f"{i}: {p['recall']:.4f}/{p['ndcg']:.4f}" for i, p in sorted(curve.points.items())
        )
        lines.append(f"- ials test curve at {factors} factors (iteration: recall/ndcg): {points}")
    if scaled is not None:
        lines += [
            "",
            f"Rendle's protocol on validation, the best setting of each size (seconds: that "
            f"size's search; elapsed: since its start; stopped by {scaled.stopped}):",
            "",
        ]
        lines.append(scaled.to_markdown())
    lines += ["", f"Top validation trials of the ials search ({args.factors} factors):", ""]
    lines.append(result.to_markdown(limit=10))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
