"""Console fixtures: the mock cloud as a subprocess (module-wide, so a browser and a mock
serve several tests), and a tiny cookie-keeping HTTP client for the non-browser tests."""

from __future__ import annotations

import http.client
import json
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cloud_mock.testing import MockCloud, start_mock_cloud


def start_cloud(directory: Path, fixtures: dict[str, Any] | None = None) -> MockCloud:
    fixtures_file = None
    if fixtures is not None:
        fixtures_file = directory / "fixtures.json"
        directory.mkdir(parents=True, exist_ok=True)
        fixtures_file.write_text(json.dumps(fixtures))
    return start_mock_cloud(directory / "cloud", fixtures=fixtures_file)


VIEWER = {"login": "watcher", "password": "watcher-password-1", "org": "demo", "role": "viewer"}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockCloud]:
    fixtures = {"orgs": [{"name": "demo", "business": True}], "users": [VIEWER]}
    c = start_cloud(tmp_path_factory.mktemp("console"), fixtures)
    yield c
    c.stop()


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


@dataclass
class Browserless:
    """Plain HTTPS requests that keep cookies, as a browser would (no redirects followed)."""

    cloud: MockCloud
    cookies: dict[str, str] = field(default_factory=dict)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        url = urllib.parse.urlsplit(self.cloud.url)
        assert url.hostname is not None, self.cloud.url
        connection = http.client.HTTPSConnection(
            url.hostname, url.port, context=self.cloud.ssl_context(), timeout=30
        )
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            reply = Reply(response.status, response.headers, response.read())
        finally:
            connection.close()
        for header in reply.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            value = rest.split(";", 1)[0]
            if value in ("", '""') or "Max-Age=0" in header:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return reply

    def json(self, method: str, path: str, data: Any, csrf: str | None) -> Reply:
        headers = {"Content-Type": "application/json"}
        if csrf is not None:
            headers["X-CSRF-Token"] = csrf
        return self.request(method, path, json.dumps(data).encode(), headers)

    def csrf_of(self, path: str) -> str:
        page = self.request("GET", path)
        assert page.status == 200, page.text
        found = re.search(r'<meta name="csrf-token" content="([^"]*)"', page.text)
        assert found, page.text
        return found.group(1)

    def log_in(self, login: str = "admin", password: str | None = None) -> str:
        """Log in through the console; returns the CSRF token of the new session."""
        token = self.csrf_of("/login")
        reply = self.json(
            "POST",
            "/console/login",
            {"login": login, "password": password or self.cloud.admin_password},
            token,
        )
        assert reply.status == 200, reply.text
        return self.csrf_of("/cameras")
