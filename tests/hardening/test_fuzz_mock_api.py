"""Fuzzing the mock cloud: random JSON and bytes to every route that takes a body (and
every route with an ID in its path), with and without a session. The answer is always
below 500, in time, and every API refusal is JSON `{error: "<message>"}`.

The mock runs in-process (cloud_mock.server.start: real TLS on 127.0.0.1) on one event
loop that the hypothesis examples drive.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud_mock.server import Options, RunningMock, start
from tests.examples import examples
from tests.hardening.strategies import deep_nesting, json_values

REQUEST_TIMEOUT_S = 10.0  # a hang is a failure; no route may hold a fuzzed request that long
# Routes that end the session they are called with get one of their own each time.
SESSION_ENDERS = {("POST", "/v1/auth/logout"), ("DELETE", "/v1/sessions/{id}")}
FIELDS = [
    "org", "device_id", "password", "name", "login", "captcha_id", "captcha_answer", "device",
    "software", "code", "title", "note", "token", "resolve_token", "session_id", "args",
    "broadcast", "archive", "cameras", "checks", "secret", "kind", "version", "url", "days",
    "quality", "enabled", "ts", "nonce", "proof", "wait", "csrf",
]  # fmt: skip


@dataclass
class Mock:
    running: RunningMock
    loop: asyncio.AbstractEventLoop
    session: aiohttp.ClientSession
    bearer: str
    ids: list[str]
    routes: list[tuple[str, str]]

    def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, str, bytes]:
        async def go() -> tuple[int, str, bytes]:
            async with self.session.request(method, path, **kwargs) as response:
                return response.status, response.content_type, await response.read()

        return self.loop.run_until_complete(asyncio.wait_for(go(), REQUEST_TIMEOUT_S))

    def login(self) -> str:
        password = (self.running.data_dir / "admin-password").read_text().strip()
        status, _, body = self.call(
            "POST", "/v1/auth/login", json={"login": "admin", "password": password}
        )
        assert status == 200, body
        return str(json.loads(body)["session"])


def _routes(running: RunningMock) -> list[tuple[str, str]]:
    found = set()
    for route in running.app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method in ("POST", "PUT", "PATCH", "DELETE") or (
            route.method == "GET" and "{" in path
        ):
            found.add((route.method, path))
    return sorted(found)


@pytest.fixture(scope="module")
def mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mock]:
    loop = asyncio.new_event_loop()
    data_dir: Path = tmp_path_factory.mktemp("fuzz-mock")
    running = loop.run_until_complete(start(Options(port=0, data_dir=data_dir)))
    context = ssl.create_default_context(cafile=str(data_dir / "ca.pem"))

    async def make_session() -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(ssl=context)
        return aiohttp.ClientSession(base_url=running.url, connector=connector)

    session = loop.run_until_complete(make_session())
    mock = Mock(running, loop, session, "", [], _routes(running))
    mock.bearer = mock.login()
    auth = {"Authorization": f"Bearer {mock.bearer}"}
    _, _, camera = mock.call(
        "POST",
        "/v1/cameras",
        json={"device_id": "02:00:00:00:f0:01", "password": "fuzz-password", "name": "f"},
        headers=auth,
    )
    _, _, registrator = mock.call(
        "POST", "/v1/registrators", json={"name": "fuzz", "device": "virtual"}, headers=auth
    )
    mock.ids = [json.loads(camera)["camera_id"], json.loads(registrator)["id"]]
    try:
        yield mock
    finally:
        loop.run_until_complete(session.close())
        loop.run_until_complete(running.stop())
        loop.close()


def test_the_fuzzer_reaches_the_routes_that_matter(mock: Mock) -> None:
    for route in [
        ("POST", "/v1/auth/login"),
        ("POST", "/v1/cameras"),
        ("POST", "/v1/provisioning/poll"),
        ("POST", "/v1/registrators/{id}/activate"),
        ("POST", "/v1/registrator-tokens"),
        ("POST", "/v1/nvr/register"),
        ("DELETE", "/v1/sessions/{id}"),
    ]:
        assert route in mock.routes


bodies = st.one_of(
    st.builds(lambda v: json.dumps(v).encode(), json_values),
    st.builds(
        lambda d: json.dumps(d).encode(),
        st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6),
    ),
    st.binary(max_size=200),
    st.sampled_from([b"", b"{}", b"[]", b"null", deep_nesting(50_000), b"\xff\xfe\x00"]),
)
content_types = st.sampled_from(
    ["application/json", "text/plain", "application/x-www-form-urlencoded", None]
)
path_ids = st.one_of(st.text(min_size=1, max_size=30), st.sampled_from(["0", "-1", "..", "%"]))


def _is_api(path: str) -> bool:
    return path.startswith("/v1/")


@settings(
    max_examples=examples(400),
    deadline=None,  # TLS round trips on a busy 2-core machine; hangs have their own limit
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), body=bodies, content_type=content_types, auth=st.sampled_from([0, 1, 2]))
def test_any_body_to_any_route_is_answered_below_500(
    mock: Mock, data: st.DataObject, body: bytes, content_type: str | None, auth: int
) -> None:
    method, template = data.draw(st.sampled_from(mock.routes))
    path = template
    if "{" in template:
        ident = data.draw(st.one_of(st.sampled_from(mock.ids), path_ids))
        head, _, rest = template.partition("{")
        path = head + quote(ident, safe="") + rest.partition("}")[2]
    headers = {} if content_type is None else {"Content-Type": content_type}
    if auth == 1:
        bearer = mock.login() if (method, template) in SESSION_ENDERS else mock.bearer
        headers["Authorization"] = f"Bearer {bearer}"
    elif auth == 2:
        headers["Authorization"] = "Bearer " + data.draw(st.text("abc-_.", max_size=40))
    started = time.monotonic()
    status, kind, answer = mock.call(method, path, data=body, headers=headers)
    assert status < 500, (method, path, body[:200], answer[:300])
    assert time.monotonic() - started < REQUEST_TIMEOUT_S
    if status >= 400 and _is_api(path):
        assert kind == "application/json", (method, path, status, answer[:200])
        error = json.loads(answer)["error"]
        assert isinstance(error, str)
        assert error.strip()


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6))
def test_a_good_session_stays_good_whatever_was_sent(mock: Mock, body: dict[str, Any]) -> None:
    """Bodies to the login route never break a session that exists (only logout does)."""
    mock.call("POST", "/v1/auth/login", json=body)
    status, _, _ = mock.call(
        "GET", "/v1/cameras", headers={"Authorization": f"Bearer {mock.bearer}"}
    )
    assert status == 200


# -- the console's gateway (/console/api/v1/…: cookie + CSRF instead of the Bearer) -------


@dataclass
class Console:
    mock: Mock
    session: aiohttp.ClientSession
    csrf: str

    def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, str, bytes]:
        async def go() -> tuple[int, str, bytes]:
            async with self.session.request(method, path, **kwargs) as response:
                return response.status, response.content_type, await response.read()

        return self.mock.loop.run_until_complete(asyncio.wait_for(go(), REQUEST_TIMEOUT_S))

    def csrf_of(self, path: str) -> str:
        status, _, page = self.call("GET", path)
        assert status == 200, page[:300]
        found = re.search(rb'<meta name="csrf-token" content="([^"]*)"', page)
        assert found, page[:300]
        return found.group(1).decode()


@pytest.fixture(scope="module")
def console(mock: Mock) -> Iterator[Console]:
    context = ssl.create_default_context(cafile=str(mock.running.data_dir / "ca.pem"))

    async def make_session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            base_url=mock.running.url,
            connector=aiohttp.TCPConnector(ssl=context),
            cookie_jar=aiohttp.CookieJar(unsafe=True),  # the mock is on 127.0.0.1
        )

    console = Console(mock, mock.loop.run_until_complete(make_session()), "")
    token = console.csrf_of("/login")
    password = (mock.running.data_dir / "admin-password").read_text().strip()
    status, _, body = console.call(
        "POST",
        "/console/login",
        json={"login": "admin", "password": password},
        headers={"X-CSRF-Token": token},
    )
    assert status == 200, body
    console.csrf = console.csrf_of("/cameras")
    try:
        yield console
    finally:
        mock.loop.run_until_complete(console.session.close())


def test_the_console_fuzzer_is_logged_in(console: Console) -> None:
    status, _, _ = console.call("GET", "/console/api/v1/cameras")
    assert status == 200
    status, _, _ = console.call("POST", "/console/api/v1/cameras", json={})
    assert status == 403  # no CSRF token


tails = st.one_of(
    st.sampled_from(
        ["cameras", "registrators", "registrator-tokens", "sessions", "registrators/sync-all",
         "cameras/{id}", "cameras/{id}/commands", "registrators/{id}/activate", "keys",
         "provisioning/poll", "test/clock", "auth/login", "cameras/../test/clock"]
    ),
    st.text(min_size=1, max_size=30),
)  # fmt: skip


@settings(
    max_examples=examples(250),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]),
    tail=tails,
    body=bodies,
    csrf=st.sampled_from(["valid", "none", "wrong"]),
    data=st.data(),
)
def test_any_console_gateway_request_is_answered_below_500(
    console: Console, method: str, tail: str, body: bytes, csrf: str, data: st.DataObject
) -> None:
    ident = data.draw(st.one_of(st.sampled_from(console.mock.ids), path_ids))
    path = "/console/api/v1/" + quote(tail.replace("{id}", ident), safe="/.")
    headers = {"Content-Type": "application/json"}
    if csrf != "none":
        headers["X-CSRF-Token"] = console.csrf if csrf == "valid" else "x" * 43
    status, kind, answer = console.call(method, path, data=body, headers=headers)
    assert status < 500, (method, path, body[:200], answer[:300])
    if status >= 400:
        assert kind == "application/json", (method, path, status, answer[:200])
        assert json.loads(answer)["error"].strip()
    if method != "GET" and csrf != "valid":
        assert status >= 400  # no change without the session's CSRF token
    # The gateway never reaches device, test or auth endpoints.
    first = tail.replace("{id}", ident).split("/", 1)[0]
    if first in ("keys", "provisioning", "test", "auth"):
        assert status in (403, 404), (path, status)
