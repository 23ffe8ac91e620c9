"""Claims (docs/design.md §2.6): whoever adds a camera's ID gets a claim and can poll as
the device with the password they chose, so a claim must take the camera from no one
unless the device itself proves it. The kit plays a MAC squatter in a second
organization: it claims a camera that is connected to its owner, with a made-up
password, and polls with that password; the owner's channel and camera must not notice.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import TYPE_CHECKING, Any

from agent.provisioning.wire import derive_key
from cloud_mock.conformance.common import ANSWER_TIMEOUT_S, SILENCE_S, Failed, Link, random_mac

if TYPE_CHECKING:  # it imports this module
    from cloud_mock.conformance.checks import Conformance

RULE = "claims.squatter-revokes-nothing"


async def run(kit: Conformance) -> None:
    await kit.step(RULE, lambda: check_squatter(kit))


async def check_squatter(kit: Conformance) -> None:
    kit.cloud.can_add_elsewhere()  # else skipped, before the owner's camera is added
    device_id, password = random_mac(), secrets.token_urlsafe(12)
    await kit.cloud.add_device(device_id, password)
    key = await asyncio.to_thread(derive_key, password, device_id)
    answer, _ = await kit.poll(key, device_id)
    token = kit.open_token(RULE, answer, key, device_id)
    owner = await kit._greet(RULE, token, device_id, "camera")
    try:
        made_up = secrets.token_urlsafe(12)
        await kit.cloud.add_device_elsewhere(device_id, made_up)
        squatter_key = await asyncio.to_thread(derive_key, made_up, device_id)
        # The squatter polls as the device: its own claim verifies, the owner's does not.
        # Whatever it gets (a token of its own claim the device never takes) is no harm.
        polled, _ = await kit.poll(squatter_key, device_id)
        await _still_held(owner, f"the squatter's poll ({polled.status})")
        status = await kit.cloud.camera_status(device_id)
    finally:
        await owner.close()
    if status is not None and status != "online":
        raise Failed(RULE, f"after the squatter's poll the owner's camera is {status!r}")
    seen = f"the owner's camera {status}" if status else "(its status not seen: no user API)"
    kit.passed(
        RULE,
        "another organization's claim with a made-up password, and its poll: the owner's "
        f"channel holds, {seen}",
    )


async def _still_held(owner: Link, after: str) -> None:
    """The owner's channel neither closes nor stops answering: a revocation the cloud sent
    with the squatter's poll arrives before the answer to a heartbeat sent after it."""
    early = await owner.next(SILENCE_S)
    if isinstance(early, tuple):
        raise Failed(RULE, f"after {after} the owner's channel closed with {early[1]}")
    await owner.send_json({"type": "heartbeat"})
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    message: Any = None
    while (left := deadline - time.monotonic()) > 0:
        message = await owner.next(left)
        if isinstance(message, tuple):
            raise Failed(RULE, f"after {after} the owner's channel closed with {message[1]}")
        if isinstance(message, dict) and message.get("type") == "heartbeat":
            return
    raise Failed(RULE, f"after {after} the owner's channel stopped answering: {message!r}")
