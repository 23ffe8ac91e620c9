"""Rules of identity (docs/design.md §2): the poll's proof binds every field of its HMAC
message, and the control channel holds the token's device only (the hello names it, a
second connection replaces the first)."""

from __future__ import annotations

import json
import secrets
import time
from typing import TYPE_CHECKING, Any

from agent.provisioning.wire import PollRequest, new_nonce, poll_proof
from cloud_mock.conformance.common import Failed

if TYPE_CHECKING:
    from cloud_mock.conformance.checks import Conformance

RULES = ("proof.binds-every-field", "channel.hello-identity", "channel.replaced-4409")


async def run(kit: Conformance, device_id: str, key: bytes, token: str) -> None:
    """Before channel.hello-first, which revokes the token."""

    async def proof() -> None:
        await check_proof_binding(kit, device_id, key, Failed)

    async def hello() -> None:
        await check_hello_identity(kit, device_id, token, Failed)

    async def replaced() -> None:
        await check_replacement(kit, device_id, token, Failed)

    await kit.step("proof.binds-every-field", proof)
    await kit.step("channel.hello-identity", hello)
    await kit.step("channel.replaced-4409", replaced)


def skip_all(kit: Conformance, why: str) -> None:
    for rule in RULES:
        kit.skipped(rule, why)


async def check_proof_binding(kit: Conformance, device_id: str, key: bytes, failed: Any) -> None:
    """A proof computed over a message with one field changed, or left out, gets no token:
    the HMAC message is device_id, ts and nonce, each of them bound."""
    wrong = []
    variants = (
        ("another device_id", "device_id", "02:00:5e:00:53:" + secrets.token_hex(1)),
        ("another ts", "ts", -1),
        ("another nonce", "nonce", None),
        ("no nonce", "nonce", ""),
    )
    for what, field, value in variants:
        ts, nonce = kit.cloud_now(), new_nonce()
        signed: dict[str, Any] = {"device_id": device_id, "ts": ts, "nonce": nonce}
        if field == "ts":
            signed["ts"] = ts - 1
        elif field == "nonce" and value is None:
            signed["nonce"] = new_nonce()
        else:
            signed[field] = value
        body = PollRequest.build(key, device_id, ts, 0).to_json()
        body.update(
            ts=ts,
            nonce=nonce,
            proof=poll_proof(key, signed["device_id"], signed["ts"], signed["nonce"]),
        )
        answer = await kit.request("POST", "/v1/provisioning/poll", json.dumps(body).encode())
        if answer.status == 200:
            wrong.append(f"a proof over {what} got 200 and a token")
        elif answer.status != 204:
            wrong.append(f"a proof over {what} got {answer.status}, not 204")
    if wrong:
        raise failed("proof.binds-every-field", "; ".join(wrong))
    kit.passed(
        "proof.binds-every-field", "a proof over another device_id, ts or nonce, or none: 204"
    )


async def check_hello_identity(kit: Conformance, device_id: str, token: str, failed: Any) -> None:
    """A hello naming another device, or another kind, is refused with 4400 (or 4401)."""
    hellos = (
        ("another device_id", kit._hello("02:00:5e:00:53:" + secrets.token_hex(1), "camera")),
        ("kind nvr for a camera token", kit._hello(device_id, "nvr")),
        ("no version", {"type": "hello", "device_id": device_id, "kind": "camera"}),
    )
    wrong = []
    for what, hello in hellos:
        ending = await kit._closed_with(token, hello)
        if ending not in (4400, 4401):
            wrong.append(f"a hello with {what} ended with {ending}")
    if wrong:
        raise failed("channel.hello-identity", "expected 4400 or 4401: " + "; ".join(wrong))
    kit.passed("channel.hello-identity", "another device_id, kind or no version: refused")


async def check_replacement(kit: Conformance, device_id: str, token: str, failed: Any) -> None:
    """A second connection of the same token closes the first with 4409."""
    rule = "channel.replaced-4409"
    first = await kit._greet(rule, token, device_id, "camera")
    try:
        second = await kit._greet(rule, token, device_id, "camera")
        try:
            ending: Any = "still open"
            deadline = time.monotonic() + 10.0
            while (left := deadline - time.monotonic()) > 0:
                message = await first.next(left)
                if isinstance(message, tuple):
                    ending = message[1]
                    break
            if ending != 4409:
                raise failed(rule, f"the first connection ended with {ending}, not 4409")
            await second.send_json({"type": "heartbeat"})
            answer = await second.next(10.0)
            if not isinstance(answer, dict) or answer.get("type") != "heartbeat":
                raise failed(rule, f"the second connection did not answer: {answer!r}")
        finally:
            await second.close()
    finally:
        await first.close()
    kit.passed(rule, "the second connection closed the first with 4409 and holds")
