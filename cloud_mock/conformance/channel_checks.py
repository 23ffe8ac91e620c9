"""Control channel rules (docs/design.md §2.12): the device speaks first, heartbeats and
commands get answered, revoking a token closes its channel with 4401, and a token the
cloud did not sign is refused."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.token_codec import parse_claims, sign_token
from cloud_mock.conformance.common import ANSWER_TIMEOUT_S, Failed, Link, random_mac

if TYPE_CHECKING:  # it imports this module
    from cloud_mock.conformance.checks import Conformance


async def check_channel(kit: Conformance, device_id: str, token: str) -> None:
    ending = await kit._closed_with(token, {"type": "heartbeat"})
    if ending != 4400:
        raise Failed(
            "channel.hello-first",
            f"a first message that is not hello should be refused with 4400, got {ending}",
        )
    ws = await kit._greet("channel.hello-first", token, device_id, "camera")
    try:
        kit.passed("channel.hello-first", "silent until the hello; answered it")
        await kit.step("channel.heartbeat", lambda: _heartbeat(kit, ws))
        await kit.step("channel.command", lambda: _command(kit, ws, device_id))
        await kit.step("channel.revoked-4401", lambda: _revocation(kit, ws, device_id, token))
    finally:
        await ws.close()


async def _heartbeat(kit: Conformance, ws: Link) -> None:
    await ws.send_json({"type": "heartbeat"})
    answer = await ws.next(ANSWER_TIMEOUT_S)
    if not isinstance(answer, dict) or answer.get("type") != "heartbeat":
        raise Failed("channel.heartbeat", f"expected a heartbeat back, got {answer!r}")


async def _command(kit: Conformance, ws: Link, device_id: str) -> None:
    sent = asyncio.create_task(kit.cloud.send_command(device_id, "ping"))
    try:
        command = await ws.next(ANSWER_TIMEOUT_S)
        if sent.done() and sent.exception() is not None:
            await sent
        if not isinstance(command, dict) or command.get("type") != "command":
            raise Failed("channel.command", f"expected a command, got {command!r}")
        if command.get("name") != "ping" or not isinstance(command.get("id"), str):
            raise Failed("channel.command", f"not the ping sent: {command!r}")
        marker = secrets.token_hex(8)
        await ws.send_json(
            {"type": "result", "id": command["id"], "ok": True, "data": {"pong": marker}}
        )
        outcome = await asyncio.wait_for(sent, ANSWER_TIMEOUT_S)
    finally:
        sent.cancel()
    if isinstance(outcome, dict) and outcome.get("data") != {"pong": marker}:
        raise Failed("channel.command", f"the cloud reported {outcome!r}, not our result")


async def _revocation(kit: Conformance, ws: Link, device_id: str, token: str) -> None:
    await kit.cloud.revoke_device(device_id)
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    ending: Any = "still open"
    while (left := deadline - time.monotonic()) > 0:
        message = await ws.next(left)
        if isinstance(message, tuple):
            ending = message[1]
            break
    if ending != 4401:
        raise Failed("channel.revoked-4401", f"the open channel ended with {ending}, not 4401")
    again = await kit._closed_with(token, kit._hello(device_id, "camera"))
    if again not in (4401, "HTTP 401"):
        raise Failed("channel.revoked-4401", f"the revoked token reconnected: ended with {again}")


async def check_bad_token(kit: Conformance) -> None:
    forged = sign_token(
        {
            "v": 1,
            "sub": random_mac(),
            "kind": "camera",
            "org": "conformance",
            "api": kit.url,
            "iat": kit.cloud_now(),
            "jti": secrets.token_hex(16),
        },
        Ed25519PrivateKey.generate(),
    )
    ending = await kit._closed_with(forged, kit._hello(parse_claims(forged).sub, "camera"))
    if ending not in (4401, "HTTP 401"):
        raise Failed("channel.bad-token-4401", f"a forged token's channel ended with {ending}")
