"""The RTSP test camera's time code (cloud_mock/test_camera.py): frames drawn here from
the layout its module docstring gives, read back; the camera itself, serving RTSP, is in
test_test_camera_e2e.py.
"""

from __future__ import annotations

import random

import pytest

from cloud_mock import rtsp_test_camera
from cloud_mock.test_camera import (
    TIMECODE_LAYOUT,
    read_timecode,
)

NOW_MS = 1_765_000_000_123  # a moment in December 2025, in ms since the epoch


# --- the time code, pure ------------------------------------------------------------


def draw(
    ms: int,
    width: int,
    height: int,
    *,
    start_guard: tuple[int, int] = (1, 0),
    end_guard: tuple[int, int] = (0, 1),
    zero: int = 16,
    one: int = 235,
    noise: int = 0,
    seed: int = 1,
) -> bytearray:
    """A grey frame with the time code drawn as the module docstring says, written
    independently of the camera's painter."""
    rng = random.Random(seed)
    frame = bytearray(rng.randrange(256) for _ in range(width)) * height  # some picture
    cell_w = width // 64
    cell_h = max(16, 2 * cell_w)
    frame[: 2 * cell_h * width] = bytes([128]) * (2 * cell_h * width)
    bits = [*start_guard, *((ms >> (47 - i)) & 1 for i in range(48)), *end_guard]
    top = cell_h // 2
    for i, bit in enumerate(bits):
        x = (6 + i) * cell_w
        for y in range(top, top + cell_h):
            frame[y * width + x : y * width + x + cell_w] = bytes([one if bit else zero]) * cell_w
    if noise:
        for offset in range(2 * cell_h * width):
            frame[offset] = min(255, max(0, frame[offset] + rng.randint(-noise, noise)))
    return frame


@pytest.mark.parametrize(
    ("width", "height"), [(640, 360), (320, 180), (1280, 720), (1920, 1080), (256, 48)]
)
@pytest.mark.parametrize("ms", [0, 1, NOW_MS, 2**48 - 1, 0xAAAA_AAAA_AAAA])
def test_read_timecode_reads_the_drawn_milliseconds(width: int, height: int, ms: int) -> None:
    assert read_timecode(bytes(draw(ms, width, height)), width, height) == ms


@pytest.mark.parametrize(("zero", "one"), [(16, 235), (0, 255)])
def test_read_timecode_survives_noise_in_either_luma_range(zero: int, one: int) -> None:
    # Limited range (the stream's luma) and full range (ffmpeg's gray, a browser's RGB);
    # each pixel of the band moved by up to 50 levels.
    for seed in range(5):
        frame = draw(NOW_MS + seed, 640, 360, zero=zero, one=one, noise=50, seed=seed)
        assert read_timecode(bytes(frame), 640, 360) == NOW_MS + seed


def test_read_timecode_ignores_what_follows_the_luma_plane() -> None:
    i420 = bytes(draw(NOW_MS, 320, 180)) + bytes([128]) * (320 * 180 // 2)
    assert read_timecode(i420, 320, 180) == NOW_MS


@pytest.mark.parametrize(
    ("start_guard", "end_guard"), [((0, 1), (0, 1)), ((1, 1), (0, 1)), ((1, 0), (1, 0))]
)
def test_read_timecode_without_its_guards_is_none(
    start_guard: tuple[int, int], end_guard: tuple[int, int]
) -> None:
    frame = draw(NOW_MS, 640, 360, start_guard=start_guard, end_guard=end_guard)
    assert read_timecode(bytes(frame), 640, 360) is None


def test_read_timecode_with_an_unreadable_cell_is_none() -> None:
    frame = draw(NOW_MS, 640, 360)
    x0, y0, x1, y1 = TIMECODE_LAYOUT.cell_box(640, 20)
    for y in range(y0, y1):
        frame[y * 640 + x0 : y * 640 + x1] = bytes([128]) * (x1 - x0)  # neither 0 nor 1
    assert read_timecode(bytes(frame), 640, 360) is None


def test_read_timecode_of_other_pictures_is_none() -> None:
    assert read_timecode(bytes([128]) * 640 * 360, 640, 360) is None
    assert read_timecode(bytes(640 * 360), 640, 360) is None  # black
    assert read_timecode(bytes([255]) * 640 * 360, 640, 360) is None  # white
    # Drawn for 640 wide, read as a 320-wide frame (a scaled or misread frame).
    assert read_timecode(bytes(draw(NOW_MS, 640, 360)), 320, 180) is None
    # Too small to carry a time code at all.
    assert read_timecode(bytes(200 * 100), 200, 100) is None


def test_read_timecode_refuses_a_short_plane() -> None:
    with pytest.raises(ValueError, match="640x360"):
        read_timecode(bytes(640 * 359), 640, 360)


def test_the_layout_is_the_one_the_camera_draws() -> None:
    # The script keeps its own copy of the numbers (it imports nothing from the project).
    layout = TIMECODE_LAYOUT
    assert (layout.columns, layout.first_cell, layout.bits) == (
        rtsp_test_camera.COLUMNS,
        rtsp_test_camera.FIRST_CELL,
        rtsp_test_camera.BITS,
    )
    assert (layout.start_guard, layout.end_guard) == (
        rtsp_test_camera.START_GUARD,
        rtsp_test_camera.END_GUARD,
    )
    assert (layout.luma_zero, layout.luma_one, layout.band_luma) == (
        rtsp_test_camera.LUMA_ZERO,
        rtsp_test_camera.LUMA_ONE,
        rtsp_test_camera.BAND_LUMA,
    )
    assert layout.min_cell_height == rtsp_test_camera.MIN_CELL_HEIGHT
    for width, height in [(640, 360), (320, 180), (1920, 1080)]:
        assert layout.band_height(width) == rtsp_test_camera.Painter(width, height, "bars").band_h


@pytest.mark.parametrize("pattern", ["bars", "noise"])
@pytest.mark.parametrize(("width", "height"), [(640, 360), (320, 180)])
def test_the_camera_painter_frames_read_back(pattern: str, width: int, height: int) -> None:
    painter = rtsp_test_camera.Painter(width, height, pattern)
    band = TIMECODE_LAYOUT.band_height(width) * width
    previous = b""
    for n in range(3):
        frame = painter.frame(NOW_MS + 40 * n)
        assert len(frame) == width * height * 3 // 2  # I420
        assert read_timecode(frame, width, height) == NOW_MS + 40 * n
        assert frame[band : width * height] != previous  # the picture moves
        previous = frame[band : width * height]


# --- the real camera ------------------------------------------------------------------
