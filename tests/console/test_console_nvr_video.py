"""An NVR's cameras in the console (docs/design.md §12.4 to §12.6): the registrator page
lists them with a thumbnail and whether each answers (not "online"), each has a page of
its own with the live player and the archive, the Broadcast setting chooses which of them
stream live (on the registrator page and in the wizard), in Debian's chromium against
the mock cloud, a real RTSP test camera and a camagent NVR daemon.

One setup serves the module: the NVR offers "gate" (the test camera) and "dead" (a port
nothing listens on), activated with its code and synced.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from cloud_mock import sandbox
from cloud_mock.test_camera import TestCamera, running_test_camera
from cloud_mock.testing import MockCloud, start_mock_cloud
from tests.console.browsing import (
    DESKTOP,
    PHONE,
    Tab,
    assert_fits,
    chromium,
    start_device,
    tabs,
    wait_for_activation,
)
from tests.console.test_console_video import LAYOUT, READ_FRAME
from tests.eventually import eventually

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("test_camera_available"),
]

DEAD_URL = "rtsp://127.0.0.1:9/none"  # the discard port: nothing answers RTSP there


@dataclass
class Setup:
    cloud: MockCloud
    session: str
    camera: TestCamera
    nvr: sandbox.Agent
    registrator_id: str


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockCloud]:
    directory = tmp_path_factory.mktemp("nvr-video")
    fixtures = directory / "fixtures.json"
    fixtures.write_text(json.dumps({"orgs": [{"name": "demo", "business": True}]}))
    # Thumbnails every 2 s, not every 5 minutes: the cameras are synced after the NVR's
    # hello (which takes the first round), and a test waits for gate's picture.
    env = {
        "CAMAGENT_MOCK_VIDEO_THUMBNAIL_S": "2",
        "CAMAGENT_MOCK_VIDEO_LINGER_S": "1",
        "CAMAGENT_MOCK_VIDEO_ARCHIVE_SEGMENT_S": "1",
    }
    c = start_mock_cloud(directory / "cloud", fixtures=fixtures, env=env)
    yield c
    c.stop()


@pytest.fixture(scope="module")
def browser(cloud: MockCloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    with chromium(cloud, tmp_path_factory.mktemp("home")) as b:
        yield b


def nvr_cameras(camera: TestCamera) -> str:
    return (
        f'[[nvr.cameras]]\nname = "gate"\nurl = "{camera.main}"\nsub_url = "{camera.sub}"\n'
        f'[[nvr.cameras]]\nname = "dead"\nurl = "{DEAD_URL}"\n'
    )


@pytest.fixture(scope="module")
def setup(cloud: MockCloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    agents: list[sandbox.Agent] = []
    with running_test_camera() as camera:
        nvr = start_device(
            tmp_path_factory.mktemp("devices"),
            cloud,
            agents,
            "02:d1:00:00:00:01",
            kind="nvr",
            password="unused",
            extra=nvr_cameras(camera),
        )
        try:
            code = wait_for_activation(nvr)["code"]
            session = cloud.login()
            registrator = cloud.add_registrator(session, "Yard NVR", note="shed")
            cloud.activate(session, registrator["id"], code)
            nvr.wait_for_state("connected", timeout=20)
            status, body = cloud.request(
                "POST", f"/v1/registrators/{registrator['id']}/sync", session=session
            )
            assert status == 200, body
            assert [c["name"] for c in body["cameras"]] == ["gate", "dead"]
            yield Setup(cloud, session, camera, nvr, registrator["id"])
        finally:
            for started in agents:
                started.stop()


def set_broadcast(setup: Setup, cameras: list[str] | None) -> None:
    status, body = setup.cloud.request(
        "PUT",
        f"/v1/registrators/{setup.registrator_id}/broadcast",
        {"enabled": True, "quality": "medium", "cameras": cameras},
        session=setup.session,
    )
    assert status == 200, body


def camera_row(page: Page, name: str) -> Any:
    return page.locator(f'#registrator-camera-rows tr[data-key="{name}"]')


def frame_now(page: Page) -> dict[str, Any] | None:
    found: dict[str, Any] | None = page.evaluate(
        f"(layout) => ({READ_FRAME})([document.getElementById('live-video'), layout])", LAYOUT
    )
    return found


def assert_live(page: Page) -> None:
    """The live view's frames advance and are recent (sanity, not a latency figure)."""
    first = eventually(lambda: frame_now(page), timeout=30, what="a readable live frame")
    assert first is not None
    later = eventually(
        lambda: frame_now(page),
        until=lambda f: f is not None and f["timecode"] > first["timecode"],
        timeout=20,
        what="the live picture advancing",
    )
    assert later is not None
    assert abs(later["now"] - later["timecode"]) < 5000, later


def open_registrator(tab: Tab, setup: Setup) -> Page:
    page = tab.log_in()
    page.goto(f"{setup.cloud.url}/registrators/{setup.registrator_id}")
    return page


def test_the_registrator_lists_its_cameras_and_each_has_a_live_page(
    browser: Browser, setup: Setup
) -> None:
    set_broadcast(setup, None)
    with tabs(browser, setup.cloud, **DESKTOP) as new_tab:
        tab = new_tab()
        page = open_registrator(tab, setup)
        gate, dead = camera_row(page, "gate"), camera_row(page, "dead")
        # Whether each camera answers the NVR, not the NVR's "online".
        expect(gate.locator("[data-col=reach]")).to_have_text("answers · H264", timeout=30_000)
        expect(dead.locator("[data-col=reach]")).to_contain_text("no answer", timeout=30_000)
        expect(dead.locator("[data-col=reach]")).to_contain_text("connection refused")
        expect(gate.locator("[data-col=live]")).to_have_text("on")
        expect(gate.get_by_role("img", name="Latest picture from gate")).to_be_visible(
            timeout=30_000
        )
        expect(dead.locator(".thumb-none")).not_to_be_empty()
        tab.shot("registrator-cameras")

        # The Cameras page lists them too, each linking to its page.
        page.get_by_role("link", name="Cameras", exact=True).click()
        listed = page.locator("#nvr-camera-rows").get_by_role("row", name=re.compile("gate"))
        expect(listed.locator("[data-col=status]")).to_have_text("answers · H264")
        expect(listed.get_by_role("img", name="Latest picture from gate")).to_be_visible()
        listed.get_by_role("link", name="gate").click()
        expect(page).to_have_url(re.compile(f"/registrators/{setup.registrator_id}/cameras/gate$"))
        expect(page.get_by_role("heading", name="gate", level=1)).to_be_visible()
        assert_live(page)
        expect(page.locator("#player-status")).to_have_text(re.compile(r"^Live · \d+x\d+ H\.264$"))
        expect(page.locator("#nvr-camera [data-col=reach]")).to_have_text("answers · H264")
        tab.shot("nvr-camera-live")

        # Its archive, as a camera's: recording set here is drawn once recorded.
        page.get_by_label("Recording", exact=True).select_option("continuous")
        page.get_by_role("button", name="Save recording").click()
        expect(page.locator("#recording-saved")).to_have_text(
            "Saved: recording continuous, kept 7 days."
        )
        expect(page.locator("#spans li")).to_have_count(1, timeout=30_000)
        expect(page.locator("#archive-state")).to_contain_text("Recording the main stream")
        page.get_by_label("Recording", exact=True).select_option("off")
        page.get_by_role("button", name="Save recording").click()
        expect(page.locator("#recording-saved")).to_have_text("Saved: recording off.")

        # A camera the NVR cannot reach says so instead of a black picture.
        page.goto(f"{setup.cloud.url}/registrators/{setup.registrator_id}/cameras/dead")
        expect(page.locator("#player-status")).to_contain_text(
            "The NVR cannot reach this camera: connection refused."
        )
        expect(page.locator("#live-video")).to_be_hidden()

    with tabs(browser, setup.cloud, **PHONE) as new_tab:
        tab = new_tab()
        page = tab.log_in()
        page.goto(f"{setup.cloud.url}/registrators/{setup.registrator_id}/cameras/gate")
        assert_live(page)
        assert_fits(page, "NVR camera page on a phone")
        page.goto(f"{setup.cloud.url}/registrators/{setup.registrator_id}")
        expect(camera_row(page, "gate").locator("[data-col=reach]")).to_have_text("answers · H264")
        assert_fits(page, "registrator page on a phone, cameras")


def test_broadcast_chooses_the_cameras_that_stream_live(browser: Browser, setup: Setup) -> None:
    set_broadcast(setup, None)
    gate_page = f"{setup.cloud.url}/registrators/{setup.registrator_id}/cameras/gate"
    with tabs(browser, setup.cloud, **DESKTOP) as new_tab:
        tab = new_tab()
        page = open_registrator(tab, setup)
        form = page.locator("#broadcast-form")
        choices = form.get_by_role("group", name="Cameras with live view")
        expect(choices.get_by_label("gate")).to_be_checked()
        expect(choices.get_by_label("dead")).to_be_checked()
        choices.get_by_label("gate").uncheck()
        form.get_by_role("button", name="Save broadcast").click()
        expect(form.get_by_role("status")).to_have_text("Saved; the NVR took the settings.")
        expect(camera_row(page, "gate").locator("[data-col=live]")).to_have_text("off")
        saved = setup.cloud.registrator(setup.session, setup.registrator_id)
        assert saved["broadcast"]["cameras"] == ["dead"]

        # Gate's own page: no live socket (the API would refuse it), the reason instead.
        watcher = new_tab()
        watcher.log_in()
        gate = watcher.page
        gate.goto(gate_page)
        expect(gate.locator("#player-status")).to_have_text(
            "Live view is off for this camera: the registrator's Broadcast settings leave it out."
        )
        expect(gate.locator("#nvr-camera [data-col=live]")).to_contain_text("off")

        # The wizard (a setup continued) shows the same choice; all checked is "all".
        page.goto(f"{setup.cloud.url}/registrators/new?registrator={setup.registrator_id}")
        step = page.locator('section.step[data-step="6"]')
        expect(page.get_by_role("heading", name="Step 6 of 8: Broadcast")).to_be_focused()
        wizard_choices = step.get_by_role("group", name="Cameras with live view")
        expect(wizard_choices.get_by_label("gate")).not_to_be_checked()
        expect(wizard_choices.get_by_label("dead")).to_be_checked()
        tab.shot("wizard-broadcast-cameras")
        wizard_choices.get_by_label("gate").check()
        step.get_by_label("Broadcast to the cloud").check()
        step.get_by_role("button", name="Save and continue").click()
        expect(page.get_by_role("heading", name="Step 7 of 8: Archive")).to_be_focused()
        page.locator('section.step[data-step="7"]').get_by_role(
            "button", name="Save and continue"
        ).click()
        summary = page.locator('section.step[data-step="8"]')
        expect(summary.locator("#summary")).to_contain_text("Live cameras")
        expect(summary.locator("#summary")).to_contain_text(re.compile(r"Live cameras\s*all"))
        expect(summary).to_contain_text("The NVR's cameras appear after Sync")
        saved = setup.cloud.registrator(setup.session, setup.registrator_id)
        assert "cameras" not in saved["broadcast"]  # all checked: all, later ones too
        # The open page of gate follows: live again, without a reload.
        assert_live(gate)
