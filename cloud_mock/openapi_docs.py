"""The published contract over HTTP: `GET /openapi.json` (docs/api/openapi.yaml as JSON)
and `GET /docs`, the document rendered by a vendored Swagger UI.

A mock without `--test-hooks` serves the document without the test hooks (operations
marked `x-test-hook: true` or tagged "test hooks", their tag, and the components only they
use), as a production cloud would: it describes the routes it answers, and no more.

Swagger UI comes from npm (`swagger-ui-dist`, fetched by scripts/setup.sh into
`static/apidocs/`): nothing is loaded from a CDN. Without it, `/docs` answers 503 and
says how to get it; `/openapi.json` never depends on it.
"""

from __future__ import annotations

import copy
import json
import logging
from functools import cache
from pathlib import Path
from typing import Any

from aiohttp import web

from cloud_mock.api import ApiError
from cloud_mock.conformance.documents import METHODS, openapi_document, openapi_json
from cloud_mock.keys import CONFIG

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
RENDERER_DIR = STATIC / "apidocs"
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
TEST_HOOK_TAG = "test hooks"


def renderer_installed() -> bool:
    return all((folder / name).is_file() for name, (folder, _) in ASSETS.items())


def is_test_hook(operation: Any) -> bool:
    return isinstance(operation, dict) and (
        operation.get("x-test-hook") is True or TEST_HOOK_TAG in (operation.get("tags") or [])
    )


def _refs(node: Any) -> set[str]:
    """Every local `$ref` under `node`."""
    found: set[str] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/"):
                found.add(ref)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _component(document: dict[str, Any], ref: str) -> tuple[str, str] | None:
    parts = ref.removeprefix("#/").split("/")
    if len(parts) != 3 or parts[0] != "components":
        return None
    name = parts[2].replace("~1", "/").replace("~0", "~")
    return (parts[1], name) if name in document.get("components", {}).get(parts[1], {}) else None


def _reachable(document: dict[str, Any], roots: Any) -> set[tuple[str, str]]:
    """The components that `roots` use, directly or through other components."""
    seen: set[tuple[str, str]] = set()
    pending = list(_refs(roots))
    while pending:
        key = _component(document, pending.pop())
        if key is None or key in seen:
            continue
        seen.add(key)
        pending.extend(_refs(document["components"][key[0]][key[1]]))
    return seen


def without_test_hooks(document: dict[str, Any]) -> dict[str, Any]:
    """The document as a cloud without test hooks serves it: no test-hook operation, no
    path left without an operation, no "test hooks" tag, and no component that only the
    test hooks used."""
    kept = copy.deepcopy(document)
    paths: dict[str, Any] = {}
    hooks: list[Any] = []
    for path, item in kept.get("paths", {}).items():
        hooks += [op for method, op in item.items() if method in METHODS and is_test_hook(op)]
        rest = {k: v for k, v in item.items() if not (k in METHODS and is_test_hook(v))}
        if any(method in rest for method in METHODS):
            paths[path] = rest
    kept["paths"] = paths
    if "tags" in kept:
        kept["tags"] = [t for t in kept["tags"] if t.get("name") != TEST_HOOK_TAG]
    outside = {k: v for k, v in kept.items() if k != "components"}
    used = _reachable(kept, outside)
    for kind, name in _reachable(kept, hooks) - used:
        del kept["components"][kind][name]
    return kept


@cache
def served_json(test_hooks: bool) -> bytes:
    """What `/openapi.json` answers, made once for each setting."""
    if test_hooks:
        return openapi_json()
    document = without_test_hooks(openapi_document())
    return json.dumps(document, separators=(",", ":")).encode()


async def get_openapi(request: web.Request) -> web.Response:
    body = served_json(request.app[CONFIG].test_hooks)
    return web.Response(body=body, content_type="application/json")


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
    # Read and converted now: a broken document stops the start (ContractError).
    served_json(app[CONFIG].test_hooks)
    app.router.add_get("/openapi.json", get_openapi)
    app.router.add_get("/docs", get_docs)
    app.router.add_get("/docs/assets/{name}", get_asset)
