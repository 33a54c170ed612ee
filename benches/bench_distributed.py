"""Overhead of ``ials.distributed.fit`` on a local Dask cluster against one-machine ``fit``.

Both fits get the same matrix, parameters and starting factors and the same number of cores in
all: the single-machine fit runs with ``--workers x --threads`` Rayon threads in this process; the
distributed fit runs on a ``LocalCluster`` of ``--workers`` worker processes (one Dask thread
each), every block task solving with ``--threads`` Rayon threads, the client being this process.
The two fits alternate ``--repeats`` times (so that load from elsewhere hits both alike) and the
medians of their per-iteration times (from the fit callback) are compared; the distributed run
also reports the one-off time to split the matrix into blocks and ship them. The final factors
of the two fits are compared (they should be bitwise identical), and the bytes that cross the
network per iteration are computed from the formula in the README.

    python benches/bench_distributed.py --dataset gowalla --factors 64 --iterations 5 --repeats 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _data
from bench_fit import machine


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["gowalla", "synthetic"], default="gowalla")
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="Rayon threads per worker")
    parser.add_argument("--blocks", type=int, help="blocks per side (default: one per worker)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--direct", action="store_true", help="Client(direct_to_workers=True): skip the scheduler"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("factors", "iterations", "workers", "threads", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    return args


def load_matrix(args: argparse.Namespace) -> sp.csr_matrix:
    if args.dataset == "gowalla":
        train, _test = _data.gowalla()
        return train
    return _data.synthetic(100_000, 20_000, 3_000_000, random_state=args.seed)


def network_bytes(users: int, items: int, k: int, workers: int, itemsize: int) -> dict[str, int]:
    """Bytes per iteration after the first, without training loss (the README's formula)."""
    factors = (users + items) * k * itemsize
    chunks = math.ceil(users / 4096) + math.ceil(items / 4096)
    return {
        "broadcast": workers * (factors + 2 * k * k * 8),  # fixed side + Gram to every worker
        "gather": factors + chunks * k * k * 8,  # new rows and Gram pieces, workers -> client
        "total": (workers + 1) * factors + (2 * workers + chunks) * k * k * 8,
    }


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)

    import ials
    import ials.distributed
    from distributed import Client, LocalCluster

    matrix = load_matrix(args)
    n_users, n_items = matrix.shape
    print(f"{args.dataset}: {n_users} users x {n_items} items, nnz {matrix.nnz}", flush=True)
    params = dict(factors=args.factors, iterations=args.iterations, random_state=args.seed)

    single_s: list[float] = []
    distributed_s: list[float] = []
    setups: list[float] = []
    with (
        LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        ) as cluster,
        Client(cluster, direct_to_workers=args.direct) as client,
    ):
        for _ in range(args.repeats):  # alternate, so that load from elsewhere hits both alike
            single = ials.AlternatingLeastSquares(**params, num_threads=args.workers * args.threads)
            single.fit(matrix, show_progress=False, callback=lambda _i, s, _l: single_s.append(s))
            start = time.perf_counter()
            data = ials.distributed.DistributedInteractions(client, matrix, n_blocks=args.blocks)
            setups.append(time.perf_counter() - start)
            model = ials.AlternatingLeastSquares(**params)
            ials.distributed.fit(
                client,
                data,
                model,
                num_threads=args.threads,
                show_progress=False,
                callback=lambda _i, s, _l: distributed_s.append(s),
            )
            blocks = (data.n_user_blocks, data.n_item_blocks)
            data.close()

    identical = np.array_equal(model.user_factors, single.user_factors) and np.array_equal(
        model.item_factors, single.item_factors
    )
    one = statistics.median(single_s)
    many = statistics.median(distributed_s)
    setup = statistics.median(setups)
    moved = network_bytes(n_users, n_items, args.factors, args.workers, 4)
    print(f"single machine ({args.workers * args.threads} threads): {one:.4f} s/iteration")
    print(
        f"distributed ({args.workers} workers x {args.threads} threads, {blocks[0]} user / "
        f"{blocks[1]} item blocks): {many:.4f} s/iteration, setup {setup:.2f} s"
    )
    print(f"overhead: {many / one:.2f}x per iteration (+{many - one:.4f} s)")
    print(f"factors bitwise identical: {identical}")
    print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()}")
    print("network bytes per iteration: " + ", ".join(f"{k} {v:,}" for k, v in moved.items()))
    command = shlex.join(["python", "benches/bench_distributed.py", *argv])
    print()
    print(
        "| date | machine | dataset | factors | workers x threads | blocks (users/items) | "
        "single s/iter | distributed s/iter | overhead | setup s | identical | command |"
    )
    print("|" + "---|" * 12)
    print(
        f"| {dt.date.today().isoformat()} | {machine()} | {args.dataset} {n_users} x {n_items}, "
        f"{matrix.nnz} | {args.factors} | {args.workers} x {args.threads} | "
        f"{blocks[0]}/{blocks[1]} | {one:.4f} | {many:.4f} | {many / one:.2f}x | {setup:.2f} | "
        f"{identical} | `{command}` |"
    )


if __name__ == "__main__":
    main()
