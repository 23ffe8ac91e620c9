"""Every mock that tests/cloud_mock starts is held to the published contract (docs/api/).

An autouse fixture wraps `cloud_mock.server.make_app` so that each app checks every answer
as it is sent (an `on_response_prepare` hook, after the one that sets `Date`), and wraps
the mock's channel sends, for the length of each test:
- each HTTP answer of a documented route must be allowed by openapi.yaml (status, the
  required headers, content type, the JSON body's schema);
- a request the document forbids (its JSON body breaks the schema) must not succeed;
- each frame the mock sends on the control channel must be a message of asyncapi.yaml,
  and each close code one it lists.
What does not conform fails the test at teardown, with the request and the reasons.
The console's routes (not in the document) and WebSocket upgrades are left alone.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

import cloud_mock.api
import cloud_mock.app
import cloud_mock.provisioning
import cloud_mock.server
from cloud_mock.conformance.documents import channel_contract, http_contract

BODY_KEY = web.RequestKey("contract.request_body", bytes)


class Violations:
    def __init__(self) -> None:
        self.found: list[str] = []

    def add(self, where: str, problems: list[str]) -> None:
        if problems:
            self.found.append(f"{where}: " + "; ".join(problems))


def _on_prepare(violations: Violations) -> Any:
    """Checks each answer as it leaves, after every other prepare hook (the Date header)."""
    contract = http_contract()

    async def check(request: web.Request, response: web.StreamResponse) -> None:
        op = contract.operation(request.method, request.path)
        if op is None or isinstance(response, web.WebSocketResponse):
            return
        where = f"{request.method} {request.path} → {response.status}"
        body = response.body if isinstance(response, web.Response) else None
        if isinstance(body, bytes | bytearray):
            headers = {k.lower(): v for k, v in response.headers.items()}
            if response.content_type and "content-type" not in headers:
                headers["content-type"] = response.content_type
            violations.add(
                where, contract.check_response(op, response.status, headers, bytes(body))
            )
        sent = request.get(BODY_KEY)
        if isinstance(sent, bytes) and response.status < 400:
            problems = contract.check_request_body(op, sent)
            if problems:
                violations.add(f"{where} (accepted a request the document forbids)", problems)

    return check


@pytest.fixture(autouse=True)
def contract_checked(monkeypatch: pytest.MonkeyPatch) -> Iterator[Violations]:
    violations = Violations()
    channel = channel_contract()
    make_app = cloud_mock.app.make_app  # what cloud_mock.server calls by this name

    def checked_app(*args: Any, **kwargs: Any) -> web.Application:
        app = make_app(*args, **kwargs)
        app.on_response_prepare.append(_on_prepare(violations))
        return app

    read_body = cloud_mock.api.read_body

    async def kept_body(request: web.Request, limit: int) -> bytes:
        body = await read_body(request, limit)
        request[BODY_KEY] = body
        return body

    send_str = web.WebSocketResponse.send_str
    close = web.WebSocketResponse.close
    prepare = web.WebSocketResponse.prepare
    channels: weakref.WeakKeyDictionary[web.WebSocketResponse, str] = weakref.WeakKeyDictionary()

    async def named_prepare(
        self: web.WebSocketResponse, request: web.BaseRequest, *a: Any, **kw: Any
    ) -> Any:
        channels[self] = _channel_of(request.path)
        return await prepare(self, request, *a, **kw)

    async def checked_send(self: web.WebSocketResponse, data: str, *a: Any, **kw: Any) -> None:
        name = channels.get(self, "control")
        violations.add(
            f"mock sent frame {data[:200]!r} on {name}", channel.check_frame("cloud", data, name)
        )
        await send_str(self, data, *a, **kw)

    async def checked_close(self: web.WebSocketResponse, *a: Any, **kw: Any) -> bool:
        code = kw.get("code", a[0] if a else None)
        name = channels.get(self, "control")
        violations.add(f"mock closed a {name} channel", channel.check_close(code, name))
        return await close(self, *a, **kw)

    monkeypatch.setattr(cloud_mock.server, "make_app", checked_app)
    monkeypatch.setattr(cloud_mock.api, "read_body", kept_body)
    monkeypatch.setattr(cloud_mock.provisioning, "read_body", kept_body)
    monkeypatch.setattr(web.WebSocketResponse, "prepare", named_prepare)
    monkeypatch.setattr(web.WebSocketResponse, "send_str", checked_send)
    monkeypatch.setattr(web.WebSocketResponse, "close", checked_close)
    yield violations
    if violations.found:
        pytest.fail(
            "the mock answered what docs/api/ does not allow:\n  " + "\n  ".join(violations.found),
            pytrace=False,
        )


def _channel_of(path: str) -> str:
    """The AsyncAPI channel a WebSocket of the mock serves, by its path."""
    if path.startswith("/v1/devices/tunnels/"):
        return "tunnels"
    if path.endswith("/live"):
        return "live"
    return "control"
