"""The provisioning service over real HTTPS: proofs, replay, clock, long-poll, faults."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud_mock.provisioning import WAITERS
from cloud_mock.server import RunningMock, start
from tests.cloud_mock.conftest import client_for, mock_options
from tests.cloud_mock.helpers import MAC, PASSWORD, add_camera, poll_body, unseal, verify_token
from tests.eventually import eventually_async
from tests.examples import examples

POLL = "/v1/provisioning/poll"


async def do_poll(client: aiohttp.ClientSession, body: Any) -> tuple[int, Any, float]:
    started = time.monotonic()
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with client.post(
        POLL, data=data, headers={"Content-Type": "application/json"}
    ) as response:
        raw = await response.read()
        payload = json.loads(raw) if raw else None
        return response.status, payload, time.monotonic() - started


async def log_of(client: aiohttp.ClientSession, device_id: str | None = None) -> list[Any]:
    params = {"device_id": device_id} if device_id else {}
    async with client.get("/v1/test/provisioning/log", params=params) as response:
        assert response.status == 200
        polls: list[Any] = (await response.json())["polls"]
        return polls


async def held_polls(mock: RunningMock, count: int) -> None:
    """Until `count` polls are being held by the mock (its long-poll waiters)."""
    waiters = mock.app[WAITERS]
    await eventually_async(lambda: len(waiters), until=lambda n: n >= count, what="held polls")


async def test_right_proof_gets_sealed_signed_token(
    client: aiohttp.ClientSession, auth: dict[str, str], mock: RunningMock
) -> None:
    camera = await add_camera(client, auth)
    status, body, _ = await do_poll(client, poll_body(MAC, PASSWORD))
    assert status == 200
    token = unseal(body["sealed_token"], PASSWORD, MAC)
    assert token == camera["token"]
    claims = verify_token(token, mock.data_dir / "token-signing.pub.pem")
    assert claims["sub"] == MAC
    assert claims["kind"] == "camera"
    assert claims["org"] == "demo"
    assert claims["api"] == mock.url
    assert claims["v"] == 1
    assert claims["cid"] == camera["camera_id"]
    assert isinstance(claims["jti"], str)
    assert abs(claims["iat"] - time.time()) < 5
    assert [p["result"] for p in await log_of(client, MAC)] == ["token"]


async def test_a_poll_with_another_spelling_of_the_mac_gets_its_token(
    client: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    camera = await add_camera(client, auth, device_id="02:77:31:d1:af:ae")
    body = poll_body("02:77:31:d1:af:ae", PASSWORD)  # the proof covers the canonical ID
    body["device_id"] = "02-77-31-D1-AF-AE"
    status, sealed, _ = await do_poll(client, body)
    assert status == 200
    assert unseal(sealed["sealed_token"], PASSWORD, "02:77:31:d1:af:ae") == camera["token"]


async def test_a_poll_with_integral_floats_gets_its_token(
    client: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    """JSON Schema's integers include 1.0 and 1e2: a `ts` or `wait` written so is taken
    (the proof covers the integer's decimal form); a fraction is still 400."""
    camera = await add_camera(client, auth)
    body = poll_body(MAC, PASSWORD)
    body["ts"], body["wait"] = float(body["ts"]), 0.0
    raw = json.dumps(body).encode()
    assert f'"ts": {body["ts"]:.1f},'.encode() in raw
    status, sealed, _ = await do_poll(client, raw)
    assert status == 200
    assert unseal(sealed["sealed_token"], PASSWORD, MAC) == camera["token"]
    body = poll_body(MAC, PASSWORD)
    body["ts"] += 0.5
    status, payload, _ = await do_poll(client, body)
    assert status == 400
    assert "ts must be an integer" in payload["error"]


async def test_a_proof_of_31_bytes_is_400(client: aiohttp.ClientSession) -> None:
    body = poll_body(MAC, PASSWORD, key=bytes(32))
    body["proof"] = base64.b64encode(bytes(31)).decode()
    assert len(body["proof"]) == 44
    status, payload, _ = await do_poll(client, body)
    assert status == 400
    assert "32 bytes" in payload["error"]


@pytest.mark.parametrize("device_id", ["02-77-31-D1-AF-O7", "02:77:31:d1:af:ae:", "0277.31d1.afae"])
async def test_a_poll_with_a_mistyped_mac_is_400_naming_the_rule(
    client: aiohttp.ClientSession, device_id: str
) -> None:
    body = poll_body("02:77:31:d1:af:ae", PASSWORD, key=bytes(32))
    body["device_id"] = device_id
    status, payload, _ = await do_poll(client, body)
    assert status == 400
    assert "exactly 6 octets of two hex digits" in payload["error"]


async def test_wrong_proof_and_unknown_device_are_indistinguishable(
    client: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    await add_camera(client, auth)
    wrong = await do_poll(client, poll_body(MAC, "not-the-password", wait=1))
    unknown = await do_poll(client, poll_body("aa:bb:cc:dd:ee:99", PASSWORD, wait=1))
    assert wrong[:2] == unknown[:2] == (204, None)
    # Both are held for the whole wait: timing tells nothing either.
    assert 0.9 < wrong[2] < 2.0
    assert 0.9 < unknown[2] < 2.0
    assert (await log_of(client, MAC))[-1]["result"] == "bad_proof"
    assert (await log_of(client, "aa:bb:cc:dd:ee:99"))[-1]["result"] == "unknown"


async def test_replayed_poll_gets_nothing(
    client: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    await add_camera(client, auth)
    body = poll_body(MAC, PASSWORD)
    assert (await do_poll(client, body))[0] == 200
    assert (await do_poll(client, body))[0] == 204
    assert [p["result"] for p in await log_of(client, MAC)] == ["token", "replay"]


async def test_clock_window_follows_the_mock_clock(
    client: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    await add_camera(client, auth)
    now = int(time.time())
    assert (await do_poll(client, poll_body(MAC, PASSWORD, ts=now - 330)))[0] == 204
    assert (await do_poll(client, poll_body(MAC, PASSWORD, ts=now + 330)))[0] == 204
    assert (await do_poll(client, poll_body(MAC, PASSWORD, ts=now - 250)))[0] == 200

    async with client.post("/v1/test/clock", json={"advance_s": 1000}) as response:
        assert response.status == 200
        mock_now = (await response.json())["now"]
    assert mock_now == pytest.approx(time.time() + 1000, abs=5)
    # A device with the host's time is now 1000 s off: refused...
    async with client.post(POLL, json=poll_body(MAC, PASSWORD)) as response:
        assert response.status == 204
        date = email.utils.parsedate_to_datetime(response.headers["Date"]).timestamp()
    # ...and the Date header it got tells it the cloud's time, which is then accepted.
    assert date == pytest.approx(time.time() + 1000, abs=5)
    assert (await do_poll(client, poll_body(MAC, PASSWORD, ts=int(date))))[0] == 200
    results = [p["result"] for p in await log_of(client, MAC)]
    assert results == ["clock_skew", "clock_skew", "token", "clock_skew", "token"]


async def test_long_poll_wakes_when_camera_is_added(
    client: aiohttp.ClientSession, auth: dict[str, str], mock: RunningMock
) -> None:
    poll_task = asyncio.create_task(do_poll(client, poll_body(MAC, PASSWORD, wait=10)))
    # Time is the subject: the add comes 0.3 s into the hold; the log's held_s is checked
    # against it below.
    await asyncio.sleep(0.3)
    assert not poll_task.done()
    camera = await add_camera(client, auth)
    added_at = time.monotonic()
    status, body, _ = await asyncio.wait_for(poll_task, 5)
    assert time.monotonic() - added_at < 0.1
    assert status == 200
    token = unseal(body["sealed_token"], PASSWORD, MAC)
    assert token == camera["token"]
    verify_token(token, mock.data_dir / "token-signing.pub.pem")
    [entry] = await log_of(client, MAC)
    assert entry["result"] == "token"
    assert entry["wait"] == 10
    assert 0.2 < entry["held_s"] < 2


async def test_a_poll_abandoned_by_its_device_is_released_at_once(
    client: aiohttp.ClientSession, mock: RunningMock
) -> None:
    async with client_for(mock) as impatient:
        task = asyncio.create_task(do_poll(impatient, poll_body(MAC, PASSWORD, wait=30)))
        await held_polls(mock, 1)
        task.cancel()
    entries: list[Any] = await eventually_async(
        lambda: log_of(client, MAC), timeout=3, what="the abandoned poll in the log"
    )
    [entry] = entries
    assert entry["result"] == "abandoned"
    assert entry["held_s"] < 2, "the handler must not sit out the 30 s wait"


async def test_many_held_polls_of_many_devices(
    client: aiohttp.ClientSession, auth: dict[str, str], mock: RunningMock
) -> None:
    macs = [f"aa:bb:cc:00:00:{i:02x}" for i in range(40)]
    bodies = [
        poll_body(m, PASSWORD, wait=10, key=None if i == 7 else b"k" * 32)
        for i, m in enumerate(macs)
    ]
    tasks = [asyncio.create_task(do_poll(client, body)) for body in bodies]
    await held_polls(mock, 40)
    await add_camera(client, auth, device_id=macs[7])
    status, _, _ = await asyncio.wait_for(tasks[7], 5)
    assert status == 200
    # Only that device's poll was answered; the others are still held.
    assert not any(t.done() for i, t in enumerate(tasks) if i != 7)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_held_poll_with_wrong_password_keeps_waiting(
    client: aiohttp.ClientSession, auth: dict[str, str], mock: RunningMock
) -> None:
    poll_task = asyncio.create_task(do_poll(client, poll_body(MAC, "other", wait=1)))
    await held_polls(mock, 1)
    await add_camera(client, auth)
    status, _, elapsed = await poll_task
    assert status == 204
    assert elapsed > 0.9
    assert (await log_of(client, MAC))[-1]["result"] == "bad_proof"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not JSON"),
        (b"{", "not JSON"),
        (b"[]", "JSON object"),
        (b"\xff\xfe", "not JSON"),
        (b'{"device_id": "x"}', "missing"),
        (b'{"device_id": 1, "ts": 1, "nonce": "", "proof": ""}', "device_id"),
        (b'{"device_id": "x", "ts": "1", "nonce": "", "proof": ""}', "ts"),
        (b'{"device_id": "x", "ts": true, "nonce": "", "proof": ""}', "ts"),
        (b'{"device_id": "x", "ts": 1, "nonce": "!!", "proof": ""}', "nonce"),
        (b'{"device_id": "x", "ts": 1, "nonce": "AAAA", "proof": ""}', "nonce"),
        (b'{"device_id": "x", "ts": 1, "nonce": "AAAAAAAAAAAAAAAAAAAAAA==", "proof": 5}', "proof"),
        (
            b'{"device_id": "x", "ts": 1, "nonce": "AAAAAAAAAAAAAAAAAAAAAA==", "proof": "",'
            b' "wait": -1}',
            "wait",
        ),
        (b"[" * 3000 + b"]" * 1000, "nested too deeply"),
        (b"[" * 5000 + b"]" * 5000, "413"),
    ],
)
async def test_malformed_polls_are_400(
    client: aiohttp.ClientSession, body: bytes, reason: str
) -> None:
    status, payload, _ = await do_poll(client, body)
    if reason == "413":
        assert status == 413
    else:
        assert status == 400
        assert reason in payload["error"]


async def test_oversized_poll_is_413(client: aiohttp.ClientSession) -> None:
    body = poll_body(MAC, PASSWORD)
    body["padding"] = "x" * 5000
    status, payload, _ = await do_poll(client, body)
    assert status == 413
    assert "4096" in payload["error"]
    # Chunked upload (no Content-Length) is cut off too.

    async def chunks() -> Any:
        for _ in range(10):
            yield b"x" * 1000

    async with client.post(POLL, data=chunks()) as response:
        assert response.status == 413


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
poll_like = st.fixed_dictionaries(
    {},
    optional={
        "device_id": json_values | st.just(MAC),
        "ts": json_values | st.just(int(time.time())),
        "nonce": json_values | st.just(base64.b64encode(b"n" * 16).decode()),
        "proof": json_values | st.just(base64.b64encode(b"p" * 32).decode()),
        # Never a valid wait > 0: a well-formed poll would then be held for real.
        "wait": st.just(0)
        | st.integers(max_value=-1)
        | st.integers(min_value=301)
        | st.text(max_size=5)
        | st.floats()
        | st.booleans()
        | st.none(),
    },
)


@settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    body=st.binary(max_size=200)
    | json_values.map(lambda v: json.dumps(v).encode())
    | poll_like.map(lambda v: json.dumps(v).encode())
)
async def test_random_bodies_never_500(client: aiohttp.ClientSession, body: bytes) -> None:
    status, _, _ = await do_poll(client, body)
    assert status in (204, 400)


async def test_fault_hook_answers_503_with_retry_after(
    client: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    await add_camera(client, auth)
    async with client.post(
        "/v1/test/provisioning/fault", json={"status": 503, "retry_after": 7, "count": 2}
    ) as response:
        assert response.status == 200
    for _ in range(2):
        async with client.post(POLL, json=poll_body(MAC, PASSWORD)) as response:
            assert response.status == 503
            assert response.headers["Retry-After"] == "7"
    async with client.post(
        "/v1/test/provisioning/fault", json={"status": 429, "retry_after": 3, "count": 1}
    ) as response:
        assert response.status == 200
    async with client.post(POLL, json=poll_body(MAC, PASSWORD)) as response:
        assert response.status == 429
        assert response.headers["Retry-After"] == "3"
    assert (await do_poll(client, poll_body(MAC, PASSWORD)))[0] == 200
    assert [p["result"] for p in await log_of(client, MAC)] == ["fault"] * 3 + ["token"]


@pytest.mark.parametrize(
    "body",
    [
        {"status": 500, "retry_after": 1, "count": 1},
        {"status": 503, "retry_after": -1, "count": 1},
        {"status": 503, "retry_after": 1},
        {"status": True, "retry_after": 1, "count": 1},
    ],
)
async def test_fault_hook_validates(client: aiohttp.ClientSession, body: Any) -> None:
    async with client.post("/v1/test/provisioning/fault", json=body) as response:
        assert response.status == 400


async def test_keys_endpoint_publishes_the_signing_key(
    client: aiohttp.ClientSession, mock: RunningMock
) -> None:
    async with client.get("/v1/keys") as response:
        assert response.status == 200
        [entry] = (await response.json())["keys"]
    assert entry["alg"] == "Ed25519"
    pem = (mock.data_dir / "token-signing.pub.pem").read_text()
    assert entry["pem"] == pem
    key = serialization.load_pem_public_key(pem.encode())
    assert isinstance(key, Ed25519PublicKey)
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert entry["kid"] == hashlib.sha256(raw).hexdigest()[:16]


async def test_every_response_has_mock_clock_date(client: aiohttp.ClientSession) -> None:
    async with client.post("/v1/test/clock", json={"advance_s": -7200}) as response:
        assert response.status == 200
    for method, path in (("GET", "/v1/keys"), ("GET", "/nowhere"), ("POST", POLL)):
        async with client.request(method, path) as response:
            date = email.utils.parsedate_to_datetime(response.headers["Date"]).timestamp()
            assert date == pytest.approx(time.time() - 7200, abs=5)


async def test_clock_hook_rejects_non_numbers(client: aiohttp.ClientSession) -> None:
    for body in ({"advance_s": "1"}, {"advance_s": True}, {}, [1]):
        async with client.post("/v1/test/clock", json=body) as response:
            assert response.status == 400


async def test_test_hooks_absent_without_flag(tmp_path: Path) -> None:
    running = await start(mock_options(tmp_path / "cloud", test_hooks=False))
    try:
        async with client_for(running) as client:
            for method, path in (
                ("POST", "/v1/test/clock"),
                ("GET", "/v1/test/provisioning/log"),
                ("POST", "/v1/test/provisioning/fault"),
            ):
                async with client.request(method, path, json={"advance_s": 1}) as response:
                    assert response.status == 404
    finally:
        await running.stop()
