"""The console's pages and its login/logout endpoints (the I/O edge of pages.py)."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlencode

from aiohttp import web

from cloud_mock import users
from cloud_mock.api import get_str, read_json_object
from cloud_mock.cameras import POLLS_SHOWN, camera_json, camera_polls
from cloud_mock.console import pages
from cloud_mock.console.auth import (
    CSRF_FIELD,
    check_csrf,
    check_prelogin_csrf,
    cookie_caller,
    viewer_of,
)
from cloud_mock.console.security import (
    CSP_WITH_MEDIA,
    CSP_WITH_WASM,
    PRELOGIN_COOKIE,
    SESSION_COOKIE,
    clear_cookie,
    new_prelogin_token,
    set_cookie,
)
from cloud_mock.console.user_agent import browser_of
from cloud_mock.keys import STORE
from cloud_mock.nvr import registrator_json
from cloud_mock.users import Caller

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
# The QR decoder vendor.sh fetches (scripts/setup.sh runs it); without it "Scan label" says so.
SCANNER = STATIC_DIR / "vendor" / "zxing-reader.js"
HOME = "/cameras"
LOGIN = "/login"
PRELOGIN_MAX_AGE_S = 3600
MAX_NEXT = 512
LOGIN_FIELDS = ("login", "password", "captcha_id", "captcha_answer")


def safe_next(target: str | None) -> str:
    """Where to go after login: a path of this site only (no `//host`, no scheme), so the
    login page cannot be made to send anyone elsewhere."""
    if (
        not target
        or len(target) > MAX_NEXT
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 0x20 for c in target)
    ):
        return HOME
    return target


def _caller_or_login(request: web.Request) -> Caller:
    """The caller, or a redirect to the login page that comes back here afterwards (the
    activation URL an NVR shows must survive the login)."""
    caller = cookie_caller(request)
    if caller is None:
        raise web.HTTPSeeOther(f"{LOGIN}?{urlencode({'next': request.path_qs})}")
    return caller


def _not_found(
    request: web.Request,
    viewer: pages.Viewer,
    what: str,
    back: tuple[str, str] = (HOME, "cameras"),
) -> web.Response:
    return pages.render(
        request,
        "not_found.html",
        title="Not found",
        page="missing",
        viewer=viewer,
        status=404,
        what=what,
        back=back,
    )


# --- pages ---------------------------------------------------------------------------------


async def home(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther(HOME if cookie_caller(request) else LOGIN)


async def login_page(request: web.Request) -> web.Response:
    target = safe_next(request.query.get("next"))
    if cookie_caller(request) is not None:
        raise web.HTTPSeeOther(target)
    token = new_prelogin_token()
    response = pages.render(
        request,
        "login.html",
        title="Log in",
        page="login",
        viewer=None,
        csrf=token,
        next_path=target,
    )
    set_cookie(response, PRELOGIN_COOKIE, token, PRELOGIN_MAX_AGE_S)
    return response


async def cameras_page(request: web.Request) -> web.Response:
    caller = _caller_or_login(request)
    store = request.app[STORE]
    cameras = store.devices.cameras_of(caller.user.org)
    registrators = store.registrators.registrators_of(caller.user.org)
    response = pages.render(
        request,
        "cameras.html",
        title="Cameras",
        page="cameras",
        viewer=viewer_of(request, caller),
        cameras=[camera_json(request.app, c) for c in cameras],
        registrators=[registrator_json(request.app, r) for r in registrators],
        scanner=SCANNER.is_file(),
    )
    response.headers["Content-Security-Policy"] = CSP_WITH_WASM
    return response


async def camera_page(request: web.Request) -> web.Response:
    caller = _caller_or_login(request)
    store = request.app[STORE]
    camera = store.devices.get_camera(request.match_info["id"])
    viewer = viewer_of(request, caller)
    if camera is None or camera.org != caller.user.org:
        return _not_found(request, viewer, "No such camera (it may have been deleted).")
    polls = [p.to_json() for p in camera_polls(request.app, camera, POLLS_SHOWN)]
    response = pages.render(
        request,
        "camera.html",
        title=camera.name,
        page="camera",
        viewer=viewer,
        camera=camera_json(request.app, camera),
        polls=polls,
    )
    response.headers["Content-Security-Policy"] = CSP_WITH_MEDIA
    return response


async def registrators_page(request: web.Request) -> web.Response:
    caller = _caller_or_login(request)
    registrators = request.app[STORE].registrators.registrators_of(caller.user.org)
    return pages.render(
        request,
        "registrators.html",
        title="Registrators",
        page="registrators",
        viewer=viewer_of(request, caller),
        registrators=[registrator_json(request.app, r) for r in registrators],
    )


async def registrator_page(request: web.Request) -> web.Response:
    caller = _caller_or_login(request)
    registrator = request.app[STORE].registrators.get_registrator(request.match_info["id"])
    viewer = viewer_of(request, caller)
    if registrator is None or registrator.org != caller.user.org:
        missing = "No such registrator (it may have been deleted)."
        return _not_found(request, viewer, missing, back=("/registrators", "registrators"))
    return pages.render(
        request,
        "registrator.html",
        title=registrator.name,
        page="registrator",
        viewer=viewer,
        registrator=registrator_json(request.app, registrator),
    )


async def nvr_camera_page(request: web.Request) -> web.Response:
    """One camera of an NVR (synced): its live view and archive, as a camera's page."""
    caller = _caller_or_login(request)
    store = request.app[STORE]
    registrator = store.registrators.get_registrator(request.match_info["id"])
    viewer = viewer_of(request, caller)
    name = request.match_info["name"]
    mine = registrator is not None and registrator.org == caller.user.org
    shown = registrator_json(request.app, registrator) if registrator and mine else None
    found = next((c for c in shown["cameras"] if c.get("name") == name), None) if shown else None
    if shown is None or found is None:
        missing = "No such camera on this NVR (Sync imports its cameras; they may have gone)."
        return _not_found(request, viewer, missing, back=("/registrators", "registrators"))
    response = pages.render(
        request,
        "nvr_camera.html",
        title=name,
        page="nvr-camera",
        viewer=viewer,
        registrator=shown,
        camera=found,
        source=pages.nvr_camera_source(shown, found),
    )
    response.headers["Content-Security-Policy"] = CSP_WITH_MEDIA
    return response


async def wizard_page(request: web.Request) -> web.Response:
    """The wizard; `/registrators/activate?code=...` is the URL the NVR shows as a QR code,
    so it opens the wizard with the code filled in."""
    caller = _caller_or_login(request)
    code = request.query.get("code", "")[:64]
    resume = request.query.get("registrator", "")[:64]
    return pages.render(
        request,
        "wizard.html",
        title="Add registrator",
        page="wizard",
        viewer=viewer_of(request, caller),
        code=code,
        resume=resume,
    )


async def sessions_page(request: web.Request) -> web.Response:
    caller = _caller_or_login(request)
    sessions = request.app[STORE].accounts.sessions_of(caller.user.login)
    rows = [{**users.session_json(s), "current": s.id == caller.session.id} for s in sessions]
    return pages.render(
        request,
        "sessions.html",
        title="Sessions",
        page="sessions",
        viewer=viewer_of(request, caller),
        sessions=rows,
    )


# --- login, logout ---------------------------------------------------------------------------


async def login(request: web.Request) -> web.Response:
    """JSON in, JSON out, for console.js: the answers of POST /v1/auth/login (401, 409,
    428, 429 bodies unchanged), but the session goes into the cookie, not the page."""
    check_prelogin_csrf(request)
    data = await read_json_object(request)
    attempt = {k: data[k] for k in LOGIN_FIELDS if k in data}
    attempt["device"], attempt["software"] = browser_of(request.headers.get("User-Agent", ""))
    result = await users.login_flow(request, attempt)
    response = web.json_response({"next": HOME, "user": result["user"]})
    set_cookie(response, SESSION_COOKIE, result["session"], None)
    clear_cookie(response, PRELOGIN_COOKIE)
    return response


async def end_session_to_login(request: web.Request) -> web.Response:
    """The session-limit dialog's "End session": a resolve token from the 409 ends one."""
    check_prelogin_csrf(request)
    data = await read_json_object(request)
    session_id = get_str(data, "session_id", max_len=128)
    resolve_token = get_str(data, "resolve_token", max_len=256)
    users.end_session_as(request, session_id, resolve_token)
    return web.Response(status=204)


async def logout(request: web.Request) -> web.Response:
    caller = cookie_caller(request)
    if caller is None:
        response = web.HTTPSeeOther(LOGIN)
        clear_cookie(response, SESSION_COOKIE)
        raise response
    form = await request.post() if request.content_type.endswith("urlencoded") else {}
    token = form.get(CSRF_FIELD)
    check_csrf(request, caller, token if isinstance(token, str) else None)
    users.end_session_as(request, caller.session.id, request.cookies[SESSION_COOKIE])
    log.info("console logout of %r", caller.user.login)
    response = web.HTTPSeeOther(LOGIN)
    clear_cookie(response, SESSION_COOKIE)
    raise response


def add_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/", home)
    router.add_get("/login", login_page)
    router.add_post("/console/login", login)
    router.add_post("/console/login/end-session", end_session_to_login)
    router.add_post("/logout", logout)
    router.add_get("/cameras", cameras_page)
    router.add_get("/cameras/{id}", camera_page)
    router.add_get("/registrators", registrators_page)
    router.add_get("/registrators/new", wizard_page)
    router.add_get("/registrators/activate", wizard_page)
    router.add_get("/registrators/{id}", registrator_page)
    router.add_get("/registrators/{id}/cameras/{name}", nvr_camera_page)
    router.add_get("/sessions", sessions_page)
    router.add_static("/console/static", STATIC_DIR, append_version=False)
