"""Provisioning and token rules (docs/design.md §2): the published keys, the poll's
answers (unknown device, malformed, the token sealed under K, replay, clock window, no
difference between an unknown device and a wrong proof, long-poll, Retry-After) and the
camera token's format, signature and claims."""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import secrets
import statistics
import time
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.errors import TokenError
from agent.provisioning.wire import PollRequest, derive_key
from agent.token_codec import TokenClaims, load_public_key, origin, parse_claims, split_token
from cloud_mock.conformance.common import (
    HELD_BEFORE_ADD_S,
    INSIDE_S,
    LONG_POLL_WAIT_S,
    OUTSIDE_S,
    POLL_PATH,
    TS_WINDOW_S,
    WAKE_SLACK_S,
    Failed,
    random_mac,
)

if TYPE_CHECKING:  # it imports this module
    from cloud_mock.conformance.checks import Conformance


async def check_keys(kit: Conformance) -> None:
    answer = await kit.request("GET", "/v1/keys")
    data = answer.json()
    if answer.status != 200 or not isinstance(data, dict):
        raise Failed("keys.published", f"GET /v1/keys answered {answer.status}")
    for entry in data.get("keys") or []:
        if isinstance(entry, dict) and isinstance(entry.get("pem"), str):
            try:
                kit.keys.append(load_public_key(entry["pem"].encode(), "GET /v1/keys"))
            except TokenError as error:
                raise Failed("keys.published", str(error)) from None
    if not kit.keys:
        raise Failed("keys.published", "GET /v1/keys lists no Ed25519 public key")


async def check_unknown_device(kit: Conformance) -> None:
    answer, _ = await kit.poll(os.urandom(32), random_mac())
    date = answer.headers.get("date")
    if date is None:
        kit.failed("prov.date-header", "a poll answer has no Date header")
    else:
        try:
            email.utils.parsedate_to_datetime(date)
            kit.passed("prov.date-header", f"Date: {date}")
        except (TypeError, ValueError):
            kit.failed("prov.date-header", f"Date {date!r} is not an HTTP date")
    if answer.status != 204 or answer.body:
        raise Failed(
            "prov.unknown-no-token",
            f"expected 204 without a body, got {answer.status} with {len(answer.body)} B",
        )


async def check_malformed(kit: Conformance) -> None:
    key, device_id = os.urandom(32), random_mac()
    good = PollRequest.build(key, device_id, kit.cloud_now(), 0).to_json()
    bad: list[tuple[str, bytes]] = [
        ("an empty body", b""),
        ("text that is not JSON", b"not json"),
        ("a JSON array", b"[]"),
        ("no proof", json.dumps({k: v for k, v in good.items() if k != "proof"}).encode()),
        ("ts as text", json.dumps({**good, "ts": "now"}).encode()),
        ("an enormous ts", json.dumps({**good, "ts": 10**309}).encode()),
        ("a negative wait", json.dumps({**good, "wait": -1}).encode()),
        ("a nonce that is not base64", json.dumps({**good, "nonce": "%%%"}).encode()),
        ("a device_id that is a number", json.dumps({**good, "device_id": 7}).encode()),
        ("deep nesting", b"[" * 3000 + b"]" * 3000),
        ("a 1 MiB body", b'{"device_id": "' + b"a" * (1 << 20) + b'"}'),
    ]
    wrong = []
    for what, body in bad:
        answer = await kit.request("POST", POLL_PATH, body)
        if answer.status not in (400, 413):
            wrong.append(f"{what} → {answer.status}")
    if wrong:
        raise Failed("prov.malformed-400", "expected 400 or 413: " + ", ".join(wrong))


async def check_token_delivered(kit: Conformance) -> tuple[str, bytes, str, bytes]:
    device_id, password = random_mac(), secrets.token_urlsafe(12)
    await kit.cloud.add_device(device_id, password)
    key = await asyncio.to_thread(derive_key, password, device_id)
    answer, body = await kit.poll(key, device_id)
    token = kit.open_token("prov.token-delivered", answer, key, device_id)
    return device_id, key, token, body


def verify_token(
    kit: Conformance, prefix: str, token: str, device_id: str, kind: str
) -> TokenClaims:
    """The token rules, each recorded on its own (`prefix` "token" or "nvr")."""

    def rule(name: str) -> str:
        return f"token.{name}" if prefix == "token" else "nvr.token"

    try:
        claims = parse_claims(token)
        payload, signature = split_token(token)
    except TokenError as error:
        raise Failed(rule("format"), str(error)) from None
    if prefix == "token":
        kit.passed("token.format", f"v{claims.v}, jti {claims.jti[:12]}…")
    if not any(_verifies(key, signature, payload) for key in kit.keys):
        raise Failed(rule("signature"), "the signature verifies with no key of GET /v1/keys")
    checks = (
        ("sub", claims.sub == device_id, f"sub is {claims.sub!r}, the device is {device_id!r}"),
        ("kind", claims.kind == kind, f"kind is {claims.kind!r}, the device is a {kind}"),
        (
            "api",
            origin(claims.api) == origin(kit.url) and origin(claims.api)[0] == "https",
            f"api is {claims.api!r}, the cloud is {kit.url!r}",
        ),
    )
    failures = [(name, why) for name, ok, why in checks if not ok]
    if prefix == "token":
        kit.passed("token.signature", "Ed25519, a key of GET /v1/keys")
        for name, ok, why in checks:
            if ok:
                kit.passed(f"token.{name}")
            else:
                kit.failed(f"token.{name}", why)
    elif failures:
        raise Failed("nvr.token", "; ".join(why for _, why in failures))
    return claims


async def check_token(kit: Conformance, token: str, device_id: str, kind: str) -> None:
    verify_token(kit, "token", token, device_id, kind)


async def check_replay(kit: Conformance, body: bytes) -> None:
    answer = await kit.request("POST", POLL_PATH, body)
    if answer.status == 200:
        raise Failed("prov.replay-refused", "the replayed poll got 200 and a token")
    if answer.status != 204:
        raise Failed("prov.replay-refused", f"expected 204, got {answer.status}")


async def check_window(kit: Conformance, key: bytes, device_id: str) -> None:
    wrong = []
    for offset, expected in (
        (-OUTSIDE_S, 204),
        (OUTSIDE_S, 204),
        (-INSIDE_S, 200),
        (INSIDE_S, 200),
    ):
        answer, _ = await kit.poll(key, device_id, ts=kit.cloud_now() + offset)
        if answer.status != expected:
            wrong.append(f"ts {offset:+d} s → {answer.status} (expected {expected})")
    if wrong:
        raise Failed(
            "prov.clock-window", f"±{TS_WINDOW_S} s of the Date header: " + ", ".join(wrong)
        )


async def check_indistinguishable(kit: Conformance, device_id: str) -> None:
    """A wrong proof for a device that has a token vs a device nobody added."""
    unknown = random_mac()
    wrong_key = os.urandom(32)
    timings: dict[str, list[float]] = {"wrong proof": [], "unknown device": []}
    shapes: dict[str, set[str]] = {"wrong proof": set(), "unknown device": set()}
    for _ in range(kit.options.timing_samples):
        for what, dev in (("wrong proof", device_id), ("unknown device", unknown)):
            answer, _ = await kit.poll(wrong_key, dev)
            timings[what].append(answer.seconds)
            headers = {k: v for k, v in answer.headers.items() if k != "date"}
            shapes[what].add(f"{answer.status} {sorted(headers.items())} {answer.body!r}")
    if shapes["wrong proof"] != shapes["unknown device"] or len(shapes["wrong proof"]) != 1:
        raise Failed(
            "prov.indistinguishable",
            f"answers differ: wrong proof {sorted(shapes['wrong proof'])[:2]} vs unknown "
            f"device {sorted(shapes['unknown device'])[:2]}",
        )
    medians = {what: statistics.median(values) for what, values in timings.items()}
    gap = abs(medians["wrong proof"] - medians["unknown device"])
    detail = (
        f"medians {medians['wrong proof'] * 1000:.1f} vs "
        f"{medians['unknown device'] * 1000:.1f} ms over {kit.options.timing_samples} "
        f"polls each (tolerance {kit.options.timing_tolerance_s * 1000:g} ms)"
    )
    if gap > kit.options.timing_tolerance_s:
        raise Failed("prov.indistinguishable", "timing differs: " + detail)
    kit.passed("prov.indistinguishable", detail)


async def check_long_poll(kit: Conformance) -> None:
    device_id, password = random_mac(), secrets.token_urlsafe(12)
    key = await asyncio.to_thread(derive_key, password, device_id)
    held = asyncio.create_task(kit.poll(key, device_id, wait=LONG_POLL_WAIT_S))
    try:
        await asyncio.sleep(HELD_BEFORE_ADD_S)
        if held.done():
            answer, _ = held.result()
            raise Failed(
                "prov.long-poll-wakeup",
                f"a poll with wait={LONG_POLL_WAIT_S} answered {answer.status} at once: "
                "no long-poll",
            )
        await kit.cloud.add_device(device_id, password)
        added = time.monotonic()
        answer, _ = await asyncio.wait_for(held, LONG_POLL_WAIT_S + 5)
    finally:
        held.cancel()
    late = time.monotonic() - added
    kit.open_token("prov.long-poll-wakeup", answer, key, device_id)
    if late > WAKE_SLACK_S:
        raise Failed(
            "prov.long-poll-wakeup",
            f"answered {late:.1f} s after the add (at most {WAKE_SLACK_S:g} s)",
        )
    kit.passed("prov.long-poll-wakeup", f"token {late * 1000:.0f} ms after the add")


async def check_retry_after(kit: Conformance) -> None:
    await kit.cloud.overload()
    answer, _ = await kit.poll(os.urandom(32), random_mac())
    if answer.status not in (429, 503):
        raise Failed("prov.retry-after", f"expected 429 or 503, got {answer.status}")
    value = answer.headers.get("retry-after", "")
    if not value.isdigit():
        raise Failed("prov.retry-after", f"{answer.status} with Retry-After {value!r}")
    kit.passed("prov.retry-after", f"{answer.status}, Retry-After: {value}")


def _verifies(key: Ed25519PublicKey, signature: bytes, payload: bytes) -> bool:
    try:
        key.verify(signature, payload)
    except InvalidSignature:
        return False
    return True
