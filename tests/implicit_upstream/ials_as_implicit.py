"""What implicit's vendored tests import from ``implicit`` that ials has under another name, or
not at all. The only lines changed in the vendored files import from here or from ials."""

from __future__ import annotations

from types import SimpleNamespace

import ials

# ials runs on the CPU only: implicit's GPU tests and parametrisations are out of scope, and this
# is what implicit's own CPU-only build reports.
HAS_CUDA = False


class ItemItemRecommender:
    """implicit's item-item nearest-neighbour model, which ials does not have. The tests use it
    only in ``isinstance`` checks, which are false for an ALS model in implicit too."""


# als_test.py calls ``implicit.cpu.als.calculate_loss`` and reads ``implicit.gpu.HAS_CUDA``.
implicit = SimpleNamespace(
    cpu=SimpleNamespace(als=SimpleNamespace(calculate_loss=ials.calculate_loss)),
    gpu=SimpleNamespace(HAS_CUDA=HAS_CUDA),
)
