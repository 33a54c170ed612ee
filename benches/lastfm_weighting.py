"""Which confidence weighting and which regularization rank best on Last.fm play counts?

The README's worked example for the paper's weightings (Hu, Koren & Volinsky 2008, section 4) and
the frequency-scaled regularization with an unobserved weight (Rendle et al., RecSys 2022), on
``../shared/data/lastfm-2k/user_artists.dat`` (HetRec 2011: 1892 users, 17632 artists, play
counts).

Protocol:

- ``ials.splits.per_user_split`` holds out 20% of every user's artists (seed ``--seed``) as the
  test set; the same split of the training part (seed ``--seed + 1``) gives a validation set.
- Three weightings of the play counts r: (a) raw counts with the model's ``alpha`` (c = alpha r),
  (b) ``ials.confidence.linear`` (c = 1 + alpha r), (c) ``ials.confidence.log``
  (c = 1 + alpha log(1 + r / eps), eps = 1); (b) and (c) are fitted with the model's alpha = 1.
- Two regularizations: plain lambda (regularization_exponent 0, unobserved_weight 1, implicit's
  model), and frequency-scaled lambda (n_u + alpha0 n_items)^1 with a small unobserved weight
  alpha0.
- Every (weighting, regularization) pair picks its alpha, lambda (and alpha0) from a small grid by
  NDCG@20 on the validation set, is refitted with them on the whole training part, and is scored
  on the test set by ``ials.evaluation.ranking_metrics_at_k(model, train, test, K=20)`` (training
  items are never ranked; recall = hits / |test_u|). The most-popular ranking is a baseline.

    python benches/lastfm_weighting.py
    python benches/lastfm_weighting.py --factors 64 --iterations 15 --threads 2 --seed 0
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ials
import numpy as np
import scipy.sparse as sp
from ials.evaluation import ranking_metrics_at_k

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _data
from bench_fit import machine

K = 20
LOG_EPS = 1.0
# The weighting's alpha, for plain and for frequency-scaled regularization (raw counts reach
# 352698, median 260); plain lambda prefers larger alphas than the scaled one with a small alpha0.
ALPHAS = {
    ("raw", False): (0.003, 0.01, 0.03),
    ("raw", True): (0.0003, 0.001, 0.003),
    ("linear", False): (0.003, 0.01, 0.03),
    ("linear", True): (0.0003, 0.001, 0.003),
    ("log", False): (1.0, 4.0, 16.0),
    ("log", True): (0.0625, 0.25, 1.0),
}
WEIGHTINGS = ("raw", "linear", "log")
PLAIN_LAMBDAS = (3.0, 10.0, 30.0, 100.0, 300.0)
SCALED_LAMBDAS = (0.003, 0.01, 0.03)
UNOBSERVED_WEIGHTS = (0.01, 0.03, 0.1, 0.3)
WEIGHTING_LABEL = {
    "raw": "raw counts, c = alpha r",
    "linear": "`confidence.linear`, c = 1 + alpha r",
    "log": "`confidence.log`, c = 1 + alpha log(1 + r)",
}


@dataclass
class Setting:
    weighting: str
    scaled: bool
    alpha: float
    regularization: float
    unobserved_weight: float = 1.0

    def describe(self) -> str:
        text = f"alpha {self.alpha:g}, lambda {self.regularization:g}"
        if self.scaled:
            text += f", alpha0 {self.unobserved_weight:g}"
        return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="split and initial factors")
    return parser.parse_args(argv)


def weighted(plays: sp.csr_matrix, setting: Setting) -> tuple[sp.csr_matrix, float]:
    """(matrix to fit, the model's alpha) for a setting."""
    if setting.weighting == "raw":
        return plays, setting.alpha
    if setting.weighting == "linear":
        return ials.confidence.linear(plays, setting.alpha), 1.0
    return ials.confidence.log(plays, setting.alpha, LOG_EPS), 1.0


def grid(weighting: str, scaled: bool) -> list[Setting]:
    if scaled:
        return [
            Setting(weighting, True, alpha, reg, w0)
            for alpha, reg, w0 in itertools.product(
                ALPHAS[weighting, True], SCALED_LAMBDAS, UNOBSERVED_WEIGHTS
            )
        ]
    return [
        Setting(weighting, False, alpha, reg)
        for alpha, reg in itertools.product(ALPHAS[weighting, False], PLAIN_LAMBDAS)
    ]


def evaluate(
    args: argparse.Namespace, setting: Setting, train: sp.csr_matrix, test: sp.csr_matrix
) -> dict[str, float]:
    matrix, alpha = weighted(train, setting)
    model = ials.AlternatingLeastSquares(
        factors=args.factors,
        iterations=args.iterations,
        regularization=setting.regularization,
        alpha=alpha,
        regularization_exponent=1.0 if setting.scaled else 0.0,
        unobserved_weight=setting.unobserved_weight,
        num_threads=args.threads,
        random_state=args.seed,
    )
    model.fit(matrix, show_progress=False)
    return ranking_metrics_at_k(
        model, train, test, K=K, show_progress=False, num_threads=args.threads
    )


class Popularity:
    """Ranks artists by their number of training listeners (ties by lower id)."""

    def __init__(self, train: sp.csr_matrix) -> None:
        listeners = np.bincount(train.indices, minlength=train.shape[1]).astype(np.float64)
        self.user_factors = np.ones((train.shape[0], 1))
        self.item_factors = listeners[:, None]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    start = time.perf_counter()
    plays = _data.lastfm().plays
    train, test = ials.splits.per_user_split(plays, 0.2, random_state=args.seed)
    fit_part, validation = ials.splits.per_user_split(train, 0.2, random_state=args.seed + 1)

    rows: list[tuple[Setting, float, dict[str, Any]]] = []
    for weighting, scaled in itertools.product(WEIGHTINGS, (False, True)):
        scored = []
        for setting in grid(weighting, scaled):
            ndcg = evaluate(args, setting, fit_part, validation)["ndcg"]
            scored.append((ndcg, setting))
        best_ndcg, best = max(scored, key=lambda pair: pair[0])
        metrics = evaluate(args, best, train, test)
        rows.append((best, best_ndcg, metrics))
        print(
            f"{weighting:6s} {'scaled' if scaled else 'plain':6s} {best.describe():40s} "
            f"val ndcg {best_ndcg:.4f}  test ndcg {metrics['ndcg']:.4f} "
            f"recall {metrics['recall']:.4f}  ({len(scored)} settings, "
            f"{time.perf_counter() - start:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
    popular = ranking_metrics_at_k(Popularity(train), train, test, K=K, show_progress=False)
    popular_val = ranking_metrics_at_k(
        Popularity(fit_part), fit_part, validation, K=K, show_progress=False
    )
    elapsed = time.perf_counter() - start

    command = shlex.join(["python", "benches/lastfm_weighting.py", *argv])
    print(f"- command: `{command}`")
    print(f"- date: {dt.datetime.now().astimezone().isoformat(timespec='minutes')}")
    print(f"- machine: {machine()}; ials {ials.__version__}; {elapsed:.0f} s in all")
    print(
        f"- lastfm-2k: {plays.shape[0]} users x {plays.shape[1]} artists, {plays.nnz} play "
        f"counts; per-user 80/20 split (seed {args.seed}): {train.nnz} train, {test.nnz} test, "
        f"{popular['users']} test users; factors {args.factors}, {args.iterations} iterations "
        "(CG), parameters chosen by validation NDCG@20 on a further 80/20 split of train"
    )
    print()
    print(
        f"| weighting | regularization | chosen by validation | val NDCG@{K} | "
        f"test NDCG@{K} | test Recall@{K} |"
    )
    print("|---|---|---|---|---|---|")
    for setting, val_ndcg, metrics in rows:
        regularization = (
            "frequency-scaled (nu = 1)" if setting.scaled else "plain lambda (nu = 0, alpha0 = 1)"
        )
        print(
            f"| {WEIGHTING_LABEL[setting.weighting]} | {regularization} | {setting.describe()} | "
            f"{val_ndcg:.4f} | {metrics['ndcg']:.4f} | {metrics['recall']:.4f} |"
        )
    print(
        f"| most popular (baseline) | - | - | {popular_val['ndcg']:.4f} | "
        f"{popular['ndcg']:.4f} | {popular['recall']:.4f} |"
    )


if __name__ == "__main__":
    main()
