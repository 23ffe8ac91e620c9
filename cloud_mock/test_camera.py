"""Start the real RTSP test camera (cloud_mock/rtsp_test_camera.py) and read its time code.

The camera runs under Debian's python3 (GStreamer's GObject bindings are not in the
venv); this module, stdlib only, starts it as a subprocess and reads its ready line:

    with running_test_camera(codec="h264") as camera:
        subprocess.run(["ffprobe", "-rtsp_transport", "tcp", camera.main])

`available()` says why it cannot run here (None when it can).

THE TIME CODE. Every frame carries the wall clock when the camera made it, `time.time()`
in whole milliseconds since the Unix epoch, as a 48-bit number drawn in the frame's top
band. A viewer that reads it from a decoded frame and subtracts it from its own clock
(on the same machine) measures glass-to-glass latency. For a frame of `width` x `height`
pixels (both even; width at least 256, height at least 2 * cell_h + 16), with integer
division `//` (the numbers are TIMECODE_LAYOUT's fields):

- cell_w = width // 64 (columns); cell_h = max(16, 2 * cell_w) (min_cell_height).
  640x360: 10 x 20 pixels; 320x180: 5 x 16; 1280x720: 20 x 40.
- The band is rows 0 .. 2 * cell_h - 1, luma 128 (band_luma) except for the cells.
  The cells are rows top .. top + cell_h - 1 with top = cell_h // 2.
- 52 cells side by side, cell i (0-based) at columns x_i .. x_i + cell_w - 1 with
  x_i = (6 + i) * cell_w (first_cell = 6, so the row of cells is centred):
  cells 0, 1 are the start guard (1, 0); cells 2 .. 49 the 48 bits of the milliseconds,
  MOST significant bit first (cell 2 is bit 47, cell 49 bit 0); cells 50, 51 the end
  guard (0, 1).
- A 1 cell is luma 235 (luma_one), a 0 cell luma 16 (luma_zero), chroma neutral (128):
  white and black, in the limited-range luma of the stream, or 255 and 0 once a decoder
  expands it to full range (ffmpeg's `-pix_fmt gray`, a browser's RGB canvas: use
  (R + G + B) / 3 or the green channel, all three are equal for these cells).
- To read a cell, average the luma of its central part: columns x_i + cell_w // 4 ..
  x_i + cell_w - cell_w // 4 - 1 and rows top + cell_h // 4 .. top + cell_h - cell_h // 4
  - 1. A mean below 96 (zero_below) is 0, above 160 (one_above) is 1; anything between
  is unreadable, and so is the frame. A frame whose guards do not read (1, 0) and (0, 1)
  carries no time code (another picture, a different size, a scaled frame).

Below the band the picture changes every frame (pattern "bars": colour bars scrolling
sideways and a white bar moving down; "noise": random bytes). With "bars" every decoded
frame reads; with "noise" at a bitrate too low for it (the encoder starves the whole
frame) a few frames read None.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import selectors
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

SCRIPT = Path(__file__).with_name("rtsp_test_camera.py")
SYSTEM_PYTHON = "/usr/bin/python3"
DEFAULT_USER = "camera"
DEFAULT_PASSWORD = "test-camera-pw"


class TestCameraError(Exception):
    """The test camera could not start (the message ends with its stderr)."""

    __test__ = False


@dataclass(frozen=True)
class TimecodeLayout:
    """Where the time code is in a frame: see the module docstring."""

    columns: int = 64  # cell_w = width // columns
    min_cell_height: int = 16  # cell_h = max(min_cell_height, 2 * cell_w)
    first_cell: int = 6  # x of cell i = (first_cell + i) * cell_w
    start_guard: tuple[int, ...] = (1, 0)
    bits: int = 48  # the milliseconds, most significant bit first
    end_guard: tuple[int, ...] = (0, 1)
    luma_zero: int = 16  # what the camera draws for 0
    luma_one: int = 235  # and for 1
    band_luma: int = 128  # the band around the cells
    zero_below: int = 96  # a cell's mean luma < zero_below reads 0
    one_above: int = 160  # > one_above reads 1; between: unreadable

    @property
    def cells(self) -> int:
        return len(self.start_guard) + self.bits + len(self.end_guard)

    def cell_size(self, width: int) -> tuple[int, int]:
        """(cell_w, cell_h) for a frame `width` pixels wide."""
        cell_w = width // self.columns
        return cell_w, max(self.min_cell_height, 2 * cell_w)

    def band_height(self, width: int) -> int:
        return 2 * self.cell_size(width)[1]

    def fits(self, width: int, height: int) -> bool:
        """Whether a frame of this size carries a time code."""
        cell_w, cell_h = self.cell_size(width)
        return cell_w >= 4 and height >= 2 * cell_h + 16

    def cell_box(self, width: int, index: int) -> tuple[int, int, int, int]:
        """The part of cell `index` a reader averages: (x0, y0, x1, y1), x1 and y1 excluded."""
        cell_w, cell_h = self.cell_size(width)
        x = (self.first_cell + index) * cell_w
        top = cell_h // 2
        return (
            x + cell_w // 4,
            top + cell_h // 4,
            x + cell_w - cell_w // 4,
            top + cell_h - cell_h // 4,
        )


TIMECODE_LAYOUT = TimecodeLayout()


def read_timecode(luma: bytes, width: int, height: int) -> int | None:
    """The milliseconds since the epoch a frame's time code says, or None if it has none.

    `luma`: the frame's 8-bit luma (or grey) plane, `width` * `height` bytes, row by row
    (more bytes, such as the chroma planes of an I420 frame after it, are ignored).
    """
    if width <= 0 or height <= 0 or len(luma) < width * height:
        raise ValueError(f"{len(luma)} bytes is not a {width}x{height} luma plane")
    layout = TIMECODE_LAYOUT
    if not layout.fits(width, height):
        return None
    bits: list[int] = []
    for index in range(layout.cells):
        x0, y0, x1, y1 = layout.cell_box(width, index)
        total = sum(sum(luma[y * width + x0 : y * width + x1]) for y in range(y0, y1))
        mean = total / ((x1 - x0) * (y1 - y0))
        if mean < layout.zero_below:
            bits.append(0)
        elif mean > layout.one_above:
            bits.append(1)
        else:
            return None
    start, end = len(layout.start_guard), len(layout.start_guard) + layout.bits
    if tuple(bits[:start]) != layout.start_guard or tuple(bits[end:]) != layout.end_guard:
        return None
    value = 0
    for bit in bits[start:end]:
        value = value << 1 | bit
    return value


@dataclass
class TestCamera:
    """A running rtsp_test_camera.py: its process and what its ready line said."""

    __test__ = False

    process: subprocess.Popen[bytes]
    port: int
    main: str  # rtsp://USER:PASS@127.0.0.1:PORT/main (no credentials without auth)
    sub: str
    user: str | None
    password: str | None
    stderr: IO[bytes] | None = field(default=None, repr=False)

    def stderr_tail(self, lines: int = 20) -> str:
        """The end of what the camera wrote to stderr (GStreamer's warnings, tracebacks)."""
        return _tail(self.stderr, lines)

    def stop(self, timeout: float = 10.0) -> int:
        """Stop the camera (SIGTERM, then SIGKILL after `timeout`); its exit status.

        Safe to call again."""
        process = self.process
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for stream in (process.stdin, process.stdout, self.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        status = process.returncode
        assert status is not None
        return status


def start_test_camera(
    *,
    codec: str = "h264",
    bitrate: int = 800,
    width: int = 640,
    height: int = 360,
    fps: int = 25,
    pattern: str = "bars",
    auth: bool = True,
    auth_method: str = "basic",
    user: str = DEFAULT_USER,
    password: str = DEFAULT_PASSWORD,
    host: str = "127.0.0.1",
    port: int = 0,
    python: str = SYSTEM_PYTHON,
    timeout: float = 20.0,
) -> TestCamera:
    """Start the camera and wait (at most `timeout` s) until it listens.

    The camera exits when this process's end of its stdin closes, so a test process
    that dies leaves no camera behind. Raises TestCameraError with the camera's stderr
    when it exits or is not ready in time."""
    argv = [
        python,
        str(SCRIPT),
        "--host",
        host,
        "--port",
        str(port),
        "--codec",
        codec,
        "--bitrate",
        str(bitrate),
        "--width",
        str(width),
        "--height",
        str(height),
        "--fps",
        str(fps),
        "--pattern",
        pattern,
        "--exit-on-stdin-eof",
    ]
    argv += (
        ["--auth", auth_method, "--user", user, "--password", password] if auth else ["--no-auth"]
    )
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the camera)
    try:
        process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr
        )
    except OSError as exc:
        stderr.close()
        raise TestCameraError(f"cannot run {python}: {exc}") from exc
    camera = TestCamera(process, 0, "", "", None, None, stderr)
    try:
        assert process.stdout is not None
        line = _read_line(process, process.stdout, timeout, stderr)
        try:
            ready: dict[str, Any] = json.loads(line)
            camera.port = int(ready["port"])
            camera.main, camera.sub = str(ready["main"]), str(ready["sub"])
            camera.user, camera.password = ready["user"], ready["password"]
        except (ValueError, KeyError, TypeError) as exc:
            raise TestCameraError(
                f"rtsp_test_camera's ready line is not what was expected: {line!r}"
            ) from exc
    except BaseException:
        camera.stop(timeout=2)
        raise
    return camera


@contextlib.contextmanager
def running_test_camera(**options: Any) -> Iterator[TestCamera]:
    """`start_test_camera(**options)` as a context manager that always stops it."""
    camera = start_test_camera(**options)
    try:
        yield camera
    finally:
        camera.stop()


@functools.cache
def available(python: str = SYSTEM_PYTHON) -> str | None:
    """None when the test camera can run here, else why not (checked once, then cached)."""
    if not os.access(python, os.X_OK):
        return f"no {python} (the camera needs Debian's python3 with python3-gi)"
    try:
        result = subprocess.run(
            [python, str(SCRIPT), "--check"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{python} {SCRIPT.name} --check failed: {exc}"
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip().splitlines()
        return message[-1] if message else f"--check exited with {result.returncode}"
    return None


def _read_line(
    process: subprocess.Popen[bytes], stdout: IO[bytes], timeout: float, stderr: IO[bytes]
) -> str:
    deadline = time.monotonic() + timeout
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(stdout, selectors.EVENT_READ)
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TestCameraError(
                    f"rtsp_test_camera not ready after {timeout:g} s{_tail(stderr, 20, ':')}"
                )
            if not selector.select(min(remaining, 0.2)):
                continue
            chunk = os.read(stdout.fileno(), 4096)
            if not chunk:
                status = process.wait()
                raise TestCameraError(
                    f"rtsp_test_camera exited with status {status} before it was "
                    f"ready{_tail(stderr, 20, ':')}"
                )
            buffer += chunk
    return buffer.split(b"\n", 1)[0].decode(errors="replace").strip()


def _tail(stream: IO[bytes] | None, lines: int, prefix: str = "") -> str:
    if stream is None:
        return ""
    with contextlib.suppress(OSError, ValueError):
        stream.flush()
        stream.seek(0)
        text = stream.read().decode(errors="replace").splitlines()[-lines:]
        stream.seek(0, os.SEEK_END)
        if text:
            return prefix + "\n" + "\n".join(text) if prefix else "\n".join(text)
    return ""
