"""Certificate pinning against a real TLS server; the error messages a person reads."""

from __future__ import annotations

import socket

import pytest

from agent.finder.client import (
    Answer,
    DeviceClient,
    Endpoint,
    locked_out_message,
    password_refused_message,
    presented_fingerprint,
)
from agent.finder.errors import FinderError, FingerprintError

from .conftest import InfoServer


async def test_presented_fingerprint_is_sha256_of_the_der(info_server: InfoServer) -> None:
    assert await presented_fingerprint(info_server.endpoint) == info_server.cert.fp
    assert info_server.seen == []  # only looked at the certificate


async def test_pinned_client_reads_info(info_server: InfoServer) -> None:
    async with DeviceClient(info_server.endpoint, info_server.cert.fp, "announces") as client:
        info = await client.info()
    assert info["id"] == "dev-1"
    assert info_server.seen == ["GET /v1/info"]


async def test_wrong_key_is_refused_before_anything_is_sent(info_server: InfoServer) -> None:
    expected = "0" * 64
    client = DeviceClient(info_server.endpoint, expected, "announces on the LAN")
    async with client:
        with pytest.raises(FingerprintError) as refused:
            await client.command("/v1/token", {"token": "secret"}, "label-password")
    message = str(refused.value)
    assert info_server.cert.fp in message
    assert expected in message
    assert "nothing was sent" in message
    assert info_server.seen == []  # no request, no Digest response, no token reached it


async def test_unreachable_device_is_reported() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(FinderError, match=r"cannot reach the device at 127\.0\.0\.1"):
        await presented_fingerprint(Endpoint("127.0.0.1", port), timeout=5)
    async with DeviceClient(Endpoint("127.0.0.1", port), "0" * 64, "x") as client:
        with pytest.raises(FinderError, match="cannot reach the device"):
            await client.info()


def test_messages() -> None:
    assert "(2 tries left" in password_refused_message({"tries_left": 2})
    assert "refused the password" in password_refused_message({})
    assert "locked out for 30 s" in locked_out_message(Answer(429, {}, "30"))
    assert "locked out for 7 s" in locked_out_message(Answer(429, {"retry_after": 7}, None))
    assert "locked out for a while" in locked_out_message(Answer(429, {}, None))
