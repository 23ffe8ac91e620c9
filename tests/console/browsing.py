"""What the console's browser tests share: Debian's chromium trusting the mock's CA,
a tab that collects console errors, screenshots, the devices the tests start, and the
measures of a page on a phone (overflow, tap targets)."""

from __future__ import annotations

import io
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    expect,
    sync_playwright,
)

from cloud_mock import sandbox
from cloud_mock.testing import MockCloud
from tests.console.conftest import start_cloud
from tests.eventually import eventually

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = (
    ROOT / "docs" / "screenshots"
    if os.environ.get("CAMAGENT_UPDATE_SCREENSHOTS") == "1"
    else ROOT / "test-artifacts" / "screenshots"
)
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"viewport": {"width": 1100, "height": 720}}
# A phone as the issue names it (390x844, the size of common phones): touch, a mobile
# viewport, a phone's pixel ratio.
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 3,
    "is_mobile": True,
    "has_touch": True,
}
MIN_TAP_PX = 44
# Answers the protocol gives on purpose: the browser logs every 4xx of a fetch as a
# console error, so these (and only these) are let through on the login endpoint; a test
# that provokes another refusal names it with Tab.expect_refusal.
LOGIN_REFUSALS = ("/console/login", (401, 409, 428))


# A second owner who may hold one session at a time (the session-limit dialog).
LIMITED = {"login": "limited", "password": "limited-password-1", "role": "owner"}


def console_cloud(directory: Path) -> MockCloud:
    """A mock cloud for browser tests: org demo (business), admin, and LIMITED."""
    fixtures = {
        "orgs": [{"name": "demo", "business": True}],
        "users": [{**LIMITED, "org": "demo", "max_sessions": 1}],
    }
    return start_cloud(directory, fixtures)


@contextmanager
def chromium(cloud: MockCloud, home_dir: Path) -> Iterator[Browser]:
    """Debian's chromium, trusting the mock's CA through an NSS database in `home_dir`."""
    home = trusting_home(home_dir, cloud.ca_file)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=ARGS, env={"HOME": str(home)}
        )
        try:
            yield browser
        finally:
            browser.close()


def trusting_home(directory: Path, ca_file: Path) -> Path:
    """A HOME whose NSS database (what chromium on Linux trusts) holds the mock's CA."""
    nssdb = directory / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    db = f"sql:{nssdb}"
    subprocess.run(["certutil", "-d", db, "-N", "--empty-password"], check=True)
    subprocess.run(
        ["certutil", "-d", db, "-A", "-t", "C,,", "-n", "camagent mock CA", "-i", str(ca_file)],
        check=True,
    )
    return directory


class Tab:
    """A page plus the console errors it produced."""

    def __init__(self, context: BrowserContext, cloud: MockCloud) -> None:
        self.cloud = cloud
        self.page = context.new_page()
        self.page.set_default_timeout(15_000)
        self.errors: list[str] = []
        self.refusals: list[tuple[str, tuple[int, ...]]] = [LOGIN_REFUSALS]
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        self.page.on("dialog", lambda dialog: dialog.accept())

    def _console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        url = str(message.location.get("url", ""))
        status = re.search(r"status of (\d+)", message.text)
        for path, statuses in self.refusals:
            if status and path in url and int(status.group(1)) in statuses:
                return
        self.errors.append(f"{url}: {message.text}")

    def expect_refusal(self, path: str, *statuses: int) -> None:
        """A 4xx the test provokes on purpose (bad input) is not a console error."""
        self.refusals.append((path, statuses))

    def go(self, path: str) -> Page:
        self.page.goto(self.cloud.url + path)
        return self.page

    def log_in(self, login: str = "admin", password: str | None = None) -> Page:
        page = self.go("/login")
        page.get_by_label("Login").fill(login)
        page.get_by_label("Password").fill(password or self.cloud.admin_password)
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(re.compile(r"/cameras$"))
        return page

    def shot(self, name: str) -> Path:
        """Saves SCREENSHOTS/NAME.png, reduced to a palette (small enough to commit)."""
        from PIL import Image

        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        png = self.page.screenshot(full_page=True)
        path = SCREENSHOTS / f"{name}.png"
        with Image.open(io.BytesIO(png)) as opened:
            image: Image.Image = opened
            viewport = self.page.viewport_size
            if viewport and image.width >= 2 * viewport["width"]:
                # A phone's 3x pixels: half of them is plenty to read.
                image = image.resize((image.width // 2, image.height // 2))
            image.convert("RGB").quantize(colors=64).save(path, optimize=True)
        return path


@contextmanager
def tabs(browser: Browser, cloud: MockCloud, **context_options: Any) -> Iterator[Callable[[], Tab]]:
    """Opens tabs, each in its own context (own cookies); checks their consoles at the end."""
    contexts: list[BrowserContext] = []
    opened: list[Tab] = []

    def make() -> Tab:
        context = browser.new_context(**{**DESKTOP, **context_options})
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=cloud.url)
        contexts.append(context)
        tab = Tab(context, cloud)
        opened.append(tab)
        return tab

    try:
        yield make
    finally:
        for context in contexts:
            context.close()
    errors = [e for tab in opened for e in tab.errors]
    assert errors == [], errors


def start_device(
    directory: Path, cloud: MockCloud, agents: list[sandbox.Agent], device_id: str, **kw: Any
) -> sandbox.Agent:
    config = sandbox.write_agent_config(
        directory / device_id.replace(":", ""),
        cloud,
        device_id=device_id,
        password=kw.pop("password", "label-password"),
        fast_interval=kw.pop("fast_interval", 1.0),
        long_poll=kw.pop("long_poll", 2.0),
        **kw,
    )
    agent = sandbox.start_agent(config)
    agents.append(agent)
    return agent


def wait_for_activation(agent: sandbox.Agent, timeout: float = 20) -> dict[str, Any]:
    activation = eventually(
        lambda: agent.status().get("activation"),
        timeout=timeout,
        interval=0.1,
        what="an activation code in status",
    )
    assert activation is not None
    return dict(activation)


_MEASURE = "\n".join(
    line
    for line in (Path(__file__).parent / "measure.js").read_text().splitlines()
    if not line.startswith("//")
)


def measure(page: Page, tap_targets: bool) -> dict[str, Any]:
    """The page's horizontal overflow (scrollWidth vs clientWidth) and, on a phone, the
    tap targets smaller than MIN_TAP_PX in either direction."""
    result: dict[str, Any] = page.evaluate(_MEASURE, MIN_TAP_PX)
    if not tap_targets:
        result["small"] = []
    return result


def assert_fits(page: Page, where: str, tap_targets: bool = True) -> None:
    m = measure(page, tap_targets)
    assert m["scrollWidth"] <= m["clientWidth"], f"{where}: the page scrolls sideways: {m}"
    assert m["small"] == [], f"{where}: tap targets under {MIN_TAP_PX} px: {m['small']}"


def luminance(rgb: str) -> float:
    r, g, b = (float(v) / 255 for v in re.findall(r"\d+(?:\.\d+)?", rgb)[:3])

    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(foreground: str, background: str) -> float:
    """WCAG contrast ratio of two CSS rgb() colours."""
    lighter, darker = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)
