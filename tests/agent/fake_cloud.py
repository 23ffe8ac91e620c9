"""A small cloud for in-process daemon tests: real HTTPS (a generated CA), the real wire
format (poll proofs, sealed tokens, the control channel), and a fake clock's view of
when each request arrived. It answers at once: no long polls, no faults.
"""

from __future__ import annotations

import asyncio
import email.utils
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from agent.provisioning.wire import PollRequest, proof_matches, seal_token
from cloud_mock.pki import ensure_pki
from tests.agent.clock import FakeClock
from tests.agent.tokens import public_pem


@dataclass
class FakeCloud:
    clock: FakeClock
    key: bytes = b""  # K the camera polls with (an NVR: its code's secret, learnt)
    token: str | None = None  # handed out at the next poll
    polls: list[float] = field(default_factory=list)  # fake monotonic time of each poll
    registrations: list[tuple[float, str]] = field(default_factory=list)  # (time, secret)
    channels: list[str] = field(default_factory=list)  # the Bearer token of each channel
    code_lifetime: float = 7200.0
    url: str = ""
    _sockets: set[web.WebSocketResponse] = field(default_factory=set)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/keys", self._keys)
        app.router.add_post("/v1/provisioning/poll", self._poll)
        app.router.add_get("/v1/devices/ws", self._ws)
        app.router.add_post("/v1/nvr/activations", self._activation)
        return app

    async def revoke(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=4401, message=b"revoked")

    async def _keys(self, request: web.Request) -> web.Response:
        return web.json_response({"keys": [{"pem": public_pem()}]})

    async def _poll(self, request: web.Request) -> web.Response:
        poll = PollRequest.parse(await request.read())
        self.polls.append(self.clock.monotonic())
        if not proof_matches(self.key, poll.device_id, poll.ts, poll.nonce, poll.proof):
            return web.Response(status=204)  # a cloud does not say which devices it knows
        if self.token is None:
            return web.Response(status=204)
        token, self.token = self.token, None
        return web.json_response({"sealed_token": seal_token(self.key, poll.device_id, token)})

    async def _activation(self, request: web.Request) -> web.Response:
        import base64

        body = await request.json()
        self.registrations.append((self.clock.monotonic(), body["secret"]))
        self.key = base64.b64decode(body["secret"])
        return web.json_response(
            {
                "expires_at": self.clock.wall() + self.code_lifetime,
                "activation_url": f"{self.url}/activate/{body['code']}",
            },
            status=201,
            headers={"Date": email.utils.formatdate(self.clock.wall(), usegmt=True)},
        )

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        self.channels.append(bearer)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.add(ws)
        try:
            await ws.receive_json(timeout=10)  # the device's hello
            await ws.send_json({"type": "hello", "heartbeat_s": 30})
            async for _ in ws:
                pass
        finally:
            self._sockets.discard(ws)
        return ws


@asynccontextmanager
async def running(
    cloud: FakeCloud, data_dir: Path
) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    """Serve `cloud` on 127.0.0.1 over TLS; yield its URL and a session that trusts it."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    pki = ensure_pki(data_dir, "127.0.0.1")
    runner = web.AppRunner(cloud.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=pki.ssl_context())
    await site.start()
    port = runner.addresses[0][1]
    cloud.url = f"https://127.0.0.1:{port}"
    client_tls = ssl.create_default_context(cafile=str(pki.ca_cert_path))
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_tls))
    try:
        yield cloud.url, session
    finally:
        await session.close()
        await cloud.revoke()
        await runner.cleanup()
        await asyncio.sleep(0)
