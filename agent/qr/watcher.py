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
import time
from collections.abc import Awaitable, Callable

from agent.config import QrConfig
from agent.errors import QrPayloadError
from agent.qr.payloads import APPLICABLE, Payload, parse

log = logging.getLogger(__name__)

OnPayload = Callable[[Payload], Awaitable[None]]
RESTART_DELAY_S = 10.0  # a camera that cannot be opened is retried, slowly


STDERR_BURST = 20  # worker lines logged per window; beyond, only counted
STDERR_WINDOW_S = 60.0
STDERR_CHUNK = 4096
MAX_STDERR_LINE = 400  # characters of one line kept in the log


class StderrLog:
    """The worker's stderr into our log as it comes, rate-limited: FFmpeg can warn on
    every frame of a bad stream, and the log must stay readable and bounded."""

    def __init__(
        self,
        burst: int = STDERR_BURST,
        window: float = STDERR_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst, self.window, self.clock = burst, window, clock
        self.window_start = clock()
        self.logged = 0
        self.suppressed = 0
        self.last = ""  # the last line, to say why the worker stopped

    def line(self, text: str) -> None:
        text = text.rstrip()[:MAX_STDERR_LINE]
        if not text:
            return
        self.last = text
        now = self.clock()
        if now - self.window_start >= self.window:
            self.flush()
            self.window_start, self.logged = now, 0
        if self.logged < self.burst:
            self.logged += 1
            log.warning("QR worker: %s", text)
        else:
            self.suppressed += 1

    def flush(self) -> None:
        if self.suppressed:
            log.warning(
                "QR worker: %d more line(s) in the last %.0f s not logged",
                self.suppressed,
                self.window,
            )
            self.suppressed = 0


async def drain_stderr(stream: asyncio.StreamReader, sink: StderrLog) -> None:
    """Read until EOF in chunks, so that no line length can stall the pipe."""
    pending = b""
    while chunk := await stream.read(STDERR_CHUNK):
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()[-STDERR_CHUNK:]  # a line without end stays bounded
        for raw in lines:
            sink.line(raw.decode(errors="replace"))
    if pending:
        sink.line(pending.decode(errors="replace"))
    sink.flush()


def worker_argv(config: QrConfig) -> list[str]:
    return [
        sys.executable,
        "-m",
        "agent.qr.worker",
        "--source",
        config.source,
        "--fps",
        str(config.fps),
    ]


class QrWatcher:
    def __init__(
        self,
        config: QrConfig,
        on_payload: OnPayload,
        argv: Callable[[QrConfig], list[str]] = worker_argv,
    ) -> None:
        self.config = config
        self.on_payload = on_payload
        self.argv = argv
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
            *self.argv(self.config),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        log.info(
            "scanning %s for QR cards (child process %d)", self.config.source, self.process.pid
        )
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        errors = StderrLog()
        # stderr is read all along, not after stdout ends: a full stderr pipe (64 KiB of
        # FFmpeg warnings) would block the worker and stall scanning without a word.
        drain = asyncio.create_task(drain_stderr(self.process.stderr, errors))
        try:
            try:
                async for line in self.process.stdout:
                    await self._handle(line)
            except ValueError:  # a line past the stream's 64 KiB limit: not the worker's
                log.warning("the QR worker wrote an overlong line: restarting it")
                self.process.terminate()
            await self.process.wait()
            await drain
            why = errors.last or f"exit {self.process.returncode}"
            log.warning("QR scanning stopped: %s", why)
        finally:
            if self.process.returncode is None:
                self.process.terminate()
                with contextlib.suppress(ProcessLookupError):
                    await self.process.wait()
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain

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
        if payload.type not in APPLICABLE:  # url, text, a camera label: shown, never applied
            log.info("QR code seen, not applied (%s)", payload.type)
            return
        await self.on_payload(payload)
