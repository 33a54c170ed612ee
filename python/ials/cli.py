"""The ``ials`` command line (also ``python -m ials``).

    ials demo                                   fit, evaluate and show the embedded synthetic data
    ials fit DATA -o MODEL [--weight-col ...]   train on a CSV/TSV/Parquet log, save model and ids
    ials recommend MODEL --user ID [-n 10]      best unseen items for a user (raw ids)
    ials similar MODEL --item ID [-n 10]        most similar items (raw ids)
    ials evaluate DATA [--test-fraction --k]    per-user split, fit, ranking metrics, --plot
    ials tune DATA [--budget --trials --factors] search settings on a per-user validation split

``--json`` prints one JSON object on stdout for scripts; progress bars (tqdm, when installed) go
to stderr unless ``--quiet``. Bad input (a missing file, an unknown column or id, an invalid
value) ends with exit code 2 and a one-line message on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from . import datasets
from .als import AlternatingLeastSquares
from .interactions import Interactions
from .splits import per_user_split

METRIC_NAMES = ("precision", "recall", "map", "ndcg", "auc", "epr")


def _print_json(payload: dict[str, Any]) -> None:
    print(json.dumps(payload, indent=2))


def _data_summary(args: argparse.Namespace, data: Interactions) -> dict[str, Any]:
    """The opening fields of every JSON report about a data file."""
    return {
        "data": str(args.data),
        "users": data.n_users,
        "items": data.n_items,
        "interactions": data.nnz,
    }


def _format_metrics(metrics: dict[str, Any], k: int) -> str:
    ranked = [f"{name}@{k} {metrics[name]:.4f}" for name in ("precision", "recall", "map", "ndcg")]
    unranked = [f"auc {metrics['auc']:.4f}", f"epr {metrics['epr']:.4f}"]
    return "  ".join(ranked + unranked) + f"  ({metrics['users']} test users)"


def _metrics(
    model: AlternatingLeastSquares, train: Any, test: Any, k: int, quiet: bool, threads: int = 0
) -> dict[str, Any]:
    from .evaluation import ranking_metrics_at_k

    result = ranking_metrics_at_k(
        model, train, test, K=k, show_progress=not quiet, num_threads=threads
    )
    return {name: (int(v) if name == "users" else float(v)) for name, v in result.items()}


# ---------------------------------------------------------------------------------------------
# demo


def _demo(args: argparse.Namespace) -> int:
    """Fits the embedded synthetic listening data on 80% of each user's plays, measures the
    ranking of the held-out 20%, and checks recommendations against the planted taste groups."""
    matrix, groups = datasets.synthetic(
        n_users=args.users, n_items=args.items, random_state=args.seed
    )
    print(
        f"synthetic listening data: {matrix.shape[0]} users x {matrix.shape[1]} items, "
        f"{matrix.nnz} interactions, {groups.item_group.max() + 1} planted taste groups"
    )
    train, test = per_user_split(matrix, test_fraction=0.2, random_state=args.seed)
    print(f"per-user split: {train.nnz} interactions to train on, {test.nnz} held out (20%)")
    model = AlternatingLeastSquares(
        factors=args.factors,
        iterations=args.iterations,
        regularization=0.05,
        random_state=args.seed,
        calculate_training_loss=True,
    )
    start = time.perf_counter()
    model.fit(train, show_progress=not args.quiet)
    print(f"fit: {args.iterations} iterations in {time.perf_counter() - start:.2f} s")
    k = 20
    print("held-out ranking: " + _format_metrics(_metrics(model, train, test, k, args.quiet), k))
    top_n = 10
    top, _ = model.recommend_all(train, N=top_n)  # only items the user has not played
    in_group = groups.item_group[top] == groups.user_group[:, None]
    for user in range(min(args.show, matrix.shape[0])):
        marked = zip(top[user], in_group[user], strict=True)
        items = ", ".join(f"{item}{'*' if match else ''}" for item, match in marked)
        print(f"user {user} (taste group {groups.user_group[user]}): {items}")
    share = in_group.mean()
    chance = np.mean(groups.item_group[:, None] == np.arange(groups.item_group.max() + 1))
    print(
        f"* = in the user's planted taste group; {share:.1%} of all top-{top_n} "
        f"recommendations are (about {chance:.1%} by chance)"
    )
    return 0


# ---------------------------------------------------------------------------------------------
# data and model arguments


def _column(value: str | None, no_header: bool) -> str | int | None:
    if value is None:
        return None
    if no_header:
        if not value.isdigit():
            raise ValueError(f"with --no-header columns are 0-based positions, got {value!r}")
        return int(value)
    return value


def _read(args: argparse.Namespace) -> tuple[Interactions, float]:
    start = time.perf_counter()
    data = Interactions.read(
        args.data,
        user_col=_column(args.user_col, args.no_header),
        item_col=_column(args.item_col, args.no_header),
        weight_col=_column(args.weight_col, args.no_header),
        sep=args.sep,
        header=not args.no_header,
    )
    return data, time.perf_counter() - start


def _model(args: argparse.Namespace, calculate_loss: bool = False) -> AlternatingLeastSquares:
    return AlternatingLeastSquares(
        factors=args.factors,
        regularization=args.regularization,
        alpha=args.alpha,
        iterations=args.iterations,
        num_threads=args.threads,
        random_state=args.seed,
        calculate_training_loss=calculate_loss,
    )


def _fit(args: argparse.Namespace) -> int:
    model = _model(args)  # checks the parameters before the work
    data, read_seconds = _read(args)
    if not args.json:
        print(
            f"read {args.data}: {data.n_users} users x {data.n_items} items, "
            f"{data.nnz} interactions ({read_seconds:.2f} s)"
        )
    start = time.perf_counter()
    model.fit(data.matrix, show_progress=not args.quiet)
    fit_seconds = time.perf_counter() - start
    from ._persistence import model_path

    path = model_path(args.output)
    model.save(path, interactions=data)
    if args.json:
        _print_json(
            {
                **_data_summary(args, data),
                "factors": args.factors,
                "iterations": args.iterations,
                "fit_seconds": fit_seconds,
                "model": path,
            }
        )
    else:
        print(f"fit: {args.factors} factors, {args.iterations} iterations in {fit_seconds:.2f} s")
        print(f"saved {path}")
    return 0


def _load(path: str) -> tuple[AlternatingLeastSquares, Interactions | None]:
    from ._persistence import load_with_interactions

    model, parts = load_with_interactions(AlternatingLeastSquares, path)
    if model.user_factors is None or model.item_factors is None:
        raise ValueError(f"{path} holds a model that was never fitted")
    return model, None if parts is None else Interactions(*parts)


def _index(raw: str, upper: int, kind: str) -> int:
    """A row or column index given on the command line, for a file without ids."""
    if not raw.isdigit() or int(raw) >= upper:
        raise ValueError(
            f"unknown {kind} {raw!r}: the model file holds no ids, so {kind}s are indices "
            f"0..{upper - 1}"
        )
    return int(raw)


def _no_ids_note(path: str) -> None:
    print(
        f"note: {path} holds no interactions (saved without them): ids are row / column indices "
        "and already seen items are not filtered",
        file=sys.stderr,
    )


def _show(
    args: argparse.Namespace, key: str, query: Any, results: list[tuple[Any, float]], kind: str
) -> None:
    if args.json:
        _print_json({key: query, "results": [{kind: i, "score": s} for i, s in results]})
        return
    width = max([len(kind)] + [len(str(i)) for i, _ in results])
    print(f"rank  {kind:<{width}}  score")
    for rank, (item, score) in enumerate(results, start=1):
        print(f"{rank:>4}  {item!s:<{width}}  {score:.4f}")


def _recommend(args: argparse.Namespace) -> int:
    model, data = _load(args.model)
    assert model.user_factors is not None and model.item_factors is not None
    if data is None:
        row = _index(args.user, model.user_factors.shape[0], "user")
        _no_ids_note(args.model)
        ids, scores = model.recommend(row, None, N=args.n, filter_already_liked_items=False)
        results = list(zip(ids.tolist(), scores.astype(float).tolist(), strict=True))
        query: Any = row
    else:
        results = data.recommend(model, args.user, N=args.n)
        query = data.user_ids[data.user_index(args.user)].item()
    _show(args, "user", query, results, "item")
    return 0


def _similar(args: argparse.Namespace) -> int:
    model, data = _load(args.model)
    assert model.item_factors is not None
    if data is None:
        column = _index(args.item, model.item_factors.shape[0], "item")
        _no_ids_note(args.model)
        ids, scores = model.similar_items(column, N=args.n)
        results = list(zip(ids.tolist(), scores.astype(float).tolist(), strict=True))
        query: Any = column
    else:
        results = data.similar_items(model, args.item, N=args.n)
        query = data.item_ids[data.item_index(args.item)].item()
    _show(args, "item", query, results, "item")
    return 0


# ---------------------------------------------------------------------------------------------
# serve


def _serve(args: argparse.Namespace) -> int:
    try:
        from .serve import run
    except ImportError as err:
        raise ImportError(
            f"ials serve needs FastAPI and uvicorn: pip install 'ials[serve]' ({err})"
        ) from err
    run(
        args.model,
        host=args.host,
        port=args.port,
        max_body_bytes=args.max_body_bytes,
        log_level="warning" if args.quiet else "info",
    )
    return 0


# ---------------------------------------------------------------------------------------------
# evaluate


def _plot_module() -> Any:
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError("--plot needs matplotlib: pip install 'ials[plot]'") from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot(path: str, history: list[dict[str, Any]], metric: str, k: int, plt: Any) -> None:
    iterations = [entry["iteration"] + 1 for entry in history]
    from matplotlib.ticker import MaxNLocator

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for axis in (left, right):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.plot(iterations, [entry["loss"] for entry in history], marker="o")
    left.set_xlabel("iteration")
    left.set_ylabel("training loss")
    left.set_title("training loss")
    label = metric if metric in ("auc", "epr") else f"{metric}@{k}"
    right.plot(iterations, [entry[metric] for entry in history], marker="o", color="C1")
    right.set_xlabel("iteration")
    right.set_ylabel(label)
    right.set_title(f"validation {label}")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _read_and_split(
    args: argparse.Namespace, fraction: float, label: str
) -> tuple[Interactions, sp.csr_matrix, sp.csr_matrix]:
    """The data file, and a per-user split holding out ``fraction`` of each user's interactions."""
    data, read_seconds = _read(args)
    train, held_out = per_user_split(data.matrix, test_fraction=fraction, random_state=args.seed)
    if not args.json:
        print(
            f"read {args.data}: {data.n_users} users x {data.n_items} items, "
            f"{data.nnz} interactions ({read_seconds:.2f} s)"
        )
        print(
            f"{label} (seed {args.seed}): {train.nnz} interactions to train on, "
            f"{held_out.nnz} held out ({fraction:.0%} of each user's)"
        )
    return data, train, held_out


def _evaluate(args: argparse.Namespace) -> int:
    plt = _plot_module() if args.plot else None  # fail before the work, not after
    model = _model(args, calculate_loss=args.plot is not None)
    data, train, test = _read_and_split(args, args.test_fraction, "per-user split")
    history: list[dict[str, Any]] = []
    callback: Callable[[int, float, float | None], None] | None = None
    if args.plot:

        def record(iteration: int, seconds: float, loss: float | None) -> None:
            metrics = _metrics(model, train, test, args.k, True, args.threads)
            history.append({"iteration": iteration, "seconds": seconds, "loss": loss, **metrics})

        callback = record
    start = time.perf_counter()
    model.fit(train, show_progress=not args.quiet, callback=callback)
    fit_seconds = time.perf_counter() - start
    metrics = _metrics(model, train, test, args.k, args.quiet, args.threads)
    if args.plot:
        assert plt is not None
        _plot(args.plot, history, args.metric, args.k, plt)
    if args.json:
        payload: dict[str, Any] = {
            **_data_summary(args, data),
            "train_interactions": int(train.nnz),
            "test_interactions": int(test.nnz),
            "test_fraction": args.test_fraction,
            "seed": args.seed,
            "k": args.k,
            "factors": args.factors,
            "iterations": args.iterations,
            "regularization": args.regularization,
            "alpha": args.alpha,
            "fit_seconds": fit_seconds,
            "metrics": metrics,
        }
        if args.plot:
            payload["history"] = history
            payload["plot"] = args.plot
        _print_json(payload)
    else:
        print(f"fit: {args.factors} factors, {args.iterations} iterations in {fit_seconds:.2f} s")
        print(_format_metrics(metrics, args.k))
        if args.plot:
            print(f"plot: {args.plot}")
    return 0


# ---------------------------------------------------------------------------------------------
# tune


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _finite_or_none(value.item())
    return value


def _tune(args: argparse.Namespace) -> int:
    """Carves a validation split out of the data (a fraction of each user's interactions) and
    searches the model settings that rank it best (``ials.tune.search``)."""
    from .tune import search

    data, train, validation = _read_and_split(args, args.validation_fraction, "validation split")
    result = search(
        train,
        validation,
        factors=args.factors,
        budget_seconds=args.budget,
        max_trials=args.trials,
        method=args.method,
        K=args.k,
        metric=args.metric,
        random_state=args.seed,
        show_progress=not args.quiet,
        num_threads=args.threads,
    )
    if args.json:
        _print_json(
            {
                **_data_summary(args, data),
                "train_interactions": int(train.nnz),
                "validation_interactions": int(validation.nnz),
                "validation_fraction": args.validation_fraction,
                "seed": args.seed,
                "factors": args.factors,
                "k": args.k,
                "metric": args.metric,
                "method": args.method,
                "budget_seconds": args.budget,
                "max_trials": args.trials,
                "stopped": result.stopped,
                "seconds": result.seconds,
                "best_score": result.best_score,
                "confidence": result.confidence,
                "params": {k: _finite_or_none(v) for k, v in result.params.items()},
                "best": {k: _finite_or_none(v) for k, v in result.best.items()},
                "trials": [
                    {k: _finite_or_none(v) for k, v in row.items()} for row in result.trials
                ],
            }
        )
        return 0
    label = args.metric if args.metric in ("auc", "epr") else f"{args.metric}@{args.k}"
    settings = sorted({row["trial"] for row in result.trials})
    print(
        f"{len(settings)} settings, {len(result.trials)} evaluations in {result.seconds:.1f} s "
        f"({args.method} search, stopped by {result.stopped.replace('_', ' ')})"
    )
    print(result.to_markdown(limit=args.top))
    params = ", ".join(f"{name}={_cell_text(value)}" for name, value in result.params.items())
    print(f"best {label} {result.best_score:.4f}: confidence={result.confidence}")
    if result.confidence != "raw":
        eps = f", eps={result.best.get('eps', 1.0):g}" if result.confidence == "log" else ""
        print(
            f"  transform: ials.confidence.{result.confidence}(R, alpha="
            f"{result.best['alpha']:.4g}{eps}), then the model with alpha=1"
        )
    print(f"  AlternatingLeastSquares(factors={args.factors}, {params})")
    return 0


def _cell_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# ---------------------------------------------------------------------------------------------
# arguments


def _integer(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


_positive = _integer(1)
_non_negative = _integer(0)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (np.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="CSV, TSV (.tsv/.dat) or Parquet file, one interaction a line")
    parser.add_argument("--user-col", help="user id column (default: the first)")
    parser.add_argument("--item-col", help="item id column (default: the second)")
    parser.add_argument(
        "--weight-col", help="interaction strength column, e.g. a play count (default: 1 a line)"
    )
    parser.add_argument("--sep", help="column separator (default: from the file's suffix)")
    parser.add_argument(
        "--no-header", action="store_true", help="the file has no header: columns are positions"
    )


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--factors", type=_positive, default=100)
    parser.add_argument("--iterations", type=_non_negative, default=15)
    parser.add_argument("--regularization", type=float, default=0.01)
    parser.add_argument("--alpha", type=float, default=1.0, help="confidence per unit of weight")
    parser.add_argument("--seed", type=_non_negative, default=0)
    parser.add_argument("--threads", type=_non_negative, default=0, help="0: every core")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ials",
        description="Implicit-feedback ALS recommendations.",
        epilog="exit status: 0 success, 1 missing optional dependency, 2 bad input",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="fit, evaluate and show the embedded synthetic data")
    demo.add_argument("--users", type=_positive, default=2000)
    demo.add_argument("--items", type=_positive, default=1000)
    demo.add_argument("--factors", type=_positive, default=32)
    demo.add_argument("--iterations", type=_non_negative, default=10)
    demo.add_argument("--seed", type=_non_negative, default=0)
    demo.add_argument("--show", type=_non_negative, default=5, help="users whose top items show")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(run=_demo)

    fit = commands.add_parser("fit", help="train on an interaction file and save the model")
    _data_arguments(fit)
    fit.add_argument("-o", "--output", required=True, help="model file (.npz is appended)")
    _model_arguments(fit)
    _output_arguments(fit)
    fit.set_defaults(run=_fit)

    for name, help_text, id_flag, id_help, run in (
        ("recommend", "best unseen items for a user", "--user", "raw user id", _recommend),
        ("similar", "items most similar to an item", "--item", "raw item id", _similar),
    ):
        lookup = commands.add_parser(name, help=help_text)
        lookup.add_argument("model", help="model file written by `ials fit`")
        lookup.add_argument(id_flag, required=True, help=id_help)
        lookup.add_argument("-n", type=_positive, default=10, help="how many items")
        _output_arguments(lookup)
        lookup.set_defaults(run=run)

    serve = commands.add_parser(
        "serve",
        help="HTTP JSON API for a model bundle (needs the serve extra)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Serves recommendations, similar items and users, explanations and scores "
        "by raw id; the OpenAPI schema is at /openapi.json and /docs. POST /admin/reload or "
        "SIGHUP loads the model file again and swaps it in without failing a request.",
    )
    serve.add_argument("model", help="model bundle (or model file) written by ials fit")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=_integer(0), default=8000, help="TCP port")
    serve.add_argument(
        "--max-body-bytes", type=_positive, default=1 << 20, help="larger request bodies get 413"
    )
    serve.add_argument("--quiet", action="store_true", help="log warnings only")
    serve.set_defaults(run=_serve)

    evaluate = commands.add_parser(
        "evaluate", help="hold out part of each user's interactions, fit, measure the ranking"
    )
    _data_arguments(evaluate)
    evaluate.add_argument("--test-fraction", type=_fraction, default=0.2)
    evaluate.add_argument("--k", type=_positive, default=20, help="cut-off of the metrics")
    _model_arguments(evaluate)
    evaluate.add_argument(
        "--plot", metavar="FILE.png", help="draw training loss and validation metric per iteration"
    )
    evaluate.add_argument(
        "--metric", choices=METRIC_NAMES, default="ndcg", help="validation metric of --plot"
    )
    _output_arguments(evaluate)
    evaluate.set_defaults(run=_evaluate)

    tune = commands.add_parser(
        "tune", help="search model settings on a validation split carved from the data"
    )
    _data_arguments(tune)
    tune.add_argument("--budget", type=_positive_float, default=600.0, help="seconds (default 600)")
    tune.add_argument("--trials", type=_positive, default=None, help="settings to try at most")
    tune.add_argument("--method", choices=("random", "halving"), default="random")
    tune.add_argument("--factors", type=_positive, default=64)
    tune.add_argument("--k", type=_positive, default=20, help="cut-off of the metrics")
    tune.add_argument("--metric", choices=METRIC_NAMES, default="ndcg", help="selection metric")
    tune.add_argument("--validation-fraction", type=_fraction, default=0.2)
    tune.add_argument("--seed", type=_non_negative, default=0)
    tune.add_argument("--threads", type=_non_negative, default=0, help="0: every core")
    tune.add_argument("--top", type=_positive, default=10, help="rows of the table shown")
    _output_arguments(tune)
    tune.set_defaults(run=_tune)
    return parser


def _message(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror and err.filename:
        return f"{err.strerror}: {err.filename}"
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except ImportError as err:  # a missing optional dependency
        print(f"ials {args.command}: {_message(err)}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, LookupError, OSError) as err:
        print(f"ials {args.command}: {_message(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
