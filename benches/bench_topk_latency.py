"""Time small ``recommend`` calls of ials and implicit 0.7.3 side by side: one user, and batches.

Serving often asks for one user, or a few, at a time. Per-call costs that vanish in a batch of
all users (preparing the items, dispatching threads) decide these. Both libraries hold the same
factors (a short seeded ials fit on gowalla) and get the same user rows, N and thread count;
implicit runs with ``OPENBLAS_NUM_THREADS=1`` (its own advice). For each batch size, each run
times enough consecutive calls to last about 0.2 s and reports the mean per call; the median of
``--repeats`` runs is printed, the two libraries alternating run by run.

    python benches/bench_topk_latency.py --factors 64 --repeats 5 --threads 2
"""

from __future__ import annotations

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"

import argparse
import datetime as dt
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _data
import ials
from bench_fit import machine


def per_call(model: Any, users: np.ndarray, rows: Any, n: int, single: bool) -> float:
    """Mean seconds per call over about 0.2 s of consecutive calls."""
    call = (
        (lambda: model.recommend(int(users[0]), rows, N=n))
        if single
        else (lambda: model.recommend(users, rows, N=n))
    )
    call()
    calls, start = 0, time.perf_counter()
    while True:
        call()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed > 0.2:
            return elapsed / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32, 128, 512])
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from implicit.cpu.als import AlternatingLeastSquares as ImplicitALS

    train, _ = _data.gowalla()
    model = ials.AlternatingLeastSquares(
        factors=args.factors, iterations=3, random_state=0, num_threads=args.threads
    )
    model.fit(train, show_progress=False)
    peer = ImplicitALS(factors=args.factors, num_threads=args.threads)
    peer.user_factors, peer.item_factors = model.user_factors, model.item_factors
    libraries = {"ials": model, "implicit": peer}

    command = "python " + shlex.join(["benches/bench_topk_latency.py", *sys.argv[1:]])
    print(f"- command: `{command}`")
    print(f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%dT%H:%M}+00:00, machine: {machine()}")
    print(f"- gowalla, {args.factors} factors, N = {args.n}, liked items filtered, ")
    print(f"  {args.threads} threads, median of {args.repeats} runs\n")
    print("| users per call | ials ms | implicit ms | implicit / ials |")
    print("|---|---|---|---|")
    rng = np.random.default_rng(0)
    for batch in args.batches:
        users = np.sort(rng.choice(train.shape[0], size=batch, replace=False))
        single = batch == 1
        rows = train[users[0]] if single else train[users]
        times: dict[str, list[float]] = {name: [] for name in libraries}
        for _ in range(args.repeats):
            for name, library in libraries.items():
                times[name].append(per_call(library, users, rows, args.n, single))
        ours, theirs = (statistics.median(times[name]) * 1e3 for name in libraries)
        label = "1 (`recommend(userid, row)`)" if single else str(batch)
        print(f"| {label} | {ours:.2f} | {theirs:.2f} | {theirs / ours:.2f} |")


if __name__ == "__main__":
    main()
