"""QR codes read from one frame: zxing-cpp first, then more passes only where a code was seen.

`decode_frame(image)` takes a grayscale (or BGR) numpy image and returns what it read.

- The cheap tier runs on every frame: zxing-cpp with its local-average binarizer on the
  frame as it is (zxing-cpp itself tries 90° rotations and, for large frames, downscaled
  copies), then its global-histogram binarizer on the same frame, normal and inverted (it
  finds codes that a local threshold breaks up, light-on-dark codes, and locates more
  unreadable ones). Together they cost about 3 ms on a 1080p frame with nothing in it.
- The expensive tier runs only when the cheap tier *located* a QR symbol but could not
  read it (zxing-cpp returns such symbols with an error when asked to): upscaled copies of
  small frames, a median-filtered and a half-size copy, an Otsu-thresholded copy, both
  binarizers on each, every one also inverted. A frame without a code therefore never
  pays for it (none of the benchmark's no-code photos, at any size, triggers it).
- pyzbar is a fallback that can be switched on (`use_pyzbar=True`); it is off by default
  because on our benchmark it added no correct read that zxing-cpp's passes had missed
  (see benchmarks/qr_bench.py).

Every decoder here checks the Reed-Solomon error correction of what it returns, so a read
is either right or absent; nothing is guessed. Payloads keep their bytes: `raw` is what
the code holds, `text` is that decoded as UTF-8 when it is valid UTF-8, otherwise the text
zxing-cpp derives from the code's ECI or guessed character set (e.g. Shift_JIS).

numpy, OpenCV, zxing-cpp and pyzbar are imported inside the functions: importing this
module costs nothing, and the daemon never loads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy

SMALL_SIDE = 640  # frames whose shorter side is below this are also tried upscaled
# The paper pass: the level below which the brightest PAPER_SHARE of pixels lie is taken as
# the paper's white; anything under INK_RATIO of it is ink. Printed white stays within
# a few percent of the brightest paper under even light, while photo-textured dark modules
# reach up to ~80 % of it.
PAPER_SHARE = 0.10
INK_RATIO = 0.86


@dataclass(frozen=True)
class Decoded:
    """One code read from a frame."""

    text: str
    raw: bytes
    decoder: str  # "zxing-cpp" or "pyzbar"


def _text_of(raw: bytes, fallback: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return fallback


def _gray(image: numpy.ndarray) -> numpy.ndarray:
    import cv2
    import numpy as np

    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    elif image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    elif image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.dtype != np.uint8:  # e.g. 16-bit or float frames: stretch to 0..255
        low, high = float(image.min()), float(image.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        image = ((image.astype(np.float32) - low) * scale).astype(np.uint8)
    return np.ascontiguousarray(image)


def _zxing(image: numpy.ndarray, binarizer: str, invert: bool = False) -> tuple[list[Any], bool]:
    """Valid QR symbols in `image`, and whether an unreadable one was located."""
    import zxingcpp

    results = zxingcpp.read_barcodes(
        image,
        formats=zxingcpp.barcode_formats_from_str("QRCode,MicroQRCode"),
        try_rotate=True,
        try_downscale=True,
        try_invert=invert,
        text_mode=zxingcpp.TextMode.Plain,
        binarizer=getattr(zxingcpp.Binarizer, binarizer),
        return_errors=True,
    )
    valid = [r for r in results if r.valid]
    return valid, len(valid) < len(results)


def _from_zxing(results: list[Any]) -> list[Decoded]:
    found: dict[bytes, Decoded] = {}
    for result in results:
        raw = bytes(result.bytes)
        found.setdefault(raw, Decoded(_text_of(raw, result.text), raw, "zxing-cpp"))
    return list(found.values())


def paper_threshold(gray: numpy.ndarray) -> numpy.ndarray:
    """`gray` as black and white: white only where it is nearly as bright as the paper."""
    import cv2
    import numpy as np

    histogram = cv2.calcHist([gray], [0], None, [256], [0, 256]).ravel()
    cumulative = np.cumsum(histogram)
    paper = int(np.searchsorted(cumulative, (1 - PAPER_SHARE) * cumulative[-1]))
    _, binary = cv2.threshold(gray, int(paper * INK_RATIO), 255, cv2.THRESH_BINARY)
    return binary


def _cheap_variants(gray: numpy.ndarray) -> list[tuple[numpy.ndarray | None, str, bool]]:
    # Inverted codes (light on dark: dark-mode screens, printed negatives) only with the
    # global binarizer here, which costs a third of the local one. None stands for the
    # paper-thresholded frame, made only if the passes before it found nothing.
    return [
        (gray, "LocalAverage", False),
        (gray, "GlobalHistogram", True),
        (None, "BoolCast", False),
    ]


def _expensive_variants(gray: numpy.ndarray) -> list[tuple[numpy.ndarray, str]]:
    """Copies of a frame in which a code was located but not read (each tried inverted too)."""
    import cv2

    height, width = gray.shape[:2]
    variants: list[tuple[numpy.ndarray, str]] = [(gray, "LocalAverage")]  # now inverted too
    if min(height, width) < SMALL_SIDE:
        up = cv2.resize(gray, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
        variants += [(up, "LocalAverage"), (up, "GlobalHistogram")]
    median = cv2.medianBlur(gray, 3)
    half = cv2.resize(gray, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    _, otsu = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    variants += [
        (median, "LocalAverage"),
        (median, "GlobalHistogram"),
        (half, "LocalAverage"),
        (half, "GlobalHistogram"),
        (otsu, "LocalAverage"),
    ]
    return variants


def _pyzbar(gray: numpy.ndarray) -> list[Decoded]:
    from pyzbar import pyzbar

    found: dict[bytes, Decoded] = {}
    for symbol in pyzbar.decode(gray, symbols=[pyzbar.ZBarSymbol.QRCODE]):
        raw = bytes(symbol.data)
        found.setdefault(raw, Decoded(_text_of(raw, raw.decode("latin-1")), raw, "pyzbar"))
    return list(found.values())


def decode_zxing(image: numpy.ndarray, expensive: bool = True) -> tuple[list[Decoded], bool]:
    """zxing-cpp alone: (codes read, whether an unread code was located)."""
    gray = _gray(image)
    located = False
    for variant, binarizer, invert in _cheap_variants(gray):
        image_in = paper_threshold(gray) if variant is None else variant
        valid, seen = _zxing(image_in, binarizer, invert)
        if valid:
            return _from_zxing(valid), True
        located = located or seen
    if not (located and expensive):
        return [], located
    for variant, binarizer in _expensive_variants(gray):
        valid, _ = _zxing(variant, binarizer, invert=True)
        if valid:
            return _from_zxing(valid), True
    return [], True


def decode_pyzbar(image: numpy.ndarray) -> list[Decoded]:
    """pyzbar alone (for the benchmark and the optional fallback)."""
    return _pyzbar(_gray(image))


def decode_frame(image: numpy.ndarray, use_pyzbar: bool = False) -> list[Decoded]:
    """Every QR code read in `image` (grayscale or BGR numpy array); [] when none.

    With `use_pyzbar`, pyzbar is asked as well when zxing-cpp located a code it could
    not read.
    """
    found, located = decode_zxing(image)
    if found or not (use_pyzbar and located):
        return found
    return decode_pyzbar(image)
