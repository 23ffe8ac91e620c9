"""The console's browser-facing protections: the session cookie, CSRF tokens, and the
security headers every console response carries.

Pure helpers plus one response hook; nothing here knows about pages.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from aiohttp import web

# `__Host-` makes the browser insist on Secure, Path=/ and no Domain: the cookie can
# neither be set by a sibling host nor leak to one.
SESSION_COOKIE = "__Host-camagent-session"
PRELOGIN_COOKIE = "__Host-camagent-prelogin"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _csp(script_src: str, media_src: str | None = None) -> str:
    media = () if media_src is None else (f"media-src {media_src}",)
    return "; ".join(
        (
            "default-src 'self'",
            f"script-src {script_src}",
            "style-src 'self'",
            # The captcha arrives as a data: URL of a PNG.
            "img-src 'self' data:",
            # 'self' covers the same origin's wss: too (CSP level 3), the live view's socket.
            "connect-src 'self'",
            *media,
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


CSP = _csp("'self'")
# The page with "Scan label" compiles the QR decoder's WebAssembly; only it gets that.
CSP_WITH_WASM = _csp("'self' 'wasm-unsafe-eval'")
# A camera's page (and an NVR camera's) plays live video through Media Source Extensions:
# the <video> plays a blob: URL of the MediaSource (default-src 'self' alone would refuse
# it). Its archive plays the API's HLS playlists from 'self' (natively) or through hls.js
# (a MediaSource again; its segments fetched under connect-src 'self'; its worker, a
# blob: script, left off rather than allowed).
CSP_WITH_MEDIA = _csp("'self'", media_src="'self' blob:")

SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}

# Paths the console serves; the JSON API and the device endpoints keep their own headers.
CONSOLE_PREFIXES = ("/console/", "/login", "/logout", "/cameras", "/registrators", "/sessions")

CONSOLE_KEY = web.AppKey("console_key", bytes)


def is_console_path(path: str) -> bool:
    return path == "/" or path.startswith(CONSOLE_PREFIXES)


def csrf_token(key: bytes, session_id: str) -> str:
    """The CSRF token of one session: unguessable without the server key, dies with the
    session (another session never has the same one)."""
    return hmac.new(key, b"csrf|" + session_id.encode(), hashlib.sha256).hexdigest()


def csrf_matches(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def new_prelogin_token() -> str:
    return secrets.token_urlsafe(24)


def set_cookie(response: web.StreamResponse, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(
        name,
        value,
        path="/",
        secure=True,
        httponly=True,
        samesite="Strict",
        max_age=max_age,
    )


def clear_cookie(response: web.StreamResponse, name: str) -> None:
    response.del_cookie(name, path="/", secure=True, httponly=True, samesite="Strict")


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if not is_console_path(request.path):
        return
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if not request.path.startswith("/console/static/"):
        response.headers.setdefault("Cache-Control", "no-store")
