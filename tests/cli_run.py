"""The command line in a child process (``python -m ials ...``), and a small play-count log to
feed it: shared by the CLI and tuning tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def ials(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m ials *args`` from the repository root (or ``cwd``); never raises on failure."""
    return subprocess.run(
        [sys.executable, "-m", "ials", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        check=False,
        timeout=120,
    )


def write_play_log(path: Path) -> Path:
    """A tab-separated log of 60 listeners in two taste groups (artists ``a*`` and ``b*``),
    6 to 10 artists each, with play counts."""
    rng = np.random.default_rng(0)
    lines = ["listener\tartist\tplays"]
    for user in range(60):
        group = "ab"[user % 2]
        for artist in rng.choice(15, size=int(rng.integers(6, 11)), replace=False):
            lines.append(f"u{user}\t{group}{artist}\t{int(rng.integers(1, 40))}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
