"""A captcha PNG drawn in the terminal with half-block characters (two pixel rows per
text row, so pixels come out about square), at most 80 columns wide."""

from __future__ import annotations

import io

MAX_COLUMNS = 80
# (upper pixel dark, lower pixel dark) -> character
_BLOCKS = {(False, False): " ", (True, False): "▀", (False, True): "▄", (True, True): "█"}


def render(png: bytes, max_columns: int = MAX_COLUMNS) -> str:
    """The image as text lines; ValueError if it is not an image Pillow can read.
    ImportError if Pillow is not installed (it is optional for the CLI)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(png)) as image:
            gray = ImageOps.autocontrast(image.convert("L"), cutoff=2)
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"not a readable image: {error}") from None
    width = max(1, min(max_columns, gray.width))
    height = max(2, round(gray.height * width / gray.width))
    height += height % 2
    small = gray.resize((width, height), Image.Resampling.BOX)
    pixels = list(small.tobytes())  # mode "L": one byte per pixel
    threshold = _threshold(pixels)
    dark = [p < threshold for p in pixels]
    lines = []
    for row in range(0, height, 2):
        upper = dark[row * width : (row + 1) * width]
        lower = dark[(row + 1) * width : (row + 2) * width]
        lines.append("".join(_BLOCKS[pair] for pair in zip(upper, lower, strict=True)).rstrip())
    return "\n".join(lines)


def _threshold(pixels: list[int]) -> int:
    """Otsu's threshold: the grey level that best splits ink from paper."""
    histogram = [0] * 256
    for p in pixels:
        histogram[p] += 1
    total = len(pixels)
    sum_all = sum(i * h for i, h in enumerate(histogram))
    best, best_level = -1.0, 128
    weight_back = 0
    sum_back = 0
    for level in range(256):
        weight_back += histogram[level]
        if weight_back == 0:
            continue
        weight_fore = total - weight_back
        if weight_fore == 0:
            break
        sum_back += level * histogram[level]
        mean_back = sum_back / weight_back
        mean_fore = (sum_all - sum_back) / weight_fore
        between = weight_back * weight_fore * (mean_back - mean_fore) ** 2
        if between > best:
            best, best_level = between, level + 1
    return best_level
