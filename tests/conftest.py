"""What every test directory shares."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def test_camera_available() -> None:
    """The RTSP test camera (GStreamer, run by Debian's python3) must run here: the test
    setup installs it, so its absence is a failure that says what is missing, not a skip."""
    from cloud_mock.test_camera import available

    problem = available()
    assert problem is None, f"the RTSP test camera cannot run: {problem} (scripts/setup.sh)"
