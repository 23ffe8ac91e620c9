"""A viewer of the live WebSocket (docs/design.md §12.5) outside a browser: what the demo,
the end-to-end tests and the benchmarks use to watch a camera."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class Watched:
    """What a viewer saw: status messages, the init message and segment, fragments."""

    statuses: list[dict[str, Any]] = field(default_factory=list)
    init: dict[str, Any] | None = None
    init_segment: bytes = b""
    fragments: list[bytes] = field(default_factory=list)
    first_fragment_s: float | None = None  # after the WebSocket was asked for
    expect_init: bool = False  # an init message came: the next binary is its segment

    @property
    def last_status(self) -> dict[str, Any]:
        return self.statuses[-1] if self.statuses else {}

    def media(self) -> bytes:
        """The init segment and every fragment: a playable fragmented MP4."""
        return self.init_segment + b"".join(self.fragments)


async def watch(
    url: str,
    session: str,
    ssl_context: ssl.SSLContext,
    *,
    fragments: int = 1,
    timeout: float = 20.0,
    stop_on: Collection[str] = ("error",),
) -> Watched:
    """Watch `url` (…/live) until `fragments` fragments arrived, a status whose state is
    in `stop_on`, or `timeout`; never raises for what the cloud says."""
    seen = Watched()
    started = time.monotonic()
    async with aiohttp.ClientSession() as http:
        try:
            async with asyncio.timeout(timeout):
                ws = await http.ws_connect(
                    url, headers={"Authorization": f"Bearer {session}"}, ssl=ssl_context
                )
                async for message in ws:
                    if _take(seen, message, started, stop_on, fragments):
                        break
                await ws.close()
        except TimeoutError:
            pass
        except aiohttp.WSServerHandshakeError as exc:
            seen.statuses.append({"type": "status", "state": "refused", "message": str(exc)})
    return seen


def _take(
    seen: Watched,
    message: aiohttp.WSMessage,
    started: float,
    stop_on: Collection[str],
    fragments: int,
) -> bool:
    """Record one message; True when watching is done."""
    if message.type == aiohttp.WSMsgType.TEXT:
        data = json.loads(message.data)
        if data.get("type") == "init":
            seen.init = data
            seen.expect_init = True
        else:
            seen.statuses.append(data)
        return data.get("type") == "status" and data.get("state") in stop_on
    if message.type != aiohttp.WSMsgType.BINARY:
        return True
    if seen.expect_init:
        seen.init_segment, seen.expect_init = message.data, False
        return False
    if seen.first_fragment_s is None:
        seen.first_fragment_s = time.monotonic() - started
    seen.fragments.append(message.data)
    return len(seen.fragments) >= fragments


def watch_sync(url: str, session: str, ssl_context: ssl.SSLContext, **options: Any) -> Watched:
    return asyncio.run(watch(url, session, ssl_context, **options))
