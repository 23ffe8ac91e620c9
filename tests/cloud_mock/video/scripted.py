"""A scripted device for the mock's video tests: a WebSocket client with a real token that
speaks the control channel protocol and answers commands as a test says."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

WS = "/v1/devices/ws"

Answer = Callable[[dict[str, Any]], tuple[bool, Any] | None]  # None: no answer at all


@asynccontextmanager
async def scripted_device(
    client: aiohttp.ClientSession,
    token: str,
    device_id: str,
    video: list[str] | None,
    answers: dict[str, Answer],
    kind: str = "camera",
) -> AsyncIterator[list[dict[str, Any]]]:
    """A device's channel answering commands from `answers` (else ok false, as camagent
    answers a command it does not know); yields the list of commands it got."""
    got: list[dict[str, Any]] = []
    hello: dict[str, Any] = {"type": "hello", "device_id": device_id, "kind": kind, "version": "0"}
    if video is not None:
        hello["video"] = video
    headers = {"Authorization": f"Bearer {token}"}
    async with client.ws_connect(WS, headers=headers, autoclose=False) as ws:
        await ws.send_json(hello)
        assert (await ws.receive_json(timeout=5))["type"] == "hello"

        async def serve() -> None:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                command = json.loads(msg.data)
                if command.get("type") != "command":
                    continue
                got.append(command)
                answer = answers.get(command["name"])
                if answer is None:
                    result: tuple[bool, Any] | None = (
                        False,
                        f"unknown command {command['name']!r}",
                    )
                else:
                    result = answer(command)
                if result is not None:
                    ok, data = result
                    await ws.send_json(
                        {"type": "result", "id": command["id"], "ok": ok, "data": data}
                    )

        task = asyncio.create_task(serve())
        try:
            yield got
        finally:
            task.cancel()
            await ws.close()
