"""The seam to the Rust core: the only module that imports :mod:`ials._core`.

Everything crossing into Rust goes through these names, typed by ``_core.pyi``, so mypy checks
every call at the seam. Arguments must already be validated and normalised (see
:mod:`ials._validation`); the core re-checks the invariants it relies on.
"""

from __future__ import annotations

from ._core import (
    GRAM_BLOCK_ROWS,
    MAX_THREADS,
    ItemIndex,
    LossTerms,
    Objective,
    gram,
    gram_blocks,
    gram_sum,
    loss_terms,
    normal_equations,
    penalty,
    ranking_metrics,
    simd_level,
    solve_rows,
    top_k,
)

__all__ = [
    "GRAM_BLOCK_ROWS",
    "MAX_THREADS",
    "ItemIndex",
    "LossTerms",
    "Objective",
    "gram",
    "gram_blocks",
    "gram_sum",
    "loss_terms",
    "normal_equations",
    "penalty",
    "ranking_metrics",
    "simd_level",
    "solve_rows",
    "top_k",
]
