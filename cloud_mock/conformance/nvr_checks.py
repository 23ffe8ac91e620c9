"""NVR rules (docs/design.md §3): an activation code registered, activated and answered
on the NVR's held poll for the NVR that registered it only, the NVR's token and channel,
and a registration token that links once."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from typing import TYPE_CHECKING

from agent.nvr import activation_code
from cloud_mock.conformance.common import (
    HELD_BEFORE_ADD_S,
    LONG_POLL_WAIT_S,
    WAKE_SLACK_S,
    Failed,
    random_mac,
)
from cloud_mock.conformance.provisioning_checks import verify_token

if TYPE_CHECKING:  # it imports this module
    from cloud_mock.conformance.checks import Conformance


async def check_nvr_activation(kit: Conformance) -> None:
    device_id, code = random_mac(), activation_code.generate()
    secret = os.urandom(32)
    body = {
        "device_id": device_id,
        "code": code,
        "secret": base64.b64encode(secret).decode(),
        "name": "conformance NVR",
        "version": "conformance",
        "checks": [{"name": "conformance", "status": "ok", "detail": "", "fix": ""}],
    }
    answer = await kit.request("POST", "/v1/nvr/activations", json.dumps(body).encode())
    if answer.status != 201 or (answer.json() or {}).get("code") != code:
        raise Failed("nvr.register-code", f"expected 201 with the code, got {answer.status}")
    kit.passed("nvr.register-code", code)
    token = await kit.step("nvr.held-poll-answered", lambda: _held(kit, device_id, secret, code))
    if token is None:
        for rule in ("nvr.only-registrant", "nvr.token", "nvr.channel"):
            kit.skipped(rule, "not checked: no NVR token (see nvr.held-poll-answered)")
        return
    await kit.step("nvr.only-registrant", lambda: _only_registrant(kit, device_id))
    await kit.step("nvr.token", lambda: _nvr_token(kit, token, device_id))
    await kit.step("nvr.channel", lambda: _nvr_channel(kit, token, device_id))


async def _held(kit: Conformance, device_id: str, secret: bytes, code: str) -> str:
    held = asyncio.create_task(kit.poll(secret, device_id, wait=LONG_POLL_WAIT_S))
    try:
        await asyncio.sleep(HELD_BEFORE_ADD_S)
        if held.done():
            answer, _ = held.result()
            raise Failed(
                "nvr.held-poll-answered", f"the NVR's poll answered {answer.status} at once"
            )
        await kit.cloud.activate_code(code)
        activated = time.monotonic()
        answer, _ = await asyncio.wait_for(held, LONG_POLL_WAIT_S + 5)
    finally:
        held.cancel()
    late = time.monotonic() - activated
    token = kit.open_token("nvr.held-poll-answered", answer, secret, device_id)
    if late > WAKE_SLACK_S:
        raise Failed("nvr.held-poll-answered", f"answered {late:.1f} s after the activation")
    kit.passed("nvr.held-poll-answered", f"token {late * 1000:.0f} ms after the activation")
    return token


async def _only_registrant(kit: Conformance, device_id: str) -> None:
    answer, _ = await kit.poll(os.urandom(32), device_id)
    if answer.status != 204:
        raise Failed(
            "nvr.only-registrant", f"a poll with another secret got {answer.status}, not 204"
        )


async def _nvr_token(kit: Conformance, token: str, device_id: str) -> None:
    verify_token(kit, "nvr", token, device_id, "nvr")


async def _nvr_channel(kit: Conformance, token: str, device_id: str) -> None:
    ws = await kit._greet("nvr.channel", token, device_id, "nvr")
    await ws.close()


async def check_registration_token(kit: Conformance) -> None:
    secret = await kit.cloud.registration_token()
    device_id = random_mac()
    body = {
        "token": secret,
        "device_id": device_id,
        # The NVR's own secret (the one its codes carry): the link keeps its hash.
        "secret": base64.b64encode(os.urandom(32)).decode(),
        "name": "conformance",
        "checks": [],
    }
    answer = await kit.request("POST", "/v1/nvr/register", json.dumps(body).encode())
    data = answer.json() or {}
    if answer.status != 201 or not isinstance(data.get("token"), str):
        raise Failed("nvr.registration-token", f"expected 201 with a token: {answer.status}")
    if isinstance(data.get("registrator_id"), str):
        kit.cloud.registrators.append(data["registrator_id"])
    try:
        verify_token(kit, "nvr", data["token"], device_id, "nvr")
    except Failed as failure:
        raise Failed("nvr.registration-token", failure.detail) from None
    again = {**body, "device_id": random_mac()}
    answer = await kit.request("POST", "/v1/nvr/register", json.dumps(again).encode())
    if answer.status != 409:
        raise Failed("nvr.registration-token", f"a second use answered {answer.status}, not 409")
