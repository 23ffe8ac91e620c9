"""QR reading: the benchmark photographs, codes made here (non-ASCII, binary), lazy imports."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.qr.decode import Decoded, decode_frame, decode_pyzbar, decode_zxing

ROOT = Path(__file__).resolve().parents[3]
BENCH = ROOT / "tests" / "data" / "qr-bench"


def bench_dir() -> Path:
    """ZXing's QR photos, kept in the repository; a clear failure (never a skip) if absent."""
    if not (BENCH / "manifest.tsv").is_file():
        pytest.fail(f"QR benchmark data not found: {BENCH / 'manifest.tsv'} is missing")
    return BENCH


def manifest() -> dict[str, str | None]:
    lines = (bench_dir() / "manifest.tsv").read_text(encoding="utf-8").splitlines()
    return {f: json.loads(expected) for f, expected, _set in (ln.split("\t") for ln in lines[1:])}


def load_gray(path: Path) -> Any:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert image is not None, path
    return image


def make_code(data: str | bytes, box_size: int = 6) -> Any:
    """A grayscale numpy image of a QR code made with the `qrcode` library, through a PNG
    written by its default image factory (PIL when installed, else PyPNG)."""
    import cv2
    import numpy as np
    import qrcode

    code = qrcode.QRCode(border=4, box_size=box_size)
    code.add_data(data)
    code.make(fit=True)
    buffer = io.BytesIO()
    code.make_image().save(buffer)
    image = cv2.imdecode(np.frombuffer(buffer.getvalue(), np.uint8), cv2.IMREAD_GRAYSCALE)
    assert image is not None
    return image


def _strip(text: str) -> str:
    return text.rstrip("\r\n")


# One or two files of every set, including non-ASCII (Shift_JIS) payloads, the longest
# one, a code only the expensive passes read (qrcode-2/28), and a rotated one.
BENCH_FILES = [
    "qrcode-1/1.png",
    "qrcode-1/16.png",
    "qrcode-2/10.png",
    "qrcode-2/26.png",
    "qrcode-2/28.png",
    "qrcode-2/31.png",
    "qrcode-5/16.png",
    "qrcode-5/07.png",
    "qrcode-6/3.png",
    "qrcode-6/15.png",
]


@pytest.mark.parametrize("name", BENCH_FILES)
def test_bench_photos_read_exactly(name: str) -> None:
    expected = manifest()[name]
    assert expected is not None
    found = decode_frame(load_gray(bench_dir() / name))
    assert [_strip(d.text) for d in found] == [_strip(expected)]
    assert found[0].decoder == "zxing-cpp"


@pytest.mark.parametrize("name", ["falsepositives-2/01.png", "falsepositives-2/17.png"])
def test_photo_without_code_gives_nothing(name: str) -> None:
    assert manifest()[name] is None
    assert decode_frame(load_gray(bench_dir() / name)) == []


def test_color_frames_are_accepted() -> None:
    import cv2

    bgr = cv2.imread(str(bench_dir() / "qrcode-1/13.png"), cv2.IMREAD_COLOR)
    assert bgr is not None
    assert [d.text for d in decode_frame(bgr)] == ["http://google.com/gwt/n?u=bluenile.com"]


@pytest.mark.parametrize(
    "text",
    [
        "hello",
        'WIFI:T:WPA;S:caf\u00e9 \\;\\,\\:\\"\\\\;P:p\u00e4ss w\u00f6rd;H:true;;',
        "\u6771\u4eac \u2615 \U0001f4f7 \u0417\u0434\u0440\u0430\u0432\u0441\u0442\u0432\u0443",
        "CAMAGENT:T:" + "A" * 300 + ";;",
    ],
)
def test_made_codes_read_back_exactly(text: str) -> None:
    found = decode_frame(make_code(text))
    assert found == [Decoded(text, text.encode("utf-8"), "zxing-cpp")]


@pytest.mark.parametrize(
    "raw", [b"\xff\xfe\x00\x01binary\x80\x81", bytes(range(256)), b"\x93\x8c\x8b\x9e"]
)
def test_binary_payloads_keep_their_bytes(raw: bytes) -> None:
    found = decode_frame(make_code(raw))
    assert len(found) == 1
    assert found[0].raw == raw
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    assert found[0].text  # zxing-cpp's reading of the bytes (charset guessed)


def test_blank_and_noise_frames_locate_nothing() -> None:
    import numpy as np

    blank = np.full((720, 1280), 200, np.uint8)
    noise = np.random.default_rng(7).integers(0, 256, (720, 1280), dtype=np.uint8)
    for frame in (blank, noise):
        assert decode_frame(frame) == []
        assert decode_zxing(frame) == ([], False)


def test_inverted_code_light_on_dark() -> None:
    import numpy as np

    code = 255 - make_code("inverted card")
    frame = np.full((720, 1280), 30, np.uint8)
    frame[200 : 200 + code.shape[0], 300 : 300 + code.shape[1]] = code
    assert [d.text for d in decode_frame(frame)] == ["inverted card"]


def test_damaged_code_is_located_but_not_guessed() -> None:
    import numpy as np

    code = make_code("damaged card 1234567890", box_size=8)
    code[code.shape[0] // 3 : code.shape[0] // 2, :] = 255  # a third of the rows wiped out
    frame = np.full((1080, 1920), 200, np.uint8)
    frame[100 : 100 + code.shape[0], 100 : 100 + code.shape[1]] = code
    assert decode_zxing(frame) == ([], True)
    assert decode_frame(frame, use_pyzbar=True) == []


def test_small_code_in_a_large_frame() -> None:
    import numpy as np

    code = make_code("small card", box_size=3)
    frame = np.full((1080, 1920), 235, np.uint8)
    frame[500 : 500 + code.shape[0], 900 : 900 + code.shape[1]] = code
    assert [d.text for d in decode_frame(frame)] == ["small card"]


def test_pyzbar_path_reads_a_plain_code() -> None:
    found = decode_pyzbar(make_code("via zbar"))
    assert found == [Decoded("via zbar", b"via zbar", "pyzbar")]
    assert decode_frame(make_code("via zbar"), use_pyzbar=True)[0].text == "via zbar"


def test_importing_the_reader_loads_no_heavy_library() -> None:
    code = (
        "import sys, agent.qr.decode, agent.qr.sources\n"
        "heavy = ('cv2', 'numpy', 'zxingcpp', 'pyzbar', 'qrcode', 'PIL')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


# Dark modules span mid-tones up to ~80 % of the paper's white, as in qrcode-2/12.
LOW, HIGH = 20, 205


def _textured_card(text: str, low: int, high: int) -> Any:
    """A code whose dark modules show a photograph (mid-tones) on white paper: the kind of
    "artistic" card printed over a picture. The photo is one of the benchmark's no-code
    photos, so nothing here is drawn to suit the decoder."""
    import cv2
    import numpy as np

    code = make_code(text, box_size=8)
    photo = load_gray(bench_dir() / "falsepositives-2/05.png")
    texture = cv2.resize(photo, (code.shape[1], code.shape[0]), interpolation=cv2.INTER_AREA)
    texture = cv2.normalize(texture, None, low, high, cv2.NORM_MINMAX)
    card = np.full(code.shape, 250, np.uint8)
    dark = code < 128
    card[dark] = texture[dark]
    return card


def test_code_with_photo_textured_modules_is_read_by_the_paper_pass() -> None:
    import zxingcpp

    text = "WIFI:T:WPA;S:textured;P:over a photo;;"
    card = _textured_card(text, LOW, HIGH)
    for binarizer in (zxingcpp.Binarizer.LocalAverage, zxingcpp.Binarizer.GlobalHistogram):
        plain = zxingcpp.read_barcodes(
            card,
            formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode),
            binarizer=binarizer,
        )
        assert plain == []  # neither of the library's own binarizers reads it ...
    assert [d.text for d in decode_frame(card)] == [text]  # ... the pipeline does


def test_bench_photo_with_textured_modules() -> None:
    # qrcode-2/12: aerial photography in the dark modules; read only by the paper pass.
    name = "qrcode-2/12.png"
    expected = manifest()[name]
    assert expected is not None
    assert [_strip(d.text) for d in decode_frame(load_gray(bench_dir() / name))] == [expected]
