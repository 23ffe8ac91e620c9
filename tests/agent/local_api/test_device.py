"""The daemon's side of the local API: refusals become HTTP answers in one place.

The commands behind it are a stand-in that raises what the real ones raise; the HTTP
server, Digest and lockout are the real ones (tests/agent/local_api/test_server.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from agent.commands import CAMERA_NOT_NVR, HoldsToken, NotAnNvr, NotNow, Way
from agent.config import Config, DeviceConfig
from agent.errors import CamagentError, StateError, TokenError
from agent.lifecycle import DeviceState
from agent.local_api import digest, server
from agent.local_api.device import DaemonDevice
from agent.local_api.lockout import Lockout, LockoutPolicy
from agent.status import Status
from agent.wifi import WifiError
from tests.agent.local_api.test_server import PASSWORD, post


class Commands:
    def __init__(self) -> None:
        self.raises: CamagentError | None = None
        self.calls: list[tuple[str, Way]] = []

    async def call(self, name: str, args: dict[str, Any], way: Way) -> Any:
        self.calls.append((name, way))
        if self.raises is not None:
            raise self.raises
        return {"tool": "nmcli"} if name == "wifi" else None


class Side:
    def __init__(self, password_file: Path) -> None:
        self.config = Config(device=DeviceConfig(password_file=str(password_file)))
        self.commands = Commands()

    def status(self) -> Status:
        return Status("d", "camera", "", DeviceState.PROVISIONING, "https://c", daemon=True)


@pytest.fixture
def side(tmp_path: Path) -> Side:
    (tmp_path / "password").write_text(PASSWORD + "\n")
    return Side(tmp_path / "password")


@pytest.fixture
async def base(tmp_path: Path, side: Side) -> AsyncIterator[str]:
    auth = server.Auth(
        Lockout(tmp_path / "lockout.json", LockoutPolicy(after=3, base_s=30)),
        digest.NonceBook.for_this_boot(),
    )
    test_server = TestServer(server.make_app(DaemonDevice(side), auth, "ab" * 32))
    await test_server.start_server()
    yield str(test_server.make_url("")).rstrip("/")
    await test_server.close()


WIFI = {"ssid": "home", "password": "secret-pass", "security": "WPA"}
REFUSALS = [
    # (path, body, what the command raises, status, error code)
    ("/v1/token", {"token": "x"}, TokenError("bad signature"), 400, "token_refused"),
    ("/v1/poll-now", None, HoldsToken("holds a token"), 409, "holds_token"),
    ("/v1/wifi", WIFI, WifiError("nmcli failed"), 409, "wifi_not_joined"),
    ("/v1/cloud-registration", {"token": "x"}, NotAnNvr("a camera"), 409, "not_an_nvr"),
    ("/v1/cloud-registration", {"token": "x"}, TokenError("forged"), 400, "token_refused"),
    ("/v1/cloud-registration", {"token": "x"}, NotNow("linked"), 409, "registration_failed"),
    ("/v1/cloud-registration", {"token": "x"}, CamagentError("down"), 409, "registration_failed"),
    # The device's own failure, not a refusal: a 500 (and a log line), never its text.
    ("/v1/token", {"token": "x"}, StateError("disk full"), 500, "internal_error"),
    ("/v1/reset", None, StateError("disk full"), 500, "internal_error"),
]


@pytest.mark.parametrize(("path", "body", "raised", "status", "error"), REFUSALS)
async def test_each_refusal_answers_its_own_status_and_code(
    base: str, side: Side, path: str, body: Any, raised: CamagentError, status: int, error: str
) -> None:
    side.commands.raises = raised
    got_status, answer, _ = await post(base, path, body)
    assert (got_status, answer["error"]) == (status, error)
    if status != 500:
        assert answer["message"] == str(raised)
    assert [way for _, way in side.commands.calls] == ["lan"]


@pytest.mark.parametrize(
    ("path", "body", "command", "extra"),
    [
        ("/v1/token", {"token": "x"}, "token_set", {}),
        ("/v1/reset", None, "reset", {}),
        ("/v1/poll-now", None, "poll_now", {}),
        ("/v1/wifi", WIFI, "wifi", {"ssid": "home", "tool": "nmcli"}),
        ("/v1/cloud-registration", {"token": "x"}, "nvr_register", {}),
    ],
)
async def test_each_change_is_the_commands_own(
    base: str, side: Side, path: str, body: Any, command: str, extra: dict[str, Any]
) -> None:
    status, answer, _ = await post(base, path, body)
    assert (status, answer) == (200, {"ok": True, "state": "provisioning", **extra})
    assert side.commands.calls == [(command, "lan")]


def test_a_camera_asked_to_register_is_told_what_each_way_in_can_do() -> None:
    assert "device.kind" in CAMERA_NOT_NVR["cli"]
    assert CAMERA_NOT_NVR["lan"] == "this device is a camera: only an NVR takes a registration"
