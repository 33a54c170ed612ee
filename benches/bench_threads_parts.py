"""Where a sweep's time goes at each thread count: the Gram matrix and the row solves of each
half-sweep, timed apart (gowalla, CG), so that a sweep that scales worse than its parts shows
which part holds it back.

    python benches/bench_threads_parts.py --factors 64 128 --threads 1 2 4 8 16

Each part is timed as the median of ``--repeats`` calls after one warm-up, on factors from a
short seeded fit; the row solves update the factors in place, which leaves their cost unchanged
(CG runs a fixed number of steps).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _data
import ials
from bench_fit import machine
from ials import _native
from ials._validation import core_rows, transpose


def median_ms(call: Callable[[], object], repeats: int) -> float:
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factors", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    train, _ = _data.gowalla()
    print(f"gowalla {train.shape[0]} x {train.shape[1]}, nnz {train.nnz}; {machine()}")
    print(f"`python benches/bench_threads_parts.py {' '.join(sys.argv[1:])}`\n")
    print(
        "| factors | threads | gram(items) ms | users ms | gram(users) ms | items ms | sweep ms "
        "| sweep speed-up | users speed-up | items speed-up |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for k in args.factors:
        model = ials.AlternatingLeastSquares(factors=k, iterations=2, random_state=0)
        model.fit(train, show_progress=False)
        settings = model.fit_settings()
        objective, solver = settings.objective, settings.solver.native()
        user_rows, item_rows = core_rows(train), core_rows(transpose(train))
        x, y = model.user_factors, model.item_factors
        base: dict[str, float] = {}
        for t in args.threads:
            gram_y = _native.gram(y, t)
            gram_x = _native.gram(x, t)
            solve = _native.solve_rows
            parts = {
                "gram_items": median_ms(partial(_native.gram, y, t), args.repeats),
                "users": median_ms(
                    partial(solve, user_rows, x, y, gram_y, objective, solver, t), args.repeats
                ),
                "gram_users": median_ms(partial(_native.gram, x, t), args.repeats),
                "items": median_ms(
                    partial(solve, item_rows, y, x, gram_x, objective, solver, t), args.repeats
                ),
            }
            parts["sweep"] = sum(parts.values())
            base = base or parts
            print(
                f"| {k} | {t} | {parts['gram_items']:.2f} | {parts['users']:.2f} "
                f"| {parts['gram_users']:.2f} | {parts['items']:.2f} | {parts['sweep']:.2f} "
                f"| {base['sweep'] / parts['sweep']:.2f}x | {base['users'] / parts['users']:.2f}x "
                f"| {base['items'] / parts['items']:.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
