"""One provisioning request against a real aiohttp server over real TLS (docs/design.md §2)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import email.utils
import hashlib
import hmac
import ipaddress
import json
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

from agent.errors import WireError
from agent.provisioning.client import (
    PollOutcome,
    _clock_offset,
    fetch_keys,
    parse_retry_after,
    poll_once,
    request_ts,
)
from agent.tls import client_context

DEVICE = "aa:bb:cc:dd:ee:ff"
KEY = bytes(range(32))
TOKEN = "eyJ2IjoxfQ.c2lnbmF0dXJl"


# -- request_ts and parse_retry_after ----------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "now", "expected"),
    [
        (None, 1000.7, 1000),
        (0.0, 1000.0, 1000),
        (30.0, 1000.0, 1000),  # network delay, not a wrong clock
        (-60.0, 1000.0, 1000),
        (60.5, 1000.0, 1060),  # more than a minute: our clock is wrong, trust the cloud
        (3600.0, 1000.0, 4600),
        (1_700_000_000.0, 12.0, 1_700_000_012),  # a camera that booted in 1970
        (-120.5, 1000.0, 879),
    ],
)
def test_request_ts(offset: float | None, now: float, expected: int) -> None:
    assert request_ts(offset, now=now) == expected


def test_request_ts_defaults_to_the_local_clock() -> None:
    before = int(time.time())
    assert before <= request_ts(None) <= int(time.time())


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("120", 120.0), (" 7 ", 7.0), ("0", 0.0), ("soon", None)],
)
def test_parse_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=1_000_000.0) == expected


def test_parse_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    value = email.utils.formatdate(now + 90, usegmt=True)
    assert parse_retry_after(value, now) == pytest.approx(90.0)


def test_parse_retry_after_http_date_in_the_past_is_zero() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(email.utils.formatdate(now - 500, usegmt=True), now) == 0.0


# -- a real TLS server -------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1 and localhost, made here."""
    directory = tmp_path_factory.mktemp("pki")
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "camagent test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = {
        "ca": directory / "ca.pem",
        "cert": directory / "server.pem",
        "key": directory / "server.key",
    }
    paths["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


Responder = Callable[[web.Request, dict[str, Any]], Awaitable[web.StreamResponse]]


@dataclass
class FakeCloud:
    url: str
    seen: list[dict[str, Any]] = field(default_factory=list)
    respond: Responder | None = None
    keys_answer: Callable[[], web.StreamResponse] | None = None
    keys_handler: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None
    release: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def cloud(pki: dict[str, Path]) -> AsyncIterator[FakeCloud]:
    state = FakeCloud(url="")

    async def poll(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        state.seen.append(body)
        assert state.respond is not None
        return await state.respond(request, body)

    async def keys(request: web.Request) -> web.StreamResponse:
        if state.keys_handler is not None:
            return await state.keys_handler(request)
        assert state.keys_answer is not None
        return state.keys_answer()

    app = web.Application()
    app.router.add_post("/v1/provisioning/poll", poll)
    app.router.add_get("/v1/keys", keys)
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ssl.load_cert_chain(pki["cert"], pki["key"])
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ssl)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"https://127.0.0.1:{port}"
    try:
        yield state
    finally:
        state.release.set()
        await runner.cleanup()


@pytest.fixture
async def session(pki: dict[str, Path]) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(ssl=client_context(str(pki["ca"])))
    async with aiohttp.ClientSession(connector=connector) as s:
        yield s


async def poll(
    session: aiohttp.ClientSession,
    url: str,
    *,
    key: bytes = KEY,
    timeout: float = 5.0,
    clock_offset: float | None = None,
    wall: Callable[[], float] = time.time,
) -> PollOutcome:
    return await poll_once(
        session, url, key, DEVICE, wait=7, timeout=timeout, clock_offset=clock_offset, wall=wall
    )


def seal(key: bytes, token: str, device_id: str = DEVICE) -> str:
    nonce12 = os.urandom(12)
    ciphertext = AESGCM(key).encrypt(nonce12, token.encode(), device_id.encode())
    return base64.b64encode(nonce12 + ciphertext).decode()


def check_poll_body(body: dict[str, Any], expected_ts: float) -> None:
    """What the cloud receives is a valid v1 poll, proven with K (checked here with hmac)."""
    assert set(body) == {"device_id", "ts", "nonce", "proof", "wait"}
    assert body["device_id"] == DEVICE
    assert body["wait"] == 7
    assert isinstance(body["ts"], int)
    assert abs(body["ts"] - expected_ts) <= 2
    assert len(base64.b64decode(body["nonce"], validate=True)) == 16
    message = f"{DEVICE}\n{body['ts']}\n{body['nonce']}".encode()
    expected = base64.b64encode(hmac.new(KEY, message, hashlib.sha256).digest()).decode()
    assert body["proof"] == expected


# -- poll_once ---------------------------------------------------------------------------


async def test_204_means_no_token_yet(cloud: FakeCloud, session: aiohttp.ClientSession) -> None:
    async def respond(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        return web.Response(status=204)

    cloud.respond = respond
    outcome = await poll(session, cloud.url)
    assert outcome.token is None
    assert "no token" in outcome.detail
    assert outcome.retry_after is None
    assert outcome.clock_offset is not None
    assert abs(outcome.clock_offset) < 5
    assert len(cloud.seen) == 1
    check_poll_body(cloud.seen[0], time.time())


async def test_two_polls_use_fresh_nonces(cloud: FakeCloud, session: aiohttp.ClientSession) -> None:
    async def respond(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        return web.Response(status=204)

    cloud.respond = respond
    await poll(session, cloud.url)
    await poll(session, cloud.url + "/")  # a trailing slash in the URL is fine
    assert len(cloud.seen) == 2
    assert cloud.seen[0]["nonce"] != cloud.seen[1]["nonce"]


async def test_200_with_a_sealed_token(cloud: FakeCloud, session: aiohttp.ClientSession) -> None:
    async def respond(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        return web.json_response({"sealed_token": seal(KEY, TOKEN)})

    cloud.respond = respond
    outcome = await poll(session, cloud.url)
    assert outcome.token == TOKEN
    assert "token received" in outcome.detail
    assert outcome.retry_after is None


@pytest.mark.parametrize("status", [503, 429])
async def test_retry_after_in_seconds(
    cloud: FakeCloud, session: aiohttp.ClientSession, status: int
) -> None:
    async def respond(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        return web.Response(status=status, headers={"Retry-After": "120"})

    cloud.respond = respond
    outcome = await poll(session, cloud.url)
    assert outcome.token is None
    assert outcome.detail == f"HTTP {status}"
    assert outcome.retry_after == 120.0


async def test_retry_after_as_http_date(cloud: FakeCloud, session: aiohttp.ClientSession) -> None:
    async def respond(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        when = email.utils.formatdate(time.time() + 300, usegmt=True)
        return web.Response(status=503, headers={"Retry-After": when})

    cloud.respond = respond
    outcome = await poll(session, cloud.url)
    assert outcome.retry_after is not None
    assert 297 <= outcome.retry_after <= 301


async def test_500_is_a_request_without_token(
    cloud: FakeCloud, session: aiohttp.ClientSession
) -> None:
    async def respond(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        return web.Response(status=500, text="oops")

    cloud.respond = respond
    outcome = await poll(session, cloud.url)
    assert (outcome.token, outcome.detail, outcome.retry_after) == (None, "HTTP 500", None)


async def test_clock_offset_from_the_date_header(
    cloud: FakeCloud, session: aiohttp.ClientSession
) -> None:
    """A camera whose clock is an hour behind learns it, and the next poll's ts follows."""

    async def respond(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        return web.Response(
            status=204, headers={"Date": email.utils.formatdate(time.time() + 3600, usegmt=True)}
        )

    cloud.respond = respond
    outcome = await poll(session, cloud.url)
    assert outcome.clock_offset is not None
    assert 3597 <= outcome.clock_offset <= 3601
    await poll(session, cloud.url, clock_offset=outcome.clock_offset)
    check_poll_body(cloud.seen[1], time.time() + 3600)


async def test_the_request_ts_and_the_offset_come_from_the_injected_wall_clock(
    cloud: FakeCloud, session: aiohttp.ClientSession
) -> None:
    """A camera that booted in 1970 (no RTC, no NTP): its poll says so exactly, and the
    offset it learns is the cloud's Date minus that clock, so the next poll is corrected."""
    booted_in_1970 = 1000.0
    cloud_now = 1_800_000_000

    async def respond(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        return web.Response(
            status=204, headers={"Date": email.utils.formatdate(cloud_now, usegmt=True)}
        )

    cloud.respond = respond
    outcome = await poll(session, cloud.url, wall=lambda: booted_in_1970)
    assert cloud.seen[0]["ts"] == 1000
    assert outcome.clock_offset == cloud_now - booted_in_1970
    await poll(session, cloud.url, clock_offset=outcome.clock_offset, wall=lambda: booted_in_1970)
    assert cloud.seen[1]["ts"] == cloud_now


async def test_a_date_header_that_is_no_date_teaches_no_offset(
    cloud: FakeCloud, session: aiohttp.ClientSession
) -> None:
    async def respond(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        return web.Response(status=204, headers={"Date": "the day after tomorrow"})

    cloud.respond = respond
    outcome = await poll(session, cloud.url)
    assert outcome.answered
    assert outcome.clock_offset is None


def test_an_answer_without_a_date_header_teaches_no_offset() -> None:
    # aiohttp's server always sends Date: a response object without one stands in for a
    # cloud (or a proxy) that leaves it out.
    class NoDate:
        headers: dict[str, str] = {}

    assert _clock_offset(NoDate(), 1000.0) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"this is not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b'{"token": "x"}', "no sealed_token"),
        (b"[1, 2, 3]", "no sealed_token"),
        (b'{"sealed_token": 5}', "base64"),
        (b'{"sealed_token": "%%%"}', "not valid base64"),
        (b'{"sealed_token": "QUJD"}', "too short"),
    ],
)
async def test_malformed_answers(
    cloud: FakeCloud, session: aiohttp.ClientSession, body: bytes, words: str
) -> None:
    async def respond(request: web.Request, _: dict[str, Any]) -> web.StreamResponse:
        return web.Response(status=200, body=body, content_type="application/json")

    cloud.respond = respond
    outcome = await poll(session, cloud.url)
    assert outcome.token is None
    assert outcome.detail.startswith("malformed answer: ")
    assert words in outcome.detail
    assert outcome.clock_offset is not None


async def test_a_huge_answer_is_malformed(cloud: FakeCloud, session: aiohttp.ClientSession) -> None:
    async def respond(request: web.Request, _: dict[str, Any]) -> web.StreamResponse:
        padding = "x" * (100 * 1024)
        return web.json_response({"sealed_token": seal(KEY, TOKEN), "padding": padding})

    cloud.respond = respond
    outcome = await poll(session, cloud.url)
    assert outcome.token is None
    assert outcome.detail.startswith("malformed answer")


async def test_token_sealed_under_another_key(
    cloud: FakeCloud, session: aiohttp.ClientSession
) -> None:
    async def respond(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        return web.json_response({"sealed_token": seal(os.urandom(32), TOKEN)})

    cloud.respond = respond
    outcome = await poll(session, cloud.url)
    assert outcome.token is None
    assert "malformed answer" in outcome.detail
    assert "password" in outcome.detail


async def test_token_sealed_for_another_device(
    cloud: FakeCloud, session: aiohttp.ClientSession
) -> None:
    async def respond(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        return web.json_response({"sealed_token": seal(KEY, TOKEN, "11:22:33:44:55:66")})

    cloud.respond = respond
    outcome = await poll(session, cloud.url)
    assert outcome.token is None
    assert "does not open" in outcome.detail


async def test_a_server_that_never_answers_times_out(
    cloud: FakeCloud, session: aiohttp.ClientSession
) -> None:
    async def respond(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        await cloud.release.wait()
        return web.Response(status=204)

    cloud.respond = respond
    started = time.monotonic()
    outcome = await poll(session, cloud.url, timeout=0.3)
    elapsed = time.monotonic() - started
    assert outcome.token is None
    assert "timed out" in outcome.detail
    assert "0.3" in outcome.detail
    assert 0.25 <= elapsed < 3


async def test_a_closed_port_is_a_network_error(session: aiohttp.ClientSession) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    outcome = await poll(session, f"https://127.0.0.1:{port}")
    assert outcome.token is None
    assert outcome.detail.startswith("network error")
    assert outcome.retry_after is None
    assert outcome.clock_offset is None


async def test_an_untrusted_certificate_is_a_network_error(cloud: FakeCloud) -> None:
    async def respond(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        return web.json_response({"sealed_token": seal(KEY, TOKEN)})

    cloud.respond = respond
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=client_context(""))  # system CAs only
    ) as plain:
        outcome = await poll(plain, cloud.url)
    assert outcome.token is None
    assert outcome.detail.startswith("network error")
    assert cloud.seen == []  # the poll (and its proof) never left the device


async def send_in_two_parts(request: web.Request, body: bytes) -> web.StreamResponse:
    """A correct answer that reaches the device in two network writes (chunked encoding)."""
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    half = len(body) // 2
    await response.write(body[:half])
    # time is the subject: the device sees the answer arrive in two parts
    await asyncio.sleep(0.1)
    await response.write(body[half:])
    await response.write_eof()
    return response


async def test_a_token_answer_in_two_network_writes_is_read_whole(
    cloud: FakeCloud, session: aiohttp.ClientSession
) -> None:
    async def respond(request: web.Request, _: dict[str, Any]) -> web.StreamResponse:
        return await send_in_two_parts(
            request, json.dumps({"sealed_token": seal(KEY, TOKEN)}).encode()
        )

    cloud.respond = respond
    outcome = await poll(session, cloud.url)
    assert outcome.detail == "token received"
    assert outcome.token == TOKEN


async def test_deeply_nested_answer_is_malformed(
    cloud: FakeCloud, session: aiohttp.ClientSession
) -> None:
    async def respond(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        return web.Response(status=200, body=b"[" * 5000, content_type="application/json")

    cloud.respond = respond
    outcome = await poll(session, cloud.url)  # json.loads raises RecursionError on it
    assert outcome.token is None
    assert "malformed answer" in outcome.detail


# -- fetch_keys --------------------------------------------------------------------------

PEM = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n"


async def test_fetch_keys(cloud: FakeCloud, session: aiohttp.ClientSession) -> None:
    cloud.keys_answer = lambda: web.json_response(
        {"keys": [{"kid": "a", "pem": PEM}, {"kid": "b", "pem": PEM + " "}]}
    )
    assert await fetch_keys(session, cloud.url) == [PEM, PEM + " "]


async def test_fetch_keys_answer_in_two_network_writes(
    cloud: FakeCloud, session: aiohttp.ClientSession
) -> None:
    async def keys(request: web.Request) -> web.StreamResponse:
        return await send_in_two_parts(request, json.dumps({"keys": [{"pem": PEM}]}).encode())

    cloud.keys_handler = keys
    assert await fetch_keys(session, cloud.url) == [PEM]


@pytest.mark.parametrize(
    "answer",
    [
        lambda: web.json_response({"keys": []}),
        lambda: web.json_response({}),
        lambda: web.json_response([PEM]),
        lambda: web.json_response({"keys": [{"kid": "a"}]}),
        lambda: web.json_response({"keys": [{"pem": 5}]}),
    ],
)
async def test_fetch_keys_without_keys(
    cloud: FakeCloud, session: aiohttp.ClientSession, answer: Callable[[], web.Response]
) -> None:
    cloud.keys_answer = answer
    with pytest.raises(WireError, match="lists no keys"):
        await fetch_keys(session, cloud.url)


@pytest.mark.parametrize(
    "answer",
    [lambda: web.Response(status=500), lambda: web.Response(text="<html>", status=200)],
)
async def test_fetch_keys_failure_names_the_cloud(
    cloud: FakeCloud, session: aiohttp.ClientSession, answer: Callable[[], web.Response]
) -> None:
    cloud.keys_answer = answer
    with pytest.raises(WireError, match="cannot fetch the cloud's keys from") as info:
        await fetch_keys(session, cloud.url)
    assert cloud.url in str(info.value)


async def test_fetch_keys_of_deeply_nested_json(
    cloud: FakeCloud, session: aiohttp.ClientSession
) -> None:
    cloud.keys_answer = lambda: web.Response(body=b"[" * 5000, content_type="application/json")
    with pytest.raises(WireError, match="cannot fetch the cloud's keys"):
        await fetch_keys(session, cloud.url)


async def test_fetch_keys_from_a_closed_port(session: aiohttp.ClientSession) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(WireError, match="cannot fetch"):
        await fetch_keys(session, f"https://127.0.0.1:{port}")


def test_json_helper_sanity() -> None:
    # The fake cloud speaks the same JSON the real one does: a dict with sealed_token.
    assert json.loads(json.dumps({"sealed_token": seal(KEY, TOKEN)}))["sealed_token"]
