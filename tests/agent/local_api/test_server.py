"""The HTTP layer in-process, with aiohttp's own Digest client and a fake clock.

The device behind it is a recording stand-in (the daemon's side is covered end to end
in tests/e2e/test_local_api_e2e.py); the HTTP, Digest and lockout parts are the real ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from agent.errors import ConfigError
from agent.local_api import digest, server
from agent.local_api.lockout import Lockout, LockoutPolicy
from agent.local_api.server import ActionError
from agent.qr.payloads import WifiNetwork

PASSWORD = "label password"
FP = "ab" * 32


class FakeDevice:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.state = "provisioning"
        self.has_password = True
        self.explode = False

    def info(self) -> dict[str, Any]:
        return {
            "id": "02:00:00:00:00:01",
            "kind": "camera",
            "state": self.state,
            "ver": "1",
            "name": "",
            "model": "",
        }

    def password(self) -> str:
        if not self.has_password:
            raise ConfigError("password file /x does not exist")
        return PASSWORD

    async def set_token(self, token: str) -> dict[str, Any]:
        if self.explode:
            raise RuntimeError("bug")
        self.calls.append(("token", token))
        return {"state": "connecting"}

    async def reset(self) -> dict[str, Any]:
        self.calls.append(("reset", None))
        return {"state": "provisioning"}

    async def poll_now(self) -> dict[str, Any]:
        if self.state != "provisioning":
            raise ActionError(409, "holds_token", "this device holds a token")
        self.calls.append(("poll_now", None))
        return {"state": self.state}

    async def join_wifi(self, network: WifiNetwork) -> dict[str, Any]:
        self.calls.append(("wifi", network))
        return {"state": self.state}

    async def register(self, token: str) -> dict[str, Any]:
        raise ActionError(409, "not_an_nvr", "this device is a camera")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def device() -> FakeDevice:
    return FakeDevice()


@pytest.fixture
async def base(tmp_path: Path, device: FakeDevice, clock: Clock) -> AsyncIterator[str]:
    auth = server.Auth(
        Lockout(tmp_path / "lockout.json", LockoutPolicy(after=3, base_s=30)),
        digest.NonceBook.for_this_boot(),
        clock,
    )
    test_server = TestServer(server.make_app(device, auth, FP))
    await test_server.start_server()
    yield str(test_server.make_url("")).rstrip("/")
    await test_server.close()


async def post(
    base: str,
    path: str,
    body: Any = None,
    password: str | None = PASSWORD,
    source: str = "127.0.0.1",
    **kw: Any,
) -> tuple[int, dict[str, Any], Any]:
    middlewares = (aiohttp.DigestAuthMiddleware("admin", password),) if password else ()
    if body is not None:
        kw["json"] = body
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(base + path, middlewares=middlewares, **kw) as response,
    ):
        return response.status, await response.json(), response.headers


async def test_info_needs_no_auth_and_shows_the_fingerprint(base: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(base + "/v1/info") as response:
        assert response.status == 200
        info = await response.json()
    assert info["fp"] == FP
    assert info["state"] == "provisioning"


async def test_aiohttp_digest_client_is_accepted(base: str, device: FakeDevice) -> None:
    status, body, _ = await post(base, "/v1/token", {"token": "a.b"})
    assert (status, body) == (200, {"ok": True, "state": "connecting"})
    assert device.calls == [("token", "a.b")]


async def test_without_credentials_a_digest_challenge(base: str, device: FakeDevice) -> None:
    status, body, headers = await post(base, "/v1/reset", password=None)
    assert status == 401
    assert body["error"] == "unauthorized"
    params = digest.parse_authorization(headers["WWW-Authenticate"])
    assert params["algorithm"] == "SHA-256"
    assert device.calls == []


async def test_a_stale_nonce_is_retried_transparently(
    base: str, device: FakeDevice, clock: Clock
) -> None:
    middleware = aiohttp.DigestAuthMiddleware("admin", PASSWORD)
    async with aiohttp.ClientSession(middlewares=(middleware,)) as session:
        async with session.post(base + "/v1/reset") as response:
            assert response.status == 200
        clock.now += digest.NONCE_TTL_S + 1
        # Preemptive with the old nonce -> 401 stale=true -> retried with a new one.
        async with session.post(base + "/v1/reset") as response:
            assert response.status == 200
    assert device.calls == [("reset", None), ("reset", None)]


async def test_lockout_grows_and_ends(base: str, device: FakeDevice, clock: Clock) -> None:
    for left in (2, 1):
        status, body, _ = await post(base, "/v1/reset", password="guess")
        assert (status, body["tries_left"]) == (401, left)
    status, body, headers = await post(base, "/v1/reset", password="guess")
    assert status == 429
    assert headers["Retry-After"] == "30"
    status, _, _ = await post(base, "/v1/reset")  # the right password, not even checked
    assert status == 429
    clock.now += 31
    status, _, headers = await post(base, "/v1/reset", password="guess")
    assert (status, headers["Retry-After"]) == (429, "60")  # doubled
    clock.now += 61
    status, _, _ = await post(base, "/v1/reset")
    assert status == 200
    status, body, _ = await post(base, "/v1/reset", password="guess")
    assert (status, body["tries_left"]) == (401, 2)  # a success starts over
    assert device.calls == [("reset", None)]


async def test_wrong_answers_from_one_address_never_lock_out_another(
    base: str, device: FakeDevice, clock: Clock
) -> None:
    # Before: 8 wrong answers from one host locked the device for every host, up to 1 h.
    for _ in range(8):
        status, _, _ = await post(base, "/v1/reset", password="guess", source="127.0.0.2")
    assert status == 429
    status, _, _ = await post(base, "/v1/reset", source="127.0.0.2")
    assert status == 429  # that address waits, even with the right password
    status, body, _ = await post(base, "/v1/reset", source="127.0.0.3", password="typo")
    assert (status, body["tries_left"]) == (401, 2)  # another address has all its tries
    status, _, _ = await post(base, "/v1/reset")  # and the owner gets in at once
    assert status == 200
    assert device.calls == [("reset", None)]


async def test_device_refusals_and_body_errors(base: str, device: FakeDevice) -> None:
    device.state = "connected"
    assert (await post(base, "/v1/poll-now"))[:2] == (
        409,
        {"error": "holds_token", "message": "this device holds a token"},
    )
    status, body, _ = await post(base, "/v1/cloud-registration", {"token": "x"})
    assert (status, body["error"]) == (409, "not_an_nvr")
    status, body, _ = await post(base, "/v1/reset", {"force": True})
    assert (status, body["error"]) == (400, "invalid_body")
    status, body, _ = await post(
        base,
        "/v1/token",
        data=b"{}",
        json=None,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 415
    status, body, _ = await post(base, "/v1/wifi", {"ssid": "home", "password": "12345678"})
    assert status == 200
    assert device.calls[-1] == ("wifi", WifiNetwork("home", "12345678", "WPA", False))


async def test_a_bug_behind_an_endpoint_is_a_logged_500_and_the_server_goes_on(
    base: str, device: FakeDevice, caplog: pytest.LogCaptureFixture
) -> None:
    device.explode = True
    status, body, _ = await post(base, "/v1/token", {"token": "x"})
    assert (status, body["error"]) == (500, "internal_error")
    assert "failed" in caplog.text
    device.explode = False
    assert (await post(base, "/v1/token", {"token": "x"}))[0] == 200


async def test_no_password_file_refuses_changes(base: str, device: FakeDevice) -> None:
    device.has_password = False
    status, body, _ = await post(base, "/v1/reset")
    assert status == 503
    assert "password file" in body["message"]


async def test_start_on_port_0_serves_tls_with_the_pinned_certificate(
    tmp_path: Path, device: FakeDevice, clock: Clock
) -> None:
    from agent.local_api import cert

    made = cert.ensure(tmp_path, "02:00:00:00:00:01")
    auth = server.Auth(
        Lockout(tmp_path / "lockout.json", LockoutPolicy()), digest.NonceBook.for_this_boot()
    )
    context = server.server_context(str(made.cert_path), str(made.key_path))
    running = await server.start(server.make_app(device, auth, made.fp), "127.0.0.1", 0, context)
    try:
        assert running.port > 0
        url = f"https://127.0.0.1:{running.port}/v1/info"
        pin = aiohttp.Fingerprint(bytes.fromhex(made.fp))
        async with aiohttp.ClientSession() as session:
            async with session.get(url, ssl=pin) as response:
                assert (await response.json())["fp"] == made.fp
            with pytest.raises(aiohttp.ServerFingerprintMismatch):
                await session.get(url, ssl=aiohttp.Fingerprint(b"\x00" * 32))
    finally:
        await running.stop()
