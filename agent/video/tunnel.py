"""Video tunnels (docs/design.md §12.2, §12.3): TCP to one of the device's own streams,
relayed byte for byte over a second WebSocket to the cloud, which does all media work.

Imported on the first `tunnel_open`, never at idle: a camera that is never watched
carries none of this.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import aiohttp

from agent.clock import Clock, SystemClock
from agent.config import Config
from agent.errors import TunnelRefused
from agent.video.relay import CLOSE_GOING_AWAY, MAX_MESSAGE, MAX_MSG_SIZE, Relay
from agent.video.targets import Target, check_session, resolve

log = logging.getLogger(__name__)

TUNNEL_PATH = "/v1/devices/tunnels/"
CONNECT_TIMEOUT_S = 5.0  # the camera: it is on this host or its LAN
WS_TIMEOUT_S = 10.0  # the cloud's tunnel endpoint
REFUSALS_REMEMBERED = 32


class Tunnel:
    """One tunnel: the camera's TCP stream and the cloud's WebSocket, relayed."""

    def __init__(
        self,
        session_id: str,
        target: Target,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        idle_timeout: float,
        clock: Clock,
    ) -> None:
        self.session_id = session_id
        self.target = target
        self.reader = reader
        self.writer = writer
        self.idle_timeout = idle_timeout
        self.clock = clock
        self.relay: Relay | None = None
        self._stop: tuple[int, str] | None = None

    @property
    def label(self) -> str:
        return f"tunnel {self.session_id[:8]}… to {self.target.name} ({self.target.address})"

    async def run(self, http: aiohttp.ClientSession, url: str, token: str) -> None:
        try:
            async with asyncio.timeout(WS_TIMEOUT_S):
                ws = await http.ws_connect(
                    url,
                    headers={"Authorization": f"Bearer {token}"},
                    max_msg_size=MAX_MSG_SIZE,
                    autoping=True,
                )
        except aiohttp.WSServerHandshakeError as exc:
            log.warning("%s: the cloud refused it (HTTP %s)", self.label, exc.status)
            self.writer.close()
            return
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning(
                "%s: cannot reach the cloud: %s", self.label, str(exc) or type(exc).__name__
            )
            self.writer.close()
            return
        self.relay = Relay(
            self.reader, self.writer, ws, idle_timeout=self.idle_timeout, clock=self.clock
        )
        if self._stop is not None:  # closed while the WebSocket was connecting
            self.relay.stop(*self._stop)
        log.info("%s: open", self.label)
        why = await self.relay.run()
        log.info(
            "%s: closed (%s; %d bytes up, %d down)",
            self.label,
            why,
            self.relay.bytes_from_tcp,
            self.relay.bytes_from_ws,
        )

    def close(self, code: int, why: str) -> None:
        self._stop = (code, why)
        if self.relay is not None:
            self.relay.stop(code, why)


class Tunnels:
    """The device's open tunnels: at most `video.max_tunnels`, all closed on reset,
    revocation, token change and shutdown."""

    def __init__(
        self,
        config: Config,
        http: Callable[[], aiohttp.ClientSession],
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.http = http
        self.clock: Clock = clock or SystemClock()
        self._open: dict[asyncio.Task[None], Tunnel] = {}
        self._connecting = 0
        self._stopping = False
        self._refusals: OrderedDict[str, None] = OrderedDict()

    @property
    def count(self) -> int:
        return len(self._open) + self._connecting

    async def open(self, args: dict[str, Any], token: str) -> dict[str, Any]:
        """Carry out `tunnel_open`: the grant for the cloud, or TunnelRefused."""
        try:
            return await self._open_tunnel(args, token)
        except TunnelRefused as exc:
            self._log_refusal(str(exc))
            raise

    async def _open_tunnel(self, args: dict[str, Any], token: str) -> dict[str, Any]:
        session_id = check_session(args.get("session"))
        target = resolve(self.config, args.get("target"))
        self._refuse_if_stopping()
        limit = self.config.video.max_tunnels
        if self.count >= limit:
            raise TunnelRefused(f"{limit} tunnels are open already (video.max_tunnels)")
        self._connecting += 1
        try:
            reader, writer = await _connect(target)
        finally:
            self._connecting -= 1
        try:
            self._refuse_if_stopping()  # close_all(stopping=True) may have come meanwhile
        except TunnelRefused:
            writer.close()
            raise
        tunnel = Tunnel(
            session_id, target, reader, writer, self.config.video.idle_timeout, self.clock
        )
        url = self.config.cloud.url.rstrip("/") + TUNNEL_PATH + session_id
        task = asyncio.create_task(tunnel.run(self.http(), url, token), name=tunnel.label)
        self._open[task] = tunnel
        task.add_done_callback(self._ended)
        return target.grant()

    def _refuse_if_stopping(self) -> None:
        if self._stopping:
            raise TunnelRefused("the device is stopping")

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._open.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("a tunnel failed: %r", task.exception())

    async def close_all(self, why: str, *, stopping: bool = False) -> None:
        """Close every tunnel (1001) and wait for them to end."""
        self._stopping = self._stopping or stopping
        if not self._open:
            return
        log.info("closing %d tunnel(s): %s", len(self._open), why)
        for tunnel in self._open.values():
            tunnel.close(CLOSE_GOING_AWAY, why)
        tasks = set(self._open)
        _, pending = await asyncio.wait(tasks, timeout=CONNECT_TIMEOUT_S)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _log_refusal(self, reason: str) -> None:
        """Each distinct reason once (a cloud retrying must not flood the journal)."""
        if reason in self._refusals:
            self._refusals.move_to_end(reason)
            return
        self._refusals[reason] = None
        if len(self._refusals) > REFUSALS_REMEMBERED:
            self._refusals.popitem(last=False)
        log.warning("tunnel refused: %s", reason)


async def _connect(target: Target) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    where = f"the camera's {target.scheme.upper()} server at {target.address}"
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            return await asyncio.open_connection(target.host, target.port, limit=MAX_MESSAGE)
    except TimeoutError:
        raise TunnelRefused(f"{where} did not answer within {CONNECT_TIMEOUT_S:g} s") from None
    except ConnectionRefusedError:
        raise TunnelRefused(f"{where} refused the connection") from None
    except OSError as exc:
        raise TunnelRefused(f"cannot connect to {where}: {exc.strerror or exc}") from None
