"""Training loss against time for ials' row solvers: which one reaches a given loss first.

Time per iteration alone does not say which solver is fastest: an iteration of the block solver
(iALS++) costs more than three CG steps but may lower the loss more. This script fits each
``--solvers`` entry from the same starting factors (``bench_fit.py``'s: uniform in [0, 0.01),
seeded) one iteration at a time, warm-started. After each it records the cumulative iteration time
(as the fit's callback reports it) and the training loss (``ials.calculate_loss``, computed
outside the timing). Then, for every loss some solver reached, it prints how long each solver took
to get there.

    python benches/bench_progress.py --dataset synthetic --factors 1024 --solvers cg3:16 block32:5
"""

from __future__ import annotations

import argparse
from typing import Any

import _data
import ials
import numpy as np
import scipy.sparse as sp


def load_matrix(args: argparse.Namespace) -> sp.csr_matrix:
    if args.dataset == "gowalla":
        return _data.gowalla()[0]
    return _data.synthetic(random_state=args.seed)


def solver_settings(name: str) -> dict[str, Any]:
    """``cgN`` (N CG steps), ``blockB`` (the block solver, blocks of B) or ``exact``."""
    name = name.split(":")[0]
    if name.startswith("cg"):
        return {"use_cg": True, "cg_steps": int(name[2:])}
    if name.startswith("block"):
        return {"solver": "block", "block_size": int(name[5:])}
    if name == "exact":
        return {"use_cg": False}
    raise SystemExit(f"unknown solver {name!r}: use cgN, blockB or exact")


def progress(
    matrix: sp.csr_matrix, args: argparse.Namespace, name: str
) -> list[tuple[float, float]]:
    """(cumulative seconds, loss) after each iteration, from `bench_fit.py`'s starting factors."""
    rng = np.random.default_rng(args.seed)
    x = rng.random((matrix.shape[0], args.factors), dtype=np.float32) * 0.01
    y = rng.random((matrix.shape[1], args.factors), dtype=np.float32) * 0.01
    model = ials.AlternatingLeastSquares(
        factors=args.factors,
        regularization=args.regularization,
        iterations=1,
        num_threads=args.threads,
        **solver_settings(name),
    )
    model.user_factors, model.item_factors = x, y
    # Each iteration's time as the fit reports it (as in `bench_fit.py`), without the fit's
    # one-time setup.
    seconds: list[float] = []
    points = []
    name, _, iterations = name.partition(":")
    for _ in range(int(iterations or args.iterations)):
        model.fit(matrix, show_progress=False, callback=lambda _i, s, _l: seconds.append(s))
        elapsed = sum(seconds)
        loss = ials.calculate_loss(
            matrix,
            model.user_factors,
            model.item_factors,
            args.regularization,
            num_threads=args.threads,
        )
        points.append((elapsed, loss))
        print(f"{name}: iteration {len(points)}, {elapsed:.2f} s, loss {loss:.6g}", flush=True)
    return points


def time_to(points: list[tuple[float, float]], target: float) -> str:
    """The time of the first iteration whose loss is at most ``target``, or ``-``."""
    return next((f"{t:.3g} s" for t, loss in points if loss <= target), "-")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=("gowalla", "synthetic"), default="synthetic")
    parser.add_argument("--factors", type=int, default=1024)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument(
        "--solvers",
        nargs="+",
        default=["cg3", "block32"],
        help="cgN, blockB or exact, each optionally :ITERATIONS (else --iterations)",
    )
    parser.add_argument("--regularization", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    matrix = load_matrix(args).tocsr()
    matrix.sum_duplicates()
    runs = {name: progress(matrix, args, name) for name in args.solvers}
    targets = sorted({loss for points in runs.values() for _, loss in points}, reverse=True)
    print(f"\n| loss reached | {' | '.join(runs)} |")
    print(f"|---|{'---|' * len(runs)}")
    for target in targets:
        cells = " | ".join(time_to(points, target) for points in runs.values())
        print(f"| {target:.6g} | {cells} |")


if __name__ == "__main__":
    main()
