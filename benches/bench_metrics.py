"""Time ``ranking_metrics_at_k`` of ials and implicit 0.7.3 side by side on gowalla.

Both evaluate the same factors (a short seeded ials fit on gowalla's train.txt) against test.txt at
the same K with the same thread count: ials through ``ials.evaluation.ranking_metrics_at_k``,
implicit through ``implicit.evaluation.ranking_metrics_at_k`` on an implicit CPU model holding
the same factors (its evaluation ranks with the model's ``num_threads``). OpenBLAS is limited to
one thread for implicit (its own advice). Also prints ials' Recall@20 / NDCG@20 on the split.

ials is timed twice: with every metric (``full_ranking=True``, the default: the exact rank of
every test item, for AUC and the percentile ranking) and with the metrics at the cutoff only
(``full_ranking=False``: each user's top K, which is what implicit computes). The three runs
alternate within each repeat.

    python benches/bench_metrics.py --factors 64 --repeats 5 --threads 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _data
import ials
from bench_fit import machine
from ials.evaluation import ranking_metrics_at_k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from implicit.cpu.als import AlternatingLeastSquares as ImplicitALS
    from implicit.evaluation import ranking_metrics_at_k as implicit_metrics
    from threadpoolctl import threadpool_limits

    train, test = _data.gowalla()
    model = ials.AlternatingLeastSquares(
        factors=args.factors,
        iterations=args.iterations,
        regularization=0.01,
        random_state=0,
        num_threads=args.threads,
    )
    model.fit(train, show_progress=False)
    peer = ImplicitALS(factors=args.factors, num_threads=args.threads)
    peer.user_factors, peer.item_factors = model.user_factors, model.item_factors

    runs = ("ials", "ials top-K", "implicit")
    times: dict[str, list[float]] = {name: [] for name in runs}
    results = {}
    for _ in range(args.repeats):
        for name, full_ranking in (("ials", True), ("ials top-K", False)):
            start = time.perf_counter()
            results[name] = ranking_metrics_at_k(
                model,
                train,
                test,
                K=args.k,
                show_progress=False,
                num_threads=args.threads,
                full_ranking=full_ranking,
            )
            times[name].append(time.perf_counter() - start)
        with threadpool_limits(1, "blas"):
            start = time.perf_counter()
            results["implicit"] = implicit_metrics(peer, train, test, K=args.k, show_progress=False)
            times["implicit"].append(time.perf_counter() - start)

    ials_s, top_s, implicit_s = (statistics.median(times[name]) for name in runs)
    ours, top, theirs = (results[name] for name in runs)
    command = "python " + shlex.join(["benches/bench_metrics.py", *sys.argv[1:]])
    print(
        f"ials {ials_s:.3f} s ({implicit_s / ials_s:.2f}x), ials top-K {top_s:.3f} s "
        f"({implicit_s / top_s:.2f}x), implicit {implicit_s:.3f} s"
    )
    for name in runs:
        print(f"{name}: {results[name]}")
    print(
        "\n| date | machine | factors | K | threads | ials s (all metrics) | implicit / ials "
        "| ials s (top-K metrics) | implicit / ials | implicit s | ndcg (ials / implicit) "
        "| map (ials / implicit) | ials recall | command |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {dt.date.today()} | {machine()} | {args.factors} | {args.k} | {args.threads} "
        f"| {ials_s:.3f} | {implicit_s / ials_s:.2f} | {top_s:.3f} | {implicit_s / top_s:.2f} "
        f"| {implicit_s:.3f} | {ours['ndcg']:.4f} / {theirs['ndcg']:.4f} "
        f"| {ours['map']:.4f} / {theirs['map']:.4f} | {ours['recall']:.4f} | `{command}` |"
    )
    same = all(top[name] == ours[name] for name in ("precision", "recall", "map", "ndcg"))
    print(f"top-K metrics identical to the full ranking's: {same}")


if __name__ == "__main__":
    main()
