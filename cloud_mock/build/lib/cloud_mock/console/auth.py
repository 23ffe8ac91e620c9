"""Who is at the browser: the caller behind the session cookie, and the CSRF checks."""

from __future__ import annotations

from aiohttp import web

from cloud_mock.api import ApiError
from cloud_mock.console.pages import Viewer
from cloud_mock.console.security import (
    CONSOLE_KEY,
    CSRF_FIELD,
    CSRF_HEADER,
    PRELOGIN_COOKIE,
    SESSION_COOKIE,
    csrf_matches,
    csrf_token,
)
from cloud_mock.users import Caller, caller_from_secret

CSRF_REFUSED = "missing or wrong CSRF token: reload the page and try again"
NOT_LOGGED_IN = "not logged in (or the session ended): log in again"


def cookie_caller(request: web.Request) -> Caller | None:
    secret = request.cookies.get(SESSION_COOKIE, "")
    return caller_from_secret(request, secret) if secret else None


def require_cookie_caller(request: web.Request) -> Caller:
    caller = cookie_caller(request)
    if caller is None:
        raise ApiError(401, NOT_LOGGED_IN)
    return caller


def session_csrf(request: web.Request, caller: Caller) -> str:
    return csrf_token(request.app[CONSOLE_KEY], caller.session.id)


def viewer_of(request: web.Request, caller: Caller) -> Viewer:
    user = caller.user
    return Viewer(user.login, user.org, user.role, session_csrf(request, caller))


def check_csrf(request: web.Request, caller: Caller, form_value: str | None = None) -> None:
    """403 unless the request carries this session's CSRF token (header or form field)."""
    given = request.headers.get(CSRF_HEADER) or form_value
    if not csrf_matches(session_csrf(request, caller), given):
        raise ApiError(403, CSRF_REFUSED)


def check_prelogin_csrf(request: web.Request) -> None:
    """Before login there is no session to tie a token to: the page's token must equal
    the one in the pre-login cookie (double submit; SameSite=Strict keeps it ours)."""
    cookie = request.cookies.get(PRELOGIN_COOKIE)
    if not cookie or not csrf_matches(cookie, request.headers.get(CSRF_HEADER)):
        raise ApiError(403, CSRF_REFUSED)


__all__ = [
    "CSRF_FIELD",
    "check_csrf",
    "check_prelogin_csrf",
    "cookie_caller",
    "require_cookie_caller",
    "session_csrf",
    "viewer_of",
]
