"""`/console/api/v1/...`: the browser's way into the JSON user API.

The cookie stands in for the Bearer header, and a change needs the CSRF token; then the
request is routed exactly as `/v1/...` would be and handled by the API's own handler,
so permissions, validation and error bodies are the API's, not a copy of them.
"""

from __future__ import annotations

from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from cloud_mock.api import ApiError
from cloud_mock.console.auth import check_csrf, require_cookie_caller
from cloud_mock.console.security import SAFE_METHODS, SESSION_COOKIE

# Only the user API; device, test and auth endpoints are not the console's business.
ALLOWED = ("cameras", "registrators", "registrator-tokens", "sessions")
PREFIX = "/console/api/v1/"


def api_path(tail: str) -> str | None:
    """`/v1/<tail>` when `tail` is in the user API, else None."""
    first = tail.split("/", 1)[0]
    if first not in ALLOWED or ".." in tail.split("/"):
        return None
    return "/v1/" + tail


async def forward(request: web.Request) -> web.StreamResponse:
    caller = require_cookie_caller(request)
    if request.method not in SAFE_METHODS:
        check_csrf(request, caller)
    path = api_path(request.match_info["tail"])
    if path is None:
        raise ApiError(404, "not found")
    headers = CIMultiDict(request.headers)
    headers.popall("Cookie", None)
    headers["Authorization"] = f"Bearer {request.cookies[SESSION_COOKIE]}"
    target = URL.build(path=path, query_string=request.rel_url.query_string, encoded=True)
    inner = request.clone(rel_url=target, headers=headers)
    match = await request.app.router.resolve(inner)
    if match.http_exception is not None:
        raise match.http_exception
    match.add_app(request.app)
    match.freeze()
    # What aiohttp's own dispatch does before calling a handler (web_app._handle).
    inner._match_info = match
    return await match.handler(inner)


def add_routes(app: web.Application) -> None:
    app.router.add_route("*", PREFIX + "{tail:.+}", forward)
