"""The published contract over HTTP: `GET /openapi.json` (docs/api/openapi.yaml as JSON)
and `GET /docs`, the document rendered by a vendored Swagger UI.

Swagger UI comes from npm (`swagger-ui-dist`, fetched by scripts/setup.sh into
`static/apidocs/`): nothing is loaded from a CDN. Without it, `/docs` answers 503 and
says how to get it; `/openapi.json` never depends on it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

from cloud_mock.api import ApiError
from cloud_mock.conformance.documents import openapi_json

log = logging.getLogger("cloud_mock.openapi_docs")

STATIC = Path(__file__).resolve().parent / "static"
RENDERER_DIR = STATIC / "apidocs"
INIT_SCRIPT = STATIC / "apidocs-init.js"
# The only files /docs/assets/ serves, and their types.
ASSETS = {
    "swagger-ui-bundle.js": (RENDERER_DIR, "text/javascript"),
    "swagger-ui.css": (RENDERER_DIR, "text/css"),
    "apidocs-init.js": (STATIC, "text/javascript"),
}
# Swagger UI sets inline style attributes, hence 'unsafe-inline' for styles only; scripts
# come from this origin alone (the page has no inline script).
CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>camagent cloud API</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/apidocs-init.js"></script>
</body>
</html>
"""
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def renderer_installed() -> bool:
    return all((folder / name).is_file() for name, (folder, _) in ASSETS.items())


async def get_openapi(request: web.Request) -> web.Response:
    return web.Response(body=openapi_json(), content_type="application/json")


async def get_docs(request: web.Request) -> web.Response:
    if not renderer_installed():
        raise ApiError(
            503,
            "the API documentation renderer (swagger-ui-dist) is not installed: run "
            "scripts/setup.sh; the document itself is at /openapi.json",
        )
    return web.Response(text=PAGE, content_type="text/html", headers=HEADERS)


async def get_asset(request: web.Request) -> web.StreamResponse:
    entry = ASSETS.get(request.match_info["name"])
    path = entry[0] / request.match_info["name"] if entry else None
    if entry is None or path is None or not path.is_file():
        raise ApiError(404, "no such documentation asset")
    return web.FileResponse(
        path,
        headers={
            "Content-Type": entry[1],
            "Cache-Control": "max-age=3600",
            "X-Content-Type-Options": "nosniff",
        },
    )


def add_routes(app: web.Application) -> None:
    openapi_json()  # read and converted now: a broken document stops the start (ContractError)
    app.router.add_get("/openapi.json", get_openapi)
    app.router.add_get("/docs", get_docs)
    app.router.add_get("/docs/assets/{name}", get_asset)
