"""The console's video (docs/design.md §12): the camera page's live view, thumbnails in the
camera list, and the camera page's reset and password correction, in Debian's chromium
against the mock cloud, a real RTSP test camera and camagent daemons.

One setup serves the module (these tests are slow): the mock (its pullers linger 1 s),
a test camera sending H.264 with its daemon and the camera added (online), and a camera
added with no device (waiting). The test camera draws the wall clock into every frame
(cloud_mock/test_camera.py): the page's frames are read back through a canvas, which
proves they advance and that the picture is live, not old.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from cloud_mock import sandbox
from cloud_mock.test_camera import TIMECODE_LAYOUT, TestCamera, running_test_camera
from cloud_mock.testing import MockCloud, start_mock_cloud
from tests.console.browsing import (
    DESKTOP,
    PHONE,
    Tab,
    assert_fits,
    chromium,
    start_device,
    tabs,
)
from tests.eventually import eventually

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("test_camera_available"),
]

# Reads the time code (the camera's wall clock in ms) of the frame the <video> shows, as
# cloud_mock/test_camera.py lays it out, and a checksum of the picture below it.
READ_FRAME = """([video, layout]) => {
  const w = video.videoWidth, h = video.videoHeight;
  if (video.readyState < 2 || !w || !h) return null;
  const canvas = document.createElement("canvas");
  canvas.width = w;
  canvas.height = h;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(video, 0, 0, w, h);
  const pixels = context.getImageData(0, 0, w, h).data;
  const cellW = Math.floor(w / layout.columns);
  const cellH = Math.max(layout.min_cell_height, 2 * cellW);
  const top = Math.floor(cellH / 2);
  const cells = layout.start_guard.length + layout.bits + layout.end_guard.length;
  const bits = [];
  for (let i = 0; i < cells; i++) {
    const x = (layout.first_cell + i) * cellW;
    const [x0, x1] = [x + Math.floor(cellW / 4), x + cellW - Math.floor(cellW / 4)];
    const [y0, y1] = [top + Math.floor(cellH / 4), top + cellH - Math.floor(cellH / 4)];
    let sum = 0;
    for (let y = y0; y < y1; y++) {
      for (let col = x0; col < x1; col++) sum += pixels[(y * w + col) * 4 + 1];
    }
    const mean = sum / ((x1 - x0) * (y1 - y0));
    if (mean < layout.zero_below) bits.push(0);
    else if (mean > layout.one_above) bits.push(1);
    else return null;
  }
  const start = layout.start_guard.length, end = start + layout.bits;
  const same = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);
  if (!same(bits.slice(0, start), layout.start_guard) || !same(bits.slice(end), layout.end_guard)) {
    return null;
  }
  const timecode = bits.slice(start, end).reduce((value, bit) => value * 2 + bit, 0);
  let picture = 0;
  for (let y = 2 * cellH; y < h; y += 2) {
    for (let col = 0; col < w; col += 2) {
      picture = (picture * 31 + pixels[(y * w + col) * 4]) % 1000000007;
    }
  }
  return { timecode, picture, now: Date.now() };
}"""
LAYOUT = {
    **asdict(TIMECODE_LAYOUT),
    "start_guard": list(TIMECODE_LAYOUT.start_guard),
    "end_guard": list(TIMECODE_LAYOUT.end_guard),
}


@dataclass
class Setup:
    cloud: MockCloud
    session: str
    camera: TestCamera
    agent: sandbox.Agent
    config: Path
    camera_id: str  # the test camera, online
    waiting_id: str  # a camera no device has claimed: no video
    agents: list[sandbox.Agent]  # every daemon started, stopped after the module

    def restart(self) -> None:
        self.agent = sandbox.start_agent(self.config)
        self.agents.append(self.agent)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockCloud]:
    directory = tmp_path_factory.mktemp("video")
    fixtures = directory / "fixtures.json"
    fixtures.write_text(json.dumps({"orgs": [{"name": "demo", "business": True}]}))
    # A puller outlives its last viewer by 1 s, not 5 (a test waits for it to stop), and
    # a watched stream gives a thumbnail every second, not every 10 (one waits for that).
    env = {"CAMAGENT_MOCK_VIDEO_LINGER_S": "1", "CAMAGENT_MOCK_VIDEO_LIVE_THUMBNAIL_S": "1"}
    c = start_mock_cloud(directory / "cloud", fixtures=fixtures, env=env)
    yield c
    c.stop()


@pytest.fixture(scope="module")
def browser(cloud: MockCloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    with chromium(cloud, tmp_path_factory.mktemp("home")) as b:
        yield b


def video_config(camera: TestCamera) -> str:
    return f'[video]\nmain = "{camera.main}"\nsub = "{camera.sub}"\n'


@pytest.fixture(scope="module")
def setup(cloud: MockCloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    agents: list[sandbox.Agent] = []
    with running_test_camera() as camera:
        agent = start_device(
            tmp_path_factory.mktemp("devices"),
            cloud,
            agents,
            "02:c1:00:00:00:01",
            extra=video_config(camera),
        )
        try:
            session = cloud.login()
            added = cloud.add_camera(session, "02:c1:00:00:00:01", "label-password", "Front door")
            waiting = cloud.add_camera(session, "02:c1:00:00:00:09", "label-password", "Porch")
            agent.wait_for_state("connected", timeout=20)
            yield Setup(
                cloud,
                session,
                camera,
                agent,
                agent.config_path,
                added["camera_id"],
                waiting["camera_id"],
                agents,
            )
        finally:
            for started in agents:
                started.stop()


# page.wait_for_function would evaluate its predicate with eval(), which the console's
# CSP refuses (rightly); page.evaluate is not subject to it, so these poll with it.


def frame_now(page: Page) -> dict[str, Any] | None:
    """The time code and picture of the frame shown now; None while none is readable."""
    frame: dict[str, Any] | None = page.evaluate(
        f"(layout) => ({READ_FRAME})([document.getElementById('live-video'), layout])", LAYOUT
    )
    return frame


def read_frame(page: Page) -> dict[str, Any]:
    """The frame shown, once one is readable."""
    frame = eventually(lambda: frame_now(page), timeout=20, what="a readable frame")
    assert frame is not None
    return frame


def next_frame(page: Page, after: dict[str, Any]) -> dict[str, Any]:
    """A frame newer than `after` (the page's video advances)."""
    frame = eventually(
        lambda: frame_now(page),
        until=lambda f: f is not None and f["timecode"] > after["timecode"],
        timeout=20,
        what=f"a frame after {after}",
    )
    assert frame is not None
    return frame


def decoded(page: Page) -> bool:
    return bool(page.evaluate("document.getElementById('live-video').readyState >= 2"))


def assert_live(page: Page) -> None:
    """Frames advance, the picture changes, and the frame shown is recent (sanity, not a
    latency figure: benchmarks measure that)."""
    first = read_frame(page)
    later = next_frame(page, first)
    assert later["picture"] != first["picture"]
    assert abs(later["now"] - later["timecode"]) < 5000, later


def open_camera(tab: Tab, camera_id: str) -> Page:
    page = tab.log_in()
    page.goto(f"{tab.cloud.url}/cameras/{camera_id}")
    return page


def pullers_stopped(cloud: MockCloud) -> int:
    return cloud.log_file.read_text(errors="replace").count("puller stopped")


def test_the_camera_page_plays_live_video(browser: Browser, setup: Setup) -> None:
    cloud = setup.cloud
    stopped = pullers_stopped(cloud)
    with tabs(browser, cloud, **DESKTOP) as new_tab:
        tab = new_tab()
        page = open_camera(tab, setup.camera_id)
        assert_live(page)
        expect(page.locator("#player-status")).to_have_text(re.compile(r"^Live · \d+x\d+ H\.264$"))
        # The video fills the width and keeps the stream's shape.
        box = page.locator("#live-video").bounding_box()
        player = page.locator("#player").bounding_box()
        assert box is not None
        assert player is not None
        assert box["width"] == pytest.approx(player["width"], abs=1)
        assert box["width"] / box["height"] == pytest.approx(16 / 9, rel=0.02)
        assert_fits(page, "camera page, live", tap_targets=False)
        tab.shot("camera-live")

        # The camera goes offline: the page says so instead of a frozen picture; back
        # online, it plays again without a reload.
        page.evaluate("window.__sameDocument = true")
        setup.agent.stop()
        placeholder = page.locator("#player.no-picture #player-status")
        expect(placeholder).to_contain_text("The camera is offline")
        expect(page.locator("#live-video")).to_be_hidden()
        tab.shot("camera-offline")
        setup.restart()
        assert_live(page)
        assert page.evaluate("window.__sameDocument") is True

        # A late joiner on a phone: a picture at once (the keyframe cache).
        with tabs(browser, cloud, **PHONE) as new_phone_tab:
            phone_tab = new_phone_tab()
            phone = open_camera(phone_tab, setup.camera_id)
            eventually(lambda: decoded(phone), timeout=20, what="a first frame decoded")
            assert_live(phone)
            box = phone.locator("#live-video").bounding_box()
            assert box is not None
            assert box["width"] >= 300
            assert_fits(phone, "camera page on a phone, live")
            phone_tab.shot("phone-camera-live")

    # Both pages closed: the puller stops (after its linger) and the device's tunnel closes.
    eventually(lambda: pullers_stopped(cloud) > stopped, timeout=20, what="puller stopped")
    eventually(
        lambda: re.search(r"tunnel .* closed", setup.agent.log_text()),
        timeout=20,
        what="the device's tunnel closed",
    )


def test_the_camera_list_shows_thumbnails(browser: Browser, setup: Setup) -> None:
    cloud = setup.cloud
    waiting = cloud.camera(setup.session, setup.waiting_id)
    reason = waiting["video"]["thumbnail_reason"]
    assert reason
    for options, name in ((DESKTOP, "cameras-thumbnails"), (PHONE, "phone-cameras-thumbnails")):
        with tabs(browser, cloud, **options) as new_tab:
            tab = new_tab()
            page = tab.log_in()
            row = page.locator(f'tr[data-camera-id="{setup.camera_id}"]')
            image = row.get_by_role("img", name="Latest picture from Front door")
            expect(image).to_be_visible(timeout=30_000)
            image.evaluate("(img) => img.decode()")
            assert image.evaluate("(img) => img.naturalWidth") > 0
            box = image.bounding_box()
            assert box is not None
            assert (box["width"], box["height"]) == (160, 90)
            placeholder = page.locator(f'tr[data-camera-id="{setup.waiting_id}"] .thumb-none')
            expect(placeholder).to_have_text(reason)
            assert_fits(page, name, tap_targets=options is PHONE)
            tab.shot(name)
            if options is DESKTOP:
                # Someone watches: newer thumbnails come from the live stream, and the
                # list shows each one as the status feed reports it (no reload).
                source = image.get_attribute("src")
                open_camera(new_tab(), setup.camera_id)
                expect(image).not_to_have_attribute("src", source or "", timeout=20_000)
                expect(image).to_have_js_property("complete", True)
                assert image.evaluate("(img) => img.naturalWidth") > 0


def test_a_new_users_h265_camera_password_and_reset(
    browser: Browser, setup: Setup, tmp_path: Path
) -> None:
    """A camera added with a mistyped password, corrected on its page; it sends H.265,
    which the page explains instead of showing black; then it is reset."""
    cloud = setup.cloud
    agents: list[sandbox.Agent] = []
    device_id = "02:c1:00:00:00:02"
    with running_test_camera(codec="h265") as camera, tabs(browser, cloud) as new_tab:
        # Polling every second for long: the correction is taken at the next poll.
        agent = start_device(
            tmp_path, cloud, agents, device_id, fast_attempts=1000, extra=video_config(camera)
        )
        try:
            added = cloud.add_camera(setup.session, device_id, "mistyped", "Garage")
            tab = new_tab()
            page = open_camera(tab, added["camera_id"])
            expect(page.locator("#player-status")).to_contain_text("has not connected yet")
            expect(page.get_by_role("button", name="Reset camera")).to_be_disabled()
            expect(page.locator("#reset-why")).to_contain_text("it is waiting")

            page.get_by_label("Password on the label").fill("label-password")
            page.get_by_role("button", name="Correct the password").click()
            expect(page.locator("#password-result")).to_contain_text(
                "the camera will connect at its next poll"
            )
            expect(page.locator("[data-col=status]")).to_have_text("online", timeout=20_000)
            expect(page.get_by_label("Password on the label")).to_be_hidden()
            expect(page.locator("#player-status")).to_contain_text("This camera sends H.265")
            expect(page.locator("#live-video")).to_be_hidden()
            tab.shot("camera-h265")

            reset = page.get_by_role("button", name="Reset camera")
            expect(reset).to_be_enabled()
            reset.click()
            dialog = page.get_by_role("dialog", name="Reset Garage?")
            expect(dialog).to_contain_text("forgets its token and provisions again")
            expect(dialog).to_contain_text("another account")
            dialog.get_by_role("button", name="Reset camera").click()
            expect(dialog).to_be_hidden()
            expect(page.locator("#reset-result")).to_contain_text("provisioning again")
            # The device went back to provisioning, and (its claim still here) got its
            # token again.
            eventually(
                lambda: "reset from cloud" in agent.log_text(),
                what="the device's reset",
            )
            agent.wait_for_state("connected", timeout=20)
        finally:
            for started in agents:
                started.stop()
