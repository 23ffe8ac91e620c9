"""Request bodies of the local API: read, checked and turned into dataclasses.

Pure functions: bytes and a content type in, a value or an ApiError out. Strict on
purpose: an unknown field is refused rather than ignored, so a typo in a script
("pasword") is an error the installer sees, not a WiFi profile without a password.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from agent.qr.payloads import WifiNetwork, control_character

MAX_BODY_BYTES = 16 * 1024
MAX_SSID_BYTES = 32
MAX_TOKEN_CHARS = 8192
SECURITIES = ("WPA", "SAE", "WEP", "nopass")


class ApiError(Exception):
    """An answer other than 200: HTTP status, a machine-readable code, a message."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = headers or {}
        self.extra = extra or {}  # more fields for the JSON answer, e.g. tries_left

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "message": self.message, **self.extra}


def invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_body", message)


def json_object(raw: bytes, content_type: str, *, required: bool) -> dict[str, Any]:
    """The body as a JSON object; an empty body is {} when the endpoint needs none."""
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, "body_too_large", f"the body is larger than {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        if required:
            raise invalid("this request needs a JSON object as its body")
        return {}
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise ApiError(
            415, "unsupported_media_type", "send the body as JSON (Content-Type: application/json)"
        )
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise invalid("the body is not valid UTF-8 JSON") from None
    if not isinstance(data, dict):
        raise invalid("the body must be a JSON object")
    return data


def _fields(data: dict[str, Any], known: tuple[str, ...]) -> None:
    unknown = sorted(set(data) - set(known))
    if unknown:
        names = ", ".join(repr(k[:40]) for k in unknown[:5])
        raise invalid(f"unknown field(s) {names}; known: {', '.join(known) or 'none'}")


def no_fields(data: dict[str, Any]) -> None:
    _fields(data, ())


def _string(data: dict[str, Any], key: str, *, default: str | None = None) -> str:
    value = data.get(key, default)
    if value is None:
        raise invalid(f"{key} is missing")
    if not isinstance(value, str):
        raise invalid(f"{key} must be a string")
    return value


def token(data: dict[str, Any]) -> str:
    """`{token}` for /v1/token and /v1/cloud-registration."""
    _fields(data, ("token",))
    value = _string(data, "token").strip()
    if not value:
        raise invalid("token is empty")
    if len(value) > MAX_TOKEN_CHARS:
        raise invalid(f"token is longer than {MAX_TOKEN_CHARS} characters")
    return value


@dataclass(frozen=True)
class _Rule:
    lengths: tuple[int, ...] | None
    hex_lengths: tuple[int, ...]
    message: str


_PASSWORD_RULES = {
    "WPA": _Rule(tuple(range(8, 64)), (64,), "a WPA password has 8 to 63 characters"),
    "SAE": _Rule(None, (), "a WPA3 (SAE) network needs a password"),
    "WEP": _Rule((5, 13), (10, 26), "a WEP key has 5 or 13 characters, or 10 or 26 hex digits"),
}


def wifi(data: dict[str, Any]) -> WifiNetwork:
    """`{ssid, password, security, hidden}` (password empty for "nopass")."""
    _fields(data, ("ssid", "password", "security", "hidden"))
    ssid = _string(data, "ssid")
    if not ssid:
        raise invalid("ssid is empty")
    if len(ssid.encode("utf-8")) > MAX_SSID_BYTES:
        raise invalid(f"ssid is longer than {MAX_SSID_BYTES} bytes")
    if found := control_character(ssid):
        raise invalid(f"ssid holds {found}")
    security = _string(data, "security", default="WPA" if data.get("password") else "nopass")
    if security not in SECURITIES:
        raise invalid(f"security must be one of {', '.join(SECURITIES)}, not {security[:20]!r}")
    password = _string(data, "password", default="")
    hidden = data.get("hidden", False)
    if not isinstance(hidden, bool):
        raise invalid("hidden must be true or false")
    _check_password(security, password)
    return WifiNetwork(ssid=ssid, password=password, security=security, hidden=hidden)


def _check_password(security: str, password: str) -> None:
    if found := control_character(password):
        raise invalid(f"password holds {found}")
    if security == "nopass":
        if password:
            raise invalid('an open network ("nopass") takes no password')
        return
    rule = _PASSWORD_RULES[security]
    if not password:
        raise invalid(f"a {security} network needs a password")
    if rule.lengths is None and len(password) <= 128:
        return
    if rule.lengths is not None and len(password) in rule.lengths:
        return
    if len(password) in rule.hex_lengths and re.fullmatch(r"[0-9A-Fa-f]+", password):
        return
    raise invalid(rule.message)
