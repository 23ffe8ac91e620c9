"""The tiers (tests/tiers.py) hold: every test file is in exactly one, the table names only
files that exist, the directories keep their tiers, a marker written in a file agrees with
its file's tier, and the unit tier starts no daemon, mock, camera or browser."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.tiers import FILES, TIERS, is_slow, tier_of

ROOT = Path(__file__).resolve().parent.parent
TEST_FILES = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "tests").rglob("test_*.py"))
# Directories whose every file is of one tier, so that a new file there cannot slip into
# the fast tier by being forgotten in the table.
DIRECTORY_TIERS = {
    "tests/e2e/": "e2e",
    "tests/faults/": "faults",
    "tests/lan/": "system",
    "tests/system/": "system",
}
WRITTEN_MARK = re.compile(r"(?:pytest\.)?mark\.(e2e|faults|browser|system|slow)\b")
# What only a test of another tier does: start the mock or a daemon as a process, the RTSP
# test camera, Chromium, a container.
NOT_UNIT = re.compile(
    r"\b(start_cloud|start_mock_cloud|running_mock_cloud|start_agent|running_test_camera|"
    r"start_test_camera|sync_playwright|chromium\(|Container\()"
)


def test_the_table_names_existing_test_files_and_known_tiers() -> None:
    assert set(FILES) <= set(TEST_FILES), set(FILES) - set(TEST_FILES)
    assert set(FILES.values()) <= set(TIERS)
    assert len(TEST_FILES) > 100  # the glob still finds the suite


@pytest.mark.parametrize("path", TEST_FILES)
def test_every_test_file_is_in_exactly_one_tier(path: str) -> None:
    tiers = [tier for tier in TIERS if tier_of(path) == tier]
    assert len(tiers) == 1
    for directory, tier in DIRECTORY_TIERS.items():
        if path.startswith(directory):
            assert tier_of(path) == tier, f"{path} is in {directory}: tier {tier}"


@pytest.mark.parametrize("path", TEST_FILES)
def test_markers_written_in_a_file_agree_with_its_tier(path: str) -> None:
    written = set(WRITTEN_MARK.findall((ROOT / path).read_text()))
    allowed = {tier_of(path)} | ({"slow"} if is_slow(path) else set())
    assert written <= allowed, f"{path} is {tier_of(path)!r} but marks {written}"


UNIT_FILES = [p for p in TEST_FILES if tier_of(p) == "unit" and p != "tests/test_tiers.py"]


@pytest.mark.parametrize("path", UNIT_FILES)
def test_the_unit_tier_starts_no_process_of_another_tier(path: str) -> None:
    found = NOT_UNIT.findall((ROOT / path).read_text())
    assert not found, f"{path} uses {sorted(set(found))}: list it in tests/tiers.py"
