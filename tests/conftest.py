"""Shared pytest configuration: hypothesis profiles and the helper modules' import path.

Profiles: "ci" (derandomized, no deadline, 50 examples) is loaded when the CI environment
variable is set, "dev" (no deadline, hypothesis' default example count) otherwise. Select another
with ``--hypothesis-profile``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from pathlib import Path

from hypothesis import HealthCheck, settings

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # reference.py / strategies.py, whatever pytest's import mode
    sys.path.insert(0, _HERE)

# When a property fails, hypothesis' pytest plugin imports its patch writer (libcst); with some
# libcst / mypy_extensions versions that import emits a DeprecationWarning, which
# filterwarnings=error turns into an INTERNALERROR hiding the real failure. Import it once here
# with warnings silenced (it is optional: hypothesis skips patches when it is missing).
with warnings.catch_warnings(), contextlib.suppress(Exception):
    warnings.simplefilter("ignore")
    import hypothesis.extra._patching  # noqa: F401

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=50,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")
