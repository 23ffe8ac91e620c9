"""`/console/events`: live status for the console as Server-Sent Events.

The handler looks at the org's cameras and registrators every POLL_S and sends a
snapshot when it differs from the last one sent: no hooks in the API modules, and the
cost is one small query per open page per poll. It ends when the session ends (the
page is told to go to the login page) or when the mock shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from aiohttp import web

from cloud_mock.cameras import camera_json
from cloud_mock.console.auth import require_cookie_caller
from cloud_mock.keys import STORE
from cloud_mock.nvr import registrator_json

POLL_S = 0.5
SESSION_CHECK_S = 5.0
KEEPALIVE_S = 15.0

STOPPING = web.AppKey("console_stopping", asyncio.Event)


def sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def snapshot(app: web.Application, org: str) -> dict[str, Any]:
    store = app[STORE]
    return {
        "cameras": [camera_json(app, c) for c in store.devices.cameras_of(org)],
        "registrators": [registrator_json(app, r) for r in store.registrators.registrators_of(org)],
    }


async def events(request: web.Request) -> web.StreamResponse:
    caller = require_cookie_caller(request)
    app, org, login = request.app, caller.user.org, caller.user.login
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    stopping = app[STOPPING]
    last: dict[str, Any] | None = None
    checked = written = time.monotonic()
    try:
        # Reconnect after 1 s when the stream breaks (e.g. the mock restarted).
        await response.write(b"retry: 1000\n\n")
        while not stopping.is_set():
            now = time.monotonic()
            if now - checked >= SESSION_CHECK_S:
                checked = now
                # A plain look, not caller_from_secret: watching must not keep the
                # session from going idle.
                if not any(
                    s.id == caller.session.id for s in app[STORE].accounts.sessions_of(login)
                ):
                    await response.write(sse("logout", {}))
                    break
            current = snapshot(app, org)
            if current != last:
                await response.write(sse("status", current))
                last, written = current, now
            elif now - written >= KEEPALIVE_S:
                await response.write(b": keepalive\n\n")
                written = now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), POLL_S)
    except (ConnectionResetError, ConnectionError):
        pass  # the page went away
    return response


async def _stop_streams(app: web.Application) -> None:
    app[STOPPING].set()


def setup(app: web.Application) -> None:
    app[STOPPING] = asyncio.Event()
    app.on_shutdown.append(_stop_streams)
    app.router.add_get("/console/events", events)
