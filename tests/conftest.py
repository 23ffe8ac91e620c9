"""What every test directory shares: the tier markers (tests/tiers.py), and the RTSP test
camera's availability as a failure, not a skip."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.tiers import is_slow, tier_of

ROOT = Path(__file__).resolve().parent.parent


# Warnings are errors (pyproject.toml), ResourceWarning too: in the unit tier an unclosed
# pipe, file or session is a test's leak and fails it. Outside it a ResourceWarning is
# shown, not failed: those tiers hold many subprocesses and sessions, the warning comes
# from a garbage collection in whichever test runs then (so it would fail the wrong test,
# now and then), and they have not been run clean under it yet.
RESOURCE_WARNINGS_SHOWN = pytest.mark.filterwarnings("default::ResourceWarning")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test gets the marker of its file's tier (and `slow` where that applies)."""
    for item in items:
        path = Path(str(item.fspath)).resolve().relative_to(ROOT).as_posix()
        tier = tier_of(path)
        item.add_marker(tier)
        if tier != "unit":
            item.add_marker(RESOURCE_WARNINGS_SHOWN)
        if is_slow(path):
            item.add_marker("slow")


@pytest.fixture(scope="session")
def test_camera_available() -> None:
    """The RTSP test camera (GStreamer, run by Debian's python3) must run here: the test
    setup installs it, so its absence is a failure that says what is missing, not a skip."""
    from cloud_mock.test_camera import available

    problem = available()
    assert problem is None, f"the RTSP test camera cannot run: {problem} (scripts/setup.sh)"


@pytest.fixture(scope="session", autouse=True)
def no_process_outlives_the_tests() -> Iterator[None]:
    """A daemon, mock or camera a test forgot to stop is stopped here, and named, so that
    it neither holds ports and CPU for the tiers after it nor goes unnoticed."""
    yield
    leftover = psutil.Process().children(recursive=True)
    for process in leftover:
        try:
            command = " ".join(process.cmdline())[:200]
            process.kill()
        except psutil.Error:
            continue
        print(f"\nconftest: a test left this process running: {command}", file=sys.stderr)


@pytest.fixture(autouse=True)
def cheap_login_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    """Users' passwords hashed with scrypt N=2**10 in the in-process mocks, as Django's
    tests swap in a fast hasher: each test's mock hashes its admin password at start and
    checks it at each login, 2 x 80 ms of CPU at the production N=2**14, about a third of
    the unit tier. The work factor is the mock's own choice, not the wire's (a camera's K
    keeps the N that docs/design.md §2 fixes), and a hash records its N, so every check is
    still exact. The mocks the e2e tests start as processes keep the production cost, and
    tests/cloud_mock/test_password_cost.py checks that cost there."""
    import cloud_mock.user_accounts

    monkeypatch.setattr(cloud_mock.user_accounts, "SCRYPT_N", 2**10)
