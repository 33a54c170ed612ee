"""Switches for CG's turned basis (ials._basis) in tests: turning at every size and row count,
the reductions counted."""

from __future__ import annotations

import numpy as np
import pytest
from ials import _basis


def turn_always(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Makes every CG half-sweep turn; returns the list the size of each reduction goes to."""
    monkeypatch.setattr(_basis, "turning_pays", lambda solver, *_: solver.kind == "cg")
    calls: list[int] = []
    reduce = _basis.Basis.reduce

    def counted(basis: _basis.Basis, gram: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        calls.append(len(gram))
        return reduce(basis, gram, x, y)

    monkeypatch.setattr(_basis.Basis, "reduce", counted)
    return calls


def never_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_basis, "turning_pays", lambda *_: False)
