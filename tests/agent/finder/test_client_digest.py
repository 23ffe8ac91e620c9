"""The finder's client against the device's real local API server, in-process: aiohttp's
Digest middleware meets agent.local_api's Digest check, lockout and body rules.
(Across namespaces with the real daemon: tests/lan.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.finder.client import DeviceClient, Endpoint
from agent.finder.errors import AuthError, FinderError
from agent.local_api import cert, digest, server
from agent.local_api.lockout import Lockout, LockoutPolicy
from agent.qr.payloads import WifiNetwork

PASSWORD = "label-password"


@dataclass
class RecordingDevice:
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def info(self) -> dict[str, Any]:
        return {"id": "dev-9", "kind": "camera", "state": "provisioning", "ver": "t"}

    def password(self) -> str:
        return PASSWORD

    async def set_token(self, token: str) -> dict[str, Any]:
        self.calls.append(("token", token))
        return {}

    async def reset(self) -> dict[str, Any]:
        self.calls.append(("reset", None))
        return {}

    async def poll_now(self) -> dict[str, Any]:
        self.calls.append(("poll_now", None))
        return {}

    async def join_wifi(self, network: WifiNetwork) -> dict[str, Any]:
        self.calls.append(("wifi", network))
        return {}

    async def register(self, token: str) -> dict[str, Any]:
        return {}


@dataclass
class Served:
    endpoint: Endpoint
    fp: str
    device: RecordingDevice


@pytest.fixture
async def device_api(tmp_path: Path) -> AsyncIterator[Served]:
    made = cert.ensure(tmp_path, "dev-9")
    device = RecordingDevice()
    auth = server.Auth(
        Lockout(tmp_path / "lockout.json", LockoutPolicy(after=2, base_s=60)),
        digest.NonceBook.for_this_boot(),
    )
    app = server.make_app(device, auth, made.fp)
    context = server.server_context(str(made.cert_path), str(made.key_path))
    running = await server.start(app, "127.0.0.1", 0, context)
    yield Served(Endpoint("127.0.0.1", running.port), made.fp, device)
    await running.stop()


async def test_right_password_delivers_the_change(device_api: Served) -> None:
    async with DeviceClient(device_api.endpoint, device_api.fp, "announces") as client:
        assert (await client.info())["fp"] == device_api.fp
        answer = await client.command("/v1/token", {"token": "tok-1"}, PASSWORD)
        await client.command("/v1/reset", None, PASSWORD)
    assert answer.status == 200
    assert device_api.device.calls == [("token", "tok-1"), ("reset", None)]


async def test_wrong_password_then_lockout(device_api: Served) -> None:
    async with DeviceClient(device_api.endpoint, device_api.fp, "announces") as client:
        with pytest.raises(AuthError, match=r"refused the password .*\(1 try left"):
            await client.command("/v1/poll-now", None, "wrong")
        with pytest.raises(AuthError, match=r"locked out for 60 s"):
            await client.command("/v1/poll-now", None, "wrong")
        with pytest.raises(AuthError, match=r"locked out for \d+ s"):
            await client.command("/v1/poll-now", None, PASSWORD)
    assert device_api.device.calls == []


async def test_device_refusal_is_relayed(device_api: Served) -> None:
    body = {"ssid": "x", "password": "abc", "security": "WEP", "hidden": False}
    async with DeviceClient(device_api.endpoint, device_api.fp, "announces") as client:
        with pytest.raises(FinderError, match=r"refused POST /v1/wifi \(HTTP 400\): .*WEP"):
            await client.command("/v1/wifi", body, PASSWORD)
    assert device_api.device.calls == []
