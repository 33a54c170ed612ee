"""Leaves implicit's GPU-only tests out of the run (see README.md here: the scope).

They are deselected rather than skipped: ials has no GPU, so they could never run, and a skip
would report them as pending. Everything else in the vendored files must pass.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent

# Test functions of als_test.py that exercise only implicit's CUDA build.
GPU_ONLY = frozenset({"test_recalculate_after_cpu_conversion", "test_gpu_loss"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    out = [
        item
        for item in items
        if item.path.parent == _HERE and getattr(item, "originalname", None) in GPU_ONLY
    ]
    if out:
        config.hook.pytest_deselected(items=out)
        dropped = {id(item) for item in out}
        items[:] = [item for item in items if id(item) not in dropped]
