"""The local HTTPS API of a real daemon subprocess, against the real mock cloud.

The client is aiohttp with its DigestAuthMiddleware (what `camagent finder` uses), the
connection pinned to the fingerprint the daemon reports: real TLS, real Digest.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.trust import PLAIN_REFUSED
from cloud_mock import sandbox
from tests.agent.tokens import sealed
from tests.e2e.conftest import Fleet
from tests.eventually import eventually, eventually_async

pytestmark = pytest.mark.e2e

SANDBOX_LOCAL_API = "[local_api]\nenabled = false\nmdns = false\n"


def enable_local_api(config: Path, *, mdns: bool = False, extra: str = "") -> None:
    text = config.read_text()
    assert SANDBOX_LOCAL_API in text
    section = (
        f'[local_api]\nenabled = true\nlisten = "127.0.0.1"\nport = 0\n'
        f"mdns = {'true' if mdns else 'false'}\n{extra}"
    )
    config.write_text(text.replace(SANDBOX_LOCAL_API, section))


def wait_for_local_api(agent: sandbox.Agent, timeout: float = 20.0) -> dict[str, Any]:
    def local_api() -> dict[str, Any]:
        if agent.process.poll() is not None:  # fail now, not after the timeout
            pytest.fail(f"the daemon exited:\n{agent.log_text()}")
        local: dict[str, Any] = agent.status()["local_api"]
        return local

    try:
        return eventually(
            local_api, until=lambda local: local.get("port"), timeout=timeout, what="local API"
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{agent.log_text()}") from None


class Device:
    """One device's local API, reached the way the finder reaches it."""

    def __init__(self, session: aiohttp.ClientSession, local: dict[str, Any]) -> None:
        self.session = session
        self.base = f"https://127.0.0.1:{local['port']}"
        self.fp = str(local["fp"])

    async def get(self, path: str) -> tuple[int, dict[str, Any], aiohttp.typedefs.LooseHeaders]:
        async with self.session.get(self.base + path, ssl=self._pin()) as response:
            return response.status, await response.json(), response.headers

    async def post(
        self,
        path: str,
        body: Any = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> tuple[int, dict[str, Any], Any]:
        middlewares = (aiohttp.DigestAuthMiddleware("admin", password),) if password else ()
        if body is not None:
            kwargs["json"] = body
        async with self.session.post(
            self.base + path, ssl=self._pin(), middlewares=middlewares, **kwargs
        ) as response:
            return response.status, await response.json(), response.headers

    def _pin(self) -> aiohttp.Fingerprint:
        return aiohttp.Fingerprint(bytes.fromhex(self.fp))


async def raw_request(port: int, raw: bytes) -> bytes:
    import asyncio
    import ssl

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # raw bytes only; the fingerprint is checked elsewhere
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    writer.write(raw)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(4096), 10)
    writer.close()
    return answer


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


def start_device(
    fleet: Fleet,
    *,
    mdns: bool = False,
    extra: str = "",
    env: dict[str, str] | None = None,
    **opts: Any,
) -> tuple[sandbox.Agent, dict[str, Any], str, str]:
    # One poll at start, then none for ten minutes: a token can only come over the LAN.
    opts.setdefault("fast_interval", 600.0)
    opts.setdefault("long_poll", 0.0)
    config, device_id, password = fleet.configure(**opts)
    enable_local_api(config, mdns=mdns, extra=extra)
    agent = fleet.start(config, env=env)
    return agent, wait_for_local_api(agent), device_id, password


async def test_info_without_auth_then_a_pushed_token_connects(
    fleet: Fleet, cloud: sandbox.Cloud, session: str, http: aiohttp.ClientSession
) -> None:
    agent, local, device_id, password = start_device(fleet)
    assert len(local["fp"]) == 64
    # mdns = false: python-zeroconf (compiled modules) never loaded into the daemon.
    assert "zeroconf" not in Path(f"/proc/{agent.process.pid}/maps").read_text()
    state_dir = agent.config_path.parent / "state"
    for name in ("local-api.pem", "local-api.key"):
        assert (state_dir / name).stat().st_mode & 0o777 == 0o600
    device = Device(http, local)

    status, info, _ = await device.get("/v1/info")
    assert status == 200
    assert info["id"] == device_id
    assert info["kind"] == "camera"
    assert info["state"] == "provisioning"
    assert info["fp"] == local["fp"]
    assert set(info) == {"id", "kind", "state", "ver", "fp", "name", "model"}

    camera = cloud.add_camera(session, device_id, password, "lan camera")
    # A camera takes a token over the LAN only sealed for its label (docs/design.md §2.9):
    # the plain one is refused with the reason, with the right Digest password too.
    status, body, _ = await device.post("/v1/token", {"token": camera["token"]}, password)
    assert status == 400
    assert (body["error"], body["message"]) == ("token_refused", PLAIN_REFUSED)
    assert agent.status()["state"] == "provisioning"
    started = time.monotonic()
    status, body, _ = await device.post("/v1/token", {"token": camera["sealed_token"]}, password)
    assert status == 200, body
    assert body["ok"] is True
    agent.wait_for_state("connected", timeout=20)
    pushed_to_connected = time.monotonic() - started
    assert agent.status()["token"]["jti"]
    assert "token accepted (from lan)" in agent.log_text()
    # The camera made exactly the one poll at start: the token came over the LAN.
    assert len(cloud.provisioning_log(device_id)) == 1
    print(f"push -> connected: {pushed_to_connected:.3f} s")

    # poll-now while holding a token: refused, with the reason
    status, body, _ = await device.post("/v1/poll-now", None, password)
    assert status == 409
    assert "holds a token" in body["message"]

    # Reset: the token is forgotten and the schedule starts again; the cloud still has
    # the camera, so the first poll brings the token back.
    status, body, _ = await device.post("/v1/reset", None, password)
    assert status == 200, body
    assert body["state"] == "provisioning"
    agent.wait_for_state("connected", timeout=20)
    assert len(cloud.provisioning_log(device_id)) == 2

    # Deleted in the cloud: the device provisions again; poll-now makes a poll at once.
    cloud.delete_camera(session, camera["camera_id"])
    agent.wait_for_state("provisioning", timeout=20)
    polls_before = len(cloud.provisioning_log(device_id))
    status, body, _ = await device.post("/v1/poll-now", None, password)
    assert status == 200, body
    eventually(
        lambda: len(cloud.provisioning_log(device_id)) > polls_before,
        timeout=20,
        what="a poll after poll-now",
    )

    # A token for another device is refused by the same check as every token: sealed
    # for this camera's label (by someone who knows it), it opens and names another device;
    # as the cloud seals it, for the other camera, it does not even open.
    other = cloud.add_camera(session, "02:00:00:00:ff:01", "other-password")
    resealed = sealed(other["token"], password, device_id)
    status, body, _ = await device.post("/v1/token", {"token": resealed}, password)
    assert status == 400
    assert body["error"] == "token_refused"
    assert "02:00:00:00:ff:01" in body["message"]
    status, body, _ = await device.post("/v1/token", {"token": other["sealed_token"]}, password)
    assert status == 400
    assert "does not open with this device's key" in body["message"]

    text = agent.status()
    assert text["local_api"]["fp"] == local["fp"]


async def test_wrong_passwords_lock_out_and_the_lock_survives_a_restart(
    fleet: Fleet, http: aiohttp.ClientSession
) -> None:
    agent, local, _, password = start_device(
        fleet, extra="lockout_after = 3\nlockout_base_s = 600\n"
    )
    device = Device(http, local)
    for left in (2, 1):
        status, body, headers = await device.post("/v1/reset", None, "not-the-password")
        assert status == 401
        assert body["tries_left"] == left
        assert 'realm="camagent"' in headers["WWW-Authenticate"]
    status, body, headers = await device.post("/v1/reset", None, "not-the-password")
    assert status == 429
    assert 590 <= int(headers["Retry-After"]) <= 600
    # Locked: even the right password is not checked.
    status, body, _ = await device.post("/v1/reset", None, password)
    assert status == 429
    assert body["error"] == "locked_out"
    assert agent.status()["state"] == "provisioning"  # and nothing was done

    assert agent.stop() == 0
    restarted = fleet.start(agent.config_path)
    device = Device(http, wait_for_local_api(restarted))
    assert device.fp == local["fp"]  # the same certificate after a restart
    status, _, headers = await device.post("/v1/reset", None, password)
    assert status == 429
    assert int(headers["Retry-After"]) > 500


async def test_wifi_goes_through_networkmanager_and_restarts_the_fast_phase(
    fleet: Fleet, cloud: sandbox.Cloud, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    # There is no radio here: nmcli is a recording stand-in on PATH (as in the QR tests).
    bindir = tmp_path / "bin"
    bindir.mkdir()
    calls = tmp_path / "nmcli.log"
    nmcli = bindir / "nmcli"
    nmcli.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"open({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    nmcli.chmod(0o755)
    _, local, device_id, password = start_device(
        fleet, env={"PATH": f"{bindir}:{os.environ['PATH']}"}
    )
    device = Device(http, local)
    ssid, secret = 'Café "5G"; \\ ,:', "pa$$ word;\"'"
    polls_before = len(cloud.provisioning_log(device_id))
    status, body, _ = await device.post(
        "/v1/wifi", {"ssid": ssid, "password": secret, "security": "WPA", "hidden": True}, password
    )
    assert status == 200, body
    assert body["tool"] == "nmcli"
    recorded = [json.loads(line) for line in calls.read_text().splitlines()]
    add = next(c for c in recorded if c[:2] == ["connection", "add"])
    assert add[add.index("ssid") + 1] == ssid
    assert add[add.index("wifi-sec.psk") + 1] == secret
    # A new link: the fast phase starts again with a poll now (the schedule said 600 s).
    eventually(
        lambda: len(cloud.provisioning_log(device_id)) > polls_before,
        timeout=20,
        what="a poll after joining WiFi",
    )

    status, body, _ = await device.post(
        "/v1/wifi", {"ssid": "x", "password": "short", "security": "WPA"}, password
    )
    assert status == 400
    assert "8 to 63" in body["message"]


async def test_bad_requests_get_clear_4xx_and_the_daemon_keeps_answering(
    fleet: Fleet, http: aiohttp.ClientSession, run_cli: Callable[..., Any]
) -> None:
    agent, local, _, password = start_device(fleet)
    device = Device(http, local)
    headers = {"Content-Type": "application/json"}
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("/v1/token", {"data": b"{not json", "headers": headers}, 400, "invalid_body"),
        ("/v1/token", {"data": b"[1, 2]", "headers": headers}, 400, "invalid_body"),
        ("/v1/token", {"data": b'{"token": 5}', "headers": headers}, 400, "invalid_body"),
        ("/v1/token", {"data": b'{"tokn": "x"}', "headers": headers}, 400, "invalid_body"),
        ("/v1/token", {"data": b"\xff\xfe", "headers": headers}, 400, "invalid_body"),
        ("/v1/token", {"data": b"token=x", "headers": {"Content-Type": "text/plain"}}, 415, ""),
        ("/v1/token", {"data": b"x" * (17 * 1024), "headers": headers}, 413, "body_too_large"),
        ("/v1/wifi", {"data": b'{"ssid": ""}', "headers": headers}, 400, "invalid_body"),
        ("/v1/cloud-registration", {"json": {"token": "x"}}, 409, "not_an_nvr"),
        ("/v1/nothing", {}, 404, ""),
    ]
    for path, kwargs, expected, error in cases:
        status, body, _ = await device.post(path, password=password, **kwargs)
        assert status == expected, (path, kwargs, body)
        assert body["message"]
        if error:
            assert body["error"] == error

    # A body sent in chunks, with no Content-Length, is cut at the limit too.
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b"x" * 1024

    # (a generator cannot be sent twice: answer the challenge first, then send it once)
    digest = aiohttp.DigestAuthMiddleware("admin", password)
    async with http.post(
        device.base + "/v1/token", json={}, ssl=device._pin(), middlewares=(digest,)
    ) as response:
        assert response.status == 400
    async with http.post(
        device.base + "/v1/token",
        data=chunks(),
        headers=headers,
        ssl=device._pin(),
        middlewares=(digest,),
    ) as response:
        assert response.status == 413
        assert (await response.json())["message"]
    async with http.get(device.base + "/v1/token", ssl=device._pin()) as response:
        assert response.status == 405
        assert (await response.json())["error"]
    async with http.post(device.base + "/v1/info", ssl=device._pin()) as response:
        assert response.status == 405
    # Bytes no client library would send: an undecodable header, a broken request line.
    for raw in (
        b'POST /v1/reset HTTP/1.1\r\nHost: x\r\nAuthorization: Digest username="\xff\xfe"'
        b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        b"\x00\x01 garbage \xff\r\n\r\n",
    ):
        answer = await raw_request(local["port"], raw)
        assert answer.startswith((b"HTTP/1.1 401", b"HTTP/1.1 400", b"HTTP/1.0 400")), answer
    assert agent.process.poll() is None
    result = run_cli(agent.config_path, "status")
    assert result.returncode == 0, result.stderr
    assert f"port {local['port']}" in result.stdout
    assert local["fp"] in result.stdout
    assert agent.status()["local_api"]["port"] == local["port"]
    assert "Traceback" not in agent.log_text()


async def browse_for(device_id: str, want_state: str, timeout: float = 20.0) -> dict[str, str]:
    """Browse `_camagent._tcp` until the device announces `want_state`; its TXT."""

    from zeroconf import ServiceStateChange
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

    names: set[str] = set()

    def on_change(
        zeroconf: Any, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is not ServiceStateChange.Removed:
            names.add(name)

    azc = AsyncZeroconf()
    browser = AsyncServiceBrowser(azc.zeroconf, "_camagent._tcp.local.", handlers=[on_change])

    async def announced() -> dict[str, str] | None:
        for name in list(names):
            info = AsyncServiceInfo("_camagent._tcp.local.", name)
            if not await info.async_request(azc.zeroconf, 1000):
                continue
            txt = {k.decode(): (v or b"").decode() for k, v in info.properties.items()}
            if txt.get("id") == device_id and txt.get("state") == want_state:
                txt["port"] = str(info.port)
                txt["addresses"] = ",".join(info.parsed_addresses())
                return txt
        return None

    try:
        found = await eventually_async(
            announced,
            timeout=timeout,
            interval=0.2,
            what=f"{device_id} announced in state {want_state}",
        )
        assert found is not None  # eventually returns only a truthy answer
        return found
    finally:
        await browser.async_cancel()
        await azc.async_close()


async def test_mdns_announces_the_device_and_follows_its_state(
    fleet: Fleet, cloud: sandbox.Cloud, session: str, http: aiohttp.ClientSession
) -> None:
    agent, local, device_id, password = start_device(fleet, mdns=True)
    txt = await browse_for(device_id, "provisioning")
    assert "zeroconf" in Path(f"/proc/{agent.process.pid}/maps").read_text()
    assert txt["fp"] == local["fp"]
    assert txt["kind"] == "camera"
    assert txt["pv"] == "1"
    assert txt["ver"]
    assert txt["port"] == str(local["port"])
    assert txt["addresses"] == "127.0.0.1"  # where it listens, not every address it has
    mdns_name = eventually(lambda: agent.status()["local_api"]["mdns"], what="status mdns name")
    assert mdns_name.endswith("._camagent._tcp.local.")

    token = cloud.add_camera(session, device_id, password)["sealed_token"]
    status, _, _ = await Device(http, local).post("/v1/token", {"token": token}, password)
    assert status == 200
    await browse_for(device_id, "connected")

    # Stopping says goodbye: a browser hears the service leave at once, not after its TTL.

    from zeroconf import ServiceStateChange
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf

    announced = agent.status()["local_api"]["mdns"]
    seen: list[ServiceStateChange] = []

    def on_change(
        zeroconf: Any, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if name == announced:
            seen.append(state_change)

    azc = AsyncZeroconf()
    browser = AsyncServiceBrowser(azc.zeroconf, "_camagent._tcp.local.", handlers=[on_change])
    try:
        await eventually_async(
            lambda: ServiceStateChange.Added in seen, what="the browser seeing the device"
        )
        assert agent.stop() == 0
        await eventually_async(
            lambda: ServiceStateChange.Removed in seen, timeout=5, what="an mDNS goodbye on stop"
        )
    finally:
        await browser.async_cancel()
        await azc.async_close()


async def test_cloud_registration_links_an_nvr(
    fleet: Fleet, cloud: sandbox.Cloud, session: str, http: aiohttp.ClientSession
) -> None:
    status, made = cloud.request("POST", "/v1/registrator-tokens", {}, session=session)
    assert status == 201, made
    agent, local, device_id, password = start_device(
        fleet, kind="nvr", fast_interval=3.0, long_poll=2.0
    )
    agent.wait_for_state("awaiting_activation", timeout=15)
    device = Device(http, local)
    status, body, _ = await device.post(
        "/v1/cloud-registration", {"token": made["token"]}, password
    )
    assert status == 200, body
    agent.wait_for_state("connected", timeout=10)
    _, listing = cloud.request("GET", "/v1/registrators", session=session)
    assert [r for r in listing["registrators"] if r["device_id"] == device_id]
    # Linked already: a second registration is refused with the reason.
    status, body, _ = await device.post(
        "/v1/cloud-registration", {"token": made["token"]}, password
    )
    assert status == 409
    assert "linked" in body["message"]
