"""Debian's ffmpeg, run by the mock (never by the device): argument vectors for each job
and a runner that keeps a bounded tail of what ffmpeg said, to tell a person why it
stopped. No transcoding anywhere: `-c copy`, short probing (docs/design.md §12.5)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import deque
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

STDERR_LINES = 20
STDERR_LINE_CHARS = 300
STOP_GRACE_S = 3.0
READ_CHUNK = 65536
# ffmpeg repeats the input URL in its messages; the credentials must not reach a page.
_USERINFO = re.compile(r"(\w+://)[^/@\s]+@")

_COMMON = ["-hide_banner", "-nostdin", "-loglevel", "error"]
# The first picture in under a second: ffmpeg's default probing waits ~2 s.
_RTSP_IN = [
    "-rtsp_transport",
    "tcp",
    "-timeout",
    "10000000",  # µs without data before the socket gives up
    "-analyzeduration",
    "100000",
    "-probesize",
    "32768",
]


def live_args(ffmpeg: str, url: str) -> list[str]:
    """RTSP in, fragmented MP4 on stdout: a fragment at each keyframe and every 100 ms."""
    return [
        ffmpeg,
        *_COMMON,
        *_RTSP_IN,
        "-i",
        url,
        "-map",
        "0:v:0",
        "-c",
        "copy",
        "-f",
        "mp4",
        "-movflags",
        "empty_moov+default_base_moof+frag_keyframe",
        "-frag_duration",
        "100000",
        "pipe:1",
    ]


def rtsp_frame_args(ffmpeg: str, url: str) -> list[str]:
    """One JPEG of an RTSP stream on stdout (the one decode the mock does: a thumbnail)."""
    return [
        ffmpeg,
        *_COMMON,
        *_RTSP_IN,
        "-i",
        url,
        *_one_jpeg(),
    ]


def fmp4_frame_args(ffmpeg: str) -> list[str]:
    """One JPEG of a fragmented MP4 on stdin (init segment + keyframe fragment)."""
    return [ffmpeg, *_COMMON, "-f", "mp4", "-i", "pipe:0", *_one_jpeg()]


def _one_jpeg() -> list[str]:
    return [
        "-map",
        "0:v:0",
        "-frames:v",
        "1",
        "-vf",
        "scale=min(640\\,iw):-2",
        "-q:v",
        "5",
        "-f",
        "image2",
        "-c:v",
        "mjpeg",
        "pipe:1",
    ]


def hls_args(ffmpeg: str, url: str, directory: Path, segment_s: float) -> list[str]:
    """RTSP in, an HLS event playlist of fMP4 segments out, with wall-clock times."""
    return [
        ffmpeg,
        *_COMMON,
        *_RTSP_IN,
        "-i",
        url,
        "-map",
        "0:v:0",
        "-c",
        "copy",
        "-f",
        "hls",
        "-hls_time",
        f"{segment_s:g}",
        "-hls_list_size",
        "0",
        "-hls_playlist_type",
        "event",
        "-hls_segment_type",
        "fmp4",
        "-hls_fmp4_init_filename",
        "init.mp4",
        "-hls_flags",
        "program_date_time+independent_segments+temp_file",
        "-hls_segment_filename",
        str(directory / "seg%06d.m4s"),
        str(directory / "index.m3u8"),
    ]


def redact(text: str) -> str:
    return _USERINFO.sub(r"\1***@", text)


class Ffmpeg:
    """One ffmpeg process: stdout to a callback, stderr's last lines kept, stopped on
    request with SIGTERM then SIGKILL."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.process: asyncio.subprocess.Process | None = None
        self.tail: deque[str] = deque(maxlen=STDERR_LINES)
        self._stderr_task: asyncio.Task[None] | None = None

    async def start(self, *, stdin: bool = False) -> None:
        try:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except FileNotFoundError:
            raise FfmpegMissing(
                f"{self.argv[0]} is not installed (apt-get install ffmpeg)"
            ) from None
        self._stderr_task = asyncio.create_task(self._read_stderr())

    async def _read_stderr(self) -> None:
        assert self.process is not None
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            text = redact(line.decode(errors="replace").strip())
            if text:
                self.tail.append(text[:STDERR_LINE_CHARS])

    async def read_stdout(self, on_chunk: Callable[[bytes], None]) -> None:
        """Until EOF; `on_chunk` may raise to stop reading."""
        assert self.process is not None
        assert self.process.stdout is not None
        while chunk := await self.process.stdout.read(READ_CHUNK):
            on_chunk(chunk)

    async def wait(self) -> int:
        assert self.process is not None
        code = await self.process.wait()
        if self._stderr_task is not None:
            await self._stderr_task
        return code

    def why(self, code: int | None) -> str:
        """What ffmpeg last said, or its exit status."""
        said = self.tail[-1] if self.tail else ""
        status = f"ffmpeg exited with status {code}" if code is not None else "ffmpeg stopped"
        return f"{status}: {said}" if said else status

    async def stop(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            async with asyncio.timeout(STOP_GRACE_S):
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        if self._stderr_task is not None:
            self._stderr_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stderr_task


class FfmpegMissing(Exception):
    pass
