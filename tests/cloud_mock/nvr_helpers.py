"""Helpers for the NVR (registrator) tests: a scripted NVR on both its channels.

The NVR side here is written from the contract, not from the agent: it registers codes,
long-polls with `wire.PollRequest.build` keyed by its own 32-byte secret, and answers
`sync` / `configure` on a WebSocket the test drives by hand.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agent.nvr import activation_code
from agent.provisioning.wire import PollRequest

NVR_ID = "aa:bb:cc:00:00:01"
CHECKS = [
    {"name": "archive disk", "status": "ok", "detail": "120 GB free", "fix": ""},
    {"name": "memory", "status": "warn", "detail": "300 MB available", "fix": "add RAM"},
]
WS = "/v1/devices/ws"

# Who is who in the `team` mock (see conftest): logins and their passwords.
TEAM_FIXTURES: dict[str, Any] = {
    "orgs": [{"name": "acme", "business": False}, {"name": "globex", "business": True}],
    "users": [
        {"login": "vera", "password": "vera-pass", "org": "demo", "role": "viewer"},
        {"login": "max", "password": "max-pass", "org": "demo", "role": "manage_registrators"},
        {"login": "olga", "password": "olga-pass", "org": "acme", "role": "owner"},
        {"login": "gus", "password": "gus-pass", "org": "globex", "role": "owner"},
    ],
}
PASSWORDS = {u["login"]: u["password"] for u in TEAM_FIXTURES["users"]}


def write_team_fixtures(path: Path) -> Path:
    path.write_text(json.dumps(TEAM_FIXTURES))
    return path


@dataclass
class Nvr:
    """One scripted NVR: its device ID, its secret, and the secret of each code it
    registered.

    Like the agent, it keeps its secret across renewals and sends the same secret with a
    registration token (the link keeps its hash)."""

    device_id: str = NVR_ID
    secrets: dict[str, bytes] = field(default_factory=dict)
    secret: bytes = field(default_factory=lambda: os.urandom(32))

    def new_secret(self) -> bytes:
        return self.secret

    async def register_code(
        self,
        client: aiohttp.ClientSession,
        code: str | None = None,
        secret: bytes | None = None,
        **overrides: Any,
    ) -> tuple[int, Any]:
        code = code or activation_code.generate()
        secret = secret if secret is not None else self.new_secret()
        body = {
            "device_id": self.device_id,
            "code": code,
            "secret": base64.b64encode(secret).decode(),
            "name": "NVR in the rack",
            "version": "0.9.0",
            "checks": CHECKS,
            **overrides,
        }
        async with client.post("/v1/nvr/activations", json=body) as response:
            answer = await response.json()
            if response.status == 201:
                self.secrets[answer["code"]] = secret
            return response.status, answer

    async def code(self, client: aiohttp.ClientSession, **overrides: Any) -> str:
        status, answer = await self.register_code(client, **overrides)
        assert status == 201, answer
        code: str = answer["code"]
        return code

    async def poll(
        self, client: aiohttp.ClientSession, key: bytes, wait: int = 0
    ) -> tuple[int, Any, float]:
        request = PollRequest.build(key, self.device_id, int(time.time()), wait)
        started = time.monotonic()
        async with client.post("/v1/provisioning/poll", json=request.to_json()) as response:
            raw = await response.read()
            return response.status, json.loads(raw) if raw else None, time.monotonic() - started

    async def register(
        self, client: aiohttp.ClientSession, token: str, **overrides: Any
    ) -> tuple[int, Any]:
        body = {
            "token": token,
            "device_id": self.device_id,
            "secret": base64.b64encode(self.secret).decode(),
            "name": "",
            "version": "0.9.0",
            "checks": CHECKS,
            **overrides,
        }
        async with client.post("/v1/nvr/register", json=body) as response:
            return response.status, await response.json()


def unseal_with(key: bytes, device_id: str, sealed: str) -> str:
    blob = base64.b64decode(sealed, validate=True)
    return AESGCM(key).decrypt(blob[:12], blob[12:], device_id.encode()).decode()


async def call(
    client: aiohttp.ClientSession,
    method: str,
    path: str,
    auth: dict[str, str],
    body: Any = None,
    **kwargs: Any,
) -> tuple[int, Any]:
    async with client.request(method, path, headers=auth, json=body, **kwargs) as response:
        raw = await response.read()
        return response.status, json.loads(raw) if raw else None


async def add_registrator(
    client: aiohttp.ClientSession, auth: dict[str, str], name: str = "Warehouse", **extra: Any
) -> dict[str, Any]:
    status, body = await call(
        client, "POST", "/v1/registrators", auth, {"name": name, "device": "virtual", **extra}
    )
    assert status == 201, body
    result: dict[str, Any] = body
    return result


async def registration_token(
    client: aiohttp.ClientSession, auth: dict[str, str], **extra: Any
) -> dict[str, Any]:
    status, body = await call(client, "POST", "/v1/registrator-tokens", auth, extra)
    assert status == 201, body
    result: dict[str, Any] = body
    return result


async def linked_nvr(
    client: aiohttp.ClientSession, auth: dict[str, str], device_id: str = NVR_ID, name: str = "NVR"
) -> tuple[dict[str, Any], str]:
    """A registrator linked to `device_id` through a registration token: (it, NVR token)."""
    token = await registration_token(client, auth, title=name)
    status, answer = await Nvr(device_id).register(client, token["token"])
    assert status == 201, answer
    status, registrator = await call(
        client, "GET", f"/v1/registrators/{answer['registrator_id']}", auth
    )
    assert status == 200, registrator
    return registrator, answer["token"]


@asynccontextmanager
async def nvr_channel(
    client: aiohttp.ClientSession, token: str, device_id: str = NVR_ID
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """The NVR's control channel, greeted."""
    headers = {"Authorization": f"Bearer {token}"}
    async with client.ws_connect(WS, headers=headers, autoclose=False) as ws:
        await ws.send_json(
            {"type": "hello", "device_id": device_id, "kind": "nvr", "version": "0.9.0"}
        )
        reply = await ws.receive_json(timeout=5)
        assert reply["type"] == "hello", reply
        yield ws


async def answer_command(
    ws: aiohttp.ClientWebSocketResponse, name: str, ok: bool, data: Any
) -> dict[str, Any]:
    """Wait for the next command, check its name, answer it; return the command."""
    command: dict[str, Any] = await ws.receive_json(timeout=5)
    assert command["type"] == "command", command
    assert command["name"] == name, command
    await ws.send_json({"type": "result", "id": command["id"], "ok": ok, "data": data})
    return command
