"""The hand-written stub of the Rust extension matches what the extension exports, and the
package type-checks and lints cleanly (so the shipped `py.typed` promise holds)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, check=False)


def test_extension_stub_matches_the_extension() -> None:
    result = run(sys.executable, "-m", "mypy.stubtest", "ials._core")
    assert result.returncode == 0, result.stdout + result.stderr


def test_package_type_checks() -> None:
    result = run(sys.executable, "-m", "mypy", "python/ials")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_is_clean() -> None:
    result = run(sys.executable, "-m", "ruff", "check", "python", "tests", "benches")
    assert result.returncode == 0, result.stdout + result.stderr
