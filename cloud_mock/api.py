"""HTTP plumbing shared by every route: JSON errors, size-limited bodies, field checks.

Every error leaves as `{"error": "..."}` with a meaningful status; a bug still gives a
JSON 500 (and a traceback in the log), but no input may lead there.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from agent.provisioning.wire import json_integer

log = logging.getLogger(__name__)

JSON_BODY_LIMIT = 64 * 1024


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def response(self) -> web.Response:
        return web.json_response(
            {"error": self.message, **self.extra}, status=self.status, headers=self.headers
        )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return error.response()
    except web.HTTPException as error:
        if error.status < 400:
            raise
        # Router answers (404, 405, ...) in the same JSON shape as ours, headers kept.
        headers = {k: v for k, v in error.headers.items() if k.lower() not in _BODY_HEADERS}
        return web.json_response(
            {"error": error.reason.lower()}, status=error.status, headers=headers
        )
    except Exception:
        log.exception("unexpected error handling %s %s", request.method, request.path)
        return web.json_response({"error": "internal error"}, status=500)


_BODY_HEADERS = {"content-type", "content-length"}


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, or 413 as soon as it is known to exceed `limit` bytes."""
    too_large = ApiError(413, f"request body is larger than {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json_object(request: web.Request, limit: int = JSON_BODY_LIMIT) -> dict[str, Any]:
    body = await read_body(request, limit)
    if not body.strip():
        raise ApiError(400, "request body is empty: send a JSON object")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "request body is not valid JSON") from None
    except RecursionError:
        raise ApiError(400, "request body is nested too deeply") from None
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object")
    return data


def get_str(
    data: Mapping[str, Any],
    name: str,
    *,
    required: bool = True,
    default: str = "",
    max_len: int = 256,
    allow_empty: bool = False,
) -> str:
    if name not in data or data[name] is None:
        if required:
            raise ApiError(400, f"field {name!r} is required")
        return default
    value = data[name]
    if not isinstance(value, str):
        raise ApiError(400, f"field {name!r} must be a string")
    if not value and not allow_empty:
        raise ApiError(400, f"field {name!r} must not be empty")
    if len(value) > max_len:
        raise ApiError(400, f"field {name!r} is longer than {max_len} characters")
    return value


def get_int(data: Mapping[str, Any], name: str, *, minimum: int, maximum: int) -> int:
    value = json_integer(data.get(name))
    if value is None:
        raise ApiError(400, f"field {name!r} must be an integer")
    if not minimum <= value <= maximum:
        raise ApiError(400, f"field {name!r} must be from {minimum} to {maximum}")
    return value


def get_number(data: Mapping[str, Any], name: str) -> float:
    value = data.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ApiError(400, f"field {name!r} must be a number")
    if not math.isfinite(value):
        raise ApiError(400, f"field {name!r} must be a finite number")
    return float(value)


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


# --- methods per path ---------------------------------------------------------------------


def _specificity(resource: web.Resource) -> tuple[int, ...]:
    """Literal segments count before templated ones, from the left: OpenAPI matches a
    concrete path (`/v1/registrators/sync-all`) before a template that also matches it
    (`/v1/registrators/{id}`)."""
    return tuple(0 if "{" in part else 1 for part in resource.canonical.split("/"))


def _methods(resource: web.Resource) -> set[str]:
    return {route.method for route in resource}


class RouteTable:
    """Which path template a request is for, as OpenAPI decides it, and so which methods
    that path allows.

    aiohttp takes the first resource that matches path and method, and on a 405 lists the
    methods of every resource whose path matches: `GET /v1/registrators/sync-all` would
    reach `GET /v1/registrators/{id}`, and its `Allow` would mix both paths' methods. Here
    the most specific template decides: a request for a path whose method that template
    lacks is 405 with that template's methods in `Allow`; `OPTIONS` answers 204 with them.
    """

    def __init__(self, router: web.UrlDispatcher) -> None:
        self.resources = [
            r for r in router.resources() if isinstance(r, web.Resource) and "*" not in _methods(r)
        ]
        # For each template, the more specific ones that may match some of its paths.
        self.shadows: dict[web.AbstractResource, list[web.Resource]] = {}
        for index, general in enumerate(self.resources):
            pattern = general.get_info().get("pattern")
            if not isinstance(general, web.DynamicResource) or pattern is None:
                continue
            key = _specificity(general)
            found = []
            for other_index, specific in enumerate(self.resources):
                other = _specificity(specific)
                probe = re.sub(r"\{[^}]*\}", "x", specific.canonical)
                if len(other) != len(key) or other <= key or not pattern.fullmatch(probe):
                    continue
                shared = _methods(general) & _methods(specific)
                if other_index > index and shared:
                    raise RuntimeError(
                        f"{general.canonical} is registered before {specific.canonical}, which "
                        f"is more specific, with the same methods ({', '.join(sorted(shared))}): "
                        "register the specific path first"
                    )
                found.append(specific)
            if found:
                self.shadows[general] = sorted(found, key=_specificity, reverse=True)

    async def methods_for(self, request: web.Request) -> set[str] | None:
        """The methods of the most specific template matching the request's path, or None
        when none does (aiohttp's own answer stands)."""
        best: tuple[tuple[int, ...], set[str]] | None = None
        for resource in self.resources:
            _, allowed = await resource.resolve(request)
            if allowed and (best is None or _specificity(resource) > best[0]):
                best = (_specificity(resource), set(allowed))
        return best[1] if best else None

    async def shadowing_methods(self, request: web.Request) -> set[str] | None:
        """When the router matched a template that a more specific one also matches, the
        specific one's methods (the request is not for the template matched); else None."""
        resource = request.match_info.route.resource
        for specific in self.shadows.get(resource, []) if resource is not None else []:
            _, allowed = await specific.resolve(request)
            if allowed:
                return set(allowed)
        return None


ROUTE_TABLE = web.AppKey("route_table", RouteTable)


@web.middleware
async def allowed_methods_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    table = request.app.get(ROUTE_TABLE)
    error = request.match_info.http_exception
    if table is None:
        return await handler(request)
    if error is None:
        methods = await table.shadowing_methods(request)
    elif error.status == 405:
        methods = await table.methods_for(request)
    else:
        methods = None
    if methods is None:
        return await handler(request)
    allow = ",".join(sorted(methods | {"OPTIONS"}))
    if request.method == "OPTIONS":
        return web.Response(status=204, headers={"Allow": allow})
    raise ApiError(405, "method not allowed", headers={"Allow": allow})
