"""Rendle et al.'s protocol on Gowalla: tune at a starting size, double the factors while
validation improves, then refit the chosen settings on all training data and evaluate once on the
test split (Recall@20 = hits / |test items|, NDCG@20, as the LightGCN papers report them).

Validation is carved from the training data only (``per_user_split(train, 0.2,
random_state=1)``); ``ials.tune.scale_dimension`` selects on NDCG@20 there. The test split is read
once, at the end.

    python benches/quality_scaling.py --max-factors 1024 --trials-per-size 4 --budget 1000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _data
from ials.evaluation import ranking_metrics_at_k
from ials.splits import per_user_split
from ials.tune import scale_dimension


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--factors", type=int, default=128, help="starting size")
    parser.add_argument("--max-factors", type=int, default=1024)
    parser.add_argument("--trials-per-size", type=int, default=4)
    parser.add_argument("--budget", type=float, default=1000.0, help="seconds of tuning in all")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    train, test = _data.gowalla()
    fit_part, validation = per_user_split(train, 0.2, random_state=args.seed + 1)
    started = time.perf_counter()
    result = scale_dimension(
        fit_part,
        validation,
        factors=args.factors,
        max_factors=args.max_factors,
        trials_per_size=args.trials_per_size,
        budget_seconds=args.budget,
        random_state=args.seed,
        K=20,
        metric="ndcg",
        show_progress=False,
        num_threads=args.threads,
    )
    tuning_s = time.perf_counter() - started
    print(result.to_markdown(), flush=True)
    print("chosen factors", result.factors, "settings", json.dumps(result.params, default=str))
    started = time.perf_counter()
    model = result.make_model()
    model.fit(result.transform(train), show_progress=False)
    fit_s = time.perf_counter() - started
    metrics = ranking_metrics_at_k(
        model, train, test, K=20, show_progress=False, full_ranking=False
    )
    print(
        f"test Recall@20 {metrics['recall']:.4f} NDCG@20 {metrics['ndcg']:.4f}; "
        f"tuning {tuning_s:.0f} s, final fit {fit_s:.0f} s"
    )


if __name__ == "__main__":
    main()
