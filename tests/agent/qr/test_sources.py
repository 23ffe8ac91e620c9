"""QR sources: image and video files, V4L2 and RTSP errors, scan until a code appears."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from agent.errors import CamagentError, QrError
from agent.qr.sources import frames, kind, scan
from tests.agent.qr.test_decode import bench_dir, make_code


def _card_frame(text: str, width: int = 640, height: int = 480) -> Any:
    import numpy as np

    code = make_code(text, box_size=5)
    frame = np.full((height, width, 3), 190, np.uint8)
    top, left = (height - code.shape[0]) // 2, (width - code.shape[1]) // 2
    frame[top : top + code.shape[0], left : left + code.shape[1]] = code[:, :, None]
    return frame


def _write_video(path: Path, blank_seconds: float, card: str | None, fps: int = 10) -> Path:
    import cv2
    import numpy as np

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (640, 480))
    assert writer.isOpened()
    blank = np.full((480, 640, 3), 120, np.uint8)
    for _ in range(int(blank_seconds * fps)):
        writer.write(blank)
    if card is not None:
        for _ in range(fps):
            writer.write(_card_frame(card))
    writer.release()
    return path


def test_kind() -> None:
    assert kind("rtsp://10.0.0.2:554/stream") == "rtsp"
    assert kind("RTSPS://cam/stream") == "rtsp"
    assert kind("/dev/video0") == "v4l2"
    assert kind("/dev/video12") == "v4l2"
    assert kind("/dev/videos") == "file"
    assert kind("card.png") == "file"


def test_image_file_gives_one_gray_frame() -> None:
    got = list(frames(str(bench_dir() / "qrcode-1/1.png")))
    assert len(got) == 1
    assert got[0].ndim == 2
    assert got[0].shape == (480, 640)


def test_scan_image_file() -> None:
    found = scan(str(bench_dir() / "qrcode-6/15.png"))
    assert [d.text for d in found] == ["TEST"]


def test_scan_image_without_code(tmp_path: Path) -> None:
    assert scan(str(bench_dir() / "falsepositives-2/03.png")) == []


def test_scan_non_ascii_path(tmp_path: Path) -> None:
    import cv2

    path = tmp_path / "carte wifi \u00e9t\u00e9.png"
    assert cv2.imwrite(str(tmp_path / "x.png"), make_code("\u00e9t\u00e9"))
    (tmp_path / "x.png").rename(path)
    assert [d.text for d in scan(str(path))] == ["\u00e9t\u00e9"]


def test_video_with_blank_seconds_then_a_card(tmp_path: Path) -> None:
    video = _write_video(tmp_path / "card.avi", blank_seconds=2.0, card="WIFI:S:lab;T:nopass;;")
    start = time.monotonic()
    found = scan(str(video), timeout=30, fps=5)
    assert [d.text for d in found] == ["WIFI:S:lab;T:nopass;;"]
    assert time.monotonic() - start < 10


def test_video_frames_follow_fps_on_the_video_timeline(tmp_path: Path) -> None:
    video = _write_video(tmp_path / "blank.avi", blank_seconds=3.0, card=None)
    assert len(list(frames(str(video)))) == 30
    sampled = list(frames(str(video), fps=2))
    assert 5 <= len(sampled) <= 7
    assert all(frame.ndim == 2 for frame in sampled)


def test_video_without_code_gives_nothing(tmp_path: Path) -> None:
    video = _write_video(tmp_path / "blank.avi", blank_seconds=1.0, card=None)
    assert scan(str(video), timeout=10) == []


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(QrError, match="no such file"):
        scan(str(tmp_path / "nothing.png"))


def test_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.png"
    path.write_bytes(b"this is not an image at all\x00\x01" * 50)
    with pytest.raises(QrError, match="neither an image nor a video"):
        scan(str(path))


def test_empty_file_and_directory(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(QrError, match="is empty"):
        scan(str(empty))
    with pytest.raises(QrError, match="is a directory"):
        scan(str(tmp_path))


def test_missing_camera_device() -> None:
    with pytest.raises(QrError, match="no such camera device"):
        scan("/dev/video987", timeout=1)


def test_rtsp_that_cannot_open() -> None:
    start = time.monotonic()
    with pytest.raises(QrError, match=r"cannot open rtsp://127\.0\.0\.1:9/"):
        scan("rtsp://127.0.0.1:9/none", timeout=2)
    assert time.monotonic() - start < 60


def test_qr_error_is_a_camagent_error() -> None:
    assert issubclass(QrError, CamagentError)
