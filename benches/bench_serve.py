"""A bounded load test of ``ials serve``: one-user recommendations over loopback.

Builds a model bundle (a seeded ials fit of gowalla's training split, ids 0..n-1, unless
``--model`` names one), starts ``ials serve`` on 127.0.0.1 at a free port, and, for each number
of concurrent clients, sends a fixed number of ``POST /recommend`` requests (one user each, N,
already liked items filtered, users drawn with a fixed seed) over keep-alive connections. Reports
requests per second and the p50 / p99 latency seen by the clients, checks every answer is a 200,
then stops the server. Nothing leaves the machine and every run ends by itself.

The clients are processes on the same machine: they share its cores with the server, as a
co-located proxy would, so the numbers are a floor for what the server alone could do.

    python benches/bench_serve.py --factors 64 --clients 1,4,8 --requests 4000
    python benches/bench_serve.py --data synthetic --users 2000 --items 500 --factors 8 \\
        --requests 300 --clients 1,4        # a smoke run in seconds
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _data
import ials
from bench_fit import machine


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", help="serve this bundle instead of fitting one")
    parser.add_argument("--data", choices=("gowalla", "synthetic"), default="gowalla")
    parser.add_argument("--users", type=int, default=2000, help="synthetic data only")
    parser.add_argument("--items", type=int, default=500, help="synthetic data only")
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=3, help="sweeps of the fit")
    parser.add_argument("--clients", default="1,2,4,8", help="concurrent clients, comma-separated")
    parser.add_argument("--requests", type=int, default=4000, help="timed requests per row")
    parser.add_argument("--warmup", type=int, default=100, help="untimed requests per row")
    parser.add_argument("-n", type=int, default=10, help="items per answer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds for the whole run")
    parser.add_argument("--threads", type=int, help="ials serve --threads (default: the model's)")
    return parser.parse_args(argv)


def build_bundle(args: argparse.Namespace, directory: Path) -> Path:
    if args.data == "gowalla":
        matrix, _ = _data.gowalla()
    else:
        matrix = _data.synthetic(args.users, args.items, nnz=args.users * 20, random_state=0)
    model = ials.AlternatingLeastSquares(
        factors=args.factors, iterations=args.iterations, random_state=args.seed
    )
    bundle = ials.Recommender.fit(ials.Interactions(matrix), model)
    path = directory / "bundle.npz"
    bundle.save(path)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_server(
    path: Path, port: int, threads: int | None, deadline: float
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "ials", "serve", str(path), "--port", str(port), "--quiet"]
    if threads is not None:
        command += ["--threads", str(threads)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/health"
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with code {server.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("the server did not start in time")
        time.sleep(0.1)


def client(url: str, users: list[Any], n: int, deadline: float, barrier: Any, results: Any) -> None:
    """One client process: connects, waits for the others, then sends its requests in turn."""
    latencies = []
    error = None
    with httpx.Client(base_url=url, timeout=60) as http:
        http.get("/health")  # the connection is open before the clock starts
        barrier.wait()
        start = time.monotonic()
        for user in users:
            if time.monotonic() > deadline:
                error = "the run went past --timeout"
                break
            sent = time.perf_counter()
            response = http.post("/recommend", json={"user": user, "n": n})
            latencies.append(time.perf_counter() - sent)
            if response.status_code != 200:
                error = f"HTTP {response.status_code}: {response.text}"
                break
        end = time.monotonic()
    results.put((start, end, latencies, error))


def run_clients(
    url: str, users: np.ndarray, clients: int, n: int, deadline: float
) -> tuple[float, list[float]]:
    """Sends one request per user, split among ``clients`` processes (threads of one process
    would share its GIL: the client, not the server, would set the pace); returns the wall
    seconds from the first request sent to the last answer, and every request's latency."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(clients), context.Queue()
    workers = [
        context.Process(
            target=client, args=(url, share.tolist(), n, deadline, barrier, results), daemon=True
        )
        for share in np.array_split(users, clients)
    ]
    for worker in workers:
        worker.start()
    try:
        parts = [results.get(timeout=max(1.0, deadline - time.monotonic())) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()
    errors = [error for *_, error in parts if error]
    if errors:
        raise RuntimeError(errors[0])
    wall = max(end for _, end, _, _ in parts) - min(start for start, *_ in parts)
    return wall, [value for _, _, latencies, _ in parts for value in latencies]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    deadline = time.monotonic() + args.timeout
    counts = [int(c) for c in args.clients.split(",")]
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(args.model) if args.model else build_bundle(args, Path(scratch))
        info = ials.Recommender.load(path).info()
        port = free_port()
        server = start_server(path, port, args.threads, deadline)
        try:
            url = f"http://127.0.0.1:{port}"
            rng = np.random.default_rng(args.seed)
            ids = ials.Recommender.load(path).user_ids
            rows = []
            for clients in counts:
                run_clients(url, rng.choice(ids, args.warmup), clients, args.n, deadline)
                wall, latencies = run_clients(
                    url, rng.choice(ids, args.requests), clients, args.n, deadline
                )
                quantiles = statistics.quantiles(latencies, n=100, method="inclusive")
                rows.append((clients, len(latencies) / wall, quantiles[49], quantiles[98]))
        finally:
            server.terminate()
            server.wait(timeout=30)
    threads = "as saved in the model" if args.threads is None else str(args.threads)
    print(f"# ials serve load test, {dt.date.today()}")
    print(f"machine: {machine()}; ials {ials.__version__}")
    print(f"command: python {shlex.join(sys.argv)}")
    print(
        f"bundle: {info['users']} users x {info['items']} items, "
        f"k={info['settings']['factors']}, server threads per call {threads}; "
        f"POST /recommend N={args.n}, liked items filtered; "
        f"{args.requests} timed requests per row after {args.warmup} untimed"
    )
    print()
    print("| clients | requests/s | p50 ms | p99 ms |")
    print("|---:|---:|---:|---:|")
    for clients, rate, p50, p99 in rows:
        print(f"| {clients} | {rate:.0f} | {p50 * 1e3:.2f} | {p99 * 1e3:.2f} |")


if __name__ == "__main__":
    main()
