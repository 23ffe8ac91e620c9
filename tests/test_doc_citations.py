"""Every test the documents cite (`tests/…py::name`) exists: a citation is a promise that
something is checked, and a renamed test must not leave it pointing at nothing."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CITATION = re.compile(r"(tests/[\w/]+\.py)::(\w+)")
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_cited_test_exists() -> None:
    missing = []
    cited = 0
    for document in DOCUMENTS:
        for path, name in CITATION.findall(document.read_text()):
            cited += 1
            source = ROOT / path
            defined = source.is_file() and re.search(
                rf"^(async )?def {name}\(", source.read_text(), re.MULTILINE
            )
            if not defined:
                missing.append(f"{document.relative_to(ROOT)}: {path}::{name}")
    assert cited > 50, "the documents cite tests: the pattern no longer finds them"
    assert missing == []
