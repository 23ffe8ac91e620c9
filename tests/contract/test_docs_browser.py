"""`/docs` in a real browser (Debian's chromium through Playwright): the vendored Swagger UI
renders docs/api/openapi.yaml under the page's Content-Security-Policy, and nothing is
fetched from another origin."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import ConsoleMessage, Request, expect, sync_playwright

from cloud_mock.testing import MockCloud, running_mock_cloud

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[MockCloud]:
    with running_mock_cloud(tmp_path / "cloud") as running:
        yield running


def _trusting_home(directory: Path, ca_file: Path) -> Path:
    """A HOME whose NSS database (what chromium trusts) holds the mock's CA."""
    nssdb = directory / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    db = f"sql:{nssdb}"
    subprocess.run(["certutil", "-d", db, "-N", "--empty-password"], check=True)
    subprocess.run(
        ["certutil", "-d", db, "-A", "-t", "C,,", "-n", "mock CA", "-i", str(ca_file)],
        check=True,
    )
    return directory


def test_docs_render_the_document_within_the_csp(cloud: MockCloud, tmp_path: Path) -> None:
    home = _trusting_home(tmp_path / "home", cloud.ca_file)
    errors: list[str] = []
    origins: set[str] = set()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=ARGS, env={"HOME": str(home)}
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(20_000)

            def console(message: ConsoleMessage) -> None:
                if message.type == "error":
                    errors.append(f"{message.location.get('url')}: {message.text}")

            def request(req: Request) -> None:
                parts = urlsplit(req.url)
                if parts.scheme in ("http", "https"):
                    origins.add(f"{parts.scheme}://{parts.netloc}")

            page.on("console", console)
            page.on("pageerror", lambda error: errors.append(f"pageerror: {error}"))
            page.on("request", request)
            page.goto(cloud.url + "/docs")
            expect(page.get_by_text("camagent cloud API").first).to_be_visible()
            expect(page.get_by_text("/v1/provisioning/poll").first).to_be_visible()
            expect(page.get_by_text("test hooks", exact=True).first).to_be_visible()
            page.get_by_text("/v1/provisioning/poll").first.click()
            expect(page.get_by_text("sealed_token").first).to_be_visible()
        finally:
            browser.close()
    assert errors == []
    assert origins == {cloud.url}
