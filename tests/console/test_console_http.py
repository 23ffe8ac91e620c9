"""The console's protections with plain HTTP: cookie flags, CSRF, CSP, the gateway."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from cloud_mock.console.user_agent import browser_of
from cloud_mock.console.views import safe_next
from cloud_mock.testing import MockCloud
from tests.console.conftest import VIEWER, Browserless

SESSION = "__Host-camagent-session"


def test_pages_carry_the_security_headers(cloud: MockCloud) -> None:
    reply = Browserless(cloud).request("GET", "/login")
    assert reply.status == 200
    csp = reply.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "img-src 'self' data:" in csp
    assert "frame-ancestors 'none'" in csp
    assert reply.headers["X-Frame-Options"] == "DENY"
    assert reply.headers["Referrer-Policy"] == "no-referrer"
    assert "<script>" not in reply.text
    assert " style=" not in reply.text
    # The JSON API keeps its own headers.
    assert "Content-Security-Policy" not in Browserless(cloud).request("GET", "/v1/keys").headers


def test_only_the_page_that_scans_may_compile_webassembly(cloud: MockCloud) -> None:
    client = Browserless(cloud)
    client.log_in()
    cameras = client.request("GET", "/cameras")
    directives = dict(
        d.strip().split(" ", 1) for d in cameras.headers["Content-Security-Policy"].split(";")
    )
    assert directives["script-src"] == "'self' 'wasm-unsafe-eval'"
    assert "wasm" not in directives["default-src"]
    assert "unsafe-inline" not in cameras.headers["Content-Security-Policy"]
    assert 'data-scanner="yes"' in cameras.text
    for path in ("/login", "/registrators", "/sessions"):
        assert "wasm" not in client.request("GET", path).headers["Content-Security-Policy"]
    wasm = client.request("GET", "/console/static/vendor/zxing_reader.wasm")
    assert wasm.status == 200
    assert wasm.headers["Content-Type"] == "application/wasm"  # compiled as it streams
    assert wasm.body[:4] == b"\0asm"


def test_pages_need_a_login_and_the_cookie_is_locked_down(cloud: MockCloud) -> None:
    client = Browserless(cloud)
    for path in ("/cameras", "/registrators", "/registrators/new", "/sessions"):
        reply = client.request("GET", path)
        assert reply.status == 303, path
        location = urlsplit(reply.headers["Location"])
        assert location.path == "/login"
        assert parse_qs(location.query) == {"next": [path]}
    token = client.csrf_of("/login")
    reply = client.json(
        "POST", "/console/login", {"login": "admin", "password": cloud.admin_password}, token
    )
    assert reply.status == 200, reply.text
    cookie = next(c for c in reply.headers.get_all("Set-Cookie", []) if c.startswith(SESSION))
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=strict", "path=/"} <= flags
    assert "session" not in reply.json()  # the secret stays in the cookie
    assert client.request("GET", "/cameras").status == 200


def test_login_without_the_prelogin_token_is_refused(cloud: MockCloud) -> None:
    client = Browserless(cloud)
    client.csrf_of("/login")
    data = {"login": "admin", "password": cloud.admin_password}
    assert client.json("POST", "/console/login", data, None).status == 403
    assert client.json("POST", "/console/login", data, "forged").status == 403
    assert SESSION not in client.cookies


def test_a_change_without_the_csrf_token_is_refused(cloud: MockCloud) -> None:
    client = Browserless(cloud)
    csrf = client.log_in()
    camera = {"device_id": "02:c5:00:00:00:01", "password": "label-pw", "name": "csrf"}
    assert client.json("POST", "/console/api/v1/cameras", camera, None).status == 403
    assert client.json("POST", "/console/api/v1/cameras", camera, "0" * 64).status == 403
    other = Browserless(cloud)
    other_csrf = other.log_in()
    assert client.json("POST", "/console/api/v1/cameras", camera, other_csrf).status == 403
    listed = client.request("GET", "/console/api/v1/cameras").json()
    assert all(c["device_id"] != "02:c5:00:00:00:01" for c in listed["cameras"])
    # With the token the API's own handler answers, errors included.
    added = client.json("POST", "/console/api/v1/cameras", camera, csrf)
    assert added.status == 201, added.text
    assert client.json("POST", "/console/api/v1/cameras", camera, csrf).status == 409
    assert client.json("POST", "/console/api/v1/cameras", {"x": 1}, csrf).status == 400
    logout = client.request(
        "POST",
        "/logout",
        b"csrf_token=wrong",
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert logout.status == 403
    assert client.request("GET", "/cameras").status == 200


def test_gateway_reaches_only_the_user_api(cloud: MockCloud) -> None:
    client = Browserless(cloud)
    csrf = client.log_in()
    assert client.request("GET", "/console/api/v1/test/clock").status == 404
    assert client.json("POST", "/console/api/v1/auth/logout", {}, csrf).status == 404
    assert client.request("GET", "/console/api/v1/cameras/../keys").status == 404
    assert Browserless(cloud).request("GET", "/console/api/v1/cameras").status == 401


def test_logout_ends_the_session(cloud: MockCloud) -> None:
    client = Browserless(cloud)
    csrf = client.log_in()
    secret = client.cookies[SESSION]
    reply = client.request(
        "POST",
        "/logout",
        f"csrf_token={csrf}".encode(),
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert reply.status == 303
    assert reply.headers["Location"] == "/login"
    assert SESSION not in client.cookies
    client.cookies[SESSION] = secret  # an old cookie replayed is worth nothing
    assert client.request("GET", "/cameras").status == 303
    status, _ = cloud.request("GET", "/v1/sessions", session=secret)
    assert status == 401


def test_the_activation_url_the_nvr_shows_opens_the_wizard_with_its_code(
    cloud: MockCloud,
) -> None:
    client = Browserless(cloud)
    client.log_in()
    page = client.request("GET", "/registrators/activate?code=ABCD-EFGH-JK12%22%3E")
    assert page.status == 200
    assert 'id="connect-code" value="ABCD-EFGH-JK12&#34;&gt;"' in page.text  # escaped


def test_sessions_name_the_browser_briefly() -> None:
    chrome = (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "HeadlessChrome/156.0.0.0 Safari/537.36"
    )
    assert browser_of(chrome) == ("web browser on Linux", "camagent console, Chrome 156")
    firefox = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
    assert browser_of(firefox) == ("web browser on Windows", "camagent console, Firefox 128")
    assert browser_of("") == ("web browser", "camagent console")


def test_login_returns_only_to_a_page_of_this_site() -> None:
    assert safe_next("/registrators/activate?code=ABCD") == "/registrators/activate?code=ABCD"
    for evil in ("//evil.example/", "https://evil.example/", "/\\evil.example", "", None, "x"):
        assert safe_next(evil) == "/cameras", evil


def test_a_registrator_has_its_own_page_and_a_viewer_cannot_change_it(cloud: MockCloud) -> None:
    session = cloud.login()
    registrator = cloud.add_registrator(session, "Shed", note="garden")
    owner = Browserless(cloud)
    owner.log_in()
    page = owner.request("GET", f"/registrators/{registrator['id']}")
    assert page.status == 200
    assert 'id="delete-registrator"' in page.text
    assert "<fieldset>" in page.text  # the settings are editable
    assert f'href="/registrators/{registrator["id"]}"' in owner.request("GET", "/registrators").text
    viewer = Browserless(cloud)
    viewer.log_in(VIEWER["login"], VIEWER["password"])
    page = viewer.request("GET", f"/registrators/{registrator['id']}")
    assert page.status == 200
    assert "delete-registrator" not in page.text
    assert "<fieldset disabled>" in page.text
    missing = viewer.request("GET", "/registrators/no-such-id")
    assert missing.status == 404
    assert "No such registrator" in missing.text
    assert 'href="/registrators">Back to registrators' in missing.text
    assert viewer.request("GET", "/registrators/x").headers["Content-Security-Policy"]


def test_a_viewer_sees_no_buttons_and_the_api_still_decides(cloud: MockCloud) -> None:
    client = Browserless(cloud)
    csrf = client.log_in(VIEWER["login"], VIEWER["password"])
    cameras = client.request("GET", "/cameras").text
    assert "Add camera" not in cameras
    assert "Your role (viewer) lets you look at cameras" in cameras
    assert 'data-may-change="no"' in cameras
    registrators = client.request("GET", "/registrators").text
    assert "Sync all" not in registrators
    assert "Add registrator" not in registrators
    camera = {"device_id": "02:c5:00:00:00:09", "password": "label-pw"}
    refused = client.json("POST", "/console/api/v1/cameras", camera, csrf)
    assert refused.status == 403
    assert "viewer" in refused.json()["error"]
    owner = Browserless(cloud)
    owner.log_in()
    assert "Add camera" in owner.request("GET", "/cameras").text


def csp_of(reply_headers: object) -> dict[str, str]:
    header = reply_headers["Content-Security-Policy"]  # type: ignore[index]
    return dict(d.strip().split(" ", 1) for d in header.split(";"))


def test_only_the_camera_page_may_play_media_sources(cloud: MockCloud) -> None:
    camera = cloud.add_camera(cloud.login(), "02:c5:00:00:00:21", "label-pw", "Yard")
    client = Browserless(cloud)
    client.log_in()
    page = client.request("GET", f"/cameras/{camera['camera_id']}")
    assert page.status == 200
    directives = csp_of(page.headers)
    # The live view's <video> plays a blob: URL of its MediaSource; its WebSocket is
    # same-origin (connect-src 'self').
    assert directives["media-src"] == "'self' blob:"
    assert directives["connect-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert "/console/static/player.js" in page.text
    for path in ("/cameras", "/registrators", "/sessions"):
        other = client.request("GET", path)
        assert "media-src" not in csp_of(other.headers), path
        assert "player.js" not in other.text, path


async def test_a_websocket_upgrade_needs_the_consoles_own_origin(cloud: MockCloud) -> None:
    """Cross-site WebSocket hijacking: any site may open a WebSocket to the console and
    the browser sends the cookie (unless SameSite stops it); the gateway refuses an
    upgrade whose Origin is not the console's before any handler runs."""
    session = cloud.login()
    camera = cloud.add_camera(session, "02:c5:00:00:00:22", "label-pw", "Shed")
    url = f"{cloud.url}/console/api/v1/cameras/{camera['camera_id']}/live"
    cookie = {"Cookie": f"{SESSION}={session}"}
    async with aiohttp.ClientSession() as client:
        for origin in ("https://evil.example", None, "null", cloud.url + ".evil.example"):
            headers = {**cookie, **({"Origin": origin} if origin else {})}
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await client.ws_connect(url, headers=headers, ssl=cloud.ssl_context())
            assert refused.value.status == 403, origin
        # From the console's own pages: the API's handler takes it (no device here, so
        # it says it is connecting).
        own = {**cookie, "Origin": cloud.url}
        async with client.ws_connect(url, headers=own, ssl=cloud.ssl_context()) as ws:
            first = await ws.receive_json(timeout=10)
            assert first["type"] == "status"
    # An upgrade header does not stand in for the CSRF token of a change either.
    browser = Browserless(cloud)
    browser.log_in()
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Origin": cloud.url}
    change = browser.request("POST", "/console/api/v1/cameras", b"{}", upgrade)
    assert change.status == 403
    assert "CSRF" in change.json()["error"]


def test_a_viewer_has_the_live_view_but_no_reset_or_password(cloud: MockCloud) -> None:
    camera = cloud.add_camera(cloud.login(), "02:c5:00:00:00:23", "label-pw", "Gate")
    viewer = Browserless(cloud)
    viewer.log_in(VIEWER["login"], VIEWER["password"])
    page = viewer.request("GET", f"/cameras/{camera['camera_id']}").text
    assert 'id="live-video"' in page
    assert "reset-camera" not in page
    assert "password-form" not in page
    owner = Browserless(cloud)
    owner.log_in()
    page = owner.request("GET", f"/cameras/{camera['camera_id']}").text
    # Waiting: the password can be corrected; a reset needs the camera online.
    assert 'id="password-section" class="card"' in page
    assert 'id="password-section" class="card" hidden' not in page
    assert 'id="reset-camera" class="danger" aria-describedby="reset-why" disabled' in page


def test_the_token_card_is_for_those_who_may_change_with_the_csrf_token(cloud: MockCloud) -> None:
    """Issue 26: "Token for this camera" (POST /console/cameras/{id}/card)."""
    camera = cloud.add_camera(cloud.login(), "02:c5:00:00:00:2c", "label-pw", "Shed")
    path = f"/console/cameras/{camera['camera_id']}/card"
    owner = Browserless(cloud)
    csrf = owner.log_in()
    assert owner.json("POST", path, {"wifi": None}, None).status == 403  # no CSRF token
    made = owner.json("POST", path, {"wifi": None}, csrf)
    assert made.status == 200, made.text
    assert made.headers["Cache-Control"] == "no-store"
    answer = made.json()
    assert answer["kind"] == "token"
    assert answer["sealed_token"] != camera["token"]
    assert "." not in answer["sealed_token"]
    assert base64.b64decode(answer["image"]).startswith(b"\x89PNG")
    wifi = {"ssid": "Shed net", "password": "wifi-pw-1", "security": "WPA", "hidden": False}
    combined = owner.json("POST", path, {"wifi": wifi}, csrf)
    assert (combined.status, combined.json()["kind"]) == (200, "combined")
    for bad, words in (
        ({"ssid": "x" * 33}, "longer than 32 bytes"),
        ({"ssid": "n", "security": "WPA"}, "needs its password"),
        ({"ssid": "n", "security": "ROT13", "password": "p"}, "security must be"),
        ({"ssid": "n", "hidden": "yes"}, "hidden must be"),
        ("Shed net", "wifi must be an object"),
    ):
        refused = owner.json("POST", path, {"wifi": bad}, csrf)
        assert refused.status == 400, bad
        assert words in refused.json()["error"], refused.text
    viewer = Browserless(cloud)
    viewer_csrf = viewer.log_in(VIEWER["login"], VIEWER["password"])
    assert viewer.json("POST", path, {"wifi": None}, viewer_csrf).status == 403
    assert "token-form" not in viewer.request("GET", f"/cameras/{camera['camera_id']}").text
    assert owner.json("POST", "/console/cameras/nope/card", {"wifi": None}, csrf).status == 404
