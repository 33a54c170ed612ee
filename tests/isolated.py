"""Run a function of a test module in a fresh Python process, so that a crash (a segmentation
fault, an abort, a Rust panic) or a hang fails one test instead of killing the whole run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_isolated(
    module: str, function: str, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``module.function(*args)`` in a child interpreter; its exit status, stdout and stderr."""
    code = (
        f"import sys; sys.path.insert(0, {str(HERE)!r}); import {module}; "
        f"{module}.{function}(*sys.argv[1:])"
    )
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def assert_clean_exit(result: subprocess.CompletedProcess[str]) -> str:
    """The child exited with status 0 (no crash, no uncaught exception); its stdout."""
    assert result.returncode == 0, (
        f"child exited with status {result.returncode}\nstdout:\n{result.stdout[-3000:]}"
        f"\nstderr:\n{result.stderr[-3000:]}"
    )
    return result.stdout
