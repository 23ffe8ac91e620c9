"""Every page of the console on a phone (390x844, touch) and on a desktop: nothing wider
than the screen (the page's scrollWidth within its clientWidth), and on the phone every
tap target at least 44 px; the header folds into a menu. Debian's chromium with
Playwright's device emulation, against the mock cloud and a real NVR daemon (so that the
registrator pages show synced cameras)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import Browser, Page, expect

from cloud_mock import sandbox
from cloud_mock.testing import MockCloud
from tests.console.browsing import (
    DESKTOP,
    LIMITED,
    PHONE,
    Tab,
    assert_fits,
    chromium,
    console_cloud,
    contrast,
    start_device,
    tabs,
    wait_for_activation,
)

pytestmark = pytest.mark.slow

LONG_NAME = "Loading dock camera above the north gate, second floor"
NVR_CAMERAS = """
[[nvr.cameras]]
name = "Gate"
url = "rtsp://10.1.1.5/stream1"

[[nvr.cameras]]
name = "A very long camera name from the NVR's own list"
url = "rtsp://10.1.1.6/stream1"
"""
NVR_LONG_NAME = "A very long camera name from the NVR's own list"


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockCloud]:
    c = console_cloud(tmp_path_factory.mktemp("phone"))
    yield c
    c.stop()


@pytest.fixture(scope="module")
def browser(cloud: MockCloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    with chromium(cloud, tmp_path_factory.mktemp("home")) as b:
        yield b


@pytest.fixture(scope="module")
def data(cloud: MockCloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Cameras (one with a long name), a registrator linked to a running NVR daemon with
    its cameras synced, a registrator left half-way."""
    session = cloud.login()
    camera = cloud.add_camera(session, "02:c0:00:00:01:01", "label-pw", name=LONG_NAME)
    cloud.add_camera(session, "02:c0:00:00:01:02", "label-pw", name="Front door")
    agents: list[sandbox.Agent] = []
    nvr = start_device(
        tmp_path_factory.mktemp("devices"),
        cloud,
        agents,
        "02:d0:00:00:01:01",
        kind="nvr",
        password="unused",
        extra=NVR_CAMERAS,
    )
    try:
        code = wait_for_activation(nvr)["code"]
        registrator = cloud.add_registrator(session, "Server room", note="rack 2")
        cloud.activate(session, registrator["id"], code)
        nvr.wait_for_state("connected", timeout=20)
        status, body = cloud.request(
            "POST", f"/v1/registrators/{registrator['id']}/sync", session=session
        )
        assert status == 200, body
        cloud.add_registrator(session, "Basement", note="left half-way")
        yield {"camera": camera, "registrator": registrator}
    finally:
        for agent in agents:
            agent.stop()


def pages(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, path) of every page a logged-in person sees."""
    registrator = f"/registrators/{data['registrator']['id']}"
    return [
        ("cameras", "/cameras"),
        ("camera", f"/cameras/{data['camera']['camera_id']}"),
        ("registrators", "/registrators"),
        ("registrator", registrator),
        ("nvr-camera", f"{registrator}/cameras/Gate"),
        ("nvr-camera-long-name", f"{registrator}/cameras/{quote(NVR_LONG_NAME, safe='')}"),
        ("wizard", "/registrators/new"),
        ("sessions", "/sessions"),
        ("not-found", "/cameras/no-such-camera"),
    ]


def open_menu(page: Page) -> None:
    menu = page.get_by_role("button", name="Menu")
    header = page.get_by_role("banner")
    expect(header.get_by_role("link", name="Registrators")).to_be_hidden()
    menu.tap()
    expect(menu).to_have_attribute("aria-expanded", "true")
    expect(header.get_by_role("link", name="Registrators")).to_be_visible()


def test_every_page_fits_a_phone(browser: Browser, cloud: MockCloud, data: dict[str, Any]) -> None:
    with tabs(browser, cloud, **PHONE) as new_tab:
        tab: Tab = new_tab()
        page = tab.go("/login")
        assert_fits(page, "login")
        tab.shot("phone-login")
        tab.log_in()
        tab.expect_refusal("/cameras/no-such-camera", 404)
        for name, path in pages(data):
            response = page.goto(cloud.url + path)
            assert response is not None
            assert response.status == (404 if name == "not-found" else 200), path
            assert_fits(page, name)
            tab.shot(f"phone-{name}")
            open_menu(page)
            assert_fits(page, f"{name}, menu open")
        tab.shot("phone-menu")

        # The open menu: every link and "Log out" readable on the header's colour.
        logout = page.get_by_role("button", name="Log out")
        colours = logout.evaluate(
            """(b) => [getComputedStyle(b).color,
                      getComputedStyle(b.closest('header')).backgroundColor,
                      getComputedStyle(b).backgroundColor]"""
        )
        assert colours[2] in ("rgba(0, 0, 0, 0)", "transparent"), colours
        assert contrast(colours[0], colours[1]) >= 4.5, colours
        page.keyboard.press("Escape")
        expect(page.get_by_role("button", name="Menu")).to_have_attribute("aria-expanded", "false")

        # The forms that open on a page fit too.
        page = tab.go("/cameras")
        page.get_by_role("button", name="Add camera").tap()
        field = page.get_by_label("MAC or camera ID")
        expect(field).to_be_visible()
        assert field.bounding_box()["width"] >= 300  # type: ignore[index]
        assert_fits(page, "cameras, add form")
        tab.shot("phone-add-camera")
        page = tab.go("/registrators/new")
        page.get_by_role("tab", name="Copy token to the registrator").tap()
        page.get_by_label("Title").fill("phone")
        page.get_by_role("button", name="Generate token").tap()
        expect(page.get_by_label("Registration token")).to_have_value(re.compile("^rt_"))
        assert_fits(page, "registration token")
        tab.shot("phone-registration-token")
        # The wizard's later steps: a setup left half-way continues at Installation.
        page = tab.go("/registrators")
        page.get_by_role("link", name="Continue setting up Basement").tap()
        expect(page.get_by_role("heading", name="Step 3 of 8: Installation")).to_be_focused()
        expect(page.locator("#one-liner")).to_contain_text("install.sh")
        assert_fits(page, "wizard, installation")
        tab.shot("phone-wizard-installation")
        page.locator('section.step[data-step="3"]').get_by_role("button", name="Next").tap()
        tab.expect_refusal("/activation", 404)
        page.get_by_label("Activation code the NVR shows").fill("0000-0000-0000")
        page.get_by_role("button", name="Show checks").tap()
        expect(page.locator('section.step[data-step="4"] [data-error]')).to_contain_text(
            "is unknown"
        )
        assert_fits(page, "wizard, activation")

        page = tab.go(f"/registrators/{data['registrator']['id']}")
        page.get_by_role("button", name="Delete", exact=True).tap()
        dialog = page.get_by_role("dialog", name="Delete Server room?")
        expect(dialog).to_be_visible()
        assert_fits(page, "delete registrator dialog")
        tab.shot("phone-delete-registrator")
        dialog.get_by_role("button", name="Cancel").tap()
        expect(dialog).to_be_hidden()


def test_the_session_limit_dialog_fits_a_phone(browser: Browser, cloud: MockCloud) -> None:
    with tabs(browser, cloud, **PHONE) as new_tab:
        new_tab().log_in(LIMITED["login"], LIMITED["password"])
        tab = new_tab()
        page = tab.go("/login")
        page.get_by_label("Login").fill(LIMITED["login"])
        page.get_by_label("Password").fill(LIMITED["password"])
        page.get_by_role("button", name="Log in").tap()
        dialog = page.get_by_role("dialog", name="Too many sessions")
        expect(dialog).to_be_visible()
        assert_fits(page, "session-limit dialog")
        tab.shot("phone-session-limit")
        dialog.get_by_role("button", name="End session").tap()
        expect(page).to_have_url(re.compile(r"/cameras$"))


def test_every_page_fits_a_desktop(
    browser: Browser, cloud: MockCloud, data: dict[str, Any]
) -> None:
    with tabs(browser, cloud, **DESKTOP) as new_tab:
        tab = new_tab()
        page = tab.go("/login")
        assert_fits(page, "login", tap_targets=False)
        tab.log_in()
        tab.expect_refusal("/cameras/no-such-camera", 404)
        # A wide screen has no menu button: the links are in the header.
        expect(page.get_by_role("button", name="Menu")).to_be_hidden()
        expect(page.get_by_role("button", name="Log out")).to_be_visible()
        for name, path in pages(data):
            page.goto(cloud.url + path)
            assert_fits(page, name, tap_targets=False)


def test_a_row_on_a_phone_says_what_each_value_is(
    browser: Browser, cloud: MockCloud, data: dict[str, Any], tmp_path: Path
) -> None:
    with tabs(browser, cloud, **PHONE) as new_tab:
        tab = new_tab()
        page = tab.log_in()
        row = page.get_by_role("row", name=re.compile("Loading dock"))
        status = row.locator("[data-col=status]")
        label = status.evaluate("(td) => getComputedStyle(td, '::before').content")
        assert label == '"Status"'
        # One card per row: the status sits below the name, not beside it.
        name_box = row.get_by_role("link").bounding_box()
        status_box = status.bounding_box()
        assert name_box is not None
        assert status_box is not None
        assert status_box["y"] >= name_box["y"] + name_box["height"] - 1
        # The first NVR camera's card draws its own divider: it is not read as part of
        # the last camera's card above it (whose bottom line the last row drops).
        page = tab.go("/cameras")
        last_own = page.locator("#camera-rows > tr").last
        first_nvr = page.locator("#nvr-camera-rows > tr").first
        assert last_own.evaluate("(tr) => getComputedStyle(tr).borderBottomStyle") == "none"
        assert first_nvr.evaluate("(tr) => getComputedStyle(tr).borderTopStyle") == "solid"
