"""HTTP plumbing shared by every route: JSON errors, size-limited bodies, field checks.

Every error leaves as `{"error": "..."}` with a meaningful status; a bug still gives a
JSON 500 (and a traceback in the log), but no input may lead there.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

log = logging.getLogger("cloud_mock")

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
    value = data.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
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
