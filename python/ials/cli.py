"""The ``ials`` command line (also ``python -m ials``)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import numpy as np

from . import datasets
from .als import AlternatingLeastSquares


def _demo(args: argparse.Namespace) -> int:
    """Fits the embedded synthetic listening data and checks recommendations against the
    planted taste groups."""
    matrix, groups = datasets.synthetic(
        n_users=args.users, n_items=args.items, random_state=args.seed
    )
    print(
        f"synthetic listening data: {matrix.shape[0]} users x {matrix.shape[1]} items, "
        f"{matrix.nnz} interactions, {groups.item_group.max() + 1} planted taste groups"
    )
    model = AlternatingLeastSquares(
        factors=args.factors,
        iterations=args.iterations,
        regularization=0.05,
        random_state=args.seed,
        calculate_training_loss=True,
    )
    start = time.perf_counter()
    model.fit(matrix, show_progress=not args.quiet)
    print(f"fit: {args.iterations} iterations in {time.perf_counter() - start:.2f} s")
    top_n = 10
    top, _ = model.recommend_all(matrix, N=top_n)  # only items the user has not played
    in_group = groups.item_group[top] == groups.user_group[:, None]
    for user in range(args.show):
        marked = zip(top[user], in_group[user], strict=True)
        items = ", ".join(f"{item}{'*' if match else ''}" for item, match in marked)
        print(f"user {user} (taste group {groups.user_group[user]}): {items}")
    share = in_group.mean()
    chance = np.mean(groups.item_group[:, None] == np.arange(groups.item_group.max() + 1))
    print(
        f"* = in the user's planted taste group; {share:.1%} of all top-{top_n} "
        f"recommendations are (about {chance:.1%} by chance)"
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ials", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="fit the embedded synthetic data and show results")
    demo.add_argument("--users", type=int, default=2000)
    demo.add_argument("--items", type=int, default=1000)
    demo.add_argument("--factors", type=int, default=32)
    demo.add_argument("--iterations", type=int, default=10)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--show", type=int, default=5, help="users whose top items are printed")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except (ValueError, TypeError) as err:
        print(f"ials {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
