"""The cloud's end of the video tunnel (docs/design.md §12.2, §12.3), played against a cloud.

The kit's camera says hello with one stream (`video: ["main"]`) and answers every command
as camagent would; a viewer (CloudSide.watch: the mock's live view, or --watch-cmd) makes
the cloud send it `tunnel_open`. The kit then tries the tunnel endpoint the way a careless
or hostile device would, before the right way:

- a session the cloud never made, with the camera's own token: 404;
- the first viewer's session without a token and with a forged one (401), then with the
  camera's token (a refused attempt must leave the session usable);
- the second viewer's session with another device's token (403 or 404), then the same;
- on the first tunnel that upgraded: the same session once more (404, used), and the
  cloud's first bytes, all in binary messages. The camera never answers them: a cloud
  that pulls a stream writes its request at once, whatever the protocol.

Every `tunnel_open` of the run is judged, those the camera refuses because the kit did not
ask for a tunnel at that moment included.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.provisioning.wire import derive_key
from agent.token_codec import sign_token
from agent.video.relay import MAX_MESSAGE
from agent.video.targets import SESSION
from cloud_mock.conformance.checks import Conformance
from cloud_mock.conformance.cloud_side import CloudSideError, Unsupported, Watching
from cloud_mock.conformance.common import (
    ANSWER_TIMEOUT_S,
    Failed,
    Link,
    _ws_timeout,
    random_mac,
)
from cloud_mock.conformance.report import RULES

TUNNEL_PATH = "/v1/devices/tunnels/"
TARGETS = ("main",)
GRANT = {
    "target": "main",
    "scheme": "rtsp",
    "path": "/conformance",
    "username": None,
    "password": None,
}
TUNNEL_OPEN_WAIT_S = 15.0  # a viewer watching → the cloud's tunnel_open
BYTES_WAIT_S = 10.0  # an upgraded tunnel → the cloud's first bytes
SHOWN = 60  # characters of what the cloud sent, in a report
TUNNEL_RULES = tuple(rule.id for rule in RULES if rule.id.startswith("tunnel."))
NOT_NOW = "the conformance kit's camera takes one tunnel at a time, when it asks for one"


class NoTunnel(Exception):
    """No tunnel to check; the message says why (the rules that needed one are skipped)."""


async def run(c: Conformance) -> None:
    """The tunnel rules, each recorded in `c.report` (pass, fail, or skip with the reason)."""
    try:
        device_id, token = await _device(c)
        _, other = await _device(c)
        camera = await FakeCamera.greet(c, device_id, token)
    except Unsupported as unsupported:
        _skip_rest(c, str(unsupported))
        return
    except (NoTunnel, Failed, CloudSideError, aiohttp.ClientError, OSError) as error:
        why = error.detail if isinstance(error, Failed) else str(error) or type(error).__name__
        _skip_rest(c, f"not checked: no camera for the tunnel ({why})")
        return
    checks = TunnelChecks(c, camera, token, _forged(c, device_id), other)
    try:
        await c.step("tunnel.unknown-404", checks.unknown_session)
        await checks.run()
    finally:
        await camera.close()
    checks.conclude()


async def _device(c: Conformance) -> tuple[str, str]:
    """A camera the cloud knows, and its token (as in prov.token-delivered)."""
    device_id, password = random_mac(), secrets.token_urlsafe(12)
    await c.cloud.add_device(device_id, password)
    key = await asyncio.to_thread(derive_key, password, device_id)
    answer, _ = await c.poll(key, device_id)
    return device_id, c.open_token("prov.token-delivered", answer, key, device_id)


def _forged(c: Conformance, device_id: str) -> str:
    """The camera's claims, signed by a key the cloud never published."""
    claims = {
        "v": 1,
        "sub": device_id,
        "kind": "camera",
        "org": "conformance",
        "api": c.url,
        "iat": c.cloud_now(),
        "jti": secrets.token_hex(16),
    }
    return sign_token(claims, Ed25519PrivateKey.generate())


def _skip_rest(c: Conformance, why: str, *, but: tuple[str, ...] = ()) -> None:
    """Every tunnel rule without a result yet (but those of `but`) is skipped, saying why."""
    seen = {r.rule for r in c.report.results}
    for rule in TUNNEL_RULES:
        if rule not in seen and rule not in but:
            c.skipped(rule, why)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN else text[: SHOWN - 1] + "…"


def _first_line(data: bytes) -> str:
    line = data.split(b"\n", 1)[0].rstrip(b"\r")[:SHOWN]
    return repr(line.decode("latin-1"))


class FakeCamera:
    """The camera's control channel: a result for every command, a grant for the
    `tunnel_open` the kit is waiting for, a refusal for any other; each one judged."""

    def __init__(self, link: Link, device_id: str) -> None:
        self.link = link
        self.device_id = device_id
        self.tunnel_opens = 0
        self.problems: list[str] = []  # what breaks tunnel.target-named
        self._granted: set[str] = set()  # sessions the camera connected (or will)
        self._waiting: asyncio.Future[str] | None = None
        self._closing = False
        self._task = asyncio.create_task(self._answer())

    @classmethod
    async def greet(cls, c: Conformance, device_id: str, token: str) -> FakeCamera:
        link = await c._connect(token)
        if isinstance(link, int):
            raise NoTunnel(f"its channel was refused with HTTP {link}")
        await link.send_json({**c._hello(device_id, "camera"), "video": list(TARGETS)})
        answer = await link.next(ANSWER_TIMEOUT_S)
        if not isinstance(answer, dict) or answer.get("type") != "hello":
            await link.close()
            raise NoTunnel(f"its hello with video {list(TARGETS)} got {_shown(answer)}")
        return cls(link, device_id)

    def expect(self) -> asyncio.Future[str]:
        """The session of the next tunnel_open (granted), or NoTunnel / Failed."""
        self._waiting = asyncio.get_running_loop().create_future()
        return self._waiting

    def _settle(self, outcome: str | BaseException) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting is None or waiting.done():
            return
        if isinstance(outcome, BaseException):
            waiting.set_exception(outcome)
        else:
            waiting.set_result(outcome)

    async def _answer(self) -> None:
        while not self._closing:
            message = await self.link.next(ANSWER_TIMEOUT_S)
            if isinstance(message, tuple):
                self._settle(NoTunnel(f"the cloud closed the camera's channel ({message[1]})"))
                return
            if not isinstance(message, dict) or message.get("type") != "command":
                continue
            args = message.get("args")
            ok, data, outcome = self._command(
                message.get("name"), args if isinstance(args, dict) else {}
            )
            result = {"type": "result", "id": message.get("id"), "ok": ok, "data": data}
            try:
                await self.link.send_json(result)
            except (ConnectionError, RuntimeError):
                self._settle(NoTunnel("the camera's channel broke"))
                return
            if outcome is not None:  # the cloud has its answer before the upgrade
                self._settle(outcome)

    def _command(self, name: Any, args: dict[str, Any]) -> tuple[bool, Any, Any]:
        """(ok, data, what the kit's waiting tunnel gets: a session, an error or None)."""
        if name == "tunnel_open":
            return self._tunnel_open(args)
        if name == "ping":
            return True, {"pong": True, "device_id": self.device_id, "ts": time.time()}, None
        if name == "probe":
            stream = {
                "target": "main",
                "reachable": True,
                "codec": "H264",
                "detail": "the conformance kit's camera",
            }
            return True, {"streams": [stream]}, None
        return False, f"unknown command {_shown(name)}", None

    def _tunnel_open(self, args: dict[str, Any]) -> tuple[bool, Any, Any]:
        self.tunnel_opens += 1
        session, target = args.get("session"), args.get("target")
        problem = None
        if not isinstance(session, str) or SESSION.fullmatch(session) is None:
            problem = f"session {_shown(session)} is not 22-64 characters of [A-Za-z0-9_-]"
        elif session in self._granted:
            problem = f"session {session[:8]}… came again in a tunnel_open after its tunnel"
        elif target not in TARGETS:
            problem = (
                f"target {_shown(target)} is not a name of the camera's hello "
                f"(video: {list(TARGETS)}): a device refuses it"
            )
        if problem is not None:
            self.problems.append(problem)
            # Refused, as camagent refuses it; the kit's waiting stops at once.
            return False, problem, Failed("tunnel.target-named", problem)
        if self._waiting is None or self._waiting.done():
            return False, NOT_NOW, None
        self._granted.add(str(session))
        return True, GRANT, session

    async def close(self) -> None:
        # Not by cancelling the task: Python 3.11's wait_for (in Link.next) swallows a
        # cancellation that comes with a message. Closing the link ends it.
        self._closing = True
        await self.link.close()
        done, _ = await asyncio.wait({self._task}, timeout=ANSWER_TIMEOUT_S)
        if not done:
            self._task.cancel()


class TunnelReader:
    """What the cloud sends through one tunnel, read until it closes or `close`."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.first: bytes | None = None
        self.received = 0
        self.texts: list[str] = []
        self.error = ""
        self.close_code: int | None = None
        self.news = asyncio.Event()  # the first bytes, a text, an error or the end
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            message = await self.ws.receive()
            if message.type == aiohttp.WSMsgType.BINARY:
                self.received += len(message.data)
                self.first = message.data if self.first is None else self.first
            elif message.type == aiohttp.WSMsgType.TEXT:
                self.texts.append(message.data)
            elif message.type == aiohttp.WSMsgType.ERROR:
                self.error = str(message.data)
            elif message.type == aiohttp.WSMsgType.CLOSE:
                self.close_code = int(message.data or 0)
            elif message.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                self.close_code = self.close_code or self.ws.close_code
            else:
                continue
            self.news.set()
            if message.type not in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                return

    async def close(self) -> None:
        await self.ws.close()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@dataclass
class TunnelChecks:
    c: Conformance
    camera: FakeCamera
    token: str  # the camera's
    forged: str  # the camera's claims, signed by someone else
    other: str  # another device's valid token
    used: bool = False  # used-once and bytes-relayed had their tunnel
    missing: str = ""  # why a viewer brought no tunnel_open (fails target-named)
    why_not: str = ""  # why the rules that need a tunnel were not checked
    own_refused: list[int] = field(default_factory=list)  # the camera's token, refused

    async def run(self) -> None:
        try:
            async with self.watched() as session:
                tunnel = await self.c.step(
                    "tunnel.no-token-401",
                    lambda: self.refused_then_upgraded(
                        "tunnel.no-token-401",
                        session,
                        [("without a token", None), ("with a forged token", self.forged)],
                        (401,),
                    ),
                )
                await self.use(session, tunnel)
            async with self.watched() as session:
                tunnel = await self.c.step(
                    "tunnel.other-device-refused",
                    lambda: self.refused_then_upgraded(
                        "tunnel.other-device-refused",
                        session,
                        [("with another device's token", self.other)],
                        (403, 404),
                    ),
                )
                await self.use(session, tunnel)
        except Unsupported as why:
            self.why_not = str(why)
        except NoTunnel as why:
            self.why_not = f"not checked: {why}"
        except CloudSideError as error:
            self.missing = f"cloud-side action failed: {error}"
            self.why_not = "not checked: no viewer (see tunnel.target-named)"
        if not self.used and self.own_refused:
            statuses = ", ".join(str(status) for status in self.own_refused)
            self.c.failed(
                "tunnel.bytes-relayed", f"the camera's own token never upgraded (HTTP {statuses})"
            )
        if not self.used:
            self.why_not = self.why_not or "not checked: no tunnel upgraded with the camera's token"
        _skip_rest(self.c, self.why_not, but=("tunnel.target-named",))

    @contextlib.asynccontextmanager
    async def watched(self) -> AsyncIterator[str]:
        """A viewer watching, and the session of the tunnel_open it brought."""
        waiting = self.camera.expect()
        try:
            watch = await self.c.cloud.watch(self.camera.device_id)
        except BaseException:
            waiting.cancel()
            raise
        try:
            yield await self._session(waiting, watch)
        finally:
            waiting.cancel()
            await watch.stop()

    async def _session(self, waiting: asyncio.Future[str], watch: Watching) -> str:
        broken: asyncio.Future[Any] = asyncio.ensure_future(watch.broken.wait())
        try:
            await asyncio.wait(
                {waiting, broken}, timeout=TUNNEL_OPEN_WAIT_S, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            broken.cancel()
        if waiting.done():
            try:
                return waiting.result()
            except Failed:
                raise NoTunnel(
                    "the cloud's tunnel_open was refused (see tunnel.target-named)"
                ) from None
        seen = f" ({watch.state})" if watch.state else ""
        if watch.broken.is_set():
            self.missing = f"the viewer ended before any tunnel_open{seen}"
        else:
            self.missing = f"no tunnel_open within {TUNNEL_OPEN_WAIT_S:g} s of a viewer{seen}"
        raise NoTunnel("no tunnel_open (see tunnel.target-named)")

    async def upgrade(
        self, session: str, token: str | None
    ) -> aiohttp.ClientWebSocketResponse | int:
        """The tunnel, or the HTTP status that refused its upgrade."""
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                return await self.c.session.ws_connect(
                    self.c.url + TUNNEL_PATH + session,
                    headers=headers,
                    timeout=_ws_timeout(),
                    max_msg_size=MAX_MESSAGE + 1,  # aiohttp refuses a message of this size
                )
        except aiohttp.WSServerHandshakeError as error:
            return error.status

    async def refused_then_upgraded(
        self,
        rule: str,
        session: str,
        attempts: Sequence[tuple[str, str | None]],
        allowed: tuple[int, ...],
    ) -> aiohttp.ClientWebSocketResponse:
        seen = []
        for what, token in attempts:
            outcome = await self.upgrade(session, token)
            if not isinstance(outcome, int):
                await outcome.close()
                raise Failed(rule, f"the upgrade {what} was accepted")
            if outcome not in allowed:
                wanted = " or ".join(str(status) for status in allowed)
                raise Failed(rule, f"the upgrade {what} got {outcome}, not {wanted}")
            seen.append(f"{what}: {outcome}")
        tunnel = await self.upgrade(session, self.token)
        if isinstance(tunnel, int):
            self.own_refused.append(tunnel)
            raise Failed(
                rule,
                f"{', '.join(seen)}; then the camera's own token got {tunnel}: a refused "
                "attempt must leave the session usable",
            )
        self.c.passed(rule, f"{', '.join(seen)}; then the camera's token upgraded")
        return tunnel

    async def unknown_session(self) -> None:
        outcome = await self.upgrade(secrets.token_urlsafe(24), self.token)
        if not isinstance(outcome, int):
            await outcome.close()
            raise Failed("tunnel.unknown-404", "a session the cloud never made was accepted")
        if outcome != 404:
            raise Failed("tunnel.unknown-404", f"a made-up session got {outcome}, not 404")
        self.c.passed("tunnel.unknown-404", "a made-up session, with the camera's token: 404")

    async def use(self, session: str, tunnel: aiohttp.ClientWebSocketResponse | None) -> None:
        """The used-once and bytes checks on the first tunnel that upgraded; close it."""
        if tunnel is None:
            return
        reader = TunnelReader(tunnel)
        try:
            if not self.used:
                self.used = True
                await self.c.step("tunnel.used-once", lambda: self.used_once(session))
                await self.c.step("tunnel.bytes-relayed", lambda: self.bytes_relayed(reader))
        finally:
            await reader.close()

    async def used_once(self, session: str) -> None:
        outcome = await self.upgrade(session, self.token)
        if not isinstance(outcome, int):
            await outcome.close()
            raise Failed("tunnel.used-once", "a second upgrade of a used session was accepted")
        if outcome != 404:
            raise Failed("tunnel.used-once", f"a second upgrade of a used session got {outcome}")
        self.c.passed("tunnel.used-once", "a second upgrade of the session (open): 404")

    async def bytes_relayed(self, reader: TunnelReader) -> None:
        rule = "tunnel.bytes-relayed"
        started = time.monotonic()
        try:
            async with asyncio.timeout(BYTES_WAIT_S):
                await reader.news.wait()
        except TimeoutError:
            raise Failed(
                rule, f"the tunnel upgraded; the cloud wrote nothing in {BYTES_WAIT_S:g} s"
            ) from None
        waited = time.monotonic() - started
        await reader.close()
        if reader.texts:
            raise Failed(
                rule,
                f"a text message in the tunnel ({_shown(reader.texts[0])}): a tunnel carries "
                "binary messages only",
            )
        if reader.error:
            raise Failed(rule, f"the tunnel broke: {reader.error}")
        if reader.first is None:
            raise Failed(rule, f"the cloud closed the tunnel ({reader.close_code}) before a byte")
        self.c.passed(
            rule,
            f"{reader.received} B in binary messages, the first after {waited * 1000:.0f} ms: "
            + _first_line(reader.first),
        )

    def conclude(self) -> None:
        rule = "tunnel.target-named"
        if self.camera.problems:
            self.c.failed(rule, " | ".join(list(dict.fromkeys(self.camera.problems))[:3]))
        elif self.missing:
            self.c.failed(rule, self.missing)
        elif self.camera.tunnel_opens:
            n = self.camera.tunnel_opens
            self.c.passed(rule, f"{n} tunnel_open, each a new session for target 'main'")
        else:
            self.c.skipped(rule, self.why_not or "no tunnel_open")
