"""The README's worked example ("From raw logs to measured recommendations") runs as written on
the Last.fm data and prints what the README says it prints, to the digits it shows."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import ials
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SECTION = "## From raw logs to measured recommendations"


def example() -> tuple[str, list[str]]:
    """The section's first ```python block and the output block after it, line by line."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index(SECTION) :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    printed = re.search(r"\nprints\b.*?\n```\n(.*?)```", section[code.end() :], re.S)
    assert printed is not None
    return code.group(1), printed.group(1).strip().splitlines()


def number_pattern(shown: str) -> str:
    """A regex for a printed line: each ``0.1303...`` matches any number starting with those
    digits; everything else literally."""
    parts = re.split(r"(\d+\.\d+)\.\.\.", shown)
    return "".join(
        re.escape(part) if i % 2 == 0 else re.escape(part) + r"\d*" for i, part in enumerate(parts)
    )


@pytest.mark.skipif(not (DATA / "lastfm-2k").is_dir(), reason="../shared/data is not present")
@pytest.mark.skipif(
    ials.simd_level() == "portable",
    reason="the README shows the fused (AVX2 / AVX-512) results; portable rounds differently",
)
def test_the_lastfm_example_prints_what_the_readme_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, shown = example()
    assert "../shared/data/" in code
    code = code.replace("../shared/data/", f"{DATA}/")
    monkeypatch.chdir(tmp_path)  # the example saves lastfm.npz in the working directory
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README example", "exec"), {})
    printed = out.getvalue().strip().splitlines()
    for line, want in zip(printed, shown, strict=True):
        assert re.fullmatch(number_pattern(want), line), (line, want)
    assert (tmp_path / "lastfm.npz").is_file()
