"""The seam to the Rust core: the only module that imports :mod:`ials._core`.

Everything crossing into Rust goes through these names, typed by ``_core.pyi``, so mypy checks
every call at the seam. Arguments must already be validated and normalised (see
:mod:`ials._validation`); the core re-checks the invariants it relies on.
"""

from __future__ import annotations

from . import _core

# The seam passes on every name the extension exports (listed once, in its stub's __all__).
from ._core import *  # noqa: F403

__all__ = _core.__all__
