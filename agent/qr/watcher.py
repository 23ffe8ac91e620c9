"""The daemon's side of QR scanning: run the worker child process, read what it sees.

The daemon starts it while it has no token and a `[qr] source` is configured, and stops
it as soon as it holds one; nothing heavy is ever imported here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Awaitable, Callable

from agent.config import QrConfig
from agent.errors import QrPayloadError
from agent.qr.payloads import Payload, parse

log = logging.getLogger(__name__)

OnPayload = Callable[[Payload], Awaitable[None]]
RESTART_DELAY_S = 10.0  # a camera that cannot be opened is retried, slowly


class QrWatcher:
    def __init__(self, config: QrConfig, on_payload: OnPayload) -> None:
        self.config = config
        self.on_payload = on_payload
        self._task: asyncio.Task[None] | None = None
        self.process: asyncio.subprocess.Process | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await self._watch_once()
            await asyncio.sleep(RESTART_DELAY_S)

    async def _watch_once(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agent.qr.worker",
            "--source",
            self.config.source,
            "--fps",
            str(self.config.fps),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        log.info(
            "scanning %s for QR cards (child process %d)", self.config.source, self.process.pid
        )
        try:
            assert self.process.stdout is not None
            async for line in self.process.stdout:
                await self._handle(line)
            await self.process.wait()
            assert self.process.stderr is not None
            why = (await self.process.stderr.read()).decode(errors="replace").strip()
            log.warning("QR scanning stopped: %s", why or f"exit {self.process.returncode}")
        finally:
            if self.process.returncode is None:
                self.process.terminate()
                with contextlib.suppress(ProcessLookupError):
                    await self.process.wait()

    async def _handle(self, line: bytes) -> None:
        try:
            text = json.loads(line)["text"]
            payload = parse(text)
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring an unreadable line from the QR worker")
            return
        except QrPayloadError as exc:
            log.warning("QR card refused: %s", exc)
            return
        if payload.type in ("url", "text"):
            log.info("QR code seen, not applied (%s)", payload.type)
            return
        await self.on_payload(payload)
