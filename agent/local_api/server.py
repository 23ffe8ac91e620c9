"""The local HTTPS API (docs/design.md §5): `GET /v1/info` for anyone, changes with Digest auth.

The device behind it is a `Device` (the daemon implements it), so this module knows
HTTP, authentication and bodies, and nothing of the state machine. Every answer is JSON:
`{ok: true, state, …}` or `{error, message}`; no input can make the daemon fail.
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import HttpVersion10, web

from agent.errors import CamagentError
from agent.local_api import bodies, digest
from agent.local_api.bodies import ApiError
from agent.local_api.connection import Connection
from agent.local_api.listener import (
    Limits,
    Listener,
    Ticket,
    bind,
    client_key,
    descriptor_headroom,
)
from agent.local_api.lockout import Lockout
from agent.local_api.ratelog import RateLimitedLog
from agent.qr.payloads import WifiNetwork

log = logging.getLogger(__name__)

SHUTDOWN_S = 2.0  # stopping does not wait long for open requests
LIMITS = Limits()

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Clock = Callable[[], float]


class ActionError(CamagentError):
    """The device refused a change: HTTP status, error code, and a message for people."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.http = (status, error)


class Device(Protocol):
    def info(self) -> dict[str, Any]:
        """`{id, kind, state, ver, name, model}`; the server adds `fp`."""

    def password(self) -> str:
        """The device password; raises CamagentError when there is none."""

    async def set_token(self, token: str) -> dict[str, Any]: ...

    async def reset(self) -> dict[str, Any]: ...

    async def poll_now(self) -> dict[str, Any]: ...

    async def join_wifi(self, network: WifiNetwork) -> dict[str, Any]: ...

    async def register(self, token: str) -> dict[str, Any]: ...


@dataclass
class Auth:
    lockout: Lockout
    nonces: digest.NonceBook
    clock: Clock = time.time
    body_s: float = Limits.body_s  # a body dripped slower than this is refused (408)
    notes: RateLimitedLog = field(default_factory=lambda: RateLimitedLog(log))


def make_app(device: Device, auth: Auth, fp: str) -> web.Application:
    # Handlers close over what they need (no web.AppKey: Debian 12 ships aiohttp 3.8).
    app = web.Application(
        middlewares=[error_middleware],
        client_max_size=bodies.MAX_BODY_BYTES,
    )
    app.router.add_get("/v1/info", _info(device, fp))
    app.router.add_post("/v1/token", _change(device, auth, _set_token))
    app.router.add_post("/v1/reset", _change(device, auth, _reset, needs_body=False))
    app.router.add_post("/v1/poll-now", _change(device, auth, _poll_now, needs_body=False))
    app.router.add_post("/v1/wifi", _change(device, auth, _wifi))
    app.router.add_post("/v1/cloud-registration", _change(device, auth, _register))
    return app


def server_context(cert_path: str, key_path: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_path, key_path)
    return context


# -- middleware: every answer is JSON, nothing escapes ------------------------------------


def error_response(error: ApiError) -> web.Response:
    return web.json_response(error.body(), status=error.status, headers=error.headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.version < HttpVersion10:
        # aiohttp takes "GET /path" with no version as HTTP/0.9 and would answer it: a
        # client of this API speaks HTTP/1.x, and anything older is a probe.
        refused = error_response(
            ApiError(505, "http_version_not_supported", "this API speaks HTTP/1.0 and 1.1")
        )
        refused.force_close()
        return refused
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        # Routing answers (404, 405) and aiohttp's own size check (413), as JSON.
        error = exc.reason.lower().replace(" ", "_")
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return error_response(ApiError(exc.status, error, exc.reason, headers))
    except Exception:  # a bug: log it, answer, keep serving
        log.exception("local API: %s %s failed", request.method, request.path)
        return error_response(ApiError(500, "internal_error", "the device failed to answer"))


# -- handlers -------------------------------------------------------------------------


def _info(device: Device, fp: str) -> Handler:
    async def handle(request: web.Request) -> web.Response:
        return web.json_response({**device.info(), "fp": fp})

    return handle


Action = Callable[[Device, dict[str, Any]], Awaitable[dict[str, Any]]]


def _change(device: Device, auth: Auth, action: Action, *, needs_body: bool = True) -> Handler:
    """Authenticate, read the body, carry out `action`, answer `{ok: true, …}`.

    Without `needs_body` an empty body (and then any Content-Type) is fine.
    """

    async def handle(request: web.Request) -> web.Response:
        if (request.content_length or 0) > bodies.MAX_BODY_BYTES:
            raise ApiError(
                413, "body_too_large", f"the body is larger than {bodies.MAX_BODY_BYTES} bytes"
            )
        authenticate(request, device, auth)
        try:
            raw = await asyncio.wait_for(request.read(), auth.body_s)
        except TimeoutError:
            raise ApiError(
                408, "body_timeout", f"the body did not arrive within {auth.body_s:g} s"
            ) from None
        try:
            body = bodies.json_object(raw, request.content_type, required=needs_body)
            result = await action(device, body)
        except CamagentError as exc:
            # The one place a refusal becomes HTTP: the error names its status and code;
            # one without them is the device's failure (500, below).
            if exc.http is None:
                raise
            raise ApiError(*exc.http, str(exc)) from None
        return web.json_response({"ok": True, **result})

    return handle


def authenticate(request: web.Request, device: Device, auth: Auth) -> None:
    """Pass, or raise 401 (a Digest challenge), 429 (this address waits) or 503 (no
    password). Only the asking address is throttled: see lockout.py."""
    now = auth.clock()
    address = client_key(request.remote or "")
    wait = auth.lockout.retry_after(address, now)
    if wait > 0:
        raise _locked(wait)
    try:
        password = device.password()
    except CamagentError as exc:
        raise ApiError(503, "no_password", f"this device cannot check passwords: {exc}") from None
    verdict = digest.verify(
        request.headers.get("Authorization"),
        digest.Request(request.method, request.raw_path),
        password,
        auth.nonces,
        now,
    )
    if verdict is digest.Verdict.OK:
        auth.lockout.success(address, now)
        return
    if verdict.is_failure:
        state = auth.lockout.failure(address, now)
        auth.notes.note(
            "wrong_password",
            f"local API: wrong password (latest from {address}, {state.failures} in a row)",
        )
        if auth.lockout.under_pressure(now):
            auth.notes.note(
                "pressure",
                "local API: many wrong passwords from the LAN: every address now waits "
                "after its first wrong one",
            )
        if (wait := auth.lockout.retry_after(address, now)) > 0:
            raise _locked(wait)
    challenge = digest.challenge(auth.nonces.make(now), stale=verdict is digest.Verdict.STALE)
    extra = {"tries_left": auth.lockout.tries_left(address, now)}
    raise ApiError(401, "unauthorized", _why(verdict), {"WWW-Authenticate": challenge}, extra)


def _why(verdict: digest.Verdict) -> str:
    match verdict:
        case digest.Verdict.WRONG:
            return "wrong user or password (user admin, the password on the device's label)"
        case digest.Verdict.STALE:
            return "the nonce expired: answer the new challenge"
        case digest.Verdict.MALFORMED:
            return "the Authorization header is not Digest SHA-256 (qop=auth) for this request"
    return "authenticate with HTTP Digest (SHA-256, qop=auth), user admin"


def _locked(wait: float) -> ApiError:
    seconds = max(1, math.ceil(wait))
    return ApiError(
        429,
        "locked_out",
        f"too many wrong passwords from this address: it may try again in {seconds} s",
        {"Retry-After": str(seconds)},
    )


# -- the changes ----------------------------------------------------------------------


async def _set_token(device: Device, body: dict[str, Any]) -> dict[str, Any]:
    return await device.set_token(bodies.token(body))


async def _reset(device: Device, body: dict[str, Any]) -> dict[str, Any]:
    bodies.no_fields(body)
    return await device.reset()


async def _poll_now(device: Device, body: dict[str, Any]) -> dict[str, Any]:
    bodies.no_fields(body)
    return await device.poll_now()


async def _wifi(device: Device, body: dict[str, Any]) -> dict[str, Any]:
    return await device.join_wifi(bodies.wifi(body))


async def _register(device: Device, body: dict[str, Any]) -> dict[str, Any]:
    return await device.register(bodies.token(body))


# -- running it -----------------------------------------------------------------------


@dataclass
class Running:
    runner: web.AppRunner
    listener: Listener
    notes: RateLimitedLog

    @property
    def port(self) -> int:
        return self.listener.port

    async def stop(self) -> None:
        await self.listener.close()
        # Without an aiohttp site, open connections are ours to end (aiohttp 3.8's
        # cleanup only ends those of its sites; 3.9+ does it again, finding none).
        if self.runner.server is not None:
            await self.runner.server.shutdown(SHUTDOWN_S)
        await self.runner.cleanup()
        self.notes.flush()


async def start(
    app: web.Application,
    host: str,
    port: int,
    context: ssl.SSLContext,
    limits: Limits = LIMITS,
    headroom: Callable[[], int | None] = descriptor_headroom,
) -> Running:
    """Serve `app` over TLS on (host, port) through the Listener's caps and timeouts."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    server = runner.server
    assert server is not None
    loop = asyncio.get_running_loop()
    notes = RateLimitedLog(log)
    options: dict[str, Any] = {
        "loop": loop,
        "keepalive_timeout": limits.keepalive_s,
        "access_log": None,
    }

    def connection(ticket: Ticket) -> Connection:
        return Connection(server, ticket=ticket, header_s=limits.header_s, notes=notes, **options)

    try:
        sock = bind(host, port, limits.backlog)
    except BaseException:
        await runner.cleanup()
        raise
    listener = Listener(sock, context, connection, limits, notes, headroom)
    listener.start()
    return Running(runner, listener, notes)
