""" "Scan label" on Add camera, in chromium on an emulated phone with a fake camera: the
camera films a camera label (its QR code, rotated a few degrees, on a textured
background) from a Y4M file; the page decodes it with the vendored zxing-wasm, fills the
form, and the camera (a real daemon with that password) goes online after Add. Without a
camera the button says why and the form still works."""

from __future__ import annotations

import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Playwright, expect, sync_playwright

from agent.qr.payloads import escape
from cloud_mock import sandbox
from cloud_mock.console.views import SCANNER
from cloud_mock.testing import MockCloud
from tests.console.browsing import (
    ARGS,
    CHROMIUM,
    PHONE,
    start_device,
    tabs,
    trusting_home,
)
from tests.console.conftest import start_cloud

pytestmark = pytest.mark.slow

DEVICE_ID = "02:c0:ff:ee:00:01"
# Every character the payload escapes, so the page's parser is exercised on all of them.
PASSWORD = 'Kx7;q:R,9"m\\z-4F'
VIDEO = (640, 480)
FRAMES = 10


def label_png(device_id: str, password: str, path: Path) -> Path:
    """The camera's label as a PNG, made as on the factory line:
    `camagent label make --device-id ID --password-file F --png OUT`."""
    password_file = path.with_suffix(".password")
    password_file.write_text(password + "\n")
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent",
            "label",
            "make",
            "--device-id",
            device_id,
            "--password-file",
            str(password_file),
            "--png",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    return path


def qr_card_png(payload: str, lines: list[str], path: Path) -> Path:
    """A white card with the QR code of `payload` and `lines` of text under it."""
    import qrcode
    from PIL import Image, ImageDraw

    qr = qrcode.QRCode(border=4, box_size=6, error_correction=qrcode.constants.ERROR_CORRECT_M)
    qr.add_data(payload)
    code = qr.make_image(fill_color="black", back_color="white").get_image().convert("RGB")
    label = Image.new("RGB", (code.width + 40, code.height + 70), "white")
    label.paste(code, (20, 10))
    draw = ImageDraw.Draw(label)
    for i, line in enumerate(lines):
        draw.text((24, code.height + 14 + 22 * i), line, fill="black")
    label.save(path)
    return path


def fake_camera_y4m(label: Path, path: Path, angle: float = 4.0) -> Path:
    """A Y4M video (what chromium's fake camera plays) of `label` rotated by `angle`
    degrees on a grainy wood-like background, drifting a little from frame to frame."""
    import cv2
    import numpy as np
    from PIL import Image

    width, height = VIDEO
    rng = np.random.default_rng(7)
    x = np.arange(width)[None, :]
    y = np.arange(height)[:, None]
    grain = 30 * np.sin(x / 9.0 + 3 * np.sin(y / 40.0)) + rng.normal(0, 14, (height, width))
    background = np.clip(
        np.stack([110 + grain * 0.6, 150 + grain, 185 + grain], axis=-1), 0, 255
    ).astype(np.uint8)  # BGR: brown
    with Image.open(label) as image:
        card = image.convert("RGBA").rotate(angle, expand=True, resample=Image.Resampling.BICUBIC)
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode())
        for frame in range(FRAMES):
            scene = Image.fromarray(cv2.cvtColor(background, cv2.COLOR_BGR2RGB))
            left = (width - card.width) // 2 + frame - FRAMES // 2
            scene.paste(card, (left, (height - card.height) // 2), card)
            bgr = cv2.cvtColor(np.asarray(scene), cv2.COLOR_RGB2BGR)
            out.write(b"FRAME\n")
            out.write(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockCloud]:
    c = start_cloud(tmp_path_factory.mktemp("scan"), {"orgs": [{"name": "demo"}]})
    yield c
    c.stop()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def home(cloud: MockCloud, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trusting_home(tmp_path_factory.mktemp("home"), cloud.ca_file)


def launch(playwright: Playwright, home: Path, camera: Path | None = None) -> Browser:
    """Chromium; with `camera`, a fake camera that plays that Y4M video, allowed at once."""
    extra = (
        [
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={camera}",
        ]
        if camera is not None
        else []
    )
    return playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=[*ARGS, *extra], env={"HOME": str(home)}
    )


@pytest.fixture
def agents() -> Iterator[list[sandbox.Agent]]:
    started: list[sandbox.Agent] = []
    yield started
    for agent in started:
        agent.stop()


def test_the_decoder_is_vendored() -> None:
    assert SCANNER.is_file(), "run scripts/setup.sh: it fetches zxing-wasm into static/vendor/"
    assert (SCANNER.parent / "zxing_reader.wasm").stat().st_size > 100_000
    assert "MIT" in (SCANNER.parent / "zxing-wasm.LICENSE").read_text()


def test_scan_label_fills_the_form_and_the_camera_connects(
    playwright: Playwright,
    home: Path,
    cloud: MockCloud,
    agents: list[sandbox.Agent],
    tmp_path: Path,
) -> None:
    label = label_png(DEVICE_ID, PASSWORD, tmp_path / "label.png")
    video = fake_camera_y4m(label, tmp_path / "label.y4m")
    browser = launch(playwright, home, camera=video)
    try:
        with tabs(browser, cloud, **PHONE) as new_tab:
            tab = new_tab()
            tab.page.context.grant_permissions(["camera"], origin=cloud.url)
            page = tab.log_in()
            page.get_by_role("button", name="Add camera").tap()
            started = time.monotonic()
            page.get_by_role("button", name="Scan label").tap()
            status = page.locator("#scan-status")
            expect(page.get_by_label("MAC or camera ID")).to_have_value(DEVICE_ID, timeout=20_000)
            # Report figure: decoder load + camera start + decode, on this loaded machine.
            print(f"label read {time.monotonic() - started:.2f} s after Scan label")
            expect(page.get_by_label("Device password")).to_have_value(PASSWORD)
            expect(status).to_contain_text(f"Label read: camera {DEVICE_ID}")
            expect(page.locator("#scan-view")).to_be_hidden()  # the camera is let go
            assert page.evaluate("document.querySelector('#scan-video').srcObject") is None
            tab.shot("phone-scan-label")
            page.get_by_label("Name").fill("Porch")
            # The camera starts now: its fast polls then fall within the test's wait.
            agent = start_device(
                tmp_path, cloud, agents, DEVICE_ID, password=PASSWORD, slow_interval=1.0
            )
            page.get_by_role("button", name="Add", exact=True).tap()
            row = page.get_by_role("row", name=re.compile("Porch"))
            expect(row.locator("[data-col=status]")).to_have_text("online", timeout=20_000)
        agent.wait_for_state("connected", timeout=10)
    finally:
        browser.close()


def test_a_qr_code_that_is_no_label_is_named_and_closing_the_form_lets_the_camera_go(
    playwright: Playwright, home: Path, cloud: MockCloud, tmp_path: Path
) -> None:
    card = qr_card_png("WIFI:T:WPA;S:Office;P:wifi-password;;", ["Office WiFi"], tmp_path / "c.png")
    video = fake_camera_y4m(card, tmp_path / "wifi.y4m")
    browser = launch(playwright, home, camera=video)
    try:
        with tabs(browser, cloud, **PHONE) as new_tab:
            tab = new_tab()
            tab.page.context.grant_permissions(["camera"], origin=cloud.url)
            page = tab.log_in()
            page.get_by_role("button", name="Add camera").tap()
            page.get_by_role("button", name="Scan label").tap()
            status = page.locator("#scan-status")
            expect(status).to_have_text(
                re.compile("That QR code is not a camagent camera label"), timeout=20_000
            )
            video_element = page.get_by_label(re.compile("Camera view"))
            expect(video_element).to_be_visible()  # still scanning
            assert page.evaluate("document.querySelector('#scan-video').srcObject.active")
            expect(page.get_by_label("MAC or camera ID")).to_have_value("")
            tab.shot("phone-scan-not-a-label")
            page.get_by_role("button", name="Cancel").tap()
            expect(page.locator("#add-camera")).to_be_hidden()
            assert page.evaluate("document.querySelector('#scan-video').srcObject") is None
            page.get_by_role("button", name="Add camera").tap()
            expect(status).to_have_text("")
    finally:
        browser.close()


def test_without_a_camera_the_button_says_why_and_the_form_works(
    playwright: Playwright, home: Path, cloud: MockCloud
) -> None:
    browser = launch(playwright, home)  # no fake camera: chromium has no device here
    try:
        with tabs(browser, cloud, **PHONE) as new_tab:
            tab = new_tab()
            page = tab.log_in()
            page.get_by_role("button", name="Add camera").tap()
            page.get_by_role("button", name="Scan label").tap()
            status = page.locator("#scan-status")
            expect(status).to_contain_text("type the ID and password from the label")
            # Why, whichever way chromium refuses here (no device, or no permission).
            expect(status).to_contain_text(
                re.compile("No camera was found|not allowed|could not be started")
            )
            expect(page.locator("#scan-view")).to_be_hidden()
            # A mock set up without npm renders data-scanner="no": the button says so.
            page.locator("#scan").evaluate("(box) => { box.dataset.scanner = 'no'; }")
            page.get_by_role("button", name="Scan label").tap()
            expect(status).to_contain_text("The label scanner is not installed on this server")
            page.get_by_label("MAC or camera ID").fill("02:c0:ff:ee:00:02")
            page.get_by_label("Device password").fill("typed-by-hand")
            page.get_by_role("button", name="Add", exact=True).tap()
            expect(page.get_by_role("row", name=re.compile("02:c0:ff:ee:00:02"))).to_be_visible()
    finally:
        browser.close()


CASES: list[tuple[str, Any]] = [
    ("CAMAGENT:ID:cam-1;PW:secret;;", {"id": "cam-1", "password": "secret"}),
    (
        'CAMAGENT:ID:02\\:c0\\:00\\:00\\:00\\:01;PW:a\\;b\\,c\\\\d\\"e;;',
        {"id": "02:c0:00:00:00:01", "password": 'a;b,c\\d"e'},
    ),
    ("camagent:pw:x;id:cam-2;;", {"id": "cam-2", "password": "x"}),
    ("CAMAGENT:ID:cam-3;PW:;;", {"id": "cam-3", "password": ""}),
    ("CAMAGENT:T:v1.token;;", None),  # a token card, not a label
    ("WIFI:T:WPA;S:net;P:pw;;", None),
    ("CAMAGENT:ID:cam-4;;", None),  # no password
    ("CAMAGENT:ID:cam-5;PW:x\\", None),  # ends in a lone backslash
]


def test_the_page_reads_label_payloads_as_the_device_does(
    playwright: Playwright, home: Path, cloud: MockCloud
) -> None:
    browser = launch(playwright, home)
    try:
        with tabs(browser, cloud) as new_tab:
            page = new_tab().log_in()
            for text, expected in CASES:
                assert page.evaluate("(t) => parseLabel(t)", text) == expected, text
            # Whatever the label carries, escaped as the device's payload module escapes
            # it, comes back as it was.
            rng = random.Random(15)
            alphabet = "ab12:;,\\\"' -_é€"
            labels = [
                {
                    "id": rng.choice("ac") + "".join(rng.choices(alphabet, k=rng.randint(0, 12))),
                    "password": "".join(rng.choices(alphabet, k=rng.randint(0, 24))),
                }
                for _ in range(300)
            ]
            texts = [f"CAMAGENT:ID:{escape(x['id'])};PW:{escape(x['password'])};;" for x in labels]
            parsed = page.evaluate("(texts) => texts.map(parseLabel)", texts)
            expected = [{**x, "id": x["id"].strip()} for x in labels]
            assert parsed == expected
    finally:
        browser.close()
