"""`/console/api/v1/...`: the browser's way into the JSON user API.

The cookie stands in for the Bearer header, and a change needs the CSRF token; then the
request is routed exactly as `/v1/...` would be and handled by the API's own handler,
so permissions, validation and error bodies are the API's, not a copy of them.

WebSocket upgrades (the live view) go the same way: the cloned request keeps the
connection, so the API's handler upgrades it as it would on `/v1/...`. A page cannot
put a CSRF header on a WebSocket, and browsers let any site open one to any host with
the cookies attached, so an upgrade must come from a page of this very origin (its
`Origin` header, which a browser sets and a page cannot change): cross-site WebSocket
hijacking needs more than the SameSite cookie to be ruled out.
"""

from __future__ import annotations

from aiohttp import hdrs, web
from multidict import CIMultiDict
from yarl import URL

from cloud_mock.api import ApiError
from cloud_mock.console.auth import check_csrf, require_cookie_caller
from cloud_mock.console.security import SAFE_METHODS, SESSION_COOKIE

# Only the user API; device, test and auth endpoints are not the console's business.
ALLOWED = ("cameras", "registrators", "registrator-tokens", "sessions")
PREFIX = "/console/api/v1/"
FOREIGN_ORIGIN = "a WebSocket of the console must come from the console's own pages"


def api_path(tail: str) -> str | None:
    """`/v1/<tail>` when `tail` is in the user API, else None."""
    first = tail.split("/", 1)[0]
    if first not in ALLOWED or ".." in tail.split("/"):
        return None
    return "/v1/" + tail


def raw_api_path(request: web.Request, decoded: str) -> str:
    """The API path still percent-encoded as the browser sent it: the router decodes it
    once more, so an NVR camera named "50%25 off" must not arrive as "50% off". The
    decoded path when the prefix itself came encoded (no browser sends that)."""
    raw = request.rel_url.raw_path
    return "/v1/" + raw[len(PREFIX) :] if raw.startswith(PREFIX) else decoded


def is_upgrade(request: web.Request) -> bool:
    """Any protocol upgrade (WebSocket is the only one aiohttp serves): what it asks
    for is the handler's business, whether it may ask is ours."""
    return bool(request.headers.get(hdrs.UPGRADE, "").strip())


def own_origin(request: web.Request) -> str:
    """The origin of the pages this request's host serves (scheme://host[:port])."""
    return f"{request.scheme}://{request.host}".lower()


def check_origin(request: web.Request) -> None:
    """403 unless the upgrade names this origin (a missing Origin is refused too: every
    browser sends one with a WebSocket, so only a non-browser would leave it out, and
    such a client has the Bearer API)."""
    origin = request.headers.get(hdrs.ORIGIN, "").lower()
    if not origin or origin != own_origin(request):
        raise ApiError(403, FOREIGN_ORIGIN)


async def forward(request: web.Request) -> web.StreamResponse:
    caller = require_cookie_caller(request)
    if request.method not in SAFE_METHODS:
        check_csrf(request, caller)
    if is_upgrade(request):
        check_origin(request)
    path = api_path(request.match_info["tail"])
    if path is None:
        raise ApiError(404, "not found")
    headers = CIMultiDict(request.headers)
    headers.popall("Cookie", None)
    headers["Authorization"] = f"Bearer {request.cookies[SESSION_COOKIE]}"
    target = URL.build(
        path=raw_api_path(request, path),
        query_string=request.rel_url.query_string,
        encoded=True,
    )
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
