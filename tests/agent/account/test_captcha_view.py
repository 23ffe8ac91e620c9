from __future__ import annotations

import io

import pytest
from PIL import Image, ImageDraw

from agent.account import captcha_view
from cloud_mock.captcha import render_png


def _png(width: int, height: int, draw_bar: bool = True) -> bytes:
    image = Image.new("RGB", (width, height), "white")
    if draw_bar:
        ImageDraw.Draw(image).rectangle((0, 0, width // 2 - 1, height - 1), fill="black")
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def test_the_mock_captcha_fits_in_80_columns_and_shows_ink() -> None:
    text = captcha_view.render(render_png("K7PX2"))
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert 5 <= len(lines) <= 30
    ink = sum(line.count("█") + line.count("▀") + line.count("▄") for line in lines)
    assert ink > 100  # the characters are drawn, not a blank box


@pytest.mark.parametrize(("width", "height"), [(2000, 400), (81, 30), (200, 70), (7, 3)])
def test_any_size_is_at_most_80_columns_and_keeps_its_proportions(width: int, height: int) -> None:
    lines = captcha_view.render(_png(width, height)).splitlines()
    columns = min(80, width)
    assert max(len(line) for line in lines) <= 80
    # two pixel rows per text row: rows ~ columns * height / width / 2
    assert abs(len(lines) - columns * height / width / 2) <= 1.5


def test_dark_left_half_light_right_half() -> None:
    lines = captcha_view.render(_png(160, 40)).splitlines()
    for line in lines:
        assert line == "█" * 40  # right half is blank and stripped


def test_not_an_image_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not a readable image"):
        captcha_view.render(b"\x89PNG but not really")
