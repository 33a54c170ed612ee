"""The ``ials`` command line (also ``python -m ials``).

    ials demo                                   fit, evaluate and show the embedded synthetic data
    ials fit DATA -o MODEL [--weight-col ...]   train on a CSV/TSV/Parquet log, save the bundle
    ials recommend MODEL --user ID [-n 10]      best unseen items for a user (raw ids)
    ials recommend MODEL --all -o RECS.parquet  every user's top N (raw ids) to Parquet or CSV
    ials serve MODEL [--port 8000]              HTTP JSON API (needs the serve extra)
    ials similar MODEL --item ID [-n 10]        most similar items (raw ids)
    ials evaluate DATA [--test-fraction --k]    per-user split, fit, ranking metrics, --plot
    ials tune DATA [--budget --trials --factors] search settings on a per-user validation split
                                                (-o best settings, --model-output the refit)

``--json`` prints one JSON object on stdout for scripts; progress bars (tqdm, when installed) go
to stderr unless ``--quiet``. Bad input (a missing file, an unknown column or id, an invalid
value) ends with exit code 2 and a one-line message on stderr.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import scipy.sparse as sp

from . import datasets
from .als import AlternatingLeastSquares
from .evaluation import METRICS, metric_label
from .interactions import Interactions
from .recommender import Confidence, Recommender
from .solver import SOLVERS
from .splits import per_user_split

_N = TypeVar("_N", int, float)


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
    values = [f"{metric_label(name, k)} {metrics[name]:.4f}" for name in METRICS]
    return "  ".join(values) + f"  ({metrics['users']} test users)"


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


def _read(args: argparse.Namespace) -> Interactions:
    """The data file, its sizes and reading time reported unless ``--json``."""
    start = time.perf_counter()
    data = Interactions.read(
        args.data,
        user_col=_column(args.user_col, args.no_header),
        item_col=_column(args.item_col, args.no_header),
        weight_col=_column(args.weight_col, args.no_header),
        sep=args.sep,
        header=not args.no_header,
    )
    if not args.json:
        print(
            f"read {args.data}: {data.n_users} users x {data.n_items} items, "
            f"{data.nnz} interactions ({time.perf_counter() - start:.2f} s)"
        )
    return data


def _model(args: argparse.Namespace, calculate_loss: bool = False) -> AlternatingLeastSquares:
    return AlternatingLeastSquares(
        **{name: getattr(args, name) for name in _MODEL_FLAGS},
        num_threads=args.threads,
        random_state=args.seed,
        calculate_training_loss=calculate_loss,
    )


def _confidence(args: argparse.Namespace) -> Confidence:
    return Confidence(args.confidence, args.confidence_alpha, args.confidence_eps)


def _refuse_existing(path: str, force: bool) -> str:
    if os.path.exists(path) and not force:
        raise FileExistsError(f"{path} exists: pass --force to overwrite it")
    return path


def _check_output(path: str, force: bool) -> str:
    """The model path (``.npz`` appended), refused when it exists unless ``force``."""
    from ._persistence import model_path

    return _refuse_existing(model_path(path), force)


def _fit(args: argparse.Namespace) -> int:
    model = _model(args)  # checks the parameters before the work
    confidence = _confidence(args)
    path = _check_output(args.output, args.force)
    data = _read(args)
    start = time.perf_counter()
    bundle = Recommender.fit(data, model, confidence, show_progress=not args.quiet)
    fit_seconds = time.perf_counter() - start
    bundle.save(path)
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


def _load(path: str) -> tuple[Recommender, bool]:
    """The bundle, and whether it knows any history (a model file saved without interactions
    has none: its ids are row and column numbers)."""
    try:
        bundle = Recommender.load(path)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    return bundle, bundle.interactions.nnz > 0


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


def _ranked_items(args: argparse.Namespace, kind: str) -> int:
    """Shows the items ranked for the ``kind`` ("user": recommendations, "item": similar items)
    given on the command line as a raw id, or as an index where the model file holds no ids."""
    bundle, has_ids = _load(args.model)
    data = bundle.interactions
    position: Callable[[Any], int]
    rank: Callable[..., list[tuple[Any, float]]]
    if kind == "user":
        count, ids, position, rank = data.n_users, data.user_ids, data.user_index, bundle.recommend
    else:
        count, ids, position = data.n_items, data.item_ids, data.item_index
        rank = bundle.similar_items
    key: Any = getattr(args, kind)
    if not has_ids:
        key = _index(key, count, kind)
        _no_ids_note(args.model)
    results = rank(key, N=args.n)
    _show(args, kind, ids[position(key)].item(), results, "item")
    return 0


def _recommend(args: argparse.Namespace) -> int:
    if args.all:
        return _recommend_all(args)
    if args.user is None:
        raise ValueError("give --user ID, or --all with -o FILE")
    return _ranked_items(args, "user")


def _recommend_all(args: argparse.Namespace) -> int:
    """Every user's top N, in blocks of users, to a Parquet or CSV file in raw ids."""
    from .export import read_names, recommendation_columns, write_table

    if args.output is None:
        raise ValueError("--all needs -o FILE (.parquet or .csv)")
    if args.user is not None:
        raise ValueError("give either --user or --all, not both")
    _refuse_existing(args.output, args.force)
    names = None
    if args.item_names:
        names = read_names(args.item_names, args.names_id_col, args.names_col)
    bundle, _ = _load(args.model)
    model, data = bundle.model, bundle.interactions
    start = time.perf_counter()

    def blocks() -> Any:
        for first in range(0, data.n_users, args.block_users):
            rows = np.arange(first, min(first + args.block_users, data.n_users))
            ids, scores = model.recommend(rows, data.matrix[rows], N=args.n)
            yield recommendation_columns(data.user_ids[rows], ids, scores, data.item_ids, names)

    written = write_table(args.output, blocks())
    seconds = time.perf_counter() - start
    if args.json:
        _print_json(
            {"users": data.n_users, "rows": written, "output": args.output, "seconds": seconds}
        )
    else:
        print(f"wrote {written} rows for {data.n_users} users to {args.output} ({seconds:.2f} s)")
    return 0


def _similar(args: argparse.Namespace) -> int:
    return _ranked_items(args, "item")


# ---------------------------------------------------------------------------------------------
# serve


def _serve(args: argparse.Namespace) -> int:
    try:
        from .serve import run
    except ImportError as err:
        raise ImportError(
            f"ials serve needs FastAPI and uvicorn: pip install fastapi uvicorn ({err})"
        ) from err
    run(
        args.model,
        host=args.host,
        port=args.port,
        max_body_bytes=args.max_body_bytes,
        log_level="warning" if args.quiet else "info",
        threads=args.threads,
    )
    return 0


# ---------------------------------------------------------------------------------------------
# evaluate


def _plot_module() -> Any:
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError("--plot needs matplotlib: pip install matplotlib") from err
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
    label = metric_label(metric, k)
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
    data = _read(args)
    train, held_out = per_user_split(data.matrix, test_fraction=fraction, random_state=args.seed)
    if not args.json:
        print(
            f"{label} (seed {args.seed}): {train.nnz} interactions to train on, "
            f"{held_out.nnz} held out ({fraction:.0%} of each user's)"
        )
    return data, train, held_out


def _evaluate(args: argparse.Namespace) -> int:
    plt = _plot_module() if args.plot else None  # fail before the work, not after
    model = _model(args, calculate_loss=args.plot is not None)
    confidence = _confidence(args)
    data, train, test = _read_and_split(args, args.test_fraction, "per-user split")
    train = confidence.apply(train)
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
    searches the model settings that rank it best (``ials.tune.search``), or, with
    ``--double-factors``, doubles the factors while that improves
    (``ials.tune.scale_dimension``)."""
    from .tune import ScalingResult, scale_dimension, search

    scaling = {
        name: getattr(args, name) for name in ("max_factors", "trials_per_size") if name in args
    }
    if scaling and not args.double_factors:
        flags = ", ".join("--" + name.replace("_", "-") for name in scaling)
        raise ValueError(f"{flags} only apply with --double-factors")
    if args.output is not None:  # refused before the search, not after
        _refuse_existing(args.output, args.force)
    if args.model_output is not None:
        _check_output(args.model_output, args.force)
    data, train, validation = _read_and_split(args, args.validation_fraction, "validation split")
    fixed = {
        name: getattr(args, name)
        for name in ("solver", "block_size", "block_sweeps")
        if getattr(args, name) is not None
    }
    tune = scale_dimension if args.double_factors else search
    result = tune(
        train,
        validation,
        factors=args.factors,
        space=fixed,
        budget_seconds=args.budget,
        max_trials=args.trials,
        method=args.method,
        K=args.k,
        metric=args.metric,
        random_state=args.seed,
        show_progress=not args.quiet,
        num_threads=args.threads,
        **scaling,
    )
    written = _save_tuned(args, data, result)
    if args.json:
        _print_json(
            {
                **_data_summary(args, data),
                **written,
                "train_interactions": int(train.nnz),
                "validation_interactions": int(validation.nnz),
                "validation_fraction": args.validation_fraction,
                "seed": args.seed,
                "factors": result.factors,
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
                **(
                    {
                        "curve": [
                            {k: _finite_or_none(v) for k, v in row.items()} for row in result.curve
                        ]
                    }
                    if isinstance(result, ScalingResult)
                    else {}
                ),
            }
        )
        return 0
    label = metric_label(args.metric, args.k)
    settings = {(row.get("factors"), row["trial"]) for row in result.trials}
    how = f"{args.method} search"
    if args.double_factors:
        how += f" doubling factors from {args.factors}"
    print(
        f"{len(settings)} settings, {len(result.trials)} evaluations in {result.seconds:.1f} s "
        f"({how}, stopped by {result.stopped.replace('_', ' ')})"
    )
    if isinstance(result, ScalingResult):
        print(result.to_markdown())
    else:
        print(result.to_markdown(limit=args.top))
    params = ", ".join(f"{name}={_cell_text(value)}" for name, value in result.params.items())
    print(f"best {label} {result.best_score:.4f}: confidence={result.confidence}")
    if result.confidence != "raw":
        eps = f", eps={result.best.get('eps', 1.0):g}" if result.confidence == "log" else ""
        print(
            f"  transform: ials.confidence.{result.confidence}(R, alpha="
            f"{result.best['alpha']:.4g}{eps}), then the model with alpha=1"
        )
    print(f"  AlternatingLeastSquares(factors={result.factors}, {params})")
    for what, path in written.items():
        print(f"saved {what.replace('_', ' ')}: {path}")
    return 0


def _best_settings(result: Any) -> dict[str, Any]:
    """The best trial's settings under the flag names of ``fit`` (what ``--params`` reads)."""
    settings: dict[str, Any] = {"factors": result.factors}
    for name, value in result.params.items():
        if value is None:  # solver None: the model's default, which fit applies too
            continue
        settings[name] = np.dtype(value).name if name == "dtype" else _finite_or_none(value)
    transformed = result.confidence != "raw"
    settings["confidence"] = result.confidence
    settings["confidence_alpha"] = float(result.best["alpha"]) if transformed else 1.0
    settings["confidence_eps"] = float(result.best.get("eps", 1.0))
    settings["seed"] = int(result.random_state)
    return settings


def _save_tuned(args: argparse.Namespace, data: Interactions, result: Any) -> dict[str, str]:
    """Writes the best settings (``-o``) and the model refitted with them on all the data
    (``--model-output``); returns what was written."""
    written: dict[str, str] = {}
    settings = _best_settings(result)
    if args.output is not None:
        with open(args.output, "w", encoding="utf-8") as handle:
            json.dump(settings, handle, indent=2)
            handle.write("\n")
        written["settings_file"] = args.output
    if args.model_output is not None:
        model = result.make_model(num_threads=args.threads)
        confidence = Confidence(
            settings["confidence"], settings["confidence_alpha"], settings["confidence_eps"]
        )
        bundle = Recommender.fit(data, model, confidence, show_progress=not args.quiet)
        path = _check_output(args.model_output, True)
        bundle.save(path)
        written["model"] = path
    return written


def _cell_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# ---------------------------------------------------------------------------------------------
# arguments


def _number(
    convert: Callable[[str], _N], noun: str, accept: Callable[[_N], bool], wanted: str
) -> Callable[[str], _N]:
    """An argparse type: ``convert`` of the text (else "expected ``noun``"), for which
    ``accept`` holds (else "expected ``wanted``")."""

    def parse(text: str) -> _N:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value

    return parse


def _integer(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``."""
    return _number(int, "an integer", lambda value: value >= minimum, f"an integer >= {minimum}")


_positive = _integer(1)
_non_negative = _integer(0)


def _port(text: str) -> int:
    value = _non_negative(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"expected a port 0..65535, got {text!r}")
    return value


_fraction = _number(float, "a number", lambda value: 0.0 < value < 1.0, "a number between 0 and 1")
_positive_float = _number(
    float, "a number", lambda value: bool(np.isfinite(value)) and value > 0, "a number > 0"
)


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


def _split_arguments(parser: argparse.ArgumentParser, fraction_flag: str, use: str) -> None:
    """The data file, the share of each user's interactions held out (``fraction_flag``, read by
    ``_read_and_split``) and the cut-off of the metrics measured on them."""
    _data_arguments(parser)
    parser.add_argument(
        fraction_flag,
        type=_fraction,
        default=0.2,
        help=f"share of each user's interactions held out {use}",
    )
    parser.add_argument("--k", type=_positive, default=20, help="cut-off of the metrics")


_DEFAULTS = inspect.signature(AlternatingLeastSquares).parameters
# The flags named as the model's parameters (--threads and --seed are its num_threads and
# random_state).
_MODEL_FLAGS = (
    "factors",
    "iterations",
    "regularization",
    "alpha",
    "regularization_exponent",
    "unobserved_weight",
    "cg_steps",
    "use_cg",
    "solver",
    "block_size",
    "block_sweeps",
    "dtype",
)
# The model settings `fit --params FILE` accepts and `tune -o FILE` writes (argparse dest names).
_SETTINGS = (*_MODEL_FLAGS, "confidence", "confidence_alpha", "confidence_eps", "seed")


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model settings")
    setting = group.add_argument
    for name, kind, text in (
        ("factors", _positive, "latent factors k"),
        ("iterations", _non_negative, "ALS sweeps (users then items)"),
        ("regularization", float, "lambda, the L2 penalty of each factor row"),
        ("alpha", float, "model confidence per unit of (transformed) weight; 1 with --confidence"),
        (
            "regularization_exponent",
            float,
            "nu: a row's penalty is lambda * (n_u + alpha0 * n_cols) ** nu (0: plain lambda)",
        ),
        ("unobserved_weight", float, "alpha0, the confidence of every cell not in the data"),
        ("cg_steps", _positive, "conjugate-gradient iterations per row and half-sweep"),
        ("block_size", _positive, "factors per block of --solver block"),
        ("block_sweeps", _positive, "passes over the blocks of --solver block per row"),
    ):
        flag = "--" + name.replace("_", "-")
        setting(flag, type=kind, default=_DEFAULTS[name].default, help=text)
    setting(
        "--use-cg",
        action=argparse.BooleanOptionalAction,
        default=_DEFAULTS["use_cg"].default,
        help="conjugate gradient; --no-use-cg solves each row exactly (Cholesky)",
    )
    setting(
        "--solver",
        choices=SOLVERS,
        help="row solver: cg, cholesky (exact) or block (iALS++: block coordinate descent, for "
        "large --factors); when not given, --use-cg picks cg or cholesky",
    )
    setting(
        "--dtype",
        choices=("float32", "float64"),
        default=np.dtype(_DEFAULTS["dtype"].default).name,
        help="type of the factors",
    )
    setting(
        "--confidence",
        choices=("raw", "linear", "log"),
        default="raw",
        help="transform of the weights before fitting: 1 + a * r (linear), "
        "1 + a * log(1 + r / eps) (log); saved in the model for later fold-ins",
    )
    setting("--confidence-alpha", type=float, default=1.0, help="a of the confidence transform")
    setting("--confidence-eps", type=float, default=1.0, help="eps of the log transform")
    setting("--seed", type=_non_negative, default=0, help="seed of the initial factors")
    setting("--threads", type=_non_negative, default=0, help="threads, 0: every core")
    setting(
        "--params",
        metavar="FILE.json",
        help="settings written by `ials tune -o`; flags given on the command line win",
    )
    parser.set_defaults(settings_parser=parser)


def _read_params(path: str, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The settings in a JSON file, checked as their flags would be."""
    with open(path, encoding="utf-8") as handle:
        try:
            values = json.load(handle)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a JSON object of settings")
    actions = {action.dest: action for action in parser._actions}
    checked: dict[str, Any] = {}
    for name, value in values.items():
        if name not in _SETTINGS:
            raise ValueError(
                f"{path}: unknown setting {name!r}; the settings are: {', '.join(_SETTINGS)}"
            )
        action = actions[name]
        flag = action.option_strings[0]
        if name == "use_cg":
            if not isinstance(value, bool):
                raise ValueError(f"{path}: {name} must be true or false, got {value!r}")
            checked[name] = value
            continue
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"{path}: {name} must be a number or a name, got {value!r}")
        if action.choices is not None and value not in action.choices:
            choices = ", ".join(map(str, action.choices))
            raise ValueError(f"{path}: {name} must be one of {choices}, got {value!r}")
        try:
            checked[name] = value if action.type is None else action.type(str(value))  # type: ignore[operator]
        except (argparse.ArgumentTypeError, ValueError) as err:
            raise ValueError(f"{path}: {name} ({flag}): {err}") from None
    return checked


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ials",
        description="Implicit-feedback ALS recommendations.",
        epilog="exit status: 0 success, 1 missing optional dependency, 2 bad input",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def command(
        name: str,
        run: Callable[[argparse.Namespace], int],
        summary: str,
        description: str | None = None,
    ) -> argparse.ArgumentParser:
        """A subcommand whose help shows the defaults, running ``run``."""
        sub = commands.add_parser(
            name,
            help=summary,
            description=description,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        sub.set_defaults(run=run)
        return sub

    demo = command("demo", _demo, "fit, evaluate and show the embedded synthetic data")
    demo.add_argument("--users", type=_positive, default=2000, help="synthetic listeners")
    demo.add_argument("--items", type=_positive, default=1000, help="synthetic items")
    demo.add_argument("--factors", type=_positive, default=32, help="latent factors k")
    demo.add_argument("--iterations", type=_non_negative, default=10, help="ALS sweeps")
    demo.add_argument("--seed", type=_non_negative, default=0, help="seed of data and factors")
    demo.add_argument("--show", type=_non_negative, default=5, help="users whose top items show")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")

    fit = command(
        "fit",
        _fit,
        "train on an interaction file and save the model bundle",
        "Trains on a log of interactions and saves one model bundle: settings, "
        "factors, the raw user and item ids with each user's history, and the confidence "
        "transform (read by ials recommend, similar, serve and ials.Recommender.load).",
    )
    _data_arguments(fit)
    fit.add_argument("-o", "--output", required=True, help="model file (.npz is appended)")
    fit.add_argument("--force", action="store_true", help="overwrite an existing model file")
    _model_arguments(fit)
    _output_arguments(fit)

    for name, help_text, id_flag, id_help, run in (
        ("recommend", "best unseen items for a user", "--user", "raw user id", _recommend),
        ("similar", "items most similar to an item", "--item", "raw item id", _similar),
    ):
        lookup = command(name, run, help_text)
        lookup.add_argument("model", help="model file written by `ials fit`")
        lookup.add_argument(id_flag, required=name == "similar", help=id_help)
        lookup.add_argument("-n", type=_positive, default=10, help="how many items")
        if name == "recommend":
            export = lookup.add_argument_group("batch export (--all)")
            export.add_argument(
                "--all", action="store_true", help="every user's top n, written to -o FILE"
            )
            export.add_argument(
                "-o", "--output", help="file for --all: .parquet (needs pyarrow), .csv or .tsv"
            )
            export.add_argument("--force", action="store_true", help="overwrite -o FILE")
            export.add_argument(
                "--item-names", metavar="FILE", help="CSV/TSV of item id and name, joined in"
            )
            export.add_argument("--names-id-col", help="item id column of --item-names (first)")
            export.add_argument("--names-col", help="name column of --item-names (second)")
            export.add_argument(
                "--block-users", type=_positive, default=4096, help="users ranked per call"
            )
        _output_arguments(lookup)

    serve = command(
        "serve",
        _serve,
        "HTTP JSON API for a model bundle (needs the serve extra)",
        "Serves recommendations, similar items and users, explanations and scores "
        "by raw id; the OpenAPI schema is at /openapi.json and /docs. POST /admin/reload or "
        "SIGHUP loads the model file again and swaps it in without failing a request.",
    )
    serve.add_argument("model", help="model bundle (or model file) written by ials fit")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=_port, default=8000, help="TCP port (0: any free one)")
    serve.add_argument(
        "--max-body-bytes", type=_positive, default=1 << 20, help="larger request bodies get 413"
    )
    serve.add_argument(
        "--threads",
        type=_non_negative,
        default=None,
        help="cores one call may use, 0: all; unset: the model's num_threads; 1 suits many small "
        "concurrent requests",
    )
    serve.add_argument("--quiet", action="store_true", help="log warnings only")

    evaluate = command(
        "evaluate", _evaluate, "hold out part of each user's interactions, fit, measure the ranking"
    )
    _split_arguments(evaluate, "--test-fraction", "for the metrics")
    _model_arguments(evaluate)
    evaluate.add_argument(
        "--plot", metavar="FILE.png", help="draw training loss and validation metric per iteration"
    )
    evaluate.add_argument(
        "--metric", choices=list(METRICS), default="ndcg", help="validation metric of --plot"
    )
    _output_arguments(evaluate)

    tune = command(
        "tune", _tune, "search model settings on a validation split carved from the data"
    )
    _split_arguments(tune, "--validation-fraction", "to score the settings")
    tune.add_argument("--budget", type=_positive_float, default=600.0, help="seconds")
    tune.add_argument("--trials", type=_positive, default=None, help="settings to try at most")
    tune.add_argument(
        "--method",
        choices=("random", "halving"),
        default="random",
        help="random search, or successive halving of the iterations",
    )
    tune.add_argument(
        "--factors",
        type=_positive,
        default=64,
        help="latent factors k (fixed; the starting size with --double-factors)",
    )
    tune.add_argument(
        "--solver", choices=SOLVERS, help="row solver of every model (None: the model's)"
    )
    tune.add_argument("--block-size", type=_positive, help="factors per block of --solver block")
    tune.add_argument(
        "--block-sweeps", type=_positive, help="passes over the blocks of --solver block per row"
    )
    scale = tune.add_argument_group(
        "scaling the embedding (Rendle et al. 2022)",
        "search at --factors, then double the factors while validation improves, re-tuning the "
        "penalty (nu = 1) and the unobserved weight around the previous best at each size; "
        "--budget and --trials are totals",
    )
    scale.add_argument("--double-factors", action="store_true", help="follow the protocol")
    # Not given: scale_dimension's defaults (no limit, 8), and neither may come without it.
    scale.add_argument(
        "--max-factors", type=_positive, default=argparse.SUPPRESS, help="largest size tried"
    )
    scale.add_argument(
        "--trials-per-size",
        type=_positive,
        default=argparse.SUPPRESS,
        help="settings tried at each size (8)",
    )
    tune.add_argument("--metric", choices=list(METRICS), default="ndcg", help="selection metric")
    tune.add_argument("--seed", type=_non_negative, default=0, help="seed of split and search")
    tune.add_argument("--threads", type=_non_negative, default=0, help="0: every core")
    tune.add_argument("--top", type=_positive, default=10, help="rows of the table shown")
    tune.add_argument(
        "-o", "--output", metavar="FILE.json", help="write the best settings (for fit --params)"
    )
    tune.add_argument(
        "--model-output",
        metavar="MODEL",
        help="refit the best settings on all the data and save the model bundle",
    )
    tune.add_argument("--force", action="store_true", help="overwrite existing output files")
    _output_arguments(tune)
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
        if getattr(args, "params", None):
            # The file's settings become the defaults: flags given on the command line win.
            args.settings_parser.set_defaults(**_read_params(args.params, args.settings_parser))
            args = parser.parse_args(argv)
        return int(args.run(args))
    except ImportError as err:  # a missing optional dependency
        print(f"ials {args.command}: {_message(err)}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, LookupError, OSError, MemoryError) as err:
        print(f"ials {args.command}: {_message(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
