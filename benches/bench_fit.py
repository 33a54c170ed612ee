"""Time ``fit`` of ials and implicit 0.7.3 side by side on the same data.

Both libraries get the same matrix, parameters, starting factors and thread count. Each one runs
in a fresh child process (so its peak RSS is its own), fits ``--repeats`` times from the same
starting factors, and reports the time of every iteration (from the fit callback, which both
libraries call with the seconds the iteration took) and of every whole ``fit`` call. The parent
then computes the training loss of each library's final factors with ``ials.calculate_loss`` (one
formula for both) and prints a summary and a markdown row for ``benches/RESULTS.md``.

The implicit child runs with ``OPENBLAS_NUM_THREADS=1`` (implicit's own advice; it parallelises
over rows itself) and, unless ``--implicit-blas preset``, without ``OPENBLAS_CORETYPE`` /
``OPENBLAS_L2_SIZE`` (some machines of this workplace preset them, which selects older OpenBLAS
kernels; run both and quote implicit's faster); the ials child gets ``OPENBLAS_NUM_THREADS=1`` too,
so ``--threads`` is the only parallelism on either side.

    python benches/bench_fit.py --dataset gowalla --factors 64 --iterations 10 --threads 2
    python benches/bench_fit.py --dataset synthetic --exact --repeats 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _data

LIBRARIES = ("ials", "implicit")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["gowalla", "synthetic", "lastfm"], default="gowalla")
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    solver = parser.add_mutually_exclusive_group()
    solver.add_argument("--cg", dest="use_cg", action="store_true", default=True, help="(default)")
    solver.add_argument("--exact", dest="use_cg", action="store_false")
    parser.add_argument(
        "--block-size",
        type=int,
        help="ials only: the block solver (iALS++) with blocks of this many factors",
    )
    parser.add_argument("--cg-steps", type=int, default=3)
    parser.add_argument("--regularization", type=float, default=0.01)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--seed", type=int, default=0, help="starting factors and synthetic data")
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
    parser.add_argument("--json", type=Path, help="also write all measurements here")
    parser.add_argument("--child", choices=LIBRARIES, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("factors", "iterations", "repeats", "threads", "cg_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args


def load_matrix(args: argparse.Namespace) -> sp.csr_matrix:
    if args.dataset == "gowalla":
        train, _test = _data.gowalla()
        return train
    if args.dataset == "lastfm":
        return _data.lastfm().plays
    return _data.synthetic(args.users, args.items, args.nnz, random_state=args.seed)


def peak_rss_mib() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


# --------------------------------------------------------------------------------------------
# child: one library, fresh process


def run_child(args: argparse.Namespace) -> None:
    workdir: Path = args.workdir
    matrix = sp.load_npz(workdir / "matrix.npz").tocsr()
    x0 = np.load(workdir / "x0.npy")
    y0 = np.load(workdir / "y0.npy")
    dtype = np.dtype(args.dtype)

    if args.child == "implicit":
        import implicit.cpu.als

        def make() -> Any:
            model = implicit.cpu.als.AlternatingLeastSquares(
                factors=args.factors,
                regularization=args.regularization,
                alpha=args.alpha,
                dtype=dtype,
                use_cg=args.use_cg,
                iterations=args.iterations,
                num_threads=args.threads,
            )
            model.cg_steps = args.cg_steps
            return model

        version = implicit.__version__
    else:
        import ials

        def make() -> Any:
            return ials.AlternatingLeastSquares(
                factors=args.factors,
                regularization=args.regularization,
                alpha=args.alpha,
                dtype=dtype,
                use_cg=args.use_cg,
                cg_steps=args.cg_steps,
                solver=None if args.block_size is None else "block",
                block_size=args.block_size or 64,
                iterations=args.iterations,
                num_threads=args.threads,
            )

        version = ials.__version__

    rss_before = peak_rss_mib()
    iteration_s: list[float] = []
    fit_s: list[float] = []
    model: Any = None
    for _ in range(args.repeats):
        model = make()
        model.user_factors = x0.astype(dtype, copy=True)
        model.item_factors = y0.astype(dtype, copy=True)
        start = time.perf_counter()
        model.fit(
            matrix,
            show_progress=False,
            callback=lambda _it, elapsed, _loss: iteration_s.append(float(elapsed)),
        )
        fit_s.append(time.perf_counter() - start)
    assert model is not None
    np.save(workdir / f"{args.child}_x.npy", np.asarray(model.user_factors))
    np.save(workdir / f"{args.child}_y.npy", np.asarray(model.item_factors))
    result = {
        "library": args.child,
        "version": version,
        "iteration_s": iteration_s,
        "fit_s": fit_s,
        "peak_rss_mib": peak_rss_mib(),
        "peak_rss_before_fit_mib": rss_before,
    }
    (workdir / f"{args.child}.json").write_text(json.dumps(result))


# --------------------------------------------------------------------------------------------
# parent


def child_env(library: str, implicit_blas: str = "unset", blas_threads: int = 1) -> dict[str, str]:
    """The child's environment: BLAS on ``blas_threads`` threads (implicit's advice for training is
    one, as it parallelises over rows itself; its top-K scores through BLAS, so it is timed with as
    many BLAS threads as the run's too)."""
    env = dict(os.environ)
    env["OPENBLAS_NUM_THREADS"] = str(blas_threads)
    if library == "implicit":
        if implicit_blas == "unset":
            env.pop("OPENBLAS_CORETYPE", None)
            env.pop("OPENBLAS_L2_SIZE", None)
        env["MKL_NUM_THREADS"] = str(blas_threads)
    return env


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        out = ""
    for line in out.splitlines():
        if line.startswith("Model name:"):
            model = line.split(":", 1)[1].strip()
            break
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 0
    return f"{model}, nproc {cpus}"


def run_library(
    library: str,
    argv: list[str],
    workdir: Path,
    script: str = __file__,
    implicit_blas: str = "unset",
    blas_threads: int = 1,
) -> dict[str, Any]:
    """Runs ``script`` (this one by default) as a child measuring ``library``; its JSON result."""
    command = [
        sys.executable,
        str(Path(script).resolve()),
        *argv,
        "--child",
        library,
        "--workdir",
        str(workdir),
    ]
    subprocess.run(command, env=child_env(library, implicit_blas, blas_threads), check=True)
    result: dict[str, Any] = json.loads((workdir / f"{library}.json").read_text())
    return result


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.child:
        run_child(args)
        return

    import ials

    started = time.perf_counter()
    matrix = load_matrix(args)
    matrix.sum_duplicates()
    load_s = time.perf_counter() - started
    n_users, n_items = matrix.shape
    dtype = np.dtype(args.dtype)
    rng = np.random.default_rng(args.seed)
    x0 = rng.random((n_users, args.factors), dtype=dtype) * 0.01
    y0 = rng.random((n_items, args.factors), dtype=dtype) * 0.01
    print(
        f"{args.dataset}: {n_users} users x {n_items} items, nnz {matrix.nnz} "
        f"(loaded in {load_s:.1f} s)",
        flush=True,
    )

    libraries = [args.only] if args.only else list(LIBRARIES)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_fit_") as tmp:
        workdir = Path(tmp)
        sp.save_npz(workdir / "matrix.npz", matrix, compressed=False)
        np.save(workdir / "x0.npy", x0)
        np.save(workdir / "y0.npy", y0)
        for library in libraries:
            result = run_library(library, argv, workdir, implicit_blas=args.implicit_blas)
            x = np.load(workdir / f"{library}_x.npy")
            y = np.load(workdir / f"{library}_y.npy")
            result["loss"] = ials.calculate_loss(
                matrix, x, y, args.regularization, alpha=args.alpha
            )
            result["factors"] = (x, y)
            results[library] = result

    for library, result in results.items():
        result["median_iteration_s"] = statistics.median(result["iteration_s"])
        result["median_fit_s"] = statistics.median(result["fit_s"])
        print(
            f"{library} {result['version']}: median {result['median_iteration_s']:.4f} s/iteration "
            f"(min {min(result['iteration_s']):.4f}), median fit {result['median_fit_s']:.3f} s, "
            f"peak RSS {result['peak_rss_mib']:.0f} MiB "
            f"(+{result['peak_rss_mib'] - result['peak_rss_before_fit_mib']:.0f} MiB in fit), "
            f"final loss {result['loss']:.6g}"
        )
    ratio = float("nan")
    if len(results) == 2:
        ratio = results["implicit"]["median_iteration_s"] / results["ials"]["median_iteration_s"]
        diffs = []
        for ours, theirs in zip(
            results["ials"]["factors"], results["implicit"]["factors"], strict=True
        ):
            diffs.append(
                float(np.linalg.norm(ours - theirs, "fro") / np.linalg.norm(theirs, "fro"))
            )
        print(f"ratio implicit/ials per iteration: {ratio:.2f}x")
        print(
            f"relative difference of final factors (users, items): {diffs[0]:.2e}, {diffs[1]:.2e}"
        )

    solver = f"cg{args.cg_steps}" if args.use_cg else "exact"
    if args.block_size is not None:
        solver = f"block{args.block_size} (ials; implicit {solver})"
    ratio_text = "-" if np.isnan(ratio) else f"{ratio:.2f}"
    command = shlex.join(["python", "benches/bench_fit.py", *argv])
    date = dt.date.today().isoformat()

    def cell(library: str, key: str, fmt: str) -> str:
        return format(results[library][key], fmt) if library in results else "-"

    def rss(library: str) -> str:
        return cell(library, "peak_rss_mib", ".0f")

    header = (
        "| date | machine | dataset | users x items, nnz | solver | factors | "
        "iterations x repeats | threads | dtype | ials s/iter | implicit s/iter | implicit/ials | "
        "ials peak RSS MiB | implicit peak RSS MiB | ials loss | implicit loss | command |"
    )
    row = (
        f"| {date} | {machine()} | {args.dataset} | {n_users} x {n_items}, {matrix.nnz} | "
        f"{solver} | {args.factors} | {args.iterations} x {args.repeats} | {args.threads} | "
        f"{args.dtype} | {cell('ials', 'median_iteration_s', '.4f')} | "
        f"{cell('implicit', 'median_iteration_s', '.4f')} | {ratio_text} | {rss('ials')} | "
        f"{rss('implicit')} | {cell('ials', 'loss', '.6g')} | {cell('implicit', 'loss', '.6g')} | "
        f"`{command}` |"
    )
    print()
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    print(row)

    if args.json:
        payload = {
            "command": command,
            "date": date,
            "machine": machine(),
            "args": {k: str(v) for k, v in vars(args).items()},
            "shape": [n_users, n_items],
            "nnz": int(matrix.nnz),
            "results": {
                lib: {k: v for k, v in r.items() if k != "factors"} for lib, r in results.items()
            },
            "ratio_implicit_over_ials": ratio,
        }
        args.json.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
