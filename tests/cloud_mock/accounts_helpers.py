"""A mock cloud subprocess with a few accounts, shared by a test module and reset between
tests: settings back to the baseline, and the clock moved past every idle timeout and
rate-limit window so no session or failure of one test leaks into the next.

Import the fixtures into a test module: `from tests.cloud_mock.accounts_helpers import
accounts_mock_fixture, cloud_fixture  # noqa: F401`; tests then ask for `cloud`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud_mock.testing import MockCloud, running_mock_cloud

IDLE_S = 3600
GLOBAL_MAX = 2
BASELINE: dict[str, Any] = {
    "captcha": "off",
    "max_sessions": GLOBAL_MAX,
    "session_idle_s": IDLE_S,
}
PASSWORDS = {
    "ann": "ann-pass",
    "bob": "bob-pass",  # max_sessions 1
    "cid": "cid-pass",  # max_sessions 3
    "dan": "dan-pass",  # another org
    "eve": "eve-pass",
}
USER_MAX = {"bob": 1, "cid": 3}
FIXTURES: dict[str, Any] = {
    "orgs": [{"name": "acme", "business": True}, {"name": "other", "business": False}],
    "users": [
        {
            "login": login,
            "password": password,
            "org": "other" if login == "dan" else "acme",
            "role": "owner",
            **({"max_sessions": USER_MAX[login]} if login in USER_MAX else {}),
        }
        for login, password in PASSWORDS.items()
    ],
    "settings": BASELINE,
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module", name="accounts_mock")
def accounts_mock_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockCloud]:
    base = tmp_path_factory.mktemp("accounts")
    fixtures = base / "fixtures.json"
    fixtures.write_text(json.dumps(FIXTURES))
    with running_mock_cloud(base / "cloud", fixtures=fixtures) as mock:
        yield mock


@pytest.fixture(name="cloud")
def cloud_fixture(accounts_mock: MockCloud) -> Iterator[MockCloud]:
    yield accounts_mock
    accounts_mock.set_settings(**BASELINE)
    # Past idle expiry (sessions end), rate windows (300 s) and resolve tokens (120 s).
    accounts_mock.advance_clock(IDLE_S + 1)


def login(cloud: MockCloud, login: str, *, device: str = "pytest", **extra: Any) -> tuple[int, Any]:
    """POST /v1/auth/login with the fixture password (unless `password` is in `extra`)."""
    body = {"login": login, "password": PASSWORDS.get(login, "x"), "device": device, **extra}
    return cloud.request("POST", "/v1/auth/login", body)


def login_ok(cloud: MockCloud, login_name: str, *, device: str = "pytest") -> dict[str, Any]:
    status, answer = login(cloud, login_name, device=device)
    assert status == 200, answer
    result: dict[str, Any] = answer
    return result


def png_of(answer: dict[str, Any]) -> bytes:
    png = base64.b64decode(answer["image"], validate=True)
    assert png.startswith(PNG_MAGIC)
    return png


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path
