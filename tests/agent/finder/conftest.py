"""A self-signed certificate like the device's, and a plain HTTPS server using it."""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.finder.client import Endpoint, fingerprint_of


@dataclass
class SelfSigned:
    cert: Path
    key: Path
    fp: str


def make_self_signed(directory: Path, name: str = "device") -> SelfSigned:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return SelfSigned(
        cert_path, key_path, fingerprint_of(cert.public_bytes(serialization.Encoding.DER))
    )


@dataclass
class InfoServer:
    endpoint: Endpoint
    cert: SelfSigned
    seen: list[str] = field(default_factory=list)  # every request that reached the app


@pytest.fixture
async def info_server(tmp_path: Path) -> AsyncIterator[InfoServer]:
    cert = make_self_signed(tmp_path)
    server = InfoServer(Endpoint("127.0.0.1", 0), cert)

    async def info(request: web.Request) -> web.Response:
        server.seen.append(f"{request.method} {request.path}")
        return web.json_response({"id": "dev-1", "fp": cert.fp, "kind": "camera"})

    app = web.Application()
    app.router.add_get("/v1/info", info)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert.cert, cert.key)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    server.endpoint = Endpoint("127.0.0.1", port)
    yield server
    await runner.cleanup()
