"""The console in a real browser: Debian's chromium driven by Playwright, against the mock
cloud and camagent daemons as subprocesses, over TLS the browser trusts (the mock's CA in
an NSS database of a private HOME; no certificate errors are ignored).

One mock and one browser serve the whole module; each test gets a fresh context.
Screenshots are test artifacts in test-artifacts/screenshots/; with
CAMAGENT_UPDATE_SCREENSHOTS=1 they replace the committed ones in docs/screenshots/.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from agent.qr.payloads import parse
from cloud_mock import sandbox
from cloud_mock.testing import MockCloud
from tests.console.browsing import (
    LIMITED,
    Tab,
    chromium,
    console_cloud,
    start_device,
    tabs,
    wait_for_activation,
)
from tests.eventually import eventually

pytestmark = pytest.mark.slow

NVR_CAMERAS = """
[[nvr.cameras]]
name = "Gate"
url = "rtsp://10.1.1.5/stream1"

[[nvr.cameras]]
name = "Yard"
url = "rtsp://10.1.1.6/stream1"
"""


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockCloud]:
    c = console_cloud(tmp_path_factory.mktemp("browser"))
    yield c
    c.stop()


@pytest.fixture(scope="module")
def browser(cloud: MockCloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    with chromium(cloud, tmp_path_factory.mktemp("home")) as b:
        yield b


@pytest.fixture
def new_tab(browser: Browser, cloud: MockCloud) -> Iterator[Callable[[], Tab]]:
    with tabs(browser, cloud) as make:
        yield make


@pytest.fixture
def agents(tmp_path: Path, cloud: MockCloud) -> Iterator[list[sandbox.Agent]]:
    started: list[sandbox.Agent] = []
    yield started
    for agent in started:
        agent.stop()


# --- login ---------------------------------------------------------------------------------


def test_login_without_and_with_captcha(new_tab: Callable[[], Tab], cloud: MockCloud) -> None:
    tab = new_tab()
    response = tab.page.goto(cloud.url + "/login")
    assert response is not None
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    page = tab.page
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    expect(page.locator("#captcha")).to_be_hidden()
    tab.shot("login")
    page.get_by_label("Login").fill("admin")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong login or password.")
    # Keyboard only: the login field has the focus, Tab moves on, Enter logs in.
    tab.go("/login")
    expect(page.get_by_label("Login")).to_be_focused()
    page.keyboard.type("admin")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type(cloud.admin_password)
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/cameras$"))
    expect(page.get_by_role("heading", name="Cameras")).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    tab.go("/cameras")
    expect(page).to_have_url(re.compile(r"/login\?next=(%2F|/)cameras$"))

    cloud.set_settings(captcha="always")
    try:
        tab = new_tab()
        page = tab.go("/login")
        page.get_by_label("Login").fill("admin")
        page.get_by_label("Password").fill(cloud.admin_password)
        page.get_by_role("button", name="Log in").click()
        image = page.get_by_role("img", name=re.compile("Captcha"))
        expect(image).to_be_visible()
        first = image.get_attribute("data-captcha-id")
        assert first
        src = image.get_attribute("src", timeout=1000)
        assert src is not None
        assert src.startswith("data:image/png")
        page.get_by_role("button", name="Refresh captcha").click()
        expect(image).not_to_have_attribute("data-captcha-id", first)
        captcha_id = image.get_attribute("data-captcha-id")
        assert captcha_id
        tab.shot("login-captcha")
        page.get_by_label("Characters in the picture").fill(cloud.captcha_answer(captcha_id))
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(re.compile(r"/cameras$"))
    finally:
        cloud.set_settings(captcha="off")


def test_session_limit_dialog_then_sessions_page(
    new_tab: Callable[[], Tab], cloud: MockCloud
) -> None:
    first = new_tab()
    first.log_in(LIMITED["login"], LIMITED["password"])
    second = new_tab()
    page = second.go("/login")
    page.get_by_label("Login").fill(LIMITED["login"])
    page.get_by_label("Password").fill(LIMITED["password"])
    page.get_by_role("button", name="Log in").click()
    dialog = page.get_by_role("dialog", name="Too many sessions")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Work not saved in the session you end may be lost.")
    expect(dialog.get_by_role("row")).to_have_count(2)  # header + the one session
    second.shot("session-limit")
    dialog.get_by_role("button", name="End session").click()
    expect(page).to_have_url(re.compile(r"/cameras$"))

    # The first browser's session is gone: its next page is the login page.
    first.go("/cameras")
    expect(first.page).to_have_url(re.compile(r"/login\?next="))

    page = second.go("/sessions")
    expect(page.get_by_role("heading", name="Sessions")).to_be_visible()
    expect(page.get_by_text("this session", exact=True)).to_be_visible()
    second.shot("sessions")
    page.get_by_role("button", name="End session").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    second.go("/sessions")
    expect(second.page).to_have_url(re.compile(r"/login\?next="))


# --- cameras -------------------------------------------------------------------------------


def test_add_camera_goes_online_live_and_delete_reprovisions(
    new_tab: Callable[[], Tab], cloud: MockCloud, agents: list[sandbox.Agent], tmp_path: Path
) -> None:
    device_id = "02:c0:00:00:00:01"
    agent = start_device(tmp_path, cloud, agents, device_id)
    tab = new_tab()
    page = tab.log_in()
    toggle = page.get_by_role("button", name="Add camera")
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(page.get_by_label("MAC or camera ID")).to_be_focused()
    # Bad input: the API's own message, and nothing typed is lost.
    tab.expect_refusal("/console/api/v1/cameras", 400)
    page.get_by_label("MAC or camera ID").fill("not a mac!")
    page.get_by_label("Device password").fill("label-password")
    page.get_by_role("button", name="Add", exact=True).click()
    device = page.get_by_label("MAC or camera ID")
    error = page.locator("#cam-device-error")  # beside the field, the field marked
    expect(error).to_contain_text("invalid device ID 'not a mac!'")
    expect(device).to_have_attribute("aria-invalid", "true")
    expect(device).to_have_accessible_description(re.compile("invalid device ID"))
    expect(device).to_have_value("not a mac!")
    expect(page.get_by_label("Device password")).to_have_value("label-password")
    expect(page.locator("#add-camera-error")).to_be_hidden()
    # A camera another account took over (live update as the page renders it).
    moved = page.evaluate("cameraStatus({status: 'moved', moved_at: 1780000000}).textContent")
    assert moved == "moved to another account, 2026-05-28 20:26:40 UTC"
    page.get_by_label("MAC or camera ID").fill(device_id.upper().replace(":", "-"))
    page.get_by_label("Device password").fill("label-password")
    page.get_by_label("Name").fill("Front door")
    added = time.monotonic()
    page.get_by_role("button", name="Add", exact=True).click()

    row = page.get_by_role("row", name=re.compile("Front door"))
    expect(row).to_contain_text(device_id)
    # Only the event stream can change it: the page is never reloaded.
    page.evaluate("window.__sameDocument = true")
    expect(row.locator("[data-col=status]")).to_have_text("online", timeout=20_000)
    assert page.evaluate("window.__sameDocument") is True
    print(f"camera row online {time.monotonic() - added:.2f} s after Add")  # report figure
    expect(page.locator("#live")).to_contain_text("Front door is online")
    agent.wait_for_state("connected", timeout=10)
    tab.shot("cameras")

    row.get_by_role("link", name="Front door").click()
    expect(page.get_by_role("heading", name="Front door", exact=True)).to_be_visible()
    history = page.locator("#polls tbody tr")
    expect(history.first).to_be_visible()
    assert "token" in history.all_inner_texts()[0]
    tab.shot("camera")

    page.get_by_role("link", name="Cameras", exact=True).first.click()
    row = page.get_by_role("row", name=re.compile("Front door"))
    row.get_by_role("button", name="Delete").click()
    expect(row).to_have_count(0)
    agent.wait_for_state("provisioning", timeout=15)
    page.reload()
    expect(page.get_by_role("row", name=re.compile("Front door"))).to_have_count(0)


def test_a_token_card_made_in_the_page_connects_the_camera(
    new_tab: Callable[[], Tab], cloud: MockCloud, agents: list[sandbox.Agent], tmp_path: Path
) -> None:
    """Issue 26: the owner gets the camera's token from its page, sealed for the label
    password, as text to copy and as a QR card; `camagent qr scan --apply` on the card
    (what the daemon's own watcher does with its video) makes the waiting daemon connect.
    The daemon polls once at start, before the camera is added, then not for 10 minutes:
    only the card can bring the token."""
    device_id = "02:c0:00:00:00:0c"
    agent = start_device(tmp_path, cloud, agents, device_id, fast_interval=600.0, long_poll=0.0)
    eventually(lambda: agent.status()["provisioning"]["attempts"], until=lambda n: n >= 1)
    added = cloud.add_camera(cloud.login(), device_id, "label-password", "Porch")
    tab = new_tab()
    page = tab.go(f"/cameras/{added['camera_id']}")
    if "/login" in page.url:
        tab.log_in()
        page = tab.go(f"/cameras/{added['camera_id']}")
    section = page.get_by_role("region", name="Token for this camera")
    # WiFi and token together: the WiFi password goes into the picture only.
    section.get_by_label("Put WiFi on the card too").check()
    section.get_by_label("Network name").fill("Porch net")
    section.get_by_label("WiFi password").fill("wifi-secret-1")
    section.get_by_role("button", name="Make the token card").click()
    expect(section.locator("#token-card-caption")).to_contain_text('WiFi "Porch net"')
    expect(section.get_by_label("WiFi password")).to_have_value("")
    combined = tmp_path / "combined.png"
    combined.write_bytes(_card_image(page))
    read = _qr_scan(["qr", "scan", "--json", str(combined)])
    assert read["type"] == "combined"
    payload = parse(read["text"])
    assert payload.wifi is not None
    assert (payload.wifi.ssid, payload.wifi.password) == ("Porch net", "wifi-secret-1")
    assert "." not in payload.token  # sealed: never the plain token
    assert payload.token != added["token"]
    # The token alone: the card the camera reads.
    section.get_by_label("Put WiFi on the card too").uncheck()
    section.get_by_role("button", name="Make the token card").click()
    expect(section.locator("#token-card-caption")).to_have_text(
        "The token: hold it in front of the camera."
    )
    sealed = section.get_by_label("Token (sealed)").input_value()
    assert "." not in sealed  # sealed, not the plain token a squatter would also get
    card = tmp_path / "card.png"
    card.write_bytes(_card_image(page))
    tab.shot("camera-token-card")
    applied = _qr_scan(["--config", str(agent.config_path), "qr", "scan", "--apply", str(card)])
    assert applied["returncode"] == 0, applied
    agent.wait_for_state("connected", timeout=20)
    assert agent.status()["token"]["jti"] == _jti(added["token"])
    row = page.locator("dl.facts [data-col=status]")
    expect(row).to_have_text("online", timeout=20_000)


def _card_image(page: Any) -> bytes:
    import base64

    source = page.locator("#token-card-image").get_attribute("src")
    prefix = "data:image/png;base64,"
    assert source.startswith(prefix)
    return base64.b64decode(source[len(prefix) :])


def _qr_scan(argv: list[str]) -> dict[str, Any]:
    import json
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "agent", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if "--json" in argv:
        decoded = json.loads(result.stdout)
        assert decoded["found"], decoded
        return dict(decoded["payloads"][0])
    return {"returncode": result.returncode, "out": result.stdout + result.stderr}


def _jti(token: str) -> str:
    from agent.token_codec import parse_claims

    return parse_claims(token).jti


# --- registrators --------------------------------------------------------------------------


def test_registrator_wizard_end_to_end_then_sync(
    new_tab: Callable[[], Tab], cloud: MockCloud, agents: list[sandbox.Agent], tmp_path: Path
) -> None:
    nvr = start_device(
        tmp_path,
        cloud,
        agents,
        "02:d0:00:00:00:01",
        kind="nvr",
        password="unused",
        fast_interval=3.0,
        extra=NVR_CAMERAS,
    )
    activation = wait_for_activation(nvr)
    code = activation["code"]
    # The URL the NVR shows (as a QR code) survives the login and opens the wizard.
    tab = new_tab()
    page = tab.page
    page.goto(activation["activation_url"])
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("Login").fill("admin")
    page.get_by_label("Password").fill(cloud.admin_password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(activation["activation_url"])

    def step(number: int, title: str) -> Any:
        heading = page.get_by_role("heading", name=f"Step {number} of 8: {title}")
        expect(heading).to_be_focused()
        return page.locator(f'section.step[data-step="{number}"]')

    s = page.locator('section.step[data-step="1"]')
    expect(s.get_by_label("Organization")).to_have_value("demo")
    s.get_by_label("Name", exact=True).fill("Server room")
    s.get_by_label("Note").fill("rack 2")
    s.get_by_role("button", name="Next").click()
    s = step(2, "Device")
    s.get_by_label(re.compile("Virtual")).check()
    s.get_by_role("button", name="Create and continue").click()
    s = step(3, "Installation")
    expect(page.locator("#one-liner")).to_contain_text("/install.sh | sh -s -- --nvr")
    s.get_by_role("button", name="Copy command").click()
    expect(s.get_by_role("status")).to_have_text("Copied.")
    s.get_by_role("button", name="Next").click()
    s = step(4, "Activation")
    checks = page.locator("#check-rows")
    expect(checks).to_contain_text("dns")  # the code came with the URL: checks load at once
    checks.evaluate("rows => rows.replaceChildren()")
    s.get_by_label("Activation code the NVR shows").fill(code.lower().replace("-", ""))
    s.get_by_role("button", name="Show checks").click()
    expect(checks).to_contain_text("dns")
    expect(checks).to_contain_text("outbound port")
    tab.shot("wizard")
    s.get_by_role("button", name="Next").click()
    s = step(5, "Connect")
    expect(s.get_by_label("Activation code")).to_have_value(code)
    tab.expect_refusal("/activate", 404)
    next_button = s.get_by_role("button", name="Next")
    expect(next_button).to_be_disabled()  # nothing to go on with until the code is activated
    s.get_by_label("Activation code").fill("0000-0000-0000")
    s.get_by_role("button", name="Activate").click()
    expect(s.get_by_role("alert")).to_contain_text("activation code 0000-0000-0000 is unknown")
    expect(next_button).to_be_disabled()
    s.get_by_label("Activation code").fill(code)
    s.get_by_role("button", name="Activate").click()
    expect(page.locator("#connect-status")).to_contain_text("Status: online", timeout=20_000)
    expect(next_button).to_be_enabled()
    nvr.wait_for_state("connected", timeout=10)
    s.get_by_role("button", name="Next").click()
    s = step(6, "Broadcast")
    s.get_by_label("Broadcast to the cloud").check()
    s.get_by_label("Quality").select_option("high")
    s.get_by_role("button", name="Save and continue").click()
    s = step(7, "Archive")
    s.get_by_label("Record an archive").check()
    s.get_by_label("Days to keep").fill("0")
    tab.expect_refusal("/archive", 400)
    s.get_by_role("button", name="Save and continue").click()
    # Said as a person would, by the field's label, not "field 'days'".
    expect(s.get_by_role("alert")).to_have_text("Days to keep must be from 1 to 365.")
    s.get_by_label("Days to keep").fill("14")
    s.get_by_role("button", name="Save and continue").click()
    s = step(8, "Summary")
    summary = page.locator("#summary")
    expect(summary).to_contain_text("on, high quality")
    expect(summary).to_contain_text("on, 14 day(s)")
    expect(summary).to_contain_text("02:d0:00:00:00:01")
    tab.shot("wizard-summary")
    s.get_by_role("link", name="Finish").click()

    row = page.get_by_role("row", name=re.compile("Server room"))
    expect(row.locator("[data-col=status]")).to_have_text("online")
    sync = row.get_by_role("button", name="Sync Server room")
    sync.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#sync-status")).to_have_text("Synced: 2 camera(s).")
    expect(row.locator("[data-col=cameras]")).to_have_text(re.compile("Gate.*Yard", re.S))
    expect(sync).to_be_focused()  # the live update changed the row in place
    page.get_by_role("button", name="Sync all").click()
    expect(page.locator("#sync-status")).to_contain_text("Synced 1 of 1 registrator(s).")
    tab.shot("registrators")
    registrator_id = row.get_attribute("data-registrator-id")
    assert registrator_id

    # The cameras the NVR listed are on the Cameras page too, with their registrator and
    # whether each answers the NVR (not the NVR's "online": these addresses lead nowhere).
    page.get_by_role("link", name="Cameras", exact=True).click()
    for name in ("Gate", "Yard"):
        nvr_row = page.get_by_role("row", name=re.compile(name))
        expect(nvr_row.get_by_role("link", name="Server room")).to_be_visible()
        expect(nvr_row.get_by_role("link", name=name)).to_have_attribute(
            "href", f"/registrators/{registrator_id}/cameras/{name}"
        )
        expect(nvr_row.locator("[data-col=status]")).to_have_text(
            re.compile(r"^(not checked yet|no answer)")
        )
    page.get_by_role("row", name=re.compile("Gate")).get_by_role("link", name="Server room").click()
    registrator_page(tab, cloud, nvr, registrator_id)


def registrator_page(tab: Tab, cloud: MockCloud, nvr: sandbox.Agent, registrator_id: str) -> None:
    """The registrator's own page: status, checks, cameras, settings kept after the
    wizard and sent to the NVR, Delete behind a confirmation (revokes the NVR's token)."""
    page = tab.page
    expect(page).to_have_url(re.compile(f"/registrators/{registrator_id}$"))
    expect(page.get_by_role("heading", name="Server room", level=1)).to_be_visible()
    facts = page.locator("#registrator")
    expect(facts.locator("[data-col=status]")).to_have_text("online")
    expect(facts).to_contain_text("02:d0:00:00:00:01")
    expect(page.locator("#registrator-cameras")).to_have_text(re.compile("Gate.*Yard", re.S))
    checks = page.get_by_role("table", name="Device-side checks of the NVR")
    expect(checks).to_contain_text("dns")
    page.get_by_role("button", name="Sync", exact=True).click()
    expect(page.locator("#live")).to_have_text("Synced: 2 camera(s).")
    # The wizard's choices, now editable here.
    broadcast = page.locator("#broadcast-form")
    expect(broadcast.get_by_label("Broadcast to the cloud")).to_be_checked()
    expect(broadcast.get_by_label("Quality")).to_have_value("high")
    broadcast.get_by_label("Quality").select_option("low")
    broadcast.get_by_role("button", name="Save broadcast").click()
    expect(broadcast.get_by_role("status")).to_have_text("Saved; the NVR took the settings.")
    archive = page.locator("#archive-form")
    expect(archive.get_by_label("Days to keep")).to_have_value("14")
    archive.get_by_label("Record an archive").uncheck()
    archive.get_by_role("button", name="Save archive").click()
    expect(archive.get_by_role("status")).to_have_text("Saved; the NVR took the settings.")
    tab.shot("registrator")
    session = cloud.login()
    saved = cloud.registrator(session, registrator_id)
    assert saved["broadcast"] == {"enabled": True, "quality": "low"}
    assert saved["archive"] == {"enabled": False, "days": 14}
    page.reload()
    expect(page.locator("#broadcast-form").get_by_label("Quality")).to_have_value("low")

    # Delete asks first; Cancel keeps it.
    page.get_by_role("button", name="Delete", exact=True).click()
    dialog = page.get_by_role("dialog", name="Delete Server room?")
    expect(dialog).to_contain_text("token is revoked")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert cloud.registrator(session, registrator_id)["id"] == registrator_id
    page.get_by_role("button", name="Delete", exact=True).click()
    dialog.get_by_role("button", name="Delete registrator").click()
    expect(page).to_have_url(re.compile("/registrators$"))
    expect(page.get_by_role("row", name=re.compile("Server room"))).to_have_count(0)
    status, _ = cloud.request("GET", f"/v1/registrators/{registrator_id}", session=session)
    assert status == 404
    # The NVR's channel was closed with "revoked": it leaves the connected state.
    eventually(
        lambda: nvr.status()["state"],
        until=lambda s: s != "connected",
        timeout=15,
        interval=0.1,
        what="the NVR leaving connected",
    )


def test_registration_token_tab(new_tab: Callable[[], Tab]) -> None:
    tab = new_tab()
    page = tab.log_in()
    tab.go("/registrators/new")
    tab_button = page.get_by_role("tab", name="Activation code")
    tab_button.focus()
    page.keyboard.press("ArrowRight")
    token_tab = page.get_by_role("tab", name="Copy token to the registrator")
    expect(token_tab).to_have_attribute("aria-selected", "true")
    expect(token_tab).to_be_focused()
    panel = page.get_by_role("tabpanel", name="Copy token to the registrator")
    # The command to run on the NVR, runnable as shown (tests/agent/test_hints.py).
    expect(panel.locator("code")).to_have_text("camagent nvr register --token-file -")
    panel.get_by_label("Title").fill("warehouse")
    panel.get_by_role("button", name="Generate token").click()
    value = panel.get_by_label("Registration token")
    expect(value).to_have_value(re.compile(r"^rt_"))
    token = value.input_value()
    countdown = panel.get_by_role("timer")
    expect(countdown).to_have_text(re.compile(r"^5:59:\d\d$"))
    first = countdown.inner_text()
    expect(countdown).not_to_have_text(first, timeout=5000)
    panel.get_by_role("button", name="Copy", exact=True).click()
    expect(panel.get_by_role("status")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == token
    tab.shot("registration-token")


def test_a_setup_left_half_way_continues_at_installation(
    new_tab: Callable[[], Tab], cloud: MockCloud
) -> None:
    session = cloud.login()
    registrator = cloud.add_registrator(session, "Basement", note="left half-way")
    tab = new_tab()
    page = tab.log_in()
    tab.go("/registrators")
    row = page.get_by_role("row", name=re.compile("Basement"))
    expect(row.locator("[data-col=status]")).to_have_text("pending")
    row.get_by_role("link", name="Continue setting up Basement").click()
    expect(page).to_have_url(re.compile(f"registrator={registrator['id']}$"))
    heading = page.get_by_role("heading", name="Step 3 of 8: Installation")
    expect(heading).to_be_focused()
    expect(page.locator("#one-liner")).to_contain_text("install.sh")
    page.locator('section.step[data-step="3"]').get_by_role("button", name="Back").click()
    page.locator('section.step[data-step="2"]').get_by_role("button", name="Back").click()
    expect(page.get_by_role("heading", name="Step 1 of 8: Details")).to_be_focused()
    expect(page.get_by_label("Name", exact=True)).to_have_value("Basement")
    expect(page.get_by_label("Note", exact=True).first).to_have_value("left half-way")
    status, _ = cloud.request("DELETE", f"/v1/registrators/{registrator['id']}", session=session)
    assert status == 204
