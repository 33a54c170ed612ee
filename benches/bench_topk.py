"""Time top-K scoring of ials and implicit 0.7.3 side by side on the same factors.

Tasks: batch ``recommend`` for every user (with and without filtering the items each user already
has) at each ``--n``, and ``similar_items`` for every item. Both libraries get the same factors
(saved once to ``.npy`` files: a short seeded ials fit by default, or seeded random factors with
``--source random``), the same matrix and ``--threads``. Each library runs in a fresh child
process (as in ``bench_fit.py``): one untimed warm-up call per setting, then ``--repeats`` timed
calls; the median is reported. The implicit child runs with ``OPENBLAS_NUM_THREADS=1``
(``--implicit-blas-threads threads``: as many as ``--threads``, since its batch scores are one
BLAS product) and, unless ``--implicit-blas preset``, without ``OPENBLAS_CORETYPE`` /
``OPENBLAS_L2_SIZE``; the ials child gets ``OPENBLAS_NUM_THREADS=1``.

Agreement: the parent recomputes in float64 the score of every returned id (dot product, or cosine
for ``similar_items``). A slot of implicit's list counts as untied when its float64 score is more
than ``--tie-tol`` (relative to the row's largest |score|) away from the score of every other id
in either library's list for that row; "identical ids" is the fraction of untied slots where
ials returns the same id in the same slot.
"max slot diff" is the largest difference between the two libraries' float64 scores at the same
slot, relative to the row's largest |score| (near 0 when both return an equally good ranking).

    python benches/bench_topk.py                         # gowalla, factors 64 128, N 10 100
    python benches/bench_topk.py --factors 64 --n 10 --tasks recommend --filter on --repeats 1
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _data
from bench_fit import machine, peak_rss_mib, run_library

LIBRARIES = ("ials", "implicit")
TASKS = ("recommend", "similar_items")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["gowalla", "lastfm", "synthetic"], default="gowalla")
    parser.add_argument("--factors", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--n", type=int, nargs="+", default=[10, 100], help="N of each call")
    parser.add_argument("--tasks", choices=TASKS, nargs="+", default=list(TASKS))
    parser.add_argument(
        "--filter",
        choices=["on", "off"],
        nargs="+",
        default=["on", "off"],
        help="recommend with filter_already_liked_items True (on) and/or False (off)",
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument(
        "--source",
        choices=["fit", "random"],
        default="fit",
        help="factors from a short seeded ials fit (default) or seeded random normals",
    )
    parser.add_argument("--fit-iterations", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tie-tol", type=float, default=None, help="default 1e-5 (f32), 1e-12")
    parser.add_argument("--users", type=int, default=100_000, help="synthetic only")
    parser.add_argument("--items", type=int, default=20_000, help="synthetic only")
    parser.add_argument("--nnz", type=int, default=3_000_000, help="synthetic only")
    parser.add_argument("--only", choices=LIBRARIES, help="run one library only")
    parser.add_argument(
        "--implicit-blas",
        choices=["unset", "preset"],
        default="unset",
        help="implicit's OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE: removed, or as the machine sets them",
    )
    parser.add_argument(
        "--implicit-blas-threads",
        choices=["one", "threads"],
        default="one",
        help="implicit's OpenBLAS threads: one (its advice for training, which users following "
        "it also recommend with) or --threads (its batch scores are one BLAS product)",
    )
    parser.add_argument("--json", type=Path, help="also write all measurements here")
    parser.add_argument("--child", choices=LIBRARIES, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("repeats", "threads", "fit_iterations"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if min(args.factors) < 1 or min(args.n) < 1:
        parser.error("--factors and --n must be >= 1")
    if args.tie_tol is None:
        args.tie_tol = 1e-5 if args.dtype == "float32" else 1e-12
    return args


def load_matrix(args: argparse.Namespace) -> sp.csr_matrix:
    if args.dataset == "gowalla":
        train, _test = _data.gowalla()
        matrix = train
    elif args.dataset == "lastfm":
        matrix = _data.lastfm().plays
    else:
        matrix = _data.synthetic(args.users, args.items, args.nnz, random_state=args.seed)
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    matrix.sum_duplicates()
    matrix.sort_indices()
    return matrix


def settings(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every (task, factors, N, filter) to time, with a file-name key."""
    out = []
    for k in args.factors:
        for n in args.n:
            if "recommend" in args.tasks:
                for flag in args.filter:
                    out.append({"task": "recommend", "factors": k, "n": n, "filter": flag == "on"})
            if "similar_items" in args.tasks:
                out.append({"task": "similar_items", "factors": k, "n": n, "filter": False})
    for s in out:
        s["key"] = f"{s['task']}_k{s['factors']}_n{s['n']}" + ("_filter" if s["filter"] else "")
    return out


# --------------------------------------------------------------------------------------------
# child: one library, fresh process


def make_model(library: str, k: int, x: np.ndarray, y: np.ndarray, threads: int) -> Any:
    if library == "implicit":
        import implicit.cpu.als

        model = implicit.cpu.als.AlternatingLeastSquares(
            factors=k, dtype=x.dtype, num_threads=threads
        )
    else:
        import ials

        model = ials.AlternatingLeastSquares(factors=k, dtype=x.dtype, num_threads=threads)
    model.user_factors = x
    model.item_factors = y
    return model


def run_child(args: argparse.Namespace) -> None:
    workdir: Path = args.workdir
    library: str = args.child
    matrix = sp.load_npz(workdir / "matrix.npz").tocsr()
    n_users, n_items = matrix.shape
    users = np.arange(n_users)
    items = np.arange(n_items)
    timings: dict[str, list[float]] = {}
    rss_before = peak_rss_mib()
    for k in args.factors:
        x = np.load(workdir / f"x{k}.npy")
        y = np.load(workdir / f"y{k}.npy")
        model = make_model(library, k, x, y, args.threads)
        for setting in settings(args):
            if setting["factors"] != k:
                continue
            if setting["task"] == "recommend":
                call = functools.partial(
                    model.recommend,
                    users,
                    matrix,
                    N=setting["n"],
                    filter_already_liked_items=setting["filter"],
                )
            else:
                call = functools.partial(model.similar_items, items, N=setting["n"])
            ids, _ = call()  # warm-up (also fills cached norms)
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                ids, _ = call()
                times.append(time.perf_counter() - start)
            timings[setting["key"]] = times
            np.save(workdir / f"{library}_{setting['key']}_ids.npy", np.asarray(ids))
            print(
                f"  {library} {setting['key']}: median {statistics.median(times):.3f} s",
                flush=True,
            )
    if library == "implicit":
        import implicit

        version = implicit.__version__
    else:
        import ials

        version = ials.__version__
    result = {
        "library": library,
        "version": version,
        "timings": timings,
        "peak_rss_mib": peak_rss_mib(),
        "peak_rss_before_mib": rss_before,
    }
    (workdir / f"{library}.json").write_text(json.dumps(result))


# --------------------------------------------------------------------------------------------
# parent


def make_factors(
    args: argparse.Namespace, matrix: sp.csr_matrix, k: int
) -> tuple[np.ndarray, np.ndarray]:
    dtype = np.dtype(args.dtype)
    n_users, n_items = matrix.shape
    if args.source == "random":
        rng = np.random.default_rng(args.seed)
        x = (rng.standard_normal((n_users, k)) * 0.1).astype(dtype)
        y = (rng.standard_normal((n_items, k)) * 0.1).astype(dtype)
        return x, y
    import ials

    model = ials.AlternatingLeastSquares(
        factors=k,
        dtype=dtype,
        iterations=args.fit_iterations,
        num_threads=args.threads,
        random_state=args.seed,
    )
    model.fit(matrix, show_progress=False)
    assert model.user_factors is not None and model.item_factors is not None
    return np.ascontiguousarray(model.user_factors), np.ascontiguousarray(model.item_factors)


def slot_scores(queries: np.ndarray, targets: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """float64 ``queries[r] . targets[ids[r, j]]`` (nan where ids[r, j] < 0), in row chunks."""
    out = np.full(ids.shape, np.nan)
    q64 = queries.astype(np.float64)
    t64 = targets.astype(np.float64)
    for start in range(0, len(ids), 2048):
        chunk = ids[start : start + 2048]
        valid = chunk >= 0
        picked = t64[np.where(valid, chunk, 0)]
        values = np.einsum("rk,rjk->rj", q64[start : start + 2048], picked)
        out[start : start + 2048] = np.where(valid, values, np.nan)
    return out


def unit_rows(factors: np.ndarray) -> np.ndarray:
    rows = factors.astype(np.float64)
    norms = np.linalg.norm(rows, axis=1)
    norms[norms == 0] = 1e-10
    return rows / norms[:, None]


def agreement(
    setting: dict[str, Any],
    ours: np.ndarray,
    theirs: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    tie_tol: float,
) -> tuple[float, float]:
    """(fraction of identical ids over implicit's untied slots, max relative slot score diff).

    A slot of implicit's list is tied when some other item of either library's list for that
    row scores within ``tie_tol`` (relative to the row's largest |score|) of implicit's item."""
    if setting["task"] == "recommend":
        queries, targets = x, y
    else:
        queries = targets = unit_rows(y)
    width = min(ours.shape[1], theirs.shape[1])
    ours, theirs = ours[:, :width], theirs[:, :width]
    s_theirs = slot_scores(queries, targets, theirs)
    s_ours = slot_scores(queries, targets, ours)
    scale = np.nanmax(np.abs(s_theirs), axis=1, keepdims=True)
    scale[~(scale > 0)] = 1.0
    matches = untied_count = 0
    for start in range(0, len(theirs), 1024):
        part = slice(start, start + 1024)
        ids = np.concatenate([theirs[part], ours[part]], axis=1)
        scores = np.concatenate([s_theirs[part], s_ours[part]], axis=1)
        near = (
            np.abs(s_theirs[part][:, :, None] - scores[:, None, :])
            <= tie_tol * scale[part][:, :, None]
        )
        other = ids[:, None, :] != theirs[part][:, :, None]
        untied = ~(near & other).any(axis=2) & np.isfinite(s_theirs[part])
        matches += int((ours[part] == theirs[part])[untied].sum())
        untied_count += int(untied.sum())
    identical = matches / untied_count if untied_count else float("nan")
    diff = float(np.nanmax(np.abs(s_ours - s_theirs) / scale))
    return identical, diff


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.child:
        run_child(args)
        return
    if args.repeats < 5:
        print(f"note: --repeats {args.repeats} < 5: a smoke run, not a measurement", flush=True)

    started = time.perf_counter()
    matrix = load_matrix(args)
    n_users, n_items = matrix.shape
    print(
        f"{args.dataset}: {n_users} users x {n_items} items, nnz {matrix.nnz} "
        f"(loaded in {time.perf_counter() - started:.1f} s)",
        flush=True,
    )
    libraries = [args.only] if args.only else list(LIBRARIES)
    results: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench_topk_") as tmp:
        workdir = Path(tmp)
        sp.save_npz(workdir / "matrix.npz", matrix, compressed=False)
        factors: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for k in args.factors:
            start = time.perf_counter()
            factors[k] = make_factors(args, matrix, k)
            np.save(workdir / f"x{k}.npy", factors[k][0])
            np.save(workdir / f"y{k}.npy", factors[k][1])
            print(f"factors {k}: {args.source} ({time.perf_counter() - start:.1f} s)", flush=True)
        for library in libraries:
            blas_threads = (
                args.threads
                if library == "implicit" and args.implicit_blas_threads == "threads"
                else 1
            )
            results[library] = run_library(
                library,
                argv,
                workdir,
                script=__file__,
                implicit_blas=args.implicit_blas,
                blas_threads=blas_threads,
            )
        for setting in settings(args):
            key = setting["key"]
            row: dict[str, Any] = {**setting}
            for library in libraries:
                row[library] = statistics.median(results[library]["timings"][key])
            if len(libraries) == 2:
                row["ratio"] = row["implicit"] / row["ials"]
                ours = np.load(workdir / f"ials_{key}_ids.npy")
                theirs = np.load(workdir / f"implicit_{key}_ids.npy")
                row["identical"], row["max_slot_diff"] = agreement(
                    setting, ours, theirs, *factors[setting["factors"]], args.tie_tol
                )
            rows.append(row)

    command = shlex.join(["python", "benches/bench_topk.py", *argv])
    date = dt.datetime.now().astimezone().isoformat(timespec="minutes")
    where = machine()
    versions = ", ".join(f"{lib} {results[lib]['version']}" for lib in libraries)
    print()
    print(f"- command: `{command}`")
    print(f"- date: {date}")
    print(f"- machine: {where}")
    print(
        f"- {args.dataset} {n_users} users x {n_items} items (nnz {matrix.nnz}), {args.dtype}, "
        f"factors from {args.source}, {args.threads} threads, median of {args.repeats} runs "
        f"after one warm-up; {versions}"
    )
    for library in libraries:
        print(f"- {library} peak RSS {results[library]['peak_rss_mib']:.0f} MiB")
    print()
    header = (
        "| task | factors | N | filter liked | ials s | implicit s | implicit/ials | "
        "identical ids (untied) | max slot diff |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))

    def cell(row: dict[str, Any], key: str, fmt: str) -> str:
        return format(row[key], fmt) if key in row else "-"

    for row in rows:
        print(
            f"| {row['task']} | {row['factors']} | {row['n']} | "
            f"{'yes' if row['filter'] else 'no'} | {cell(row, 'ials', '.3f')} | "
            f"{cell(row, 'implicit', '.3f')} | {cell(row, 'ratio', '.2f')} | "
            f"{cell(row, 'identical', '.4%')} | {cell(row, 'max_slot_diff', '.1e')} |"
        )
    if args.json:
        payload = {
            "command": command,
            "date": date,
            "machine": where,
            "args": {k: str(v) for k, v in vars(args).items()},
            "shape": [n_users, n_items],
            "nnz": int(matrix.nnz),
            "results": results,
            "rows": rows,
        }
        args.json.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
