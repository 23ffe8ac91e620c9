"""What the NVR sends (issue 25): its one secret with codes and with a registration token,
and check results within the cloud's bounds. A small HTTP server on 127.0.0.1 records
the bodies."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from agent import config as agent_config
from agent.checks import Check
from agent.config import Config
from agent.nvr import activation, link
from agent.nvr import checks as nvr_checks
from agent.nvr.activation import (
    MAX_CHECK_TEXT,
    MAX_CHECKS,
    MAX_CHECKS_BYTES,
    RegistrationError,
    device_payload,
)
from agent.token_store import DeviceRecord

DEVICE = "aa:bb:cc:00:00:01"


class Recorder:
    """`POST /v1/nvr/activations` and `/v1/nvr/register`: the bodies, and set answers."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, dict[str, Any]]] = []
        answer = {"token": "t", "registrator_id": "r"}
        self.register_answer: tuple[int, dict[str, Any]] = (201, answer)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.append((request.path, body))
        if request.path.endswith("/activations"):
            return web.json_response(
                {"code": body["code"], "expires_at": 2e9, "activation_url": "https://c/a"},
                status=201,
            )
        status, answer = self.register_answer
        return web.json_response(answer, status=status)


@pytest.fixture
async def cloud() -> AsyncIterator[tuple[Recorder, str]]:
    recorder = Recorder()
    app = web.Application()
    app.router.add_post("/v1/nvr/activations", recorder.handle)
    app.router.add_post("/v1/nvr/register", recorder.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield recorder, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def nvr_config(url: str) -> Config:
    parsed = agent_config.parse(
        f'[device]\nkind = "nvr"\nid = "{DEVICE}"\n[cloud]\nurl = "https://cloud.example"\n',
        "agent.toml",
    )
    return dataclasses.replace(parsed, cloud=dataclasses.replace(parsed.cloud, url=url))


@pytest.fixture(autouse=True)
def no_network_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        nvr_checks, "run_checks", lambda config: [Check("memory", "ok", "2048 MiB")]
    )


async def test_a_registration_token_goes_with_the_secret_of_the_nvrs_codes(
    cloud: tuple[Recorder, str],
) -> None:
    recorder, url = cloud
    record = DeviceRecord(device_id=DEVICE)

    def save(change: Any) -> None:
        nonlocal record
        record = change(record)

    nvr = link.NvrLink(nvr_config(url), DEVICE, lambda: record, save)
    async with aiohttp.ClientSession() as session:
        key = await nvr.key(session)  # registers a code
        assert await nvr.register(session, " rt_token ") == "t"
    (code_path, code_body), (token_path, token_body) = recorder.bodies
    assert (code_path, token_path) == ("/v1/nvr/activations", "/v1/nvr/register")
    assert token_body["secret"] == code_body["secret"]
    assert base64.b64decode(token_body["secret"]) == key
    assert token_body["token"] == "rt_token"
    assert token_body["device_id"] == DEVICE


async def test_without_a_code_a_registration_token_goes_with_a_fresh_secret(
    cloud: tuple[Recorder, str],
) -> None:
    recorder, url = cloud
    nvr = link.NvrLink(nvr_config(url), DEVICE, lambda: DeviceRecord(), lambda change: None)
    async with aiohttp.ClientSession() as session:
        await nvr.register(session, "rt_a")
        await nvr.register(session, "rt_b")
    secrets = [base64.b64decode(body["secret"], validate=True) for _, body in recorder.bodies]
    assert [len(s) for s in secrets] == [32, 32]
    assert secrets[0] != secrets[1]


async def test_a_coded_refusal_shows_its_message(cloud: tuple[Recorder, str]) -> None:
    recorder, url = cloud
    recorder.register_answer = (
        429,
        {"error": "rate_limited", "message": "too many NVR registrations", "retry_after": 60},
    )
    nvr = link.NvrLink(nvr_config(url), DEVICE, lambda: DeviceRecord(), lambda change: None)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(RegistrationError, match=r"too many NVR registrations \(HTTP 429\)"):
            await nvr.register(session, "rt_a")


def test_the_payload_keeps_within_the_clouds_bounds() -> None:
    many = [Check(f"check {n}", "warn", "d" * 5000, "f" * 5000) for n in range(30)]
    payload = device_payload(DEVICE, "n" * 300, "v" * 300, many)
    checks = payload["checks"]
    assert 0 < len(checks) <= MAX_CHECKS
    assert all(
        len(c["detail"]) <= MAX_CHECK_TEXT and len(c["fix"]) <= MAX_CHECK_TEXT for c in checks
    )
    assert len(json.dumps(checks)) <= MAX_CHECKS_BYTES
    assert (len(payload["name"]), len(payload["version"])) == (128, 128)
    # What a real NVR sends stays as it is.
    few = [Check("memory", "ok", "2048 MiB memory available"), Check("cpu", "ok", "4 CPU(s)")]
    assert activation.device_payload(DEVICE, "NVR", "1.0", few)["checks"] == [
        c.to_json() for c in few
    ]
