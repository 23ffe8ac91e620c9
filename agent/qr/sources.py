"""Frames to scan for QR codes: image files, video files, V4L2 cameras and RTSP streams.

A source is a string: `rtsp://…` (or `rtsps://…`) is a stream opened through FFmpeg,
`/dev/videoN` a V4L2 camera, anything else a file, read as an image when OpenCV can
decode it as one and as a video otherwise. `frames()` yields grayscale numpy frames;
`scan()` decodes them until one holds a code. OpenCV and numpy are imported inside the
functions, so importing this module costs nothing (the daemon scans in a child process).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.errors import QrError
from agent.qr.decode import Decoded, decode_frame

if TYPE_CHECKING:
    import numpy

_V4L2 = re.compile(r"^/dev/video\d+$")
_STREAM = ("rtsp://", "rtsps://")
OPEN_HINT = "check the address, the credentials in it, and that the stream is running"


def kind(source: str) -> str:
    """'rtsp', 'v4l2' or 'file' (whether a file is an image or a video is found on reading)."""
    if source.lower().startswith(_STREAM):
        return "rtsp"
    if _V4L2.match(source):
        return "v4l2"
    return "file"


def _gray(frame: numpy.ndarray) -> numpy.ndarray:
    import cv2

    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY)
    return frame


def read_image(path: Path) -> numpy.ndarray | None:
    """The file as a grayscale image, or None when it is not an image OpenCV can decode."""
    import cv2
    import numpy as np

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise QrError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not data:
        raise QrError(f"{path} is empty: give an image (PNG, JPEG, …) or a video file")
    # imdecode rather than imread: any path (non-ASCII too), and one read of the file.
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    return None if image is None else image


def _check_file(source: str) -> Path:
    path = Path(source)
    if not path.exists():
        raise QrError(f"{source}: no such file (give an image, a video, /dev/videoN or rtsp://)")
    if path.is_dir():
        raise QrError(f"{source} is a directory: give an image or video file")
    return path


def _open_capture(source: str, source_kind: str) -> Any:
    import cv2

    if source_kind == "v4l2":
        if not Path(source).exists():
            raise QrError(f"{source}: no such camera device (is the camera connected?)")
        capture = cv2.VideoCapture(source, cv2.CAP_V4L2)
        hint = "is another program using the camera, and may this user open it?"
    elif source_kind == "rtsp":
        capture = cv2.VideoCapture(source, cv2.CAP_FFMPEG)
        hint = OPEN_HINT
    else:
        capture = cv2.VideoCapture(source, cv2.CAP_FFMPEG)
        hint = "it is neither an image nor a video OpenCV can decode"
    if not capture.isOpened():
        capture.release()
        raise QrError(f"cannot open {source}: {hint}")
    return capture


def frames(
    source: str, fps: float | None = None, timeout: float | None = None
) -> Iterator[numpy.ndarray]:
    """Grayscale frames of `source`.

    An image yields one frame. A video file yields its frames (with `fps`, at most that many
    per second of the video's own timeline) until it ends. A camera or stream yields frames
    at most `fps` times per wall-clock second (the others are grabbed, not decoded to
    pixels, so the picture stays current) until `timeout` seconds have passed.
    `timeout` bounds every kind in wall-clock time; None = no limit.
    Raises QrError when the source does not exist or cannot be opened or read.
    """
    source_kind = kind(source)
    deadline = None if timeout is None else time.monotonic() + timeout
    if source_kind == "file":
        path = _check_file(source)
        image = read_image(path)
        if image is not None:
            yield image
            return
    capture = _open_capture(source, source_kind)
    try:
        yield from _capture_frames(capture, source, source_kind, fps, deadline)
    finally:
        capture.release()


def _capture_frames(
    capture: Any, source: str, source_kind: str, fps: float | None, deadline: float | None
) -> Iterator[numpy.ndarray]:
    import cv2

    interval = 0.0 if not fps or fps <= 0 else 1.0 / fps
    live = source_kind != "file"
    next_at = -1.0
    produced = 0
    failures = 0
    while deadline is None or time.monotonic() < deadline:
        if not capture.grab():
            if not live:
                if produced == 0:
                    raise QrError(f"cannot read {source}: it is neither an image nor a video")
                return
            failures += 1
            if failures >= 50:
                raise QrError(f"{source} stopped delivering frames: {OPEN_HINT}")
            time.sleep(0.1)  # a stream that stalls: wait a little, never spin
            continue
        failures = 0
        now = time.monotonic() if live else capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        if interval and now < next_at:
            continue
        ok, frame = capture.retrieve()
        if not ok or frame is None:
            continue
        next_at = now + interval
        produced += 1
        yield _gray(frame)


def scan(
    source: str,
    timeout: float | None = 10.0,
    fps: float | None = None,
    use_pyzbar: bool = False,
    accept: Callable[[list[Decoded]], bool] | None = None,
) -> list[Decoded]:
    """Codes in `source`: an image is decoded once; a video, camera or stream frame by
    frame until a frame yields codes that `accept` takes (any code, by default), the video
    ends, or `timeout` passes. Returns the accepted codes, else the last ones seen."""
    seen: list[Decoded] = []
    for frame in frames(source, fps=fps, timeout=timeout):
        found = decode_frame(frame, use_pyzbar=use_pyzbar)
        if found:
            seen = found
            if accept is None or accept(found):
                return found
    return seen
