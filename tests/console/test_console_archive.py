"""The archive on a camera's page (docs/design.md §12.5, §12.6): the recording setting,
the recorder's state, the last 24 hours as a timeline and a list, and playback of a
recording, in Debian's chromium (native HLS, and hls.js where a browser has none)
against the mock cloud, a real RTSP test camera and a camagent daemon.

One setup serves the module (these tests are slow): the mock cutting 1 s segments, the
test camera with its daemon and the camera added (online), and a camera no device has
claimed. The recorded spans the API lists are the truth a played recording is measured
against: its duration, and the time code the test camera drew into each frame (its wall
clock; the mock's clock is the wall clock here, since no test moves it).
"""

from __future__ import annotations

import datetime
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from cloud_mock import sandbox
from cloud_mock.test_camera import TestCamera, running_test_camera
from cloud_mock.testing import MockCloud, start_mock_cloud
from tests.console.browsing import DESKTOP, PHONE, Tab, assert_fits, chromium, start_device, tabs
from tests.console.conftest import VIEWER
from tests.console.test_console_video import LAYOUT, READ_FRAME, video_config
from tests.eventually import eventually

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("test_camera_available"),
]

HLS_JS = Path(__file__).resolve().parents[2] / "cloud_mock/console/static/vendor/hls.light.min.js"
RECORD_S = 6.0  # recorded before a span is played
DURATION_SLACK_S = 2.0  # a playlist holds whole segments (1 s here) overlapping the span
# The camera draws a frame's time code before the recorder receives it, and ffmpeg dates
# a run's first segment when it starts writing: a frame may be this much older than the
# span's start (the tunnel's and the encoder's latency, well under a second here).
TIMECODE_SLACK_S = 1.5


@dataclass
class Setup:
    cloud: MockCloud
    session: str
    camera: TestCamera
    agent: sandbox.Agent
    camera_id: str  # the test camera, online
    waiting_id: str  # a camera no device has claimed


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockCloud]:
    directory = tmp_path_factory.mktemp("archive")
    fixtures = directory / "fixtures.json"
    fixtures.write_text(
        json.dumps({"orgs": [{"name": "demo", "business": True}], "users": [VIEWER]})
    )
    # 1 s segments: a span grows second by second and a short recording has several.
    env = {"CAMAGENT_MOCK_VIDEO_ARCHIVE_SEGMENT_S": "1", "CAMAGENT_MOCK_VIDEO_LINGER_S": "1"}
    c = start_mock_cloud(directory / "cloud", fixtures=fixtures, env=env)
    yield c
    c.stop()


@pytest.fixture(scope="module")
def browser(cloud: MockCloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    with chromium(cloud, tmp_path_factory.mktemp("home")) as b:
        yield b


@pytest.fixture(scope="module")
def setup(cloud: MockCloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    agents: list[sandbox.Agent] = []
    with running_test_camera() as camera:
        agent = start_device(
            tmp_path_factory.mktemp("devices"),
            cloud,
            agents,
            "02:c2:00:00:00:01",
            extra=video_config(camera),
        )
        try:
            session = cloud.login()
            added = cloud.add_camera(session, "02:c2:00:00:00:01", "label-password", "Driveway")
            waiting = cloud.add_camera(session, "02:c2:00:00:00:09", "label-password", "Shed")
            agent.wait_for_state("connected", timeout=20)
            yield Setup(cloud, session, camera, agent, added["camera_id"], waiting["camera_id"])
        finally:
            for started in agents:
                started.stop()


# --- the API's side: the truth ---------------------------------------------------------


def archive(setup: Setup, camera_id: str) -> dict[str, Any]:
    """The camera's archive as the API shows it. The API cuts spans at its "now" (by
    default the range ends there), and ffmpeg dates a segment from when it started, which
    can be a little ahead: asking up to a minute ahead gives each span's whole length,
    which a page that asks later sees too."""
    ahead = int(time.time()) + 60
    status, body = setup.cloud.request(
        "GET", f"/v1/cameras/{camera_id}/archive?to={ahead}", session=setup.session
    )
    assert status == 200, body
    return dict(body)


def longest(spans: list[dict[str, float]]) -> dict[str, float] | None:
    return max(spans, key=lambda s: s["end"] - s["start"], default=None)


def long_enough(setup: Setup) -> dict[str, float]:
    """A span of RECORD_S or more, once the recorder has written one."""
    span = eventually(
        lambda: longest(archive(setup, setup.camera_id)["spans"]),
        until=lambda s: s is not None and s["end"] - s["start"] >= RECORD_S,
        timeout=60,
        interval=0.5,
        what=f"a recorded span of {RECORD_S} s",
    )
    assert span is not None
    return span


def set_recording(setup: Setup, mode: str, days: int = 7) -> None:
    status, body = setup.cloud.request(
        "PUT",
        f"/v1/cameras/{setup.camera_id}/recording",
        {"mode": mode, "retention_days": days},
        session=setup.session,
    )
    assert status == 200, body


def recorded(setup: Setup) -> dict[str, float]:
    """A finished recording of RECORD_S or more (an earlier test's, or made now through
    the API), with recording off again so that it stays as it is."""
    found = longest(archive(setup, setup.camera_id)["spans"])
    if found is None or found["end"] - found["start"] < RECORD_S:
        set_recording(setup, "continuous")
        long_enough(setup)
    set_recording(setup, "off")
    # PUT returns once the recorder stopped: its playlist is final.
    span = longest(archive(setup, setup.camera_id)["spans"])
    assert span is not None
    return span


# --- the page's side ---------------------------------------------------------------------


def open_camera(
    tab: Tab, camera_id: str, login: str = "admin", password: str | None = None
) -> Page:
    page = tab.log_in(login, password)
    page.goto(f"{tab.cloud.url}/cameras/{camera_id}")
    return page


def js_number(value: float) -> str:
    """A number as JavaScript's String() writes it (the list's data-start, data-end)."""
    return str(int(value)) if value == int(value) else repr(value)


def listed(page: Page, span: dict[str, float]) -> Any:
    """The list's entry of `span` once the page (refreshed every 10 s) shows it."""
    item = page.locator(f'#spans li[data-start="{js_number(span["start"])}"]')
    expect(item).to_have_attribute("data-end", js_number(span["end"]), timeout=20_000)
    return item


def playback(page: Page) -> dict[str, Any]:
    state: dict[str, Any] = page.evaluate(
        """() => {
          const video = document.getElementById('archive-video');
          const box = document.getElementById('playback');
          return { duration: video.duration, time: video.currentTime, ready: video.readyState,
                   start: Number(box.dataset.start), end: Number(box.dataset.end),
                   paused: video.paused, error: video.error && video.error.message };
        }"""
    )
    return state


def frame(page: Page) -> dict[str, Any] | None:
    """The time code of the recording's frame shown now; None while none is readable."""
    found: dict[str, Any] | None = page.evaluate(
        f"(layout) => ({READ_FRAME})([document.getElementById('archive-video'), layout])", LAYOUT
    )
    return found


def assert_plays(page: Page, span: dict[str, float], from_s: float | None = None) -> None:
    """The player plays `span`: its duration is the span's, time advances, and the frames
    shown were recorded inside the span (from `from_s` on, when a point was chosen)."""
    expect(page.locator("#playback")).to_be_visible()
    state = eventually(
        lambda: playback(page),
        until=lambda s: s["duration"] == s["duration"] and s["duration"] > 0,  # not NaN
        timeout=20,
        what="the recording's duration",
    )
    assert (state["start"], state["end"]) == (span["start"], span["end"])
    assert state["duration"] == pytest.approx(span["end"] - span["start"], abs=DURATION_SLACK_S)
    first = eventually(lambda: frame(page), timeout=20, what="a decoded frame of the recording")
    assert first is not None
    later = eventually(
        lambda: frame(page),
        until=lambda f: f is not None and f["timecode"] > first["timecode"],
        timeout=20,
        what="the recording advancing",
    )
    assert later is not None
    lowest = (from_s if from_s is not None else span["start"]) - TIMECODE_SLACK_S
    for shown in (first, later):
        assert lowest <= shown["timecode"] / 1000 <= span["end"], (shown, span)
    expect(page.locator("#playback-time")).to_have_text(
        re.compile(r"^(Playing|Paused at) \d\d:\d\d:\d\d UTC$")
    )


# --- tests -----------------------------------------------------------------------------------


def test_recording_set_on_the_page_is_drawn_and_plays(browser: Browser, setup: Setup) -> None:
    set_recording(setup, "off")
    with tabs(browser, setup.cloud, **DESKTOP) as new_tab:
        tab = new_tab()
        page = open_camera(tab, setup.camera_id)
        state = page.locator("#archive-state")
        expect(state).to_contain_text("off")

        page.get_by_label("Recording", exact=True).select_option("continuous")
        page.get_by_label("Days to keep").fill("3")
        page.get_by_role("button", name="Save recording").click()
        expect(page.locator("#recording-saved")).to_have_text(
            "Saved: recording continuous, kept 3 days."
        )
        # The page asks again every 10 s: the recorder's next state shows by then.
        expect(state).to_contain_text(
            re.compile(r"recording\s+Recording the main stream"), timeout=20_000
        )
        # The timeline shows the recording as it grows (the page asks every 10 s).
        expect(page.locator("#timeline-bar .timeline-span")).to_have_count(1, timeout=30_000)
        long_enough(setup)

        page.get_by_label("Recording", exact=True).select_option("off")
        page.get_by_role("button", name="Save recording").click()
        expect(page.locator("#recording-saved")).to_have_text("Saved: recording off.")
        expect(state).to_contain_text("Recording is off.")
        span = longest(archive(setup, setup.camera_id)["spans"])
        assert span is not None
        item = listed(page, span)
        # "17:18:33 \u2013 17:18:43 · 10 s": the page writes a range with an en dash
        expect(item).to_contain_text(re.compile(r"\d\d:\d\d:\d\d \u2013 \d\d:\d\d:\d\d · \d+ s"))

        item.get_by_role("button", name=re.compile("^Play the recording of ")).click()
        assert_plays(page, span)
        assert_fits(page, "camera page, archive", tap_targets=False)
        tab.shot("camera-archive")

        # The recording closes; the days to keep are saved and shown after a reload.
        page.get_by_role("button", name="Close the recording").click()
        expect(page.locator("#playback")).to_be_hidden()
        page.get_by_label("Days to keep").fill("30")
        page.get_by_role("button", name="Save recording").click()
        expect(page.locator("#recording-saved")).to_have_text("Saved: recording off.")
        page.reload()
        expect(page.get_by_label("Days to keep")).to_have_value("30")
        expect(page.get_by_label("Recording", exact=True)).to_have_value("off")
    assert setup.cloud.camera(setup.session, setup.camera_id)["video"]["recording"] == {
        "mode": "off",
        "retention_days": 30,
    }


def test_a_tap_on_the_phones_timeline_plays_from_there(browser: Browser, setup: Setup) -> None:
    span = recorded(setup)
    with tabs(browser, setup.cloud, **PHONE) as new_tab:
        tab = new_tab()
        page = open_camera(tab, setup.camera_id)
        listed(page, span)
        drawn = page.locator("#timeline-bar .timeline-span").last
        drawn.scroll_into_view_if_needed()  # a tap lands where the screen shows
        box = drawn.bounding_box()
        assert box is not None
        # Far from any recording (they are all minutes old: at the right end), a tap says
        # that nothing was recorded then.
        bar = page.locator("#timeline-bar").bounding_box()
        assert bar is not None
        page.touchscreen.tap(bar["x"] + 30, bar["y"] + bar["height"] / 2)
        expect(page.locator("#play-error")).to_have_text(
            re.compile(r"^Nothing was recorded around (yesterday )?\d\d:\d\d:\d\d\.$")
        )
        expect(page.locator("#playback")).to_be_hidden()
        # A few seconds in 24 hours is a sliver (drawn 3 px wide, too narrow to aim within:
        # "Play from" is the precise way, tested below); a tap on it plays it.
        page.touchscreen.tap(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        assert_plays(page, span)
        mark = page.locator("#timeline-bar .timeline-mark")
        expect(mark).to_be_visible()
        assert_fits(page, "camera page on a phone, archive")
        tab.shot("phone-camera-archive")


def test_hls_js_plays_where_the_browser_has_no_hls(browser: Browser, setup: Setup) -> None:
    assert HLS_JS.is_file(), "hls.js is not vendored: run scripts/setup.sh (it needs npm)"
    span = recorded(setup)
    with tabs(browser, setup.cloud, **DESKTOP) as new_tab:
        tab = new_tab()
        # A browser without HLS of its own (Firefox): the page loads hls.js.
        tab.page.add_init_script(
            """{
              const canPlay = HTMLMediaElement.prototype.canPlayType;
              HTMLMediaElement.prototype.canPlayType = function (type) {
                return /mpegurl/i.test(type) ? "" : canPlay.call(this, type);
              };
            }"""
        )
        page = open_camera(tab, setup.camera_id)
        listed(page, span).get_by_role("button", name=re.compile("^Play ")).click()
        assert_plays(page, span)
        assert page.evaluate("typeof window.Hls") == "function"
        assert page.evaluate("document.getElementById('archive-video').src").startswith("blob:")


def test_a_play_from_time_and_what_a_viewer_sees(browser: Browser, setup: Setup) -> None:
    span = recorded(setup)
    # A camera whose device is offline: the recorder waits for it, and the page says so.
    status, body = setup.cloud.request(
        "PUT",
        f"/v1/cameras/{setup.waiting_id}/recording",
        {"mode": "continuous", "retention_days": 2},
        session=setup.session,
    )
    assert status == 200, body
    with tabs(browser, setup.cloud, **DESKTOP) as new_tab:
        tab = new_tab()
        page = open_camera(tab, setup.camera_id, VIEWER["login"], VIEWER["password"])
        expect(page.locator("#recording-form")).to_have_count(0)
        expect(page.locator("#recording-readonly")).to_contain_text("Recording: off.")
        expect(page.locator("#recording-readonly")).to_contain_text("Your role (viewer)")
        listed(page, span)
        # By keyboard: a time typed into "Play from" plays from there.
        at = span["start"] + 2
        field = page.get_by_label("Play from (UTC)")
        field.fill(time_input(at))
        field.press("Enter")
        assert_plays(page, span, from_s=int(at))

        page.goto(f"{setup.cloud.url}/cameras/{setup.waiting_id}")
        state = page.locator("#archive-state")
        expect(state).to_contain_text("waiting")
        expect(state).to_contain_text("The device is offline; recording starts when it connects.")
        expect(page.locator("#recording-readonly")).to_contain_text(
            "Recording: continuous, kept 2 days."
        )
        expect(page.locator("#no-spans")).to_be_visible()


def time_input(at: float) -> str:
    """`at` as a datetime-local field takes it (the console's times are UTC)."""
    return datetime.datetime.fromtimestamp(int(at), datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
